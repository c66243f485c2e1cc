"""Where one step's time goes: torch.profiler over a run of a few steps of nsipf-benchmark's Table 1 problem
(two_blobs 3D) through simulate()'s loop.

    python -m studies.profile_step --method nsipf --N 128 --P 1000000 --device cuda
    python -m studies.profile_step --method sipf-spline --N 32 --P 20000          # the CPU
    python -m studies.profile_step --method sipf-trilinear --N 64 --P 10000000 --device cuda --compile default

Prints the operators with the largest self time on the device (CUDA time on a GPU, CPU time otherwise),
the number of kernels launched per step, and the wall time per step outside the profiler.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch
from torch.profiler import ProfilerActivity, profile

from nsipf_torch.api import MAX_STEPS, make_runner, prepare, run
from nsipf_torch.benchmarks.timing import run_timed
from nsipf_torch.commands.cli import parse_config, usage_error
from nsipf_torch.methods import METHODS, parse_methods


@dataclass
class ProfileConfig:
    method: str = field(default="nsipf", metadata={"help": f"the method profiled ({', '.join(METHODS)})"})
    N: int = field(default=64, metadata={"help": "grid cells per axis"})
    P: int = field(default=1_000_000, metadata={"help": "particles (1e6 is accepted)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    steps: int = field(default=10, metadata={"help": "profiled steps (after 5 warm-up steps)"})
    compile: str = field(default="", metadata={"help": "torch.compile mode for the particle step (empty: eager)",
                                               "choices": ("", "default", "reduce-overhead")})
    rows: int = field(default=15, metadata={"help": "operators listed"})

    def validate(self) -> None:
        self.method = parse_methods([self.method], "--method")[0]
        for name in ("N", "P", "steps", "rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")


def main(argv=None) -> int:
    try:
        args = parse_config(ProfileConfig, argv, prog="profile_step.py", description=__doc__.split("\n")[0])
        setup = prepare("two_blobs", args.method, N=args.N, dim=3, P=args.P, T=args.steps * 1e-3, dt=1e-3,
                        device=args.device, snapshots=1, diag_every=MAX_STEPS,
                        fallback=False)  # profiles the method it names
    except ValueError as err:
        return usage_error("profile_step.py", err)
    device = setup.grid.device
    options = {"compile": args.compile} if args.compile else {}
    first = make_runner(setup, **options)
    if METHODS[args.method].particles:  # one interpolator for every run: compiled code is reused, not redone
        options["shared_interp"] = first.interp
    run_timed(setup, first, device, stop=min(5, setup.n_steps))  # warm-up (and compilation)
    wall, _ = run_timed(setup, make_runner(setup, **options), device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    runner = make_runner(setup, **options)
    with profile(activities=activities) as prof:
        run(setup, runner)
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
