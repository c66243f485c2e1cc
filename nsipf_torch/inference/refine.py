"""The model grid's initial state from the data grid's (nsipf_torch/inference/fit.py has the method).

rho0 is refined conservatively by a limited quartic reconstruction (cell masses kept exactly, rho0 >= 0,
fifth order where smooth), c0 by the interpolating cubic spline of :mod:`nsipf_torch.particles.interp`.
gamma is weakly identified, so the refinement's error goes into gamma-hat: with the quadratic
reconstruction (3D two_blobs at N = 32: 2.4% error) gamma-hat was 13.7% high, with the quartic (0.64%)
1.1%. :func:`neighbour_mean` gives the least-squares weights their scale.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from nsipf_torch.particles.interp import SplineInterp
from nsipf_torch.problems.grid import Grid

REFINE_DEGREE = 4  # the reconstructing polynomial's degree (even: a centred stencil of degree + 1 cells)


def _child_weights(degree: int, factor: int) -> np.ndarray:
    """(factor, degree + 1) weights: child j's average of the polynomial of ``degree`` whose averages over
    the cells k = -degree/2 .. degree/2 (unit width, cell 0 centred at x = 0) are given, as a combination of
    those cell averages. Every row sums to 1 and the rows average to the centre cell (conservation)."""
    half = degree // 2
    powers = np.arange(degree + 1)

    def monomial_means(a, b):  # averages of x^p over [a, b]
        return (b ** (powers + 1) - a ** (powers + 1)) / ((powers + 1) * (b - a))

    cells = np.stack([monomial_means(k - 0.5, k + 0.5) for k in range(-half, half + 1)])
    edges = [-0.5 + j / factor for j in range(factor + 1)]
    children = np.stack([monomial_means(a, b) for a, b in zip(edges[:-1], edges[1:])])
    return children @ np.linalg.inv(cells)


def _refine_axis(q: torch.Tensor, axis: int, factor: int, degree: int = REFINE_DEGREE) -> torch.Tensor:
    """Conservative, positivity-preserving refinement of cell averages along one axis by ``factor``.

    The polynomial of ``degree`` with the cell averages of the degree + 1 cells centred on cell i (walls:
    the Neumann mirror, q_{-1 - k} = q_k) is averaged over each of the ``factor`` children; the children's
    deviations from q_i sum to zero, and they are scaled by theta in [0, 1] per cell so that no child is
    negative (a Zhang-Shu scaling limiter). Order degree + 1 where q is smooth and positive.
    """
    half = degree // 2
    q = q.movedim(axis, -1)
    n = q.shape[-1]
    mirrored = torch.cat([q[..., :half].flip(-1), q, q[..., n - half:].flip(-1)], dim=-1)
    stencil = mirrored.unfold(-1, degree + 1, 1)  # (..., n, degree + 1): cells i - half .. i + half
    weights = torch.as_tensor(_child_weights(degree, factor), dtype=q.dtype, device=q.device)
    dev = torch.einsum("...ns,js->...nj", stencil, weights) - q[..., None]  # (..., n, factor)
    deficit = (-dev).amax(dim=-1, keepdim=True)
    theta = torch.where(deficit > q[..., None], q[..., None] / deficit.clamp_min(1e-300), torch.ones_like(deficit))
    children = (q[..., None] + theta * dev).clamp_min(0.0)  # the clamp only removes round-off below 0
    return rearrange(children, "... n child -> ... (n child)").movedim(-1, axis)


def refine_cell_averages(q: torch.Tensor, factor: int, dim: int) -> torch.Tensor:
    """Cell averages (..., N, ..., N) -> (..., fN, ..., fN): block-averaging back gives q exactly (to
    round-off), values stay >= 0, order REFINE_DEGREE + 1 where q is smooth and positive."""
    if factor == 1:
        return q
    for axis in range(-dim, 0):
        q = _refine_axis(q, axis, factor)
    return q


def refine_centre_values(c: torch.Tensor, grid: Grid, factor: int) -> torch.Tensor:
    """Values at the centres of ``grid`` (B, N, ..., N) -> at the centres of the grid refined by ``factor``,
    by the interpolating cubic spline with reflecting walls; clipped at 0 (c >= 0)."""
    if factor == 1:
        return c
    fine = Grid(grid.N * factor, grid.dim, grid.L, grid.device, grid.dtype)
    X = rearrange(torch.stack(fine.mesh(), dim=-1), "... d -> (...) d").to(c.dtype)
    values = SplineInterp(grid).value(c, X.expand(c.shape[0], -1, -1))
    return values.reshape(c.shape[0], *fine.shape).clamp_min(0.0)


def neighbour_mean(q: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of the 3^d - 1 neighbours of every cell (walls: the edge value repeated), the cell itself left out.

    The relative weights are built from it: a weight that used the cell's own noisy value would correlate
    with that cell's residual and bias the fit (by about 2 noise^2 for multiplicative noise: 0.5% at 5%).
    """
    flat = q.reshape(-1, 1, *q.shape[-dim:])
    padded = F.pad(flat, (1, 1) * dim, mode="replicate")
    pool = F.avg_pool3d if dim == 3 else F.avg_pool2d
    block = 3**dim
    mean = (pool(padded, kernel_size=3, stride=1) * block - flat) / (block - 1)
    return mean.reshape(q.shape)
