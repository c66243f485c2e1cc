"""A run's files: what :meth:`nsipf_torch.api.Result.save` (and so simulate.py) writes into a directory.

    config.json          the configuration, parameters, members, device and torch version
    snap_KKKK.npz        t, step, x (1-D cell centres), rho, c (B, N, ..., N), gamma, chi, seed per member,
                         X (B, M, d) with save_particles
    final.npz            the last snapshot of a complete run
    diagnostics.csv      step, t, member, gamma, chi, M0, seed, mass, min/max rho, min c, mean |x|^2, ...
    events.out.tfevents  TensorBoard scalars of the diagnostics
    snap_KKKK.png        mid-plane cross-sections of member 0, colour limits fixed across snapshots
    diagnostics.png      mean and min-max band across members
    *.vti, *.vtu, *.pvd  ParaView files (``vtk=True``)

Every file is written atomically (:mod:`nsipf_torch.io.files`).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from nsipf_torch.io.files import atomic_write, ensure_writable_dir, save_json, save_npz


def save_result(result, out: Path, figures: bool = True, vtk: bool = False, tensorboard: bool = True) -> Path:
    out = ensure_writable_dir(out)
    save_json(out / "config.json", result.config)
    save_json(out / "summary.json", {"complete": result.complete, "t_end": result.t_end,
                                     "collapse": result.collapse, "collapses": result.collapses,
                                     "error": result.error})
    snaps = write_snapshots(result, out)
    if result.complete and snaps:
        save_npz(out / "final.npz", **dict(np.load(snaps[-1])))
    write_csv(out / "diagnostics.csv", result.diagnostics)
    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        from nsipf_torch.run.callbacks import write_scalars
        writer = SummaryWriter(log_dir=str(out))
        write_scalars(writer, result.diagnostics)
        writer.close()
    if figures:
        write_figures(result, snaps, out)
    if vtk:
        write_paraview(result, snaps, out)
    return out


def write_snapshots(result, out: Path) -> list[Path]:
    per_member = {k: np.array([m[k] for m in result.members]) for k in ("gamma", "chi", "seed")}
    x = result.grid.centres()
    paths = []
    for k, (t, step) in enumerate(zip(result.times, result.steps)):
        extra = {"X": result.X[:, k]} if result.X is not None else {}
        paths.append(save_npz(out / f"snap_{k:04d}.npz", t=t, step=step, x=x, rho=result.rho[:, k],
                              c=result.c[:, k], **per_member, **extra))
    return paths


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    atomic_write(path, write)


def run_title(config: dict) -> str:
    cfg = config["config"]
    method = cfg["method"] + ("-" + cfg["interp"] if cfg["method"] == "sipf" else "")
    return f"{method}, {cfg['ic_file'] or cfg['ic']}, N = {cfg['N']}"


def write_figures(result, snaps: list[Path], out: Path) -> None:
    """Mid-plane cross-sections of member 0 with colour limits fixed across snapshots, and diagnostics."""
    from nsipf_torch.io.plotting import plot_cross_section, plot_diagnostics
    grid, title = result.grid, run_title(result.config)
    if grid.dim >= 2 and len(result.times):
        rho_max, c_max = float(result.rho[0].max()), float(result.c[0].max())
        for k, path in enumerate(snaps):
            plot_cross_section(path.with_suffix(".png"), result.times[k], result.rho[0, k].numpy(),
                               result.c[0, k].numpy(), grid.L, grid.dim, rho_max, c_max, title)
    ts, mass = result.series("mass")
    series = {k: result.series(k)[1].numpy() for k in ("mean_r2", "max_rho", "min_c")}
    M0 = np.array([m["M0"] for m in result.members])  # per member (a sweep over mass)
    series["|M(t) - M0| / M0"] = np.abs(mass.numpy() - M0) / M0
    plot_diagnostics(out / "diagnostics.png", ts, series, title)


def write_paraview(result, snaps: list[Path], out: Path) -> None:
    """Member 0 of every snapshot as .vti (and .vtu particles), collected in fields.pvd / particles.pvd."""
    from nsipf_torch.io.vtk import write_pvd, write_vti, write_vtu_points
    fields, points = [], []
    for k, path in enumerate(snaps):
        t = result.times[k]
        write_vti(path.with_suffix(".vti"), {"rho": result.rho[0, k].numpy(), "c": result.c[0, k].numpy()},
                  result.grid.L, time=t)
        fields.append((t, path.with_suffix(".vti").name))
        if result.X is not None:
            write_vtu_points(path.with_suffix(".vtu"), result.X[0, k].numpy(), time=t)
            points.append((t, path.with_suffix(".vtu").name))
    write_pvd(out / "fields.pvd", fields)
    if points:
        write_pvd(out / "particles.pvd", points)
