"""The c-equation c_t = -c rho (paper eq. 2) over one step with rho frozen (paper eq. 33).

``exp`` is exact for frozen rho and keeps c >= 0 unconditionally; ``euler`` is the paper's explicit update
c - dt c rho, which goes negative once dt * rho > 1 in a crowded cell (docs/MODEL.md §6).
Used by both the FD solver (Strang half-steps) and the particle stepper: this is the one c-update.
"""
from __future__ import annotations

import torch

C_UPDATES = ("exp", "euler")


def update_c(c: torch.Tensor, rho: torch.Tensor, dt, mode: str = "exp") -> torch.Tensor:
    """Advance c by dt with rho frozen. ``dt`` is a float or a tensor broadcastable to c."""
    if mode == "exp":
        return c * torch.exp(-dt * rho)
    if mode == "euler":
        return c - dt * c * rho
    raise ValueError(f"unknown c-update {mode!r}; choose one of {C_UPDATES}")
