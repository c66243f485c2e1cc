"""References for the held-out problems, each with an estimate of its own error (docs/MODEL.md §1, paper eqs. 1-2).

``planar`` (:class:`~nsipf_torch.problems.initial.PlanarIC`): rho0 and c0 depend on x alone and the walls are flat, so
the d-D solution depends on x alone and solves the 1-D PHKS system with the same gamma, chi (the y, z
fluxes vanish). Its reference is the FD solver of :mod:`nsipf_torch.solvers.fd` on a 1-D grid (the finite-volume
core takes d = 1), at a resolution chosen by its own convergence: cells are
doubled from 2048 until two successive solutions differ by at most ``tol`` (default 1e-3, relative L2 on the
coarser cells) or ``NR_max`` is reached (then ``converged`` is False: the amplitude-30 variant forms a front
a few thousand cells do not resolve; its Richardson estimate is then what to quote). :func:`lift` carries the 1-D solution to a 2-D/3-D grid by exact cell averaging.

``mixture:SEED`` and the other 2-D/3-D problems: FD at 2x and 4x the compared resolution
(:func:`fd_reference`), with :func:`richardson_error`.

Richardson's estimate. With u_h = u + C h^p, the finer of two solutions at h and h/2 is off by
||u_{h/2} - u_h|| / (2^p - 1). The order assumed is p = 2 (MUSCL with SSP-RK2 on smooth solutions); when a
third, coarser level gives an observed order below 2 (:func:`nsipf_torch.problems.exact.richardson_order`:
minmod clips the slope at extrema, which lowers the order there), the observed order is used instead, so
the estimate errs on the large side.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from einops import reduce

from nsipf_torch.solvers.fd import fd_solve
from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.initial import InitialCondition, PlanarIC
from nsipf_torch.metrics import rel_l2
from nsipf_torch.problems.exact import richardson_order

ASSUMED_ORDER = 2.0


def coarsen(profile: torch.Tensor, n: int) -> torch.Tensor:
    """Cell averages (..., NR) -> (..., n) on the coarser cells (NR a multiple of n; exact for cell averages)."""
    NR = profile.shape[-1]
    if n < 1 or NR % n:
        raise ValueError(f"{NR} cells cannot be averaged onto {n} cells (need a divisor)")
    return reduce(profile, "... (cells sub) -> ... cells", "mean", cells=n)


def lift(profile: torch.Tensor, grid: Grid) -> torch.Tensor:
    """A 1-D x-profile of cell averages (NR,) as the d-D field (N,)*d on ``grid`` (constant across x)."""
    coarse = coarsen(profile.to(torch.float64), grid.N)
    return coarse.reshape(grid.N, *([1] * (grid.dim - 1))).expand(grid.shape).to(grid.device, grid.dtype)


def solve_planar_1d(ic: PlanarIC, NR: int, dim: int, gamma: float, chi: float, T: float, dt: float = 1e-3,
                    M0: float = 1.0, L: float = 1.0, limiter: str = "minmod",
                    c_update: str = "exp") -> tuple[torch.Tensor, torch.Tensor]:
    """rho, c at T on NR cells of [-L, L] (float64): the d-D planar problem's x-profile (rho in d-D units).

    :func:`~nsipf_torch.solvers.fd.fd_solve` on a 1-D grid: the finite-volume core the d-D FD runs use, with the
    same outer steps of at most dt and positive sub-steps.
    """
    if not isinstance(ic, PlanarIC):
        raise ValueError(f"a 1-D reference needs a planar problem, got {ic.name!r}")
    if isinstance(NR, bool) or not isinstance(NR, int) or NR < 4:
        raise ValueError(f"NR must be an integer >= 4, got {NR!r}")
    if not (T >= 0 and dt > 0 and math.isfinite(T) and math.isfinite(dt)):
        raise ValueError(f"need T >= 0 and dt > 0, got T={T}, dt={dt}")
    h = 2.0 * L / NR
    faces = -L + h * torch.arange(NR + 1, dtype=torch.float64)
    rho = ic.rho0_profile(faces, dim, M0).unsqueeze(0)
    c = ic.c0_profile(0.5 * (faces[1:] + faces[:-1])).unsqueeze(0)
    rho, c, _ = fd_solve(rho, c, T, dt, gamma, chi, Grid(NR, dim=1, L=L), limiter, c_update)
    return rho[0], c[0]


def profile_difference(coarse: torch.Tensor, fine: torch.Tensor) -> float:
    """||fine averaged onto the coarse cells - coarse||_2 / ||coarse||_2 of two 1-D profiles."""
    fine_c = coarsen(fine, coarse.shape[-1])
    return float(torch.linalg.vector_norm(fine_c - coarse) / torch.linalg.vector_norm(coarse))


def richardson_error(difference: float, order: float = ASSUMED_ORDER, ratio: float = 2.0) -> float:
    """Richardson's estimate of the finer solution's error from the difference of two levels h and h/ratio."""
    if order <= 0:
        raise ValueError(f"order must be > 0, got {order}")
    return difference / (ratio**order - 1.0)


@dataclass
class PlanarReference:
    """A converged 1-D planar reference: ``rho``, ``c`` on ``NR`` cells at T, and how good it is."""

    rho: torch.Tensor
    c: torch.Tensor
    NR: int
    differences: dict = field(default_factory=dict)  # NR -> rel. L2 difference between NR/2 and NR cells
    order_observed: float = float("nan")
    order_used: float = ASSUMED_ORDER
    error: float = float("nan")        # Richardson's estimate of rho's own error on its NR cells
    error16: float = float("nan")      # the same on 16 blocks (the rel_l2 of nsipf_torch.metrics)
    converged: bool = True             # the last two levels differ by <= tol

    def on(self, grid: Grid) -> torch.Tensor:
        """rho lifted onto ``grid`` (N,)*d."""
        return lift(self.rho, grid)


def planar_reference(ic: PlanarIC, dim: int, gamma: float, chi: float, T: float, dt: float = 1e-3,
                     M0: float = 1.0, L: float = 1.0, tol: float = 1e-3, NR_min: int = 2048,
                     NR_max: int = 8192, progress=None) -> PlanarReference:
    """Solve at NR_min / 4, NR_min / 2, NR_min, 2 NR_min, ... cells until rho at NR / 2 and NR differ by <= tol
    (NR >= NR_min) or NR = NR_max; return the finest with Richardson's estimate of its own error from the
    last three levels (module docstring). ``progress(NR, seconds)`` is called after each level."""
    if NR_min < 16 or NR_max < NR_min:
        raise ValueError(f"need 16 <= NR_min <= NR_max, got {NR_min}, {NR_max}")
    levels = {}
    NR = NR_min // 4
    while True:
        t0 = time.perf_counter()
        levels[NR] = solve_planar_1d(ic, NR, dim, gamma, chi, T, dt, M0, L)
        if progress is not None:
            progress(NR, time.perf_counter() - t0)
        converged = NR // 2 in levels and profile_difference(levels[NR // 2][0], levels[NR][0]) <= tol
        if NR >= NR_min and (converged or NR >= NR_max):
            break
        NR *= 2
    diffs = {n: profile_difference(levels[n // 2][0], levels[n][0]) for n in levels if n // 2 in levels}
    coarse, mid, fine = levels[NR // 4][0], levels[NR // 2][0], levels[NR][0]
    p_obs = richardson_order(profile_difference(coarse, mid), diffs[NR])
    p = min(ASSUMED_ORDER, p_obs)
    d16 = profile_difference(coarsen(mid, 16), coarsen(fine, 16))
    rho, c = levels[NR]
    return PlanarReference(rho, c, NR, diffs, p_obs, p, richardson_error(diffs[NR], p), richardson_error(d16, p),
                           converged)


def fd_reference(ic: InitialCondition, grid: Grid, gamma: float, chi: float, T: float, dt: float = 1e-3,
                 M0: float = 1.0, factors=(2, 4), compile: bool = False) -> tuple[torch.Tensor, float, dict]:
    """FD at factors x the resolution of ``grid`` (float64): (rho of the finest level on its grid, Richardson's
    estimate of its error in rel_l2 on 16 blocks with the assumed order 2, {N: rho}). ``compile`` fuses the
    FD sub-step (fd_solve's option; the same solution up to round-off)."""
    factors = tuple(int(f) for f in factors)
    if len(factors) < 2 or any(b <= a for a, b in zip(factors, factors[1:])) or factors[0] < 1:
        raise ValueError(f"fd_reference needs two or more increasing resolution factors, got {factors}")
    out = {}
    for f in factors:
        g = Grid(grid.N * f, grid.dim, grid.L, grid.device, torch.float64)
        rho, _, _ = fd_solve(ic.rho0(g, M0)[None], ic.c0(g)[None], T, dt, gamma, chi, g, compile=compile)
        out[g.N] = rho[0]
    Ns = sorted(out)
    diff = float(rel_l2(out[Ns[-2]][None], out[Ns[-1]][None], 16, grid.dim)[0])
    return out[Ns[-1]], richardson_error(diff, ASSUMED_ORDER, Ns[-1] / Ns[-2]), out
