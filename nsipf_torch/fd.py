"""The 2D/3D finite-volume reference solver of the PHKS system (MODEL.md §1, paper eqs. 1-2; issue 2 §4).

    rho_t = div(gamma grad rho - chi rho grad c)      (paper eq. 1)
    c_t   = -c rho                                     (paper eq. 2)

on the cell-centred :class:`~nsipf_torch.grid.Grid`, one dimension-generic code path for d = 2 and 3,
batched over the leading axis (B, N, ..., N), float32 or float64, CPU or CUDA.

Space. Finite volumes with fluxes on the N - 1 interior faces of every axis and zero flux through the
walls (:func:`~nsipf_torch.stencils.divergence`), so sum(rho) h^d is conserved to round-off. Diffusion
by central differences gamma (rho_{i+1} - rho_i) / h; the drift flux chi rho grad c is upwinded with the
face velocity v = chi (c_{i+1} - c_i) / h and a MUSCL reconstruction of rho
(:func:`~nsipf_torch.stencils.upwind_flux`, limiters minmod / vanleer / first-order upwind).

Time. Strang splitting per sub-step dt_s: an exact half-step of c with rho frozen
(:func:`~nsipf_torch.field.update_c`, c <- c exp(-dt_s/2 rho), paper eq. 33 in its exact form), rho
transported by SSP-RK2 (Heun) with c frozen, then the second half-step of c. ``c_update="euler"`` uses the
paper's explicit c - dt c rho in the same two places.

Step limit (MODEL.md §6). Each forward-Euler stage keeps rho >= 0 when
dt_s (2 d gamma / h^2 + sum_axes max|v| / h) <= CFL = 0.4, and SSP-RK2 is a convex combination of such
stages. The caller asks for dt; :func:`fd_substep_count` picks the number of sub-steps (one host sync per
outer step), the largest over the members of a batch so that batched and single runs agree bitwise.
"""
from __future__ import annotations

import math

import torch

from .field import C_UPDATES, update_c
from .grid import Grid
from .params import check_finite, per_member
from .stencils import LIMITERS, divergence, face_differences, upwind_flux

__all__ = ["CFL", "LIMITERS", "C_UPDATES", "fd_substep", "fd_substep_count", "fd_advance", "fd_solve",
           "fd_rhs", "stability_rate"]

CFL = 0.4  # combined positivity bound of MODEL.md §6 (MUSCL's own bound is about 1/2)


def _drift_velocities(c: torch.Tensor, chi, h: float, dim: int) -> list[torch.Tensor]:
    """Face velocities v = chi (c_{i+1} - c_i) / h along every axis (the drift of paper eq. 1)."""
    chi_over_h = per_member(chi, c, dim, 1.0 / h)
    return [chi_over_h * face_differences(c, axis) for axis in range(-dim, 0)]


def fd_rhs(rho: torch.Tensor, v: list[torch.Tensor], gamma, h: float, limiter: str = "minmod") -> torch.Tensor:
    """d rho / dt = div(gamma grad rho - rho v) by finite volumes (paper eq. 1), zero flux at the walls.

    ``v`` are the face velocities of :func:`_drift_velocities` (c frozen), ``gamma`` a float or (B,) tensor.
    """
    dim = len(v)
    gamma_over_h = per_member(gamma, rho, dim, 1.0 / h)
    out = None
    for k, axis in enumerate(range(-dim, 0)):
        flux = gamma_over_h * face_differences(rho, axis) - upwind_flux(rho, v[k], axis, limiter)
        term = divergence(flux, axis, h)
        out = term if out is None else out + term
    return out


def fd_substep(rho: torch.Tensor, c: torch.Tensor, dt, gamma, chi, h: float, limiter: str = "minmod",
               c_update: str = "exp") -> tuple[torch.Tensor, torch.Tensor]:
    """One Strang sub-step of size dt: c half-step, rho by SSP-RK2 with c frozen, c half-step.

    Pure and free of host syncs. rho, c: (B, N, ..., N); gamma, chi: floats or (B,) tensors. The caller
    is responsible for dt satisfying the bound of :func:`fd_substep_count` (``fd_advance`` does this).
    """
    dim = rho.ndim - 1
    c = update_c(c, rho, 0.5 * dt, c_update)
    v = _drift_velocities(c, chi, h, dim)
    rho1 = rho + dt * fd_rhs(rho, v, gamma, h, limiter)
    rho = 0.5 * rho + 0.5 * (rho1 + dt * fd_rhs(rho1, v, gamma, h, limiter))
    c = update_c(c, rho, 0.5 * dt, c_update)
    return rho, c


def stability_rate(c: torch.Tensor, gamma, chi, h: float, dim: int) -> torch.Tensor:
    """Per-member rate 2 d gamma / h^2 + sum_axes max|v| / h (MODEL.md §6), shape (B,); no host sync."""
    B = c.shape[0]
    rate = torch.zeros(B, dtype=torch.float64, device=c.device)
    for v in _drift_velocities(c, chi, h, dim):
        rate = rate + v.abs().reshape(B, -1).amax(dim=1).to(torch.float64) / h
    if isinstance(gamma, torch.Tensor):
        gamma = gamma.to(device=c.device, dtype=torch.float64).reshape(-1)
    return rate + 2.0 * dim * gamma / h**2


def fd_substep_count(c: torch.Tensor, dt: float, gamma, chi, h: float, dim: int,
                     rho: torch.Tensor | None = None, c_update: str = "exp") -> int:
    """Sub-steps n so that dt / n * rate <= CFL for every member (the max over the batch). One host sync.

    With ``rho`` given, the rate is also evaluated on c advanced by the whole dt with rho frozen, since the
    c half-steps inside the outer step sharpen grad c where the cells eat.
    """
    rate = stability_rate(c, gamma, chi, h, dim)
    if rho is not None:
        rate = torch.maximum(rate, stability_rate(update_c(c, rho, dt, c_update), gamma, chi, h, dim))
    worst = float(rate.max())
    if not math.isfinite(worst):
        raise ValueError(f"c (or rho) holds NaN/Inf values: the stability rate is {worst}")
    return max(1, math.ceil(dt * worst / CFL - 1e-12))


def _check_coefficient(name: str, value) -> None:
    if isinstance(value, torch.Tensor):
        if value.ndim > 1:
            raise ValueError(f"{name} must be a float or a (B,) tensor, got shape {tuple(value.shape)}")
        if not torch.isfinite(value).all():
            raise ValueError(f"{name} must be finite, got {value.tolist()}")
        if (value < 0).any():
            raise ValueError(f"{name} must be >= 0, got {value.tolist()}")
    else:
        value = check_finite(name, value)
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


def _check_inputs(rho, c, dt, gamma, chi, grid: Grid, limiter: str, c_update: str) -> None:
    dt = check_finite("dt", dt)
    if dt <= 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    _check_coefficient("gamma", gamma)
    _check_coefficient("chi", chi)
    if limiter not in LIMITERS:
        raise ValueError(f"unknown limiter {limiter!r}; choose one of {LIMITERS}")
    if c_update not in C_UPDATES:
        raise ValueError(f"unknown c-update {c_update!r}; choose one of {C_UPDATES}")
    expected = grid.shape
    if rho.ndim != grid.dim + 1 or tuple(rho.shape[1:]) != expected:
        raise ValueError(f"rho must have shape (B, {', '.join(map(str, expected))}), got {tuple(rho.shape)}")
    if c.shape != rho.shape:
        raise ValueError(f"c has shape {tuple(c.shape)}, rho has {tuple(rho.shape)}")
    for name, value in (("gamma", gamma), ("chi", chi)):
        if isinstance(value, torch.Tensor) and value.numel() not in (1, rho.shape[0]):
            raise ValueError(f"{name} has {value.numel()} members, the batch has {rho.shape[0]}")


def fd_advance(rho: torch.Tensor, c: torch.Tensor, dt: float, gamma, chi, grid: Grid, limiter: str = "minmod",
               c_update: str = "exp", n_sub: int | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One outer step of size dt as ``n_sub`` equal Strang sub-steps; returns (rho, c, n_sub).

    ``n_sub=None`` picks the count from the combined bound (:func:`fd_substep_count`); an explicit count
    is used as given (e.g. to compare batched with single runs bitwise).
    """
    _check_inputs(rho, c, dt, gamma, chi, grid, limiter, c_update)
    h, dim = grid.h, grid.dim
    with torch.no_grad():
        if n_sub is None:
            n_sub = fd_substep_count(c, dt, gamma, chi, h, dim, rho=rho, c_update=c_update)
        elif isinstance(n_sub, bool) or not isinstance(n_sub, int) or n_sub < 1:
            raise ValueError(f"n_sub must be a positive integer, got {n_sub!r}")
        dt_sub = dt / n_sub
        for _ in range(n_sub):
            rho, c = fd_substep(rho, c, dt_sub, gamma, chi, h, limiter, c_update)
    return rho, c, n_sub


def fd_solve(rho: torch.Tensor, c: torch.Tensor, T: float, dt: float, gamma, chi, grid: Grid,
             limiter: str = "minmod", c_update: str = "exp", n_sub: int | None = None, callback=None):
    """Advance to time T by ceil(T / dt) equal outer steps of size <= dt; returns (rho, c, total_substeps).

    ``callback(k, t, rho, c, n_sub)`` runs after every outer step k = 1, 2, ... (diagnostics, snapshots).
    """
    T = check_finite("T", T)
    if T < 0:
        raise ValueError(f"T must be >= 0, got {T}")
    dt = check_finite("dt", dt)
    if dt <= 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    n_steps = math.ceil(T / dt - 1e-9) if T > 0 else 0
    step = T / n_steps if n_steps else dt
    total = 0
    for k in range(1, n_steps + 1):
        rho, c, used = fd_advance(rho, c, step, gamma, chi, grid, limiter, c_update, n_sub)
        total += used
        if callback is not None:
            callback(k, k * step, rho, c, used)
    return rho, c, total
