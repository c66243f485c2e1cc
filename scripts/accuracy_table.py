"""End-to-end accuracy table: FD, SIPF-trilinear, SIPF-spline and NSIPF against converged FD
references, rel_l2 of rho and c on 16^d blocks at t = T/2 and T, with wall times; and the `annuli`
behaviour check (mass within 0.12 of the inner ring at t = 0.05 against FD on the same grid; ring-shaped
food is in the training data, so this is not a held-out test: scripts/heldout_table.py has those).

    python -m scripts.accuracy_table                          # 3D, N in {32, 64}, P in {2e4, 2e5}, seeds 0-2
    python -m scripts.accuracy_table --N 32 --P 20000 --problems two_blobs
    python -m scripts.accuracy_table --problems two_blobs --N 64 --P 200000 --seeds 0     # one seed

With several seeds the particle methods run them as members of one batch; the table shows the mean over
seeds (the JSON also holds each seed's errors under ``per_seed``).

The references are nsipf_torch/reference/fd_<ic>_<d>d.npz (scripts/make_reference_data.py). Writes a markdown table
to stdout and --out (JSON beside it).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from nsipf_torch.grid import Grid
from nsipf_torch.initial import get_ic
from nsipf_torch.interp import make_interp
from nsipf_torch.metrics import rel_l2
from nsipf_torch.resources import reference_path
from nsipf_torch.params import Params
from nsipf_torch.runners import FDRunner, ParticleRunner
from nsipf_torch.validation import ring_fraction

METHODS = ("FD", "SIPF-trilinear", "SIPF-spline", "NSIPF")


def runner_for(method, grid, ic, P, seeds, model=None, gamma=0.01, chi=1.0):
    if method == "FD":
        seeds = seeds[:1]  # deterministic: one member
    params = Params(gamma=gamma, chi=chi, dim=grid.dim)
    if method == "FD":
        return FDRunner(grid, ic, params)
    interp = make_interp("neural", grid, model=model) if method == "NSIPF" else make_interp(method.split("-")[1], grid)
    return ParticleRunner(grid, ic, params, seeds, P, interp)


def run_case(problem, N, P, method, dim, dt, seeds, model=None):
    """Errors of one method (mean over ``seeds``; ``per_seed`` lists each member's) and the wall time."""
    ref = np.load(reference_path(problem, dim))
    grid = Grid(N, dim, dtype=torch.float32)
    runner = runner_for(method, grid, get_ic(problem), P, list(seeds), model)
    per_seed = {}
    out, step, start = {}, 0, time.perf_counter()
    ring_t = None
    for key in ("half", "T"):
        t_target = float(ref[f"t_{key}"])
        while step < round(t_target / dt):
            runner.advance(dt)
            step += 1
            if problem == "annuli" and step == round(0.05 / dt):
                ring_t = float(ring_fraction(runner.fields()[0].double(), grid.to(dtype=torch.float64)).mean())
        rho, c = runner.fields()
        for name, field in (("rho", rho), ("c", c)):
            target = torch.from_numpy(ref[f"{name}_{key}"]).double()[None]
            errs = rel_l2(field.double().cpu(), target, dim=dim)
            out[f"{name}_{key}"] = float(errs.mean())
            per_seed[f"{name}_{key}"] = [float(e) for e in errs]
    out["wall_s"] = time.perf_counter() - start
    if len(per_seed["rho_T"]) > 1:
        out["per_seed"] = per_seed
    if ring_t is not None:
        out["inner_ring_t0.05"] = ring_t
        out["outer_ring_T"] = float(ring_fraction(runner.fields()[0].double(), grid.to(dtype=torch.float64), R=0.7).mean())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problems", default="blob,two_blobs,annuli", help="comma-separated canonical problems")
    p.add_argument("--N", default="32,64", help="comma-separated grid sizes")
    p.add_argument("--P", default="20000,200000", help="comma-separated particle counts")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated: {', '.join(METHODS)}")
    p.add_argument("--dim", type=int, default=3, help="2 or 3")
    p.add_argument("--dt", type=float, default=1e-3, help="time step")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated particle seeds, averaged (run as one batch)")
    p.add_argument("--model", default=None, help="NSIPF checkpoint (default: checkpoints/nsipf_{dim}d.pt)")
    p.add_argument("--out", default="docs/accuracy_table.md", help="markdown output (JSON beside it)")
    args = p.parse_args(argv)
    seeds = [int(x) for x in args.seeds.split(",")]
    rows = []
    for problem in args.problems.split(","):
        for N in map(int, args.N.split(",")):
            fd_row = None
            for P in map(lambda s: int(float(s)), args.P.split(",")):
                row = {"problem": problem, "N": N, "P": P}
                for method in args.methods.split(","):
                    if method == "FD" and fd_row is not None:
                        row["FD"] = fd_row  # the FD solution does not depend on P
                        continue
                    row[method] = run_case(problem, N, P, method, args.dim, args.dt, seeds, args.model)
                    if method == "FD":
                        fd_row = row["FD"]
                    print(problem, N, P, method, row[method], flush=True)
                rows.append(row)
    lines = [f"| problem | N | P | {' | '.join(args.methods.split(','))} |", "|---|---|---|" + "---|" * len(args.methods.split(","))]
    for row in rows:
        cells = []
        for m in args.methods.split(","):
            r = row[m]
            cells.append(f"{r['rho_half']:.3f} / {r['rho_T']:.3f} (c {r['c_T']:.3f}; {r['wall_s']:.1f} s)")
        lines.append(f"| {row['problem']} | {row['N']} | {row['P']:,} | " + " | ".join(cells) + " |")
    md = "\n".join(lines) + "\n"
    print(md)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
