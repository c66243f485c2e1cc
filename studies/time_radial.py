"""Wall time of the batched radial solver on a training-set-sized family (target: <= 1 min).

    python -m studies.time_radial                       # B=300, Nr=256, R=1.5, d=3, T=0.2, dt=1e-3, compiled
    python -m studies.time_radial --Nr 512 --no-compile --threads 2

The family (a stand-in for the training data; seeded): rho0 a Gaussian of width U[0.08, 0.2] and mass
1, c0 = A exp(-r^2/2 s^2) with A log-uniform in [0.5, 10] and s in U[0.15, 0.4], gamma in U[0.005, 0.02],
chi in U[0.5, 1.5]. Prints the wall time (compilation separately), the sub-step counts, the mass drift
and min rho. Timings depend on the load of the shared CPU; say so when you quote them.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import torch

from nsipf_torch.commands.cli import parse_config, usage_error
from nsipf_torch.problems.grid import DTYPES
from nsipf_torch.solvers.radial import RadialGrid, gaussian_shell_averages, radial_mass, solve_radial


@dataclass
class TimeRadialConfig:
    B: int = field(default=300, metadata={"help": "members of the family (batch size)"})
    Nr: int = field(default=256, metadata={"help": "radial cells (>= 4)"})
    R: float = field(default=1.5, metadata={"help": "outer radius"})
    dim: int = field(default=3, metadata={"help": "space dimension", "choices": (2, 3)})
    T: float = field(default=0.2, metadata={"help": "final time"})
    dt: float = field(default=1e-3, metadata={"help": "outer time step"})
    snapshots: int = field(default=50, metadata={"help": "saved times, evenly spaced over (0, T]"})
    dtype: str = field(default="float64", metadata={"help": "floating-point type", "choices": tuple(DTYPES)})
    threads: int = field(default=1, metadata={"help": "torch threads (1 is best on a shared 2-core CPU)"})
    compile: bool = field(default=True, metadata={"help": "torch.compile the sub-step (compile time reported apart)"})
    seed: int = field(default=0, metadata={"help": "seed of the family's random parameters"})

    def validate(self) -> None:
        for name in ("B", "snapshots", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.Nr < 4:
            raise ValueError(f"--Nr must be >= 4, got {self.Nr}")
        for name in ("R", "T", "dt"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name} must be > 0, got {getattr(self, name)}")
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {self.seed}")


def family(B: int, rgrid: RadialGrid, seed: int):
    g = torch.Generator().manual_seed(seed)
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(B, generator=g, dtype=torch.float64)  # noqa: E731
    sigma_rho = u(0.08, 0.2)
    amp = torch.exp(u(math.log(0.5), math.log(10.0)))
    sigma_c = u(0.15, 0.4)
    gamma, chi = u(0.005, 0.02), u(0.5, 1.5)
    rho0 = gaussian_shell_averages(rgrid, sigma_rho)
    r = rgrid.r.to(torch.float64)
    c0 = amp[:, None] * torch.exp(-r[None, :] ** 2 / (2 * sigma_c[:, None] ** 2))
    return rho0.to(rgrid.dtype), c0.to(rgrid.dtype), gamma, chi


def main(argv=None) -> int:
    try:
        args = parse_config(TimeRadialConfig, argv, prog="time_radial.py", description=__doc__.splitlines()[0])
    except ValueError as err:
        return usage_error("time_radial.py", err)
    torch.set_num_threads(args.threads)
    rgrid = RadialGrid(args.Nr, args.R, args.dim, dtype=args.dtype)
    rho0, c0, gamma, chi = family(args.B, rgrid, args.seed)
    times = [args.T * (k + 1) / args.snapshots for k in range(args.snapshots)]
    compile_s = 0.0
    if args.compile:  # compile (or load from the inductor cache) on one outer step of the same shape
        t0 = time.perf_counter()
        solve_radial(rho0, c0, gamma, chi, rgrid, [args.dt], args.dt, compile=True)
        compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rho, c, counts = solve_radial(rho0, c0, gamma, chi, rgrid, times, args.dt, compile=args.compile,
                                  return_substeps=True)
    wall = time.perf_counter() - t0
    m0 = radial_mass(rho0.to(torch.float64), rgrid.to(dtype=torch.float64))
    drift = ((radial_mass(rho.to(torch.float64), rgrid.to(dtype=torch.float64)) - m0[:, None]).abs() / m0[:, None]).max()
    print(f"B={args.B} Nr={args.Nr} R={args.R} d={args.dim} T={args.T} dt={args.dt} dtype={args.dtype} "
          f"threads={args.threads} compile={args.compile}")
    print(f"wall {wall:.1f} s (+ compile/warm-up {compile_s:.1f} s); outer steps {len(counts)}, "
          f"sub-steps total {sum(counts)}, per outer step min/mean/max {min(counts)}/"
          f"{sum(counts) / len(counts):.1f}/{max(counts)}; {1e3 * wall / sum(counts):.2f} ms per sub-step")
    # Per-member sub-step need at the final time: how much the batch maximum costs the mild members.
    cT = c[:, -1].to(torch.float64)
    v = torch.as_tensor(chi)[:, None] * torch.diff(cT, dim=-1).abs() / rgrid.dr
    rate = 2 * gamma * rgrid.kappa_D / rgrid.dr**2 + rgrid.kappa_A * v.amax(dim=-1) / rgrid.dr
    need = torch.ceil(rate * args.dt / 0.4)
    q = torch.quantile(need, torch.tensor([0.0, 0.5, 0.9, 1.0], dtype=torch.float64))
    print("per-member sub-steps needed at T: min/median/90%/max " + "/".join(f"{x:.0f}" for x in q))
    print(f"max relative mass drift {float(drift):.2e}; min rho {float(rho.min()):.3e}; min c {float(c.min()):.3e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
