"""The uniform cell-centred grid on Omega = [-L, L]^d (docs/MODEL.md §2).

N cells per axis, spacing h = 2L/N, walls on the cell faces x = ±L; d = 2 or 3 for every method, and
d = 1 for the finite-volume solver (planar references). Arrays are indexed
``[..., i_x, i_y, i_z]`` (``meshgrid(indexing="ij")``), and ``[..., i_x, i_y]`` in 2D; every field carries a
leading batch axis, so a batch of B fields has shape (B, N, ..., N).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import torch

from nsipf_torch.problems.params import check_finite

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU): what brackets every timed region."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without it is a ``ValueError``."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {name!r}") from err


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


@dataclass(frozen=True)
class Grid:
    N: int
    dim: int = 3
    L: float = 1.0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float64

    def __post_init__(self):
        if isinstance(self.N, bool) or not isinstance(self.N, int) or self.N < 4:
            raise ValueError(f"N must be an integer >= 4, got {self.N!r}")
        if isinstance(self.dim, bool) or not isinstance(self.dim, numbers.Integral) or self.dim not in (1, 2, 3):
            raise ValueError(f"dim must be 1, 2 or 3, got {self.dim!r}")
        check_finite("L", self.L)
        if self.L <= 0:
            raise ValueError(f"L must be > 0, got {self.L}")
        object.__setattr__(self, "device", resolve_device(self.device))
        object.__setattr__(self, "dtype", resolve_dtype(self.dtype))

    @property
    def h(self) -> float:
        return 2.0 * self.L / self.N

    @property
    def cell_volume(self) -> float:
        return self.h ** self.dim

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.N,) * self.dim

    def centres(self) -> torch.Tensor:
        """1-D cell centres x_i = -L + (i + 1/2) h, shape (N,)."""
        i = torch.arange(self.N, device=self.device, dtype=self.dtype)
        return -self.L + (i + 0.5) * self.h

    def faces(self) -> torch.Tensor:
        """1-D face positions -L, -L + h, ..., L, shape (N + 1,)."""
        i = torch.arange(self.N + 1, device=self.device, dtype=self.dtype)
        return -self.L + i * self.h

    def mesh(self) -> tuple[torch.Tensor, ...]:
        """Cell-centre coordinates, d tensors of shape (N,)*d, ``indexing="ij"``."""
        x = self.centres()
        return torch.meshgrid(*([x] * self.dim), indexing="ij")

    def r2(self) -> torch.Tensor:
        """|x|^2 at the cell centres, shape (N,)*d."""
        return sum(xi**2 for xi in self.mesh())

    def integrate(self, field: torch.Tensor) -> torch.Tensor:
        """Midpoint-rule integral over Omega of a batched field (B, N, ..., N) -> (B,)."""
        return field.sum(dim=tuple(range(-self.dim, 0))) * self.cell_volume

    def to(self, device=None, dtype=None) -> "Grid":
        return Grid(self.N, self.dim, self.L, device or self.device, dtype or self.dtype)
