"""Where one particle step's time goes: torch.profiler over a few steps of benchmark.py's Table 1 runner.

    python -m studies.profile_step --method NSIPF --N 128 --P 1000000 --device cuda
    python -m studies.profile_step --method SIPF-spline --N 32 --P 20000          # the CPU
    python -m studies.profile_step --method SIPF-trilinear --N 64 --P 10000000 --device cuda --compile default

Prints the operators with the largest self time on the device (CUDA time on a GPU, CPU time otherwise),
the number of kernels launched per step, and the wall time per step outside the profiler.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch
from torch.profiler import ProfilerActivity, profile

from benchmark import METHODS, make_runner, run_steps
from nsipf_torch.commands.cli import parse_config, usage_error
from nsipf_torch.problems.grid import Grid, resolve_device
from nsipf_torch.particles.sipf import compiled_advance


@dataclass
class ProfileConfig:
    method: str = field(default="NSIPF", metadata={"help": "the method profiled", "choices": METHODS})
    N: int = field(default=64, metadata={"help": "grid cells per axis"})
    P: int = field(default=1_000_000, metadata={"help": "particles (1e6 is accepted)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    steps: int = field(default=10, metadata={"help": "profiled steps (after 5 warm-up steps)"})
    compile: str = field(default="", metadata={"help": "torch.compile mode for the particle step (empty: eager)",
                                               "choices": ("", "default", "reduce-overhead")})
    rows: int = field(default=15, metadata={"help": "operators listed"})

    def validate(self) -> None:
        for name in ("N", "P", "steps", "rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")


def main(argv=None) -> int:
    try:
        args = parse_config(ProfileConfig, argv, prog="profile_step.py", description=__doc__.split("\n")[0])
        device = resolve_device(args.device)
        grid = Grid(args.N, 3, 1.0, device, torch.float32)
    except ValueError as err:
        return usage_error("profile_step.py", err)
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
