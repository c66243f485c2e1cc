"""Particle -> grid deposition: rho^n from the particles (MODEL.md §2 step 1, paper eq. 32).

Each particle carries mass M0/P, so rho = (M0/P) * (particles in a cell) / h^d for nearest-grid-point
(NGP), the paper's histogram. Cloud-in-cell (CIC) spreads each particle over the 2^d nearest cell centres
with multilinear weights; weights that would fall on a cell beyond a wall are folded back into the wall
cell, the discrete form of the no-flux wall, so the deposited mass stays M0.

Batch layout: X is (B, P, d), fields are (B, N, ..., N). All members are histogrammed by ONE bincount
(or index_add_) over flat indices ``member * N^d + cell``. The cell index is clamped to [0, N-1] on every
axis: a float32 position that rounds to +L would otherwise give index N and silently land in the next
member's (or the next row's) cell, and no mass total can see that.
"""
from __future__ import annotations

import torch

from .grid import Grid

DEPOSITS = ("ngp", "cic")


def _check_X(X: torch.Tensor, grid: Grid) -> None:
    if X.ndim != 3 or X.shape[-1] != grid.dim:
        raise ValueError(f"particle positions must have shape (B, P, {grid.dim}), got {tuple(X.shape)}")


def _strides(grid: Grid, device) -> torch.Tensor:
    """Row-major strides of an [i_x, i_y, (i_z)] array: (N^(d-1), ..., N, 1)."""
    return torch.tensor([grid.N ** (grid.dim - 1 - a) for a in range(grid.dim)], dtype=torch.long, device=device)


def cell_index(X: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Flat NGP cell index of each particle within its member, (B, P) int64, clamped to the grid."""
    _check_X(X, grid)
    q = torch.floor((X + grid.L) * (1.0 / grid.h)).clamp_(0, grid.N - 1)
    exact_in_float = grid.N**grid.dim <= (2**24 if X.dtype == torch.float32 else 2**53)
    if exact_in_float:  # integer-valued floats: combine before the one int64 conversion (int64 ops are slow)
        flat = q[..., 0]
        for a in range(1, grid.dim):
            flat = flat * grid.N + q[..., a]
        return flat.long()
    return (q.long() * _strides(grid, X.device)).sum(dim=-1)


def _member_offsets(B: int, ncell: int, device) -> torch.Tensor:
    return (torch.arange(B, device=device, dtype=torch.long) * ncell).reshape(B, 1)


def deposit_counts(X: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Integer particle counts per cell, (B, *grid.shape) int64 (exact; summable across ranks)."""
    B = X.shape[0]
    ncell = grid.N ** grid.dim
    flat = cell_index(X, grid) + _member_offsets(B, ncell, X.device)
    counts = torch.bincount(flat.reshape(-1), minlength=B * ncell)
    return counts.reshape(B, *grid.shape)


def counts_to_rho(counts: torch.Tensor, grid: Grid, M0: float, P: int) -> torch.Tensor:
    """rho = count * M0 / (P h^d) in grid.dtype (paper eq. 32 histogrammed)."""
    return counts.to(grid.dtype) * (float(M0) / (P * grid.cell_volume))


def _deposit_cic(X: torch.Tensor, grid: Grid, M0: float) -> torch.Tensor:
    B, P, d = X.shape
    N = grid.N
    # index coordinate s = (x + L)/h - 1/2 puts cell centre i at s = i
    s = (X + grid.L) * (1.0 / grid.h) - 0.5
    i0 = torch.floor(s)
    t = (s - i0).to(grid.dtype)
    i0 = i0.long()
    strides = _strides(grid, X.device)
    base = _member_offsets(B, N**d, X.device)
    flats, weights = [], []
    for corner in range(2**d):
        flat = base.expand(B, P).clone()
        weight = torch.ones(B, P, dtype=grid.dtype, device=X.device)
        for a in range(d):
            bit = (corner >> (d - 1 - a)) & 1
            # clamping the index folds the weight beyond a wall back into the wall cell
            flat = flat + (i0[..., a] + bit).clamp(0, N - 1) * strides[a]
            weight = weight * (t[..., a] if bit else 1.0 - t[..., a])
        flats.append(flat.reshape(-1))
        weights.append(weight.reshape(-1))
    rho = torch.zeros(B * N**d, dtype=grid.dtype, device=X.device)
    rho.index_add_(0, torch.cat(flats), torch.cat(weights))
    return rho.reshape(B, *grid.shape) * (float(M0) / (P * grid.cell_volume))


def deposit(X: torch.Tensor, grid: Grid, M0: float, method: str = "ngp") -> torch.Tensor:
    """rho^n on the grid, (B, *grid.shape) in grid.dtype; integrates to M0 per member to round-off."""
    if method == "ngp":
        return counts_to_rho(deposit_counts(X, grid), grid, M0, X.shape[1])
    if method == "cic":
        _check_X(X, grid)
        return _deposit_cic(X, grid, M0)
    raise ValueError(f"unknown deposit method {method!r}; choose one of {DEPOSITS}")
