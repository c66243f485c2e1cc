"""Particle-steps per second of the SIPF step (the measurements benchmark.py tabulates).

    python -m studies.time_sipf                       # P = 1e4, 1e5, 1e6 at N = 64, both interpolators
    python -m studies.time_sipf --compile --P 1e6 --interp trilinear
    python -m studies.time_sipf --breakdown --P 1e6   # where the time goes: noise, deposit, grad_c, move

Reports wall-clock and process-CPU time per step (the CPU may be shared: CPU time shows the cost when
wall time is inflated by other load) and the load average at the start.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

import torch

from nsipf_torch.commands.cli import parse_config, usage_error

from nsipf_torch.particles.deposit import deposit
from nsipf_torch.solvers.c_equation import update_c
from nsipf_torch.problems.grid import DTYPES, Grid, resolve_dtype
from nsipf_torch.problems.initial import get_ic
from nsipf_torch.methods import INTERPS, make_interp
from nsipf_torch.particles.move import em_move
from nsipf_torch.particles.sipf import compiled_advance, draw_noise, initial_state, noise_generators, sipf_run


@dataclass
class TimeSIPFConfig:
    P: list[int] = field(default_factory=lambda: [10_000, 100_000, 1_000_000],
                         metadata={"help": "particle counts, comma separated (1e6 is accepted)"})
    N: int = field(default=64, metadata={"help": "grid cells per axis"})
    interp: list[str] = field(default_factory=lambda: ["trilinear", "spline"],
                              metadata={"help": "interpolators, comma separated", "choices": tuple(INTERPS)})
    ic: str = field(default="two_blobs", metadata={"help": "initial condition"})
    dtype: str = field(default="float32", metadata={"help": "floating-point type", "choices": tuple(DTYPES)})
    batch: int = field(default=1, metadata={"help": "members per run (seeds 0..B-1)"})
    steps: int = field(default=5, metadata={"help": "timed steps per figure (2 for spline and neural at P >= 1e6)"})
    threads: int | None = field(default=None, metadata={"help": "torch.set_num_threads (None: torch's)"})
    compile: bool = field(default=False, metadata={
        "help": "torch.compile the two halves of the pure step (sipf.compiled_advance)"})
    breakdown: bool = field(default=False, metadata={"help": "also time the parts of the step separately"})
    batch_vs_single: bool = field(default=False, metadata={
        "help": "time one batch of --batch members against --batch single-member runs (same seeds)"})

    def validate(self) -> None:
        if not self.P or not self.interp:
            raise ValueError("--P and --interp must name at least one entry")
        if min(self.P) < 1:
            raise ValueError(f"--P values must be >= 1, got {min(self.P)}")
        for name in ("N", "batch", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        try:
            get_ic(self.ic)
        except ValueError as err:
            raise ValueError(f"--ic: {err}") from None


def _clock(fn, n):
    fn()
    t, c = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n, (time.process_time() - c) / n


def main(argv=None) -> int:
    try:
        args = parse_config(TimeSIPFConfig, argv, prog="time_sipf.py", description=__doc__.split("\n\n")[0])
    except ValueError as err:
        return usage_error("time_sipf.py", err)
    if args.threads:
        torch.set_num_threads(args.threads)
    grid = Grid(args.N, dim=3, dtype=resolve_dtype(args.dtype))
    ic = get_ic(args.ic)
    seeds = list(range(args.batch))
    print(f"# N={args.N} dtype={args.dtype} B={args.batch} threads={torch.get_num_threads()} "
          f"compile={args.compile} loadavg={os.getloadavg()[0]:.1f} torch={torch.__version__}")
    if args.batch_vs_single:
        batch_vs_single(args, grid, ic)
        return 0
    print("| interp | P | ms/step (wall) | ms/step (CPU) | particle-steps/s (wall) | particle-steps/s (CPU) |")
    print("|---|---|---|---|---|---|")
    for name in args.interp:
        interp = make_interp(name, grid)
        step_fn = compiled_advance() if args.compile else None
        for P in args.P:
            state = initial_state(ic, grid, P, seeds)
            gens = noise_generators(seeds)
            kw = dict(grid=grid, dt=1e-3, gamma=0.01, chi=1.0, M0=1.0, interp=interp, step_fn=step_fn)
            state = sipf_run(state, gens, 1, **kw)  # warm-up (and compilation)
            steps = max(1, args.steps if P < 10**6 or name == "trilinear" else 2)
            box = [state]

            def run():
                box[0] = sipf_run(box[0], gens, 1, **kw)
            wall, cpu = _clock(run, steps)
            n = P * args.batch
            print(f"| {name} | {P:.0e} | {wall * 1e3:.1f} | {cpu * 1e3:.1f} | {n / wall:.3g} | {n / cpu:.3g} |",
                  flush=True)
            if args.breakdown:
                X, c = box[0].X, box[0].c
                B = X.shape[0]
                rho = deposit(X, grid, 1.0)
                g = interp.grad_c(c, X)
                noise = draw_noise(gens, B, P, 3, grid.dtype)
                parts = {
                    "noise": lambda: draw_noise(gens, B, P, 3, grid.dtype),
                    "deposit": lambda: deposit(X, grid, 1.0),
                    "update_c": lambda: update_c(c, rho, 1e-3),
                    "grad_c": lambda: interp.grad_c(c, X),
                    "move": lambda: em_move(X, g, noise, 1e-3, 0.01, 1.0, L=grid.L),
                }
                for part, fn in parts.items():
                    w, cp = _clock(fn, steps)
                    print(f"|   {part} | | {w * 1e3:.1f} | {cp * 1e3:.1f} | | |", flush=True)
    return 0


def batch_vs_single(args, grid, ic):
    """Wall and CPU time of `steps` steps: one batched run of B members vs B separate single runs."""
    B = max(2, args.batch)
    print(f"| interp | P | B | batched: s (wall / CPU) | {B} singles: s (wall / CPU) | speed-up (wall) |")
    print("|---|---|---|---|---|---|")
    for name in args.interp:
        interp = make_interp(name, grid)
        kw = dict(grid=grid, dt=1e-3, gamma=0.01, chi=1.0, M0=1.0, interp=interp)
        for P in args.P:
            seeds = list(range(B))

            def batched():
                sipf_run(initial_state(ic, grid, P, seeds), noise_generators(seeds), args.steps, **kw)

            def singles():
                for s in seeds:
                    sipf_run(initial_state(ic, grid, P, [s]), noise_generators([s]), args.steps, **kw)
            wb, cb = _clock(batched, 1)
            ws, cs = _clock(singles, 1)
            print(f"| {name} | {P:.0e} | {B} | {wb:.2f} / {cb:.2f} | {ws:.2f} / {cs:.2f} | {ws / wb:.2f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
