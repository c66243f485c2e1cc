"""Particle -> grid deposition: rho^n from the particles (docs/MODEL.md §2 step 1, paper eq. 32).

Each particle carries mass M0/P, so rho = (M0/P) * (particles in a cell) / h^d for nearest-grid-point
(NGP), the paper's histogram. Cloud-in-cell (CIC) spreads each particle over the 2^d nearest cell centres
with multilinear weights; weights that would fall on a cell beyond a wall are folded back into the wall
cell, the discrete form of the no-flux wall, so the deposited mass stays M0.

Batch layout: X is (B, P, d), fields are (B, N, ..., N). All members are histogrammed by ONE
fixed-size ``index_add_`` (:func:`histogram`) over flat indices ``member * N^d + cell``. The cell index is clamped to [0, N-1] on every
axis: a float32 position that rounds to +L would otherwise give index N and silently land in the next
member's (or the next row's) cell, and no mass total can see that.

No host synchronisation and no host-to-device copy: index arithmetic uses Python-int strides, and the
histogram's size is known in advance (``torch.bincount`` would read the index range on the host).
"""
from __future__ import annotations

import torch

from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.params import per_member

DEPOSITS = ("ngp", "cic")


def _check_X(X: torch.Tensor, grid: Grid) -> None:
    if X.ndim != 3 or X.shape[-1] != grid.dim:
        raise ValueError(f"particle positions must have shape (B, P, {grid.dim}), got {tuple(X.shape)}")


def cell_index(X: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Flat NGP cell index of each particle within its member, (B, P) int64, clamped to the grid."""
    _check_X(X, grid)
    q = torch.floor((X + grid.L) * (1.0 / grid.h)).clamp_(0, grid.N - 1)
    exact_in_float = grid.N**grid.dim <= (2**24 if X.dtype == torch.float32 else 2**53)
    if not exact_in_float:
        q = q.long()
    # row-major (i_x most significant); integer-valued floats combine exactly before the one int64
    # conversion when N^d fits the mantissa (int64 ops are slow)
    flat = q[..., 0]
    for a in range(1, grid.dim):
        flat = flat * grid.N + q[..., a]
    return flat.long()


def _member_offsets(B: int, ncell: int, device) -> torch.Tensor:
    return (torch.arange(B, device=device, dtype=torch.long) * ncell).reshape(B, 1)


def histogram(flat: torch.Tensor, n_bins: int, max_count: int) -> torch.Tensor:
    """Counts (n_bins,) of the integer indices ``flat`` (each in [0, n_bins)); exact.

    A fixed-size integer ``index_add_`` of ones (a stride-0 source) into zeros: the output shape never
    depends on the data, so nothing is read back to the host. int32 counters while ``max_count`` (a bound
    on any bin's count, e.g. P) fits, else int64. This form beat ``torch.bincount`` and the int64 and
    ``scatter_add_`` variants on the CPU in both the spread and the all-in-8-cells case (BENCHMARKS.md,
    "Histogram").
    """
    dtype = torch.int32 if max_count < 2**31 else torch.int64
    ones = torch.ones((), dtype=dtype, device=flat.device).expand(flat.shape[0])
    return torch.zeros(n_bins, dtype=dtype, device=flat.device).index_add_(0, flat, ones)


def _ngp_counts(X: torch.Tensor, grid: Grid) -> torch.Tensor:
    B, P = X.shape[:2]
    ncell = grid.N ** grid.dim
    flat = cell_index(X, grid) + _member_offsets(B, ncell, X.device)
    return histogram(flat.reshape(-1), B * ncell, P).reshape(B, *grid.shape)


def deposit_counts(X: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Integer particle counts per cell, (B, *grid.shape) int64 (exact; summable across ranks)."""
    return _ngp_counts(X, grid).long()


def counts_to_rho(counts: torch.Tensor, grid: Grid, M0, P: int) -> torch.Tensor:
    """rho = count * M0 / (P h^d) in grid.dtype (paper eq. 32 histogrammed); M0 a float or (B,) per member."""
    rho = counts.to(grid.dtype)
    return rho * per_member(M0, rho, grid.dim, P * grid.cell_volume)


def _deposit_cic(X: torch.Tensor, grid: Grid, M0: float) -> torch.Tensor:
    B, P, d = X.shape
    N = grid.N
    # index coordinate s = (x + L)/h - 1/2 puts cell centre i at s = i
    s = (X + grid.L) * (1.0 / grid.h) - 0.5
    i0 = torch.floor(s)
    t = (s - i0).to(grid.dtype)
    i0 = i0.long()
    strides = [N ** (d - 1 - a) for a in range(d)]
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
    rho = rho.reshape(B, *grid.shape)
    return rho * per_member(M0, rho, d, P * grid.cell_volume)


def deposit(X: torch.Tensor, grid: Grid, M0: float, method: str = "ngp") -> torch.Tensor:
    """rho^n on the grid, (B, *grid.shape) in grid.dtype; integrates to M0 per member to round-off."""
    if method == "ngp":
        return counts_to_rho(_ngp_counts(X, grid), grid, M0, X.shape[1])
    if method == "cic":
        _check_X(X, grid)
        return _deposit_cic(X, grid, M0)
    raise ValueError(f"unknown deposit method {method!r}; choose one of {DEPOSITS}")
