"""Analytic reference problems for the solvers, and the fit of observed convergence orders.

The exact Neumann heat kernel on [-L, L]^d (chi = 0 in paper eq. 1) by the method of images: the Neumann
solution equals the free-space solution of the even, 4L-periodic extension of the data. For a Gaussian
G(x; x0, sigma) the extension is the sum of its images at x0 + 4Lk and 2L - x0 + 4Lk, so

    rho(x, t) = M0 prod_axes sum_images N(x_a; image, sigma^2 + 2 gamma t)

solves rho_t = gamma Lap rho with zero flux at the walls exactly, and its cell averages are erf
differences. With sigma << L (the canonical blob, sigma = 0.1, L = 1) the image-sum initial data and the
truncated Gaussian of :mod:`nsipf_torch.problems.initial` differ by far less than round-off.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from nsipf_torch.problems.grid import Grid

SQRT2 = math.sqrt(2.0)


def _images(x0: float, L: float, s: float) -> list[float]:
    """Image centres of x0 for the reflections at +-L, enough of them for a tail below 1e-30 at width s."""
    K = int(math.ceil((12.0 * s + 2.0 * L) / (4.0 * L))) + 1
    out = []
    for k in range(-K, K + 1):
        out += [x0 + 4.0 * L * k, 2.0 * L - x0 + 4.0 * L * k]
    return out


def neumann_gaussian_1d(x: torch.Tensor, x0: float, sigma: float, t: float, gamma: float,
                        L: float = 1.0) -> torch.Tensor:
    """Point values of the 1-D Neumann heat solution started from the image-summed unit Gaussian."""
    s = math.sqrt(sigma**2 + 2.0 * gamma * t)
    out = torch.zeros_like(x, dtype=torch.float64)
    for y in _images(x0, L, s):
        out = out + torch.exp(-((x.to(torch.float64) - y) ** 2) / (2 * s * s))
    return out / (s * math.sqrt(2 * math.pi))


def neumann_gaussian_cells_1d(faces: torch.Tensor, x0: float, sigma: float, t: float, gamma: float,
                              L: float = 1.0) -> torch.Tensor:
    """Exact mass of each cell [faces_i, faces_{i+1}] (erf differences) of the 1-D solution; sums to 1."""
    s = math.sqrt(sigma**2 + 2.0 * gamma * t)
    f = faces.to(torch.float64)
    cdf = torch.zeros_like(f)
    for y in _images(x0, L, s):
        cdf = cdf + 0.5 * torch.erf((f - y) / (SQRT2 * s))
    return cdf[1:] - cdf[:-1]


def neumann_gaussian_density(x: torch.Tensor, centre: Sequence[float], sigma: float, t: float, gamma: float,
                             L: float = 1.0, M0: float = 1.0) -> torch.Tensor:
    """rho(x, t) at points x (..., d) of the d-D Neumann heat solution (product of 1-D kernels)."""
    d = x.shape[-1]
    out = torch.full(x.shape[:-1], float(M0), dtype=torch.float64, device=x.device)
    for a in range(d):
        out = out * neumann_gaussian_1d(x[..., a], centre[a], sigma, t, gamma, L)
    return out


def neumann_gaussian_cells(grid: Grid, centre: Sequence[float], sigma: float, t: float, gamma: float,
                           M0: float = 1.0) -> torch.Tensor:
    """Exact cell averages (N,)*d of the d-D Neumann heat solution of mass M0, in grid.dtype."""
    faces = grid.faces().to(torch.float64)
    rho = torch.full((1,) * grid.dim, float(M0), dtype=torch.float64, device=grid.device)
    for a in range(grid.dim):
        shape = [1] * grid.dim
        shape[a] = grid.N
        rho = rho * neumann_gaussian_cells_1d(faces, centre[a], sigma, t, gamma, grid.L).reshape(shape)
    return (rho / grid.cell_volume).to(grid.dtype)


def observed_orders(hs: Sequence[float], errors: Sequence[float]) -> tuple[float, list[float]]:
    """(least-squares slope of log error against log h, the pairwise orders between successive grids)."""
    lh, le = np.log(np.asarray(hs, dtype=float)), np.log(np.asarray(errors, dtype=float))
    if len(lh) < 2:
        raise ValueError(f"need at least two grids to fit an order, got {len(lh)}")
    slope = float(np.polyfit(lh, le, 1)[0])
    pairs = [float((le[i + 1] - le[i]) / (lh[i + 1] - lh[i])) for i in range(len(lh) - 1)]
    return slope, pairs


def richardson_order(coarse_minus_mid: float, mid_minus_fine: float,
                     hs: Sequence[float] = (4.0, 2.0, 1.0)) -> float:
    """Order p from two differences of three grids h1 > h2 > h3 (no exact solution needed).

    With u_h = u + C h^p: ||u_1 - u_2|| / ||u_2 - u_3|| = (h1^p - h2^p) / (h2^p - h3^p), solved for p by
    bisection on [0.05, 8]; for h ratios of 2 this is log2 of the ratio of the differences.
    """
    h1, h2, h3 = (float(h) for h in hs)
    if not h1 > h2 > h3 > 0:
        raise ValueError(f"grid spacings must decrease, got {hs}")
    target = coarse_minus_mid / mid_minus_fine

    def ratio(p):
        return (h1**p - h2**p) / (h2**p - h3**p)

    lo, hi = 0.05, 8.0
    if not ratio(lo) <= target <= ratio(hi):
        return lo if target < ratio(lo) else hi
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ratio(mid) < target else (lo, mid)
    return 0.5 * (lo + hi)


def mean_r2(rho: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Mean |x|^2 of the density, (B,) (the behaviour figure of docs/MODEL.md §5)."""
    r2 = grid.r2().to(rho.dtype)
    return grid.integrate(rho * r2) / grid.integrate(rho)


def ring_fraction(rho: torch.Tensor, grid: Grid, R: float = 0.35, width: float = 0.12) -> torch.Tensor:
    """Fraction of the mass within ``width`` of the circle |(x, y)| = R in the plane z = 0 (the ring in
    2D), (B,): the `annuli` behaviour figure of docs/MODEL.md §5 (inner ring R = 0.35)."""
    mesh = grid.mesh()
    rxy = torch.sqrt(mesh[0] ** 2 + mesh[1] ** 2)
    dist2 = (rxy - R) ** 2 + (mesh[2] ** 2 if grid.dim == 3 else 0.0)
    near = (dist2 <= width**2).to(rho.dtype)
    return grid.integrate(rho * near) / grid.integrate(rho)
