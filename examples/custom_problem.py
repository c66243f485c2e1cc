"""Your own problem: rho0 and c0 as Python functions of the cell centres, run by three methods.

A colony of cells sits in the lower left of the box; two patches of food lie to its right, a rich one
far away and a poor one close by. Where do the cells go?

    python examples/custom_problem.py            # 2D, N = 64, P = 100,000, T = 0.2: under a minute on a laptop CPU
    python examples/custom_problem.py --small    # a few seconds (what the test suite runs)

Writes custom_problem/ (the NSIPF run: config, snapshots, figures) into --out (default: the current directory).
"""
import argparse
import sys
from pathlib import Path

import torch

import nsipf_torch as nt


def colony(x):
    """rho0 at the cell centres x (..., 2): a Gaussian colony at (-0.5, -0.5); normalised to M0 by the solver."""
    return torch.exp(-((x - torch.tensor([-0.5, -0.5])) ** 2).sum(-1) / (2 * 0.1**2))


def food(x):
    """c0: a rich patch (amplitude 10) at (0.6, 0.4) and a poor one (amplitude 3) at (0, -0.4)."""
    rich = 10 * torch.exp(-((x - torch.tensor([0.6, 0.4])) ** 2).sum(-1) / (2 * 0.15**2))
    poor = 3 * torch.exp(-((x - torch.tensor([0.0, -0.4])) ** 2).sum(-1) / (2 * 0.15**2))
    return rich + poor


def near(result, centre, radius=0.25):
    """The fraction of each member's mass within ``radius`` of ``centre`` at the last snapshot."""
    grid = result.grid
    x = torch.stack(grid.to(dtype=torch.float64).mesh(), dim=-1)
    inside = ((x - torch.tensor(centre)) ** 2).sum(-1) < radius**2
    rho = result.rho[:, -1].double()
    return (rho * inside).sum(dim=(-2, -1)) / rho.sum(dim=(-2, -1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="a tiny run (N = 32, P = 10,000, T = 0.03)")
    p.add_argument("--out", default=".", help="where the custom_problem/ run directory goes")
    args = p.parse_args(argv)
    size = dict(N=32, P=10_000, T=0.03) if args.small else dict(N=64, P=100_000, T=0.2)
    problem = (colony, food)
    runs = {
        "FD": nt.simulate(problem, method="fdm", dim=2, dtype="float64", N=size["N"], T=size["T"]),
        "SIPF-spline": nt.simulate(problem, method="sipf", interp="spline", dim=2, **size),
        "NSIPF": nt.simulate(problem, method="nsipf", dim=2, **size),
    }
    for name, r in runs.items():
        rich, poor = float(near(r, (0.6, 0.4))[0]), float(near(r, (0.0, -0.4))[0])
        print(f"{name:12s} at t = {size['T']}: {rich:.1%} of the cells at the rich patch, {poor:.1%} at the poor one "
              f"({r.wall_time:.1f} s)")
    out = runs["NSIPF"].save(Path(args.out) / "custom_problem")
    print(f"NSIPF run written to {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
