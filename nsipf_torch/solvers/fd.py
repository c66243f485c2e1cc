"""The 2D/3D finite-volume reference solver of the PHKS system (docs/MODEL.md §1, paper eqs. 1-2).

    rho_t = div(gamma grad rho - chi rho grad c)      (paper eq. 1)
    c_t   = -c rho                                     (paper eq. 2)

on the cell-centred :class:`~nsipf_torch.problems.grid.Grid`, one dimension-generic code path for d = 1, 2 and 3,
batched over the leading axis (B, N, ..., N), float32 or float64, CPU or CUDA. The numerics are the
finite-volume core (:mod:`nsipf_torch.solvers.finite_volume`) on Cartesian axes; this module is its Cartesian face.

Space. Finite volumes with fluxes on the N - 1 interior faces of every axis and zero flux through the
walls (:func:`~nsipf_torch.solvers.stencils.divergence`), so sum(rho) h^d is conserved to round-off. Diffusion
by central differences gamma (rho_{i+1} - rho_i) / h; the drift flux chi rho grad c is upwinded with the
face velocity v = chi (c_{i+1} - c_i) / h and a MUSCL reconstruction of rho
(:func:`~nsipf_torch.solvers.stencils.upwind_flux`, limiters minmod / vanleer / first-order upwind).

Time. Strang splitting per sub-step dt_s: an exact half-step of c with rho frozen
(:func:`~nsipf_torch.solvers.c_equation.update_c`, c <- c exp(-dt_s/2 rho), paper eq. 33 in its exact form), rho
transported by SSP-RK2 (Heun) with c frozen, then the second half-step of c. ``c_update="euler"`` uses the
paper's explicit c - dt c rho in the same two places.

Step limit (docs/MODEL.md §6). Each forward-Euler stage keeps rho >= 0 when
dt_s (2 d gamma / h^2 + sum_axes max|v| / h) <= CFL = 0.4, and SSP-RK2 is a convex combination of such
stages. The caller asks for dt; :func:`fd_substep_count` picks the number of sub-steps (one host sync per
outer step, the only one), the largest over the members of a batch so that batched and single runs agree
bitwise. Inputs are checked once, by :func:`fd_solve` or the API's entry, never inside the step loop.
"""
from __future__ import annotations

import math

import torch

import nsipf_torch.solvers.finite_volume as fv
from nsipf_torch.solvers.c_equation import C_UPDATES, CEquation
from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.params import check_fields, check_positive, check_schemes
from nsipf_torch.solvers.stencils import LIMITERS

__all__ = ["CFL", "LIMITERS", "C_UPDATES", "fd_substep", "fd_substep_count", "fd_advance", "fd_solve",
           "fd_rhs", "stability_rate"]

CFL = fv.POSITIVITY_BOUND


def _geometry(h: float, dim: int) -> fv.CartesianGeometry:
    return fv.CartesianGeometry(h, dim)


def fd_rhs(rho: torch.Tensor, v: list[torch.Tensor], gamma, h: float, limiter: str = "minmod") -> torch.Tensor:
    """d rho / dt = div(gamma grad rho - rho v) by finite volumes (paper eq. 1), zero flux at the walls.

    ``v`` are the face velocities chi (c_{i+1} - c_i) / h of every axis (c frozen), ``gamma`` a float or
    (B,) tensor.
    """
    return fv.rho_rate(rho, v, gamma, _geometry(h, len(v)), limiter)


def fd_substep(rho: torch.Tensor, c: torch.Tensor, dt, gamma, chi, h: float, limiter: str = "minmod",
               c_update: str = "exp") -> tuple[torch.Tensor, torch.Tensor]:
    """One Strang sub-step of size dt (:func:`nsipf_torch.solvers.finite_volume.substep` on Cartesian axes).

    Pure, free of host syncs and differentiable. rho, c: (B, N, ..., N); gamma, chi: floats or (B,)
    tensors. The caller is responsible for dt satisfying the bound of :func:`fd_substep_count`.
    """
    return fv.substep(rho, c, dt, gamma, chi, _geometry(h, rho.ndim - 1), limiter, c_update)


def stability_rate(c: torch.Tensor, gamma, chi, h: float, dim: int) -> torch.Tensor:
    """Per-member rate 2 d gamma / h^2 + sum_axes max|v| / h (docs/MODEL.md §6), shape (B,); no host sync."""
    return fv.stability_rate(c, gamma, chi, _geometry(h, dim))


def fd_substep_count(c: torch.Tensor, dt: float, gamma, chi, h: float, dim: int,
                     rho: torch.Tensor | None = None, c_update: str = "exp", ceq: CEquation | None = None) -> int:
    """Sub-steps n so that dt / n * rate <= CFL for every member (the max over the batch). One host sync.

    With ``rho`` given, the rate is also evaluated on c advanced by the whole dt with rho frozen, since the
    c half-steps inside the outer step sharpen grad c where the cells eat.
    """
    return fv.substep_count(c, dt, gamma, chi, _geometry(h, dim), rho=rho, c_update=c_update, ceq=ceq)


def fd_advance(rho: torch.Tensor, c: torch.Tensor, dt: float, gamma, chi, grid: Grid, limiter: str = "minmod",
               c_update: str = "exp", n_sub: int | None = None, compile: bool = False, ceq: CEquation | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One outer step of size dt as ``n_sub`` equal Strang sub-steps; returns (rho, c, n_sub).

    ``n_sub=None`` picks the count from the combined bound (:func:`fd_substep_count`, one host sync); an
    explicit count is used as given (e.g. to compare batched with single runs bitwise). ``compile`` fuses
    the sub-step with ``torch.compile``. No input checks here (see :func:`fd_solve`); gradients flow
    unless the caller turns them off. ``ceq``: another c-equation of the Keller-Segel family (issue 20).
    """
    return fv.advance(rho, c, dt, gamma, chi, _geometry(grid.h, grid.dim), limiter, c_update, n_sub, compile, ceq)


def fd_solve(rho: torch.Tensor, c: torch.Tensor, T: float, dt: float, gamma, chi, grid: Grid,
             limiter: str = "minmod", c_update: str = "exp", n_sub: int | None = None, callback=None,
             compile: bool = False, ceq: CEquation | None = None):
    """Advance to time T by ceil(T / dt) equal outer steps of size <= dt; returns (rho, c, total_substeps).

    Every input is checked once here (a ``ValueError`` names a bad one). ``callback(k, t, rho, c, n_sub)``
    runs after every outer step k = 1, 2, ... (diagnostics, snapshots). ``ceq``: another c-equation of the
    Keller-Segel family; an elliptic one replaces the given c by the solve for rho.
    """
    T = check_positive("T", T, allow_zero=True)
    dt = check_positive("dt", dt)
    check_schemes(limiter=limiter, c_update=c_update)
    B = check_fields(rho, c, grid.shape)
    check_positive("gamma", gamma, allow_zero=True, batch=B)
    check_positive("chi", chi, allow_zero=True, batch=B)
    n_steps = math.ceil(T / dt - 1e-9) if T > 0 else 0
    step = T / n_steps if n_steps else dt
    total = 0
    with torch.no_grad():
        if ceq is not None:
            c = ceq.initial(c, rho, grid.h, grid.dim)
        for k in range(1, n_steps + 1):
            rho, c, used = fd_advance(rho, c, step, gamma, chi, grid, limiter, c_update, n_sub, compile, ceq)
            total += used
            if callback is not None:
                callback(k, k * step, rho, c, used)
    return rho, c, total
