"""The convergence study of the particle methods (the paper's Fig. 8), shared by the slow tests and

    python -m studies.convergence --out bench/convergence    # SIPF-trilinear, two_blobs, N = 32, T = 0.05 (30 s)

which writes OUT/convergence.png, OUT/results.md and OUT/results.json.

- In P: rel_l2 of the deposited rho at T against a high-P run with the same N and dt, averaged over seeds;
  Monte Carlo error predicts slope -1/2.
- In dt: coupled Brownian increments (each coarse step's noise is the normalised sum of the fine path's
  increments over that step), the median pathwise particle error against the finest dt; Euler-Maruyama with
  additive noise predicts strong order 1.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from nsipf_torch.api import step_count
from nsipf_torch.benchmarks.timing import provenance
from nsipf_torch.commands.cli import option, parse_config, usage_error
from nsipf_torch.io.files import ensure_writable_dir, save_json
from nsipf_torch.particles.deposit import deposit
from nsipf_torch.problems.grid import resolve_device
from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.initial import get_ic
from nsipf_torch.methods import make_interp
from nsipf_torch.metrics import rel_l2
from nsipf_torch.particles.sipf import SIPFState, draw_noise, initial_state, noise_generators, sipf_step


def run_coupled(grid: Grid, P: int, T: float, dt: float, seeds: Sequence[int], interp_name: str = "trilinear",
                fine_per_step: int = 1, ic: str = "two_blobs") -> tuple[SIPFState, torch.Tensor]:
    """Final state and deposited rho; each step's noise is the sum of ``fine_per_step`` fine draws / sqrt(m)."""
    state = initial_state(get_ic(ic), grid, P, seeds)
    gens = noise_generators(seeds)
    interp = make_interp(interp_name, grid)
    B = len(seeds)
    n_steps = step_count(T, dt)  # simulate()'s count; coupled increments need equal steps, so T = n dt here
    if abs(n_steps * dt - T) > 1e-9 * max(T, 1.0):
        raise ValueError(f"T = {T:g} is not a whole number of steps dt = {dt:g}: coupled increments need equal steps")
    with torch.no_grad():
        for _ in range(n_steps):
            noise = sum(draw_noise(gens, B, P, grid.dim, grid.dtype, grid.device)
                        for _ in range(fine_per_step)) / math.sqrt(fine_per_step)
            state = sipf_step(state, noise, grid=grid, dt=dt, gamma=0.01, chi=1.0, M0=1.0, interp=interp)
    return state, deposit(state.X, grid, 1.0)


def fit_slope(xs: Sequence[float], errors: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope of log error against log x and its standard error (0 with two points)."""
    lx, le = np.log(np.asarray(xs, float)), np.log(np.asarray(errors, float))
    if len(lx) < 2:
        raise ValueError(f"need at least two points to fit a slope, got {len(lx)}")
    (slope, icpt), resid = np.polyfit(lx, le, 1), None
    if len(lx) > 2:
        resid = le - (slope * lx + icpt)
        se = math.sqrt(float(resid @ resid) / (len(lx) - 2) / float(((lx - lx.mean()) ** 2).sum()))
    else:
        se = 0.0
    return float(slope), se


def convergence_in_P(grid: Grid, T: float, Ps: Sequence[int], P_ref: int, seeds: Sequence[int],
                     dt: float = 1e-3, interp_name: str = "trilinear") -> dict:
    """rel_l2(rho_P, rho_ref) averaged over ``seeds`` for each P; slope and its standard error."""
    _, rho_ref = run_coupled(grid, P_ref, T, dt, [10_000 + max(seeds)], interp_name)
    errs = []
    for P in Ps:
        _, rho = run_coupled(grid, P, T, dt, seeds, interp_name)
        errs.append(float(rel_l2(rho, rho_ref.expand_as(rho), dim=grid.dim).mean()))
    slope, se = fit_slope(Ps, errs)
    return {"P": list(Ps), "error": errs, "slope": slope, "slope_se": se, "expected": -0.5, "P_ref": P_ref}


def convergence_in_dt(grid: Grid, T: float, P: int, dt_ref: float, ratios: Sequence[int], seed: int = 5,
                      interp_name: str = "trilinear") -> dict:
    """Median pathwise error |X_dt - X_ref| with coupled increments for dt = dt_ref * m; slope and its error."""
    ref, _ = run_coupled(grid, P, T, dt_ref, [seed], interp_name)
    dts, errs = [], []
    for m in ratios:
        state, _ = run_coupled(grid, P, T, dt_ref * m, [seed], interp_name, fine_per_step=m)
        dts.append(dt_ref * m)
        errs.append(float((state.X - ref.X).norm(dim=-1).median()))
    slope, se = fit_slope(dts, errs)
    return {"dt": dts, "error": errs, "slope": slope, "slope_se": se, "expected": 1.0, "dt_ref": dt_ref}


@dataclass
class ConvergenceConfig:
    device: str = option("auto", "auto, cpu or cuda")
    out: str = option("bench/convergence", "output directory for convergence.png, results.md, results.json")


def figure(in_P: dict, in_dt: dict, path) -> None:
    """Both studies log-log with their fitted and expected slopes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
    for ax, r, x, label in ((axes[0], in_P, "P", "particles P"), (axes[1], in_dt, "dt", "time step δt")):
        xs = np.asarray(r[x], float)
        ax.loglog(xs, r["error"], "o-", label=f"measured, slope {r['slope']:.2f} ± {r['slope_se']:.2f}")
        ax.loglog(xs, r["error"][0] * (xs / xs[0]) ** r["expected"], "k--", label=f"slope {r['expected']:g}")
        ax.set_xlabel(label)
        ax.set_ylabel("rel_l2 of ρ" if x == "P" else "median |X − X_ref|")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle("SIPF-trilinear, two_blobs, N = 32³, T = 0.05")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    """The paper's Fig. 8 for SIPF-trilinear on two_blobs, N = 32, T = 0.05, float64."""
    try:
        cfg = parse_config(ConvergenceConfig, argv, prog="convergence.py", description=__doc__.split("\n\n")[0])
        device = resolve_device(cfg.device)
        out = ensure_writable_dir(cfg.out)
    except ValueError as err:
        return usage_error("convergence.py", err)
    meta = provenance(cfg, device)
    grid = Grid(32, 3, 1.0, device, torch.float64)
    start = time.perf_counter()
    in_P = convergence_in_P(grid, 0.05, [5_000, 20_000, 80_000], 640_000, [1, 2, 3, 4])
    in_dt = convergence_in_dt(grid, 0.05, 20_000, 1.25e-4, [16, 8, 4])
    wall = time.perf_counter() - start
    figure(in_P, in_dt, out / "convergence.png")
    save_json(out / "results.json", {**meta, "convergence_in_P": in_P, "convergence_in_dt": in_dt, "wall_s": wall})
    md = "\n".join([
        "# nsipf_torch convergence study (the paper's Fig. 8)", "",
        f"Device: {meta['device']}; torch {meta['torch']}; commit {meta['commit']}; {wall:.0f} s.", "",
        "| study | points | errors | fitted slope | expected |", "|---|---|---|---|---|",
        f"| P (rel_l2 of ρ vs P_ref = {in_P['P_ref']:,}, 4 seeds) | {in_P['P']} | "
        f"{', '.join(f'{e:.4f}' for e in in_P['error'])} | {in_P['slope']:.3f} ± {in_P['slope_se']:.3f} | −0.5 |",
        f"| δt (coupled increments, median pathwise error vs δt = {in_dt['dt_ref']:g}) | {in_dt['dt']} | "
        f"{', '.join(f'{e:.2e}' for e in in_dt['error'])} | {in_dt['slope']:.3f} ± {in_dt['slope_se']:.3f} | 1 |",
        "", "![convergence](convergence.png)", ""])
    (out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
