"""Physical parameters of the PHKS system (MODEL.md §1, paper eqs. 1–2).

    rho_t = div(gamma grad rho - chi rho grad c),   c_t = -c rho   on [-L, L]^d, no-flux walls.

The defaults are this project's canonical values (MODEL.md §5).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch


def check_finite(name: str, value: float) -> float:
    """Return ``float(value)`` or raise ``ValueError`` naming the value when it is NaN or infinite."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def per_member(value, like: torch.Tensor, trailing: int, scale: float = 1.0):
    """value * scale for broadcasting over a batch: a Python float stays a float; a (B,) tensor becomes
    (B, 1, ..., 1) with ``trailing`` ones, in like's device and dtype (B must match like's batch).

    The product is formed in float64 and rounded once, so a float and a one-member tensor give the same bits.
    """
    if isinstance(value, torch.Tensor):
        if value.ndim == 1 and value.shape[0] != like.shape[0]:
            raise ValueError(f"per-member parameter must have shape ({like.shape[0]},), got {tuple(value.shape)}")
        scaled = value.to(device=like.device, dtype=torch.float64) * scale
        return scaled.to(like.dtype).reshape(-1, *([1] * trailing)) if value.ndim else scaled.to(like.dtype)
    return float(value) * scale


@dataclass(frozen=True)
class Params:
    """gamma: diffusion, chi: chemo-sensitivity, L: half box width, dim: d, M0: mass, T: final time."""

    gamma: float = 0.01
    chi: float = 1.0
    L: float = 1.0
    dim: int = 3
    M0: float = 1.0
    T: float = 0.2

    def __post_init__(self):
        for name in ("gamma", "chi", "L", "M0", "T"):
            check_finite(name, getattr(self, name))
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")
        if self.chi < 0:
            raise ValueError(f"chi must be >= 0, got {self.chi}")
        if self.L <= 0:
            raise ValueError(f"L must be > 0, got {self.L}")
        if self.M0 <= 0:
            raise ValueError(f"M0 must be > 0, got {self.M0}")
        if self.T < 0:
            raise ValueError(f"T must be >= 0, got {self.T}")
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {self.dim}")

    def to_dict(self) -> dict:
        return asdict(self)
