"""Simulate the parabolic-hyperbolic Keller-Segel system (MODEL.md §1) on [-L, L]^d.

Methods:
  fdm    the finite-volume reference solver (MUSCL drift, Strang splitting, automatic sub-steps)
  sipf   the stochastic interacting particle-field method with a classical interpolator (paper §3)
  nsipf  SIPF with the neural interpolator (the paper's NSIPF)

Examples (the CPU is used when CUDA is absent; --device cpu forces it):
  python simulate.py --ic annuli                         # the main job
  python simulate.py --method fdm --ic two_blobs --N 64 --out runs/fdm64
  python simulate.py --method sipf --interp spline --ic two_blobs --compare fdm
  python simulate.py --method sipf --sweep chi=0.5,1,2 --batch 4 --ic blob
  python simulate.py --method fdm --ic-file my_ic.npz    # keys rho0, c0 on an N^d grid

Outputs in --out DIR: config.json, snap_KKKK.npz and final.npz (keys t, x, rho, c with a leading batch
axis, and gamma, chi, seed per member), diagnostics.csv, PNG cross-sections and TensorBoard scalars.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from nsipf_torch import fd
from nsipf_torch.diagnostics import (DiagnosticsLog, NonFiniteError, check_finite, field_diagnostics,
                                     mass_near_ring)
from nsipf_torch.field import C_UPDATES
from nsipf_torch.grid import Grid, resolve_device, resolve_dtype
from nsipf_torch.initial import get_ic, known_ics, load_ic_file
from nsipf_torch.io import ensure_writable_dir, save_json, save_npz
from nsipf_torch.metrics import rel_l2
from nsipf_torch.params import Params
from nsipf_torch.plotting import centre_line, plot_cross_section, plot_diagnostics, plot_line_profiles
from nsipf_torch.stencils import LIMITERS

METHODS = ("fdm", "sipf", "nsipf")


@dataclass
class SimConfig:
    method: str = "fdm"
    ic: str = "annuli"
    ic_file: str | None = None
    dim: int = 3
    N: int = 32
    L: float = 1.0
    T: float = 0.2
    dt: float = 1e-3
    gamma: float = 0.01
    chi: float = 1.0
    M0: float = 1.0
    c_update: str = "exp"
    limiter: str = "minmod"
    device: str = "auto"
    dtype: str = "float64"
    out: str = "runs/latest"
    snapshots: int = 4
    diag_every: int = 10
    seed: int = 0
    sweep: str | None = None
    batch: int = 1
    progress: bool = True


class UsageError(ValueError):
    """A bad command-line value: reported in one line on stderr with exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    d = SimConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--method", default=d.method, help=f"solver: one of {', '.join(METHODS)}")
    p.add_argument("--ic", default=d.ic, help=f"initial condition: one of {', '.join(known_ics())}")
    p.add_argument("--ic-file", default=d.ic_file,
                   help="an .npz with gridded rho0 and c0 (N^d arrays); overrides --ic, sets --N and --dim")
    p.add_argument("--dim", type=int, default=d.dim, help="space dimension d (2 or 3)")
    p.add_argument("--N", type=int, default=d.N, help="grid cells per axis (h = 2L/N)")
    p.add_argument("--L", type=float, default=d.L, help="half width of the box [-L, L]^d")
    p.add_argument("--T", type=float, default=d.T, help="final time")
    p.add_argument("--dt", type=float, default=d.dt,
                   help="time step; fdm sub-steps it automatically to stay positive (MODEL.md §6)")
    p.add_argument("--gamma", type=float, default=d.gamma, help="diffusion coefficient γ >= 0")
    p.add_argument("--chi", type=float, default=d.chi, help="chemo-sensitivity χ >= 0")
    p.add_argument("--M0", type=float, default=d.M0, help="total mass of ρ")
    p.add_argument("--c-update", default=d.c_update,
                   help="c-equation step: exp (exact, c >= 0) or euler (paper eq. 33; may go negative)")
    p.add_argument("--limiter", default=d.limiter, help=f"fdm drift reconstruction: {', '.join(LIMITERS)}")
    p.add_argument("--device", default=d.device, help="auto, cpu or cuda")
    p.add_argument("--dtype", default=d.dtype, help="float32 or float64")
    p.add_argument("--out", default=d.out, help="output directory (created)")
    p.add_argument("--snapshots", type=int, default=d.snapshots,
                   help="number of snapshot intervals: writes snap_0000 (t=0) ... snap_K (t=T)")
    p.add_argument("--diag-every", type=int, default=d.diag_every,
                   help="steps between diagnostics (mass, min/max, NaN check)")
    p.add_argument("--seed", type=int, default=d.seed, help="base seed; member k uses seed + k")
    p.add_argument("--sweep", default=d.sweep, help="one member per value, e.g. chi=0.5,1,2 or gamma=0.005,0.01")
    p.add_argument("--batch", type=int, default=d.batch, help="seeds per sweep value (particle methods)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    return p


def parse_sweep(spec: str | None, cfg: SimConfig) -> tuple[str, list[float]]:
    if spec is None:
        return "chi", [cfg.chi]
    name, sep, values = spec.partition("=")
    if not sep or name not in ("chi", "gamma") or not values:
        raise UsageError(f"--sweep {spec!r} must look like chi=0.5,1,2 or gamma=0.005,0.01")
    try:
        vals = [float(v) for v in values.split(",")]
    except ValueError:
        raise UsageError(f"--sweep {spec!r} holds a value that is not a number") from None
    for v in vals:
        if not math.isfinite(v) or v < 0:
            raise UsageError(f"--sweep {name} value {v} must be finite and >= 0")
    return name, vals


def validate(cfg: SimConfig) -> tuple[Params, Grid, object, list[dict]]:
    """Check every value before anything is written; returns params, grid, initial condition, members."""
    if cfg.method not in METHODS:
        raise UsageError(f"unknown --method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    if cfg.c_update not in C_UPDATES:
        raise UsageError(f"unknown --c-update {cfg.c_update!r}; choose one of {', '.join(C_UPDATES)}")
    if cfg.limiter not in LIMITERS:
        raise UsageError(f"unknown --limiter {cfg.limiter!r}; choose one of {', '.join(LIMITERS)}")
    if not (math.isfinite(cfg.dt) and cfg.dt > 0):
        raise UsageError(f"--dt must be a finite number > 0, got {cfg.dt}")
    if cfg.snapshots < 1:
        raise UsageError(f"--snapshots must be >= 1, got {cfg.snapshots}")
    if cfg.diag_every < 1:
        raise UsageError(f"--diag-every must be >= 1, got {cfg.diag_every}")
    if cfg.batch < 1:
        raise UsageError(f"--batch must be >= 1, got {cfg.batch}")
    if cfg.method == "fdm" and cfg.batch > 1:
        raise UsageError("--batch > 1 needs a particle method: fdm is deterministic, its seeds would be copies")
    if cfg.ic_file is not None:
        ic = load_ic_file(cfg.ic_file)
        cfg.dim, cfg.N = ic.dim, ic.N
    else:
        ic = get_ic(cfg.ic)
    params = Params(gamma=cfg.gamma, chi=cfg.chi, L=cfg.L, dim=cfg.dim, M0=cfg.M0, T=cfg.T)
    grid = Grid(cfg.N, cfg.dim, cfg.L, resolve_device(cfg.device), resolve_dtype(cfg.dtype))
    name, values = parse_sweep(cfg.sweep, cfg)
    members = []
    for v in values:
        for _ in range(cfg.batch):
            m = {"gamma": cfg.gamma, "chi": cfg.chi, "seed": cfg.seed + len(members)}
            m[name] = v
            members.append(m)
    return params, grid, ic, members


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = SimConfig(**vars(args))
    try:
        params, grid, ic, members = validate(cfg)
        out = ensure_writable_dir(cfg.out)
    except ValueError as err:
        print(f"simulate.py: error: {err}", file=sys.stderr)
        return 2
    return run(cfg, params, grid, ic, members, out)


def run(cfg: SimConfig, params: Params, grid: Grid, ic, members: list[dict], out: Path) -> int:
    torch.manual_seed(cfg.seed)
    B = len(members)
    gamma = torch.tensor([m["gamma"] for m in members], dtype=grid.dtype, device=grid.device)
    chi = torch.tensor([m["chi"] for m in members], dtype=grid.dtype, device=grid.device)
    save_json(out / "config.json", {"config": asdict(cfg), "params": params.to_dict(), "members": members,
                                    "device": str(grid.device), "torch": torch.__version__})

    rho = ic.rho0(grid, params.M0).expand(B, *grid.shape).clone()
    c = ic.c0(grid).expand(B, *grid.shape).clone()
    x = grid.centres()
    n_steps = max(1, math.ceil(params.T / cfg.dt - 1e-9)) if params.T > 0 else 0
    snap_steps = sorted({round(k * n_steps / cfg.snapshots) for k in range(cfg.snapshots + 1)})
    log = DiagnosticsLog(out, members)
    per_member = {k: np.array([m[k] for m in members]) for k in ("gamma", "chi", "seed")}
    snaps: list[Path] = []

    def save_snapshot(step: int, t: float) -> None:
        path = out / f"snap_{len(snaps):04d}.npz"
        save_npz(path, t=t, step=step, x=x, rho=rho, c=c, **per_member)
        snaps.append(path)

    t, step, substeps, status = 0.0, 0, 0, 0
    log.record(0, 0.0, field_diagnostics(rho, c, grid))
    save_snapshot(0, 0.0)
    start = time.perf_counter()
    bar = tqdm(total=n_steps, desc=f"{cfg.method} {cfg.ic if cfg.ic_file is None else cfg.ic_file}",
               disable=not cfg.progress, unit="step")
    try:
        with torch.inference_mode():
            while step < n_steps:
                dt = min(cfg.dt, params.T - t) if step == n_steps - 1 else cfg.dt
                new_rho, new_c, n_sub = fd.fd_advance(rho, c, dt, gamma, chi, grid, limiter=cfg.limiter,
                                                      c_update=cfg.c_update)
                substeps += n_sub
                step, t = step + 1, (step + 1) * cfg.dt if step + 1 < n_steps else params.T
                if step % cfg.diag_every == 0 or step in snap_steps:
                    check_finite(step, t, rho=new_rho, c=new_c)
                    log.record(step, t, field_diagnostics(new_rho, new_c, grid))
                rho, c = new_rho, new_c
                if step in snap_steps:
                    save_snapshot(step, t)
                bar.update(1)
                bar.set_postfix(t=f"{t:.3g}", substeps=substeps)
    except NonFiniteError as err:
        print(f"simulate.py: error: {err}; stopped, last good snapshot {snaps[-1].name} kept", file=sys.stderr)
        status = 1
    finally:
        bar.close()
    wall = time.perf_counter() - start
    if status == 0:
        save_npz(out / "final.npz", t=t, step=step, x=x, rho=rho, c=c, **per_member)
    log.close()
    write_figures(cfg, grid, snaps, log, out)
    summary(cfg, log, members, wall, n_steps, substeps, out)
    return status


def write_figures(cfg: SimConfig, grid: Grid, snaps: list[Path], log: DiagnosticsLog, out: Path) -> None:
    """Mid-plane cross-sections of member 0 with colour limits fixed across snapshots, and diagnostics."""
    data = [np.load(p) for p in snaps]
    rho_max = max(float(d["rho"][0].max()) for d in data)
    c_max = max(float(d["c"][0].max()) for d in data)
    title = f"{cfg.method}, {cfg.ic}, N = {grid.N}"
    for path, d in zip(snaps, data):
        plot_cross_section(path.with_suffix(".png"), float(d["t"]), d["rho"][0], d["c"][0], grid.L, grid.dim,
                           rho_max, c_max, title)
    ts, mass = log.series("mass")
    series = {k: log.series(k)[1].numpy() for k in ("mean_r2", "max_rho", "min_c")}
    series["|M(t) - M0| / M0"] = ((mass - mass[0]).abs() / mass[0]).numpy()
    plot_diagnostics(out / "diagnostics.png", ts, series, title)


def summary(cfg, log, members, wall, n_steps, substeps, out) -> None:
    ts, mass = log.series("mass")
    _, r2 = log.series("mean_r2")
    drift = float((mass[-1] - mass[0]).abs().max() / mass[0].abs().max())
    print(f"{cfg.method} {cfg.ic}: {n_steps} steps ({substeps} sub-steps) in {wall:.1f} s, "
          f"{len(members)} member(s)")
    print(f"  mass {float(mass[-1].mean()):.12g} (relative drift {drift:.2e});  "
          f"mean |x|^2: {float(r2[0].mean()):.4f} -> {float(r2[-1].mean()):.4f} at t = {ts[-1]:.4g}")
    if cfg.ic == "annuli" and cfg.ic_file is None:
        final = np.load(out / "final.npz") if (out / "final.npz").exists() else np.load(sorted(out.glob("snap_*.npz"))[-1])
        rho = torch.from_numpy(final["rho"])
        grid = Grid(cfg.N, cfg.dim, cfg.L, "cpu", torch.float64)
        inner, outer = (mass_near_ring(rho.double(), grid, R).mean() / cfg.M0 for R in (0.35, 0.7))
        print(f"  where the mass went at t = {float(final['t']):.4g}: {float(inner):.1%} within 0.12 of the inner ring "
              f"(R = 0.35), {float(outer):.1%} within 0.12 of the outer ring (R = 0.7)")
    print(f"  outputs in {out}/")


if __name__ == "__main__":
    sys.exit(main())
