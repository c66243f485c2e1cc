"""The one error metric used everywhere: relative L2 on a coarse block-averaged grid."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def block_average(field: torch.Tensor, coarse: int = 16, dim: int = 3) -> torch.Tensor:
    """Average a field (..., N, ..., N) over blocks down to (..., coarse, ..., coarse).

    N must be a multiple of ``coarse`` so every coarse cell is an exact union of fine cells; the cell
    averages (and so the mass) are preserved exactly.
    """
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim}")
    n = field.shape[-1]
    if field.ndim < dim or any(s != n for s in field.shape[-dim:]):
        raise ValueError(f"field of shape {tuple(field.shape)} is not a cubic {dim}-D grid")
    if coarse < 1 or n % coarse:
        raise ValueError(f"grid size N={n} is not a multiple of coarse={coarse}")
    batch = field.shape[:-dim]
    flat = field.reshape(-1, 1, *field.shape[-dim:])
    pool = F.avg_pool3d if dim == 3 else F.avg_pool2d
    return pool(flat, kernel_size=n // coarse).reshape(*batch, *(coarse,) * dim)


def rel_l2(a: torch.Tensor, b: torch.Tensor, coarse: int = 16, dim: int = 3) -> torch.Tensor:
    """||A - B||_2 / ||B||_2 with A, B the block averages of a and b on coarse^d cells.

    a and b may have different resolutions (both multiples of ``coarse``). Leading batch axes are kept:
    a batch of fields (B, N, ..., N) gives B errors; b is the reference.
    """
    A = block_average(a, coarse, dim).to(torch.float64)
    Bf = block_average(b, coarse, dim).to(torch.float64)
    axes = tuple(range(-dim, 0))
    return torch.linalg.vector_norm(A - Bf, dim=axes) / torch.linalg.vector_norm(Bf, dim=axes)
