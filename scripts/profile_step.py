"""Where one particle step's time goes: torch.profiler over a few steps of benchmark.py's Table 1 runner.

    python -m scripts.profile_step --method NSIPF --N 128 --P 1000000 --device cuda
    python -m scripts.profile_step --method SIPF-spline --N 32 --P 20000          # the CPU
    python -m scripts.profile_step --method SIPF-trilinear --N 64 --P 10000000 --device cuda --compile default

Prints the operators with the largest self time on the device (CUDA time on a GPU, CPU time otherwise),
the number of kernels launched per step, and the wall time per step outside the profiler.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from benchmark import make_runner, run_steps
from nsipf_torch.grid import Grid, resolve_device
from nsipf_torch.sipf import compiled_advance


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="NSIPF", help="FDM, SIPF-spline, SIPF-trilinear or NSIPF")
    ap.add_argument("--N", type=int, default=64, help="grid cells per axis")
    ap.add_argument("--P", type=float, default=1e6, help="particles")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--steps", type=int, default=10, help="profiled steps (after 5 warm-up steps)")
    ap.add_argument("--compile", default=None, help="torch.compile mode for the particle step: default or reduce-overhead")
    ap.add_argument("--rows", type=int, default=15, help="operators listed")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    grid = Grid(args.N, 3, 1.0, device, torch.float32)
    runner = make_runner(args.method, grid, int(args.P))
    if args.compile:
        runner.step_fn = compiled_advance(**({} if args.compile == "default" else {"mode": args.compile}))
    run_steps(runner, 5, 1e-3, device)
    wall, _ = run_steps(runner, args.steps, 1e-3, device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run_steps(runner, args.steps, 1e-3, device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"{args.method} N={args.N} P={int(args.P):,} on {device}: {1e3 * wall / args.steps:.3f} ms/step "
          f"(unprofiled), {args.steps} steps profiled")
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows, max_name_column_width=60))
    if device.type == "cuda":
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        busy = sum(e.device_time for e in kernels) / 1e3 / args.steps  # ms of kernel time per step
        print(f"kernels per step: {len(kernels) / args.steps:.0f}; kernel time {busy:.3f} ms/step of "
              f"{1e3 * wall / args.steps:.3f} ms wall (the rest is launch and host overhead)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
