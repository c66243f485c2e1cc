"""Figures (matplotlib, Agg backend): mid-plane cross-sections, diagnostics curves and line profiles.

Every figure is written atomically. Colour limits are fixed across the snapshots of a run so that the
frames can be compared by eye; the time is in each title.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nsipf_torch.io.files import atomic_write  # noqa: E402


def mid_plane(field: np.ndarray, dim: int) -> np.ndarray:
    """The plane z = 0 of a 3-D field (N, N, N) -> (N, N), averaging the two central slices for even N."""
    if dim == 2:
        return field
    n = field.shape[-1]
    if n % 2:
        return field[..., n // 2]
    return 0.5 * (field[..., n // 2 - 1] + field[..., n // 2])


def _save(fig, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def plot_cross_section(path: Path, t: float, rho: np.ndarray, c: np.ndarray, L: float, dim: int,
                       rho_max: float, c_max: float, title: str = "") -> None:
    """rho and c on the mid-plane (x horizontal, y vertical) with fixed colour limits."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    extent = (-L, L, -L, L)
    for ax, field, name, vmax, cmap in ((axes[0], rho, "ρ", rho_max, "magma"), (axes[1], c, "c", c_max, "viridis")):
        im = ax.imshow(mid_plane(field, dim).T, origin="lower", extent=extent, vmin=0.0, vmax=vmax, cmap=cmap)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_title(f"{name}{' (z = 0)' if dim == 3 else ''}")
        fig.colorbar(im, ax=ax, shrink=0.85)
    fig.suptitle(f"{title}  t = {t:.4g}")
    _save(fig, path)


def plot_diagnostics(path: Path, t: Sequence[float], series: dict[str, np.ndarray], title: str = "") -> None:
    """Each quantity against t: the mean across members with the min-max band (a batch or sweep)."""
    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.4))
    axes = np.atleast_1d(axes)
    for ax, (name, vals) in zip(axes, series.items()):
        vals = np.asarray(vals)  # (T, B)
        ax.plot(t, vals.mean(axis=1), color="C0", label="mean over members" if vals.shape[1] > 1 else None)
        if vals.shape[1] > 1:
            ax.fill_between(t, vals.min(axis=1), vals.max(axis=1), color="C0", alpha=0.25, label="min–max")
            ax.legend(fontsize=8)
        ax.set_xlabel("t")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def plot_line_profiles(path: Path, x: np.ndarray, curves: dict[str, np.ndarray], ylabel: str, title: str = "") -> None:
    """Profiles along the x axis through the centre; a (B, N) curve is drawn as mean and min-max band."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for i, (label, y) in enumerate(curves.items()):
        y = np.atleast_2d(y)
        ax.plot(x, y.mean(axis=0), color=f"C{i}", label=label, lw=1.6 if i == 0 else 1.2,
                ls="-" if i == 0 else "--")
        if y.shape[0] > 1:
            ax.fill_between(x, y.min(axis=0), y.max(axis=0), color=f"C{i}", alpha=0.2)
    ax.set_xlabel("x (y = z = 0)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path)


def centre_line(field: np.ndarray, dim: int) -> np.ndarray:
    """Values along the x axis through the centre (y = z = 0), averaging the central cells for even N."""
    out = field
    for _ in range(dim - 1):
        n = out.shape[-1]
        out = out[..., n // 2] if n % 2 else 0.5 * (out[..., n // 2 - 1] + out[..., n // 2])
    return out
