"""Wall time of the FD reference solver on two_blobs 3D (docs/MODEL.md §5: T = 0.2, dt = 1e-3) per resolution.

Prints one line per run: N, dtype, threads, wall seconds, outer steps, sub-steps (the combined bound of
docs/MODEL.md §6), ms per sub-step; optionally the batching gain (a B = 4 chi sweep against 4 single runs with the
same forced sub-step count). Timings are not asserted anywhere; they go into docs/VALIDATION.md.

    python -m studies.time_fd --N 32,64,128 --dtype float32
    python -m studies.time_fd --N 32 --batch-check
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import torch

from nsipf_torch.commands.cli import parse_config, usage_error

from nsipf_torch.solvers.fd import fd_advance, fd_solve, fd_substep_count
from nsipf_torch.problems.grid import DTYPES, Grid, resolve_device, resolve_dtype
from nsipf_torch.problems.grid import synchronize as sync
from nsipf_torch.problems.initial import get_ic


@dataclass
class TimeFDConfig:
    N: list[int] = field(default_factory=lambda: [32, 64], metadata={"help": "grid sizes, comma separated"})
    dtype: list[str] = field(default_factory=lambda: ["float32"],
                             metadata={"help": "floating-point types, comma separated", "choices": tuple(DTYPES)})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda or auto"})
    T: float = field(default=0.2, metadata={"help": "final time"})
    dt: float = field(default=1e-3, metadata={"help": "outer time step"})
    threads: int | None = field(default=None, metadata={"help": "torch intra-op threads (None: torch's)"})
    batch_check: bool = field(default=False, metadata={"help": "also time B = 4 against 4 single runs (at the first --N)"})
    batch_steps: int = field(default=20, metadata={"help": "outer steps of the --batch-check runs"})

    def validate(self) -> None:
        if not self.N or not self.dtype:
            raise ValueError("--N and --dtype must name at least one entry")
        if min(self.N) < 1:
            raise ValueError(f"--N values must be >= 1, got {min(self.N)}")
        if not (self.T > 0 and self.dt > 0):
            raise ValueError(f"--T and --dt must be > 0, got {self.T} and {self.dt}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        if self.batch_steps < 1:
            raise ValueError(f"--batch-steps must be >= 1, got {self.batch_steps}")
        try:
            resolve_device(self.device)
        except ValueError as err:
            raise ValueError(f"--device: {err}") from None


def time_run(N, dtype, device, T, dt, ic="two_blobs"):
    grid = Grid(N, dim=3, dtype=dtype, device=device)
    rho, c = get_ic(ic).rho0(grid)[None], get_ic(ic).c0(grid)[None]
    sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        rho, c, total = fd_solve(rho, c, T, dt, 0.01, 1.0, grid)
    sync(device)
    wall = time.perf_counter() - t0
    return wall, total, float(rho.min()), float(grid.integrate(rho)[0])


def batch_check(N, dtype, device, steps, dt):
    """B = 4 chi sweep vs 4 single runs, same forced sub-step count: wall times and bitwise equality."""
    grid = Grid(N, dim=3, dtype=dtype, device=device)
    ic = get_ic("two_blobs")
    chis = torch.tensor([0.5, 1.0, 1.5, 2.0], dtype=dtype, device=device)
    rho = ic.rho0(grid)[None].repeat(4, *([1] * 3))
    c = ic.c0(grid)[None].repeat(4, *([1] * 3))
    n_sub = fd_substep_count(c, dt, 0.01, chis, grid.h, 3, rho=rho)
    with torch.inference_mode():
        t0 = time.perf_counter()
        rb, cb = rho, c
        for _ in range(steps):
            rb, cb, _ = fd_advance(rb, cb, dt, 0.01, chis, grid, n_sub=n_sub)
        sync(device)
        batched = time.perf_counter() - t0
        t0 = time.perf_counter()
        same = True
        for b in range(4):
            rs, cs = rho[b:b + 1], c[b:b + 1]
            for _ in range(steps):
                rs, cs, _ = fd_advance(rs, cs, dt, 0.01, float(chis[b]), grid, n_sub=n_sub)
            same &= bool(torch.equal(rs[0], rb[b]) and torch.equal(cs[0], cb[b]))
        sync(device)
        singles = time.perf_counter() - t0
    return batched, singles, n_sub, same


def main(argv=None) -> int:
    try:
        args = parse_config(TimeFDConfig, argv, prog="time_fd.py", description=__doc__.split("\n\n")[0])
    except ValueError as err:
        return usage_error("time_fd.py", err)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"# two_blobs 3D, T={args.T}, dt={args.dt}, device={device}, threads={torch.get_num_threads()}")
    print("N dtype wall_s outer_steps substeps ms_per_substep min_rho mass")
    for name in args.dtype:
        dtype = resolve_dtype(name)
        for N in args.N:
            wall, total, rmin, mass = time_run(N, dtype, device, args.T, args.dt)
            steps = round(args.T / args.dt)
            print(f"{N} {name} {wall:.2f} {steps} {total} {1e3 * wall / total:.2f} {rmin:.3g} {mass:.9f}",
                  flush=True)
        if args.batch_check:
            N = args.N[0]
            batched, singles, n_sub, same = batch_check(N, dtype, device, args.batch_steps, args.dt)
            print(f"# batch B=4 chi sweep at {N}^3 {name}, {args.batch_steps} steps x {n_sub} sub-steps: "
                  f"batched {batched:.2f} s, 4 singles {singles:.2f} s (x{singles / batched:.2f}), "
                  f"bitwise equal: {same}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
