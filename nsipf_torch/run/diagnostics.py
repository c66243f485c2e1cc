"""Reusable trackers: conservation, sign and finiteness checks, logged outside the time step.

Diagnostics run every k steps, outside the pure step functions, so the step itself never syncs with the
host. They are per member (leading batch axis); the trackers of :mod:`nsipf_torch.run.callbacks` record them,
and :mod:`nsipf_torch.io.output` writes them (CSV, TensorBoard, the summary plot).
"""
from __future__ import annotations

import torch

from nsipf_torch.problems.grid import Grid

class NonFiniteError(RuntimeError):
    """A NaN or Inf appeared mid-run; names the step and the quantity."""

    def __init__(self, step: int, t: float, quantity: str):
        self.step, self.t, self.quantity = step, t, quantity
        super().__init__(f"NaN or Inf in {quantity} at step {step} (t = {t:.6g})")


def check_finite(step: int, t: float, **fields: torch.Tensor) -> None:
    """Raise :class:`NonFiniteError` for the first field holding a NaN or Inf (one host sync)."""
    names = list(fields)
    flags = torch.stack([torch.isfinite(fields[n]).all() for n in names]).cpu()
    for name, ok in zip(names, flags.tolist()):
        if not ok:
            raise NonFiniteError(step, t, name)


def field_diagnostics(rho: torch.Tensor, c: torch.Tensor, grid: Grid,
                      mean_r2: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-member mass, min/max rho, min c, mean |x|^2 and the number of cells with c < 0.

    ``mean_r2`` may be given directly (the particle methods use the exact particle average).
    """
    axes = tuple(range(-grid.dim, 0))
    mass = grid.integrate(rho)
    if mean_r2 is None:
        mean_r2 = grid.integrate(rho * grid.r2().to(rho.dtype)) / mass
    return {
        "mass": mass,
        "min_rho": rho.amin(dim=axes),
        "max_rho": rho.amax(dim=axes),
        "min_c": c.amin(dim=axes),
        "mean_r2": mean_r2,
        "n_negative_c": (c < 0).sum(dim=axes),
    }
