"""Reusable trackers: conservation, sign and finiteness checks, logged outside the time step.

Diagnostics run every k steps, outside the pure step functions, so the step itself never syncs with the
host. They are per member (leading batch axis) and go to a CSV file, TensorBoard and the summary plot.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import torch

from .grid import Grid

COLUMNS = ("mass", "min_rho", "max_rho", "min_c", "mean_r2", "n_negative_c")


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


class DiagnosticsLog:
    """Collects diagnostics rows per member; writes ``diagnostics.csv`` and TensorBoard scalars."""

    def __init__(self, out: Path | None, members: Sequence[dict], tensorboard: bool = True):
        self.out, self.members = out, list(members)
        self.rows: list[dict] = []
        self.writer = None
        if out is not None and tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(log_dir=str(out))

    def record(self, step: int, t: float, diag: dict[str, torch.Tensor]) -> None:
        values = {k: v.detach().double().cpu().tolist() for k, v in diag.items()}
        for b, member in enumerate(self.members):
            row = {"step": step, "t": t, "member": b, **member}
            row.update({k: values[k][b] for k in values})
            self.rows.append(row)
            if self.writer is not None:
                for k in values:
                    self.writer.add_scalar(f"{k}/member{b}", values[k][b], step)

    def series(self, key: str) -> tuple[list[float], torch.Tensor]:
        """(times, values (T, B)) of one quantity, for plots."""
        B = len(self.members)
        ts = [r["t"] for r in self.rows[::B]]
        vals = torch.tensor([r[key] for r in self.rows], dtype=torch.float64).reshape(-1, B)
        return ts, vals

    def write_csv(self) -> None:
        if self.out is None or not self.rows:
            return
        from .io import atomic_write

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(self.rows[0]))
                w.writeheader()
                w.writerows(self.rows)
        atomic_write(self.out / "diagnostics.csv", write)

    def close(self) -> None:
        self.write_csv()
        if self.writer is not None:
            self.writer.close()

