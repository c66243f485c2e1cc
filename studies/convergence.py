"""The convergence study of the particle methods (the paper's Fig. 8), shared by the slow tests and
``benchmark.py --suite convergence``.

- In P: rel_l2 of the deposited rho at T against a high-P run with the same N and dt, averaged over seeds;
  Monte Carlo error predicts slope -1/2.
- In dt: coupled Brownian increments (each coarse step's noise is the normalised sum of the fine path's
  increments over that step), the median pathwise particle error against the finest dt; Euler-Maruyama with
  additive noise predicts strong order 1.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from nsipf_torch.particles.deposit import deposit
from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.initial import get_ic
from nsipf_torch.particles.interp import make_interp
from nsipf_torch.metrics import rel_l2
from nsipf_torch.particles.sipf import SIPFState, draw_noise, initial_state, noise_generators, sipf_step


def run_coupled(grid: Grid, P: int, T: float, dt: float, seeds: Sequence[int], interp_name: str = "trilinear",
                fine_per_step: int = 1, ic: str = "two_blobs") -> tuple[SIPFState, torch.Tensor]:
    """Final state and deposited rho; each step's noise is the sum of ``fine_per_step`` fine draws / sqrt(m)."""
    state = initial_state(get_ic(ic), grid, P, seeds)
    gens = noise_generators(seeds)
    interp = make_interp(interp_name, grid)
    B = len(seeds)
    with torch.no_grad():
        for _ in range(round(T / dt)):
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
