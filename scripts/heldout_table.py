"""Held-out accuracy table: rho error at T of FD, SIPF-trilinear, SIPF-spline and NSIPF on problems no
training trajectory of the CNN resembles, each against its reference, with the reference's own error.

Cases are ``PROBLEM[@chi=X][@gamma=Y]`` (PROBLEM a name for ``--ic``: ``planar``, ``planar:SEED``,
``planar_c30``, ``mixture:SEED``, ``two_blobs_c30``, ...). References (``nsipf_torch.references``):
planar problems by the 1-D FD solver at a resolution chosen by its own convergence (<= --ref-tol between
NR and 2 NR cells, NR >= 2048, at most --ref-max cells), the others by FD at --ref-factors times N. Each
reference's own error is Richardson's estimate on 16^d blocks (the table's metric, ``metrics.rel_l2``).
Beside NSIPF the monitor ``interp_gap`` at T (``nsipf_torch.monitor``) is recorded.

    python -m scripts.heldout_table --dim 2 --N 64 --P 100000 --seeds 0,1,2 --out runs/heldout_2d
    python -m scripts.heldout_table --dim 3 --N 32 --P 100000 --cases planar,planar:1,planar_c30

Writes OUT/heldout_table.md, OUT/heldout_table.json, OUT/config.json and OUT/interp_gap_scatter.png
(interp_gap at T against NSIPF's error over the spline's, per seed). ``--scatter-from A.json,B.json`` draws
that figure from earlier runs' tables and runs nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from nsipf_torch.grid import Grid
from nsipf_torch.initial import PlanarIC, get_ic
from nsipf_torch.io import save_json
from nsipf_torch.metrics import rel_l2
from nsipf_torch.monitor import InterpGap
from nsipf_torch.references import fd_reference, lift, planar_reference
from scripts.accuracy_table import METHODS, runner_for

DEFAULT_CASES = "planar,planar:1,planar:2,planar@chi=3,planar@gamma=0.003,planar_c30,mixture:101,mixture:102"


@dataclasses.dataclass
class Case:
    name: str
    problem: str
    gamma: float = 0.01
    chi: float = 1.0


def parse_case(text: str) -> Case:
    """``PROBLEM[@chi=X][@gamma=Y]`` -> Case; ValueError naming the text on anything else."""
    problem, *mods = text.strip().split("@")
    get_ic(problem)  # unknown names fail here, naming the known ones
    case = Case(text.strip(), problem)
    for mod in mods:
        key, sep, value = mod.partition("=")
        if not sep or key not in ("chi", "gamma"):
            raise ValueError(f"case {text!r}: a modifier must be chi=X or gamma=Y, got {mod!r}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"case {text!r}: {key} must be a number, got {value!r}") from None
        if not (math.isfinite(number) and number >= 0):
            raise ValueError(f"case {text!r}: {key} must be finite and >= 0, got {value!r}")
        setattr(case, key, number)
    return case


def reference_for(case: Case, grid: Grid, T: float, dt: float, args, log) -> dict:
    """{"rho16": reference rho on 16^d blocks' grid (float64), "error": its own error, "how": a description}."""
    ic = get_ic(case.problem)
    g16 = Grid(16, grid.dim, grid.L)
    start = time.perf_counter()
    if isinstance(ic, PlanarIC):
        ref = planar_reference(ic, grid.dim, case.gamma, case.chi, T, dt, L=grid.L, tol=args.ref_tol,
                               NR_max=args.ref_max, progress=lambda n, s: log(f"  1-D reference {n} cells: {s:.1f} s"))
        how = (f"1-D FD, {ref.NR} cells ({'converged' if ref.converged else 'NOT converged'} to {args.ref_tol:g}; "
               f"observed order {ref.order_observed:.2f}, used {ref.order_used:.2f})")
        return {"rho16": ref.on(g16.to(dtype=torch.float64)), "error": ref.error16, "how": how,
                "seconds": time.perf_counter() - start, "differences": ref.differences}
    factors = tuple(int(f) for f in args.ref_factors.split(","))
    rho, err, _ = fd_reference(ic, grid, case.gamma, case.chi, T, dt, factors=factors)
    from nsipf_torch.metrics import block_average
    return {"rho16": block_average(rho, 16, grid.dim), "error": err,
            "how": f"FD at {' and '.join(f'{grid.N * f}^{grid.dim}' for f in factors)} (Richardson, order 2 assumed)",
            "seconds": time.perf_counter() - start}


def run_method(method: str, case: Case, grid: Grid, P: int, seeds: list[int], T: float, dt: float, model,
               ref16: torch.Tensor) -> dict:
    ic = get_ic(case.problem)
    runner = runner_for(method, grid, ic, P, seeds, model, gamma=case.gamma, chi=case.chi)
    start = time.perf_counter()
    for _ in range(round(T / dt)):
        runner.advance(dt)
    rho, c = runner.fields()
    errs = rel_l2(rho.double().cpu(), ref16[None], 16, grid.dim)
    out = {"rho_T": float(errs.mean()), "per_seed": [float(e) for e in errs], "wall_s": time.perf_counter() - start}
    if method == "NSIPF":
        out["interp_gap_T"] = [float(g) for g in InterpGap(grid, runner.interp)(c, runner.X)]
    return out


def markdown(rows: list[dict], methods: list[str], header: str) -> str:
    lines = [header, "", f"| case | reference (own error) | {' | '.join(methods)} | NSIPF / spline | interp_gap at T |",
             "|---|---|" + "---|" * len(methods) + "---|---|"]
    for row in rows:
        cells = [f"{row[m]['rho_T']:.3f}" for m in methods]
        ratio = (f"{row['NSIPF']['rho_T'] / row['SIPF-spline']['rho_T']:.2f}"
                 if "NSIPF" in row and "SIPF-spline" in row else "–")
        gap = f"{sum(row['NSIPF']['interp_gap_T']) / len(row['NSIPF']['interp_gap_T']):.2f}" if "NSIPF" in row else "–"
        lines.append(f"| {row['case']} | {row['reference_error']:.1e} ({row['reference']}) | " + " | ".join(cells)
                     + f" | {ratio} | {gap} |")
    return "\n".join(lines) + "\n"


def scatter(tables: list[tuple[str, list[dict]]], path: Path) -> None:
    """interp_gap at T against NSIPF's rho error over SIPF-spline's, one point per seed, one colour per table."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from nsipf_torch.io import atomic_write
    fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    for label, rows in tables:
        pts = [(g, n / s) for r in rows if "NSIPF" in r and "SIPF-spline" in r
               for g, n, s in zip(r["NSIPF"]["interp_gap_T"], r["NSIPF"]["per_seed"], r["SIPF-spline"]["per_seed"])]
        if pts:
            ax.scatter(*zip(*pts), label=label, s=18)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.axhline(1.1, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("interp_gap at T")
    ax.set_ylabel("rho error: NSIPF / SIPF-spline (same seed)")
    ax.legend(fontsize=8)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--cases", default=DEFAULT_CASES, help="comma-separated PROBLEM[@chi=X][@gamma=Y]")
    p.add_argument("--dim", type=int, default=2, help="2 or 3")
    p.add_argument("--N", type=int, default=64, help="grid size of the compared runs")
    p.add_argument("--P", type=int, default=100_000, help="particles per member")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated particle seeds, run as one batch and averaged")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated: {', '.join(METHODS)}")
    p.add_argument("--T", type=float, default=0.2, help="final time")
    p.add_argument("--dt", type=float, default=1e-3, help="time step")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"), help="precision of the compared runs")
    p.add_argument("--model", default=None, help="NSIPF checkpoint (default: the shipped one for --dim)")
    p.add_argument("--ref-tol", type=float, default=1e-3, help="planar references: convergence between NR and 2NR cells")
    p.add_argument("--ref-max", type=int, default=4096, help="planar references: the most cells tried")
    p.add_argument("--ref-factors", default="2,4", help="other problems: FD references at these multiples of N")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: on a shared CPU OpenMP spin-waits)")
    p.add_argument("--out", default="runs/heldout", help="output folder")
    p.add_argument("--scatter-from", default="", help="comma-separated heldout_table.json files: draw OUT/interp_gap_scatter.png only")
    args = p.parse_args(argv)
    if args.scatter_from:
        try:
            tables = [(Path(f).parent.name, json.loads(Path(f).read_text())) for f in args.scatter_from.split(",")]
            Path(args.out).mkdir(parents=True, exist_ok=True)
        except (OSError, ValueError) as err:
            print(f"heldout_table: --scatter-from: {err}", file=sys.stderr)
            return 2
        scatter(tables, Path(args.out) / "interp_gap_scatter.png")
        return 0
    try:
        if args.dim not in (2, 3):
            raise ValueError(f"--dim must be 2 or 3, got {args.dim}")
        cases = [parse_case(c) for c in args.cases.split(",") if c.strip()]
        methods = [m.strip() for m in args.methods.split(",")]
        bad = [m for m in methods if m not in METHODS]
        if bad or not cases:
            raise ValueError(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}" if bad else "no --cases")
        seeds = [int(s) for s in args.seeds.split(",")]
        factors = [int(f) for f in args.ref_factors.split(",")]
        if len(factors) < 2 or factors != sorted(set(factors)) or factors[0] < 1:
            raise ValueError(f"--ref-factors must be two or more increasing integers, got {args.ref_factors!r}")
        if args.N < 16 or args.N % 16 or args.P < 1 or not (args.T > 0 and args.dt > 0) or args.threads < 0:
            raise ValueError("need --N a multiple of 16, --P >= 1, --T > 0, --dt > 0, --threads >= 0")
        grid = Grid(args.N, args.dim, dtype=args.dtype)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_text("")
        probe.unlink()
    except (ValueError, OSError) as err:
        print(f"heldout_table: {err}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    save_json(out / "config.json", vars(args))
    rows = []
    bar = tqdm(total=len(cases) * (len(methods) + 1), desc="held-out table", unit="run")
    for case in cases:
        bar.set_postfix_str(f"{case.name}: reference")
        ref = reference_for(case, grid, args.T, args.dt, args, bar.write)
        bar.update()
        row = {"case": case.name, "problem": case.problem, "gamma": case.gamma, "chi": case.chi,
               "reference": ref["how"], "reference_error": ref["error"], "reference_s": ref["seconds"]}
        for method in methods:
            bar.set_postfix_str(f"{case.name}: {method}")
            row[method] = run_method(method, case, grid, args.P, seeds, args.T, args.dt, args.model, ref["rho16"])
            bar.write(f"{case.name} {method}: rho error {row[method]['rho_T']:.4f} ({row[method]['wall_s']:.1f} s)")
            bar.update()
        rows.append(row)
        save_json(out / "heldout_table.json", rows)  # after every case: a stopped run keeps what it measured
    bar.close()
    header = (f"{args.dim}D, N = {args.N}, P = {args.P:,}, seeds {args.seeds}, {args.dtype}, T = {args.T}, "
              f"dt = {args.dt}: rel_l2 of rho at T on 16^{args.dim} blocks")
    md = markdown(rows, methods, header)
    (out / "heldout_table.md").write_text(md)
    scatter([(header.split(":")[0], rows)], out / "interp_gap_scatter.png")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
