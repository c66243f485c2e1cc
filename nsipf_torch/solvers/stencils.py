"""Finite-volume stencils along one axis, shared by the Cartesian FD solver and the radial solver.

Every function works on the axis ``axis`` of a batched tensor (negative axes count from the end). Faces
are the N - 1 interior faces between neighbouring cells; wall faces carry zero flux and are added by
:func:`divergence`, which is how both solvers conserve mass to round-off.

The drift flux is upwinded with a MUSCL reconstruction (van Leer 1979): cell slopes limited by minmod or
van Leer, extrapolated half a cell to each face. Both limiters keep the face values within [0, 2 q_i],
which is what makes the explicit step positivity-preserving under the combined bound of docs/MODEL.md §6.
"""
from __future__ import annotations

import torch

LIMITERS = ("minmod", "vanleer", "upwind")


def _narrow(q: torch.Tensor, axis: int, start: int, length: int) -> torch.Tensor:
    return q.narrow(axis, start, length)


def face_differences(q: torch.Tensor, axis: int) -> torch.Tensor:
    """q_{i+1} - q_i at the N - 1 interior faces."""
    return torch.diff(q, dim=axis)


def limited_slopes(q: torch.Tensor, axis: int, limiter: str) -> torch.Tensor:
    """Limited slope (per cell, in units of q per cell) of each of the N cells; zero in the wall cells.

    The wall cells see a zero-gradient ghost (the Neumann mirror), so their limited slope is zero.
    """
    dq = face_differences(q, axis)
    n = q.shape[axis]
    a = _narrow(dq, axis, 0, n - 2)  # backward difference of cells 1..N-2
    b = _narrow(dq, axis, 1, n - 2)  # forward difference
    if limiter == "minmod":
        # (sign a + sign b)/2 is ±1 when the signs agree and 0 otherwise: minmod without a branch
        s = (torch.sign(a) + torch.sign(b)) * (0.5 * torch.minimum(a.abs(), b.abs()))
    elif limiter == "vanleer":
        same_sign = a * b > 0
        s = torch.where(same_sign, 2 * a * b / torch.where(same_sign, a + b, torch.ones_like(a)),
                        torch.zeros_like(a))
    elif limiter == "upwind":
        s = torch.zeros_like(a)
    else:
        raise ValueError(f"unknown limiter {limiter!r}; choose one of {LIMITERS}")
    zero = torch.zeros_like(_narrow(q, axis, 0, 1))
    return torch.cat([zero, s, zero], dim=axis)


def upwind_flux(q: torch.Tensor, v: torch.Tensor, axis: int, limiter: str = "minmod") -> torch.Tensor:
    """Upwind flux v * q at the interior faces, q reconstructed by MUSCL from the upwind side.

    ``v`` holds the face velocities, shape of q with N - 1 along ``axis``.
    """
    n = q.shape[axis]
    half_slope = 0.5 * limited_slopes(q, axis, limiter)
    q_left = _narrow(q + half_slope, axis, 0, n - 1)   # cell i extrapolated to face i+1/2
    q_right = _narrow(q - half_slope, axis, 1, n - 1)  # cell i+1 extrapolated to face i+1/2
    return torch.where(v > 0, v * q_left, v * q_right)


def divergence(flux: torch.Tensor, axis: int, h: float) -> torch.Tensor:
    """(F_{i+1/2} - F_{i-1/2}) / h per cell, with zero flux through both walls."""
    zero = torch.zeros_like(_narrow(flux, axis, 0, 1))
    padded = torch.cat([zero, flux, zero], dim=axis)
    return torch.diff(padded, dim=axis) / h
