"""Simulate the parabolic-hyperbolic Keller-Segel system (MODEL.md §1) on [-L, L]^d.

    rho_t = div(gamma grad rho - chi rho grad c),   c_t = -c rho,   no-flux walls     (paper eqs. 1-2)

Methods (--method):
  fdm    the finite-volume reference: MUSCL drift, Strang splitting, automatic positive sub-steps
  sipf   the stochastic interacting particle-field method (paper eqs. 32-34), --interp trilinear|spline
  nsipf  SIPF with the neural interpolator from checkpoints/ (the paper's NSIPF)

Examples (CUDA is used when present; --device cpu forces the CPU):
  python simulate.py --ic annuli                                   # the main job
  python simulate.py --method fdm --ic two_blobs --N 64 --out runs/fdm64
  python simulate.py --method sipf --interp spline --ic two_blobs --compare fdm
  python simulate.py --method sipf --sweep chi=0.5,1,2 --batch 4 --ic blob
  python simulate.py --method fdm --ic-file my_ic.npz              # keys rho0, c0 on an N^d grid
  python simulate.py --ic blob --checkpoint-every 50 --out runs/b; python simulate.py --resume runs/b
  torchrun --nproc_per_node=4 simulate.py --method sipf --P 4000000 --N 128     # particles sharded over 4 GPUs
  torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 simulate.py ...

Outputs in --out DIR: config.json; snap_KKKK.npz and final.npz (keys t, x, rho, c with a leading batch
axis, and gamma, chi, seed per member; particles with --save-particles); diagnostics.csv; PNG
cross-sections (snap_KKKK.png) and diagnostics.png; TensorBoard scalars; ParaView files with --vtk.
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
from nsipf_torch.distributed import World, close_world, init_world
from nsipf_torch.diagnostics import DiagnosticsLog, NonFiniteError, check_finite
from nsipf_torch.deposit import DEPOSITS
from nsipf_torch.field import C_UPDATES
from nsipf_torch.grid import Grid, resolve_device, resolve_dtype
from nsipf_torch.initial import get_ic, known_ics, load_ic_file
from nsipf_torch.interp import INTERPS, make_interp
from nsipf_torch.io import ensure_writable_dir, load_torch, save_json, save_npz, save_torch
from nsipf_torch.metrics import rel_l2
from nsipf_torch.params import Params
from nsipf_torch.neural import PRECISIONS
from nsipf_torch.plotting import centre_line, plot_cross_section, plot_diagnostics, plot_line_profiles
from nsipf_torch.runners import FDRunner, ParticleRunner, neural_interp
from nsipf_torch.stencils import LIMITERS
from nsipf_torch.validation import ring_fraction
from nsipf_torch.vtk import write_pvd, write_vti, write_vtu_points

METHODS = ("fdm", "sipf", "nsipf")
MAX_FD_SUBSTEPS = 10_000  # per outer step: beyond this a --dt is a mistake, not a request to wait for days


@dataclass
class SimConfig:
    method: str = "nsipf"
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
    P: int = 20_000
    interp: str = "spline"
    deposit: str = "ngp"
    c_update: str = "exp"
    limiter: str = "minmod"
    model: str | None = None
    cnn_precision: str = "fp32"
    device: str = "auto"
    dtype: str = "float32"
    out: str = "runs/latest"
    snapshots: int = 4
    diag_every: int = 10
    seed: int = 0
    sweep: str | None = None
    batch: int = 1
    save_particles: int = 0
    compare: str | None = None
    vtk: bool = False
    checkpoint_every: int = 0
    resume: str | None = None
    compile: bool = False
    progress: bool = True


class UsageError(ValueError):
    """A bad command-line value: reported in one line on stderr with exit code 2."""


def build_parser(suppress_defaults: bool = False) -> argparse.ArgumentParser:
    d = SimConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                argument_default=argparse.SUPPRESS if suppress_defaults else None)

    def add(flag, **kw):
        if suppress_defaults:
            kw.pop("default", None)
        p.add_argument(flag, **kw)

    add("--method", default=d.method, help=f"solver: one of {', '.join(METHODS)}")
    add("--ic", default=d.ic, help=f"initial condition: one of {', '.join(known_ics())}")
    add("--ic-file", default=d.ic_file, help="an .npz with gridded rho0 and c0 (N^d arrays); overrides --ic, sets --N and --dim")
    add("--dim", type=int, default=d.dim, help="space dimension d (2 or 3)")
    add("--N", type=int, default=d.N, help="grid cells per axis (h = 2L/N)")
    add("--L", type=float, default=d.L, help="half width of the box [-L, L]^d")
    add("--T", type=float, default=d.T, help="final time")
    add("--dt", type=float, default=d.dt, help="time step; fdm sub-steps it automatically to stay positive (MODEL.md §6)")
    add("--gamma", type=float, default=d.gamma, help="diffusion coefficient γ >= 0")
    add("--chi", type=float, default=d.chi, help="chemo-sensitivity χ >= 0")
    add("--M0", type=float, default=d.M0, help="total mass of ρ")
    add("--P", type=int, default=d.P, help="particles per member (sipf, nsipf), each of mass M0/P")
    add("--interp", default=d.interp, help=f"sipf interpolator of c: one of {', '.join(sorted(INTERPS))}")
    add("--deposit", default=d.deposit, help=f"particle deposit: {' or '.join(DEPOSITS)} (nearest grid point or cloud-in-cell)")
    add("--c-update", default=d.c_update, help="c step: exp (exact for frozen ρ, c >= 0) or euler (paper eq. 33; may go negative, reported)")
    add("--limiter", default=d.limiter, help=f"fdm drift reconstruction: {', '.join(LIMITERS)}")
    add("--model", default=d.model, help="nsipf checkpoint (default: the shipped one for --dim in checkpoints/)")
    add("--cnn-precision", default=d.cnn_precision,
        help=f"nsipf CNN convolutions: {', '.join(PRECISIONS)} (tf32 needs CUDA; bf16 runs the residual in bfloat16; "
             "BENCHMARKS.md gives the speed and accuracy of each)")
    add("--device", default=d.device, help="auto, cpu or cuda")
    add("--dtype", default=d.dtype, help="float32 or float64")
    add("--out", default=d.out, help="output directory (created)")
    add("--snapshots", type=int, default=d.snapshots, help="snapshot intervals: writes snap_0000 (t=0) ... snap_K (t=T)")
    add("--diag-every", type=int, default=d.diag_every, help="steps between diagnostics (mass, min/max, NaN/Inf check)")
    add("--seed", type=int, default=d.seed, help="base seed; member k uses seed + k")
    add("--sweep", default=d.sweep, help="one member per value, e.g. chi=0.5,1,2 or gamma=0.005,0.01")
    add("--batch", type=int, default=d.batch, help="seeds per sweep value (particle methods)")
    add("--save-particles", type=int, default=d.save_particles, help="store M particle positions per member in each snapshot")
    add("--compare", default=d.compare, help="'fdm': also run the FD reference, plot both along x and print rel_l2")
    add("--vtk", action="store_true", default=d.vtk, help="also write ParaView files (.vti fields, .vtu particles, .pvd series)")
    add("--checkpoint-every", type=int, default=d.checkpoint_every, help="write DIR/state.pt every K steps (0: never)")
    add("--resume", default=d.resume, help="continue the run saved in this directory (its state.pt and config)")
    add("--compile", action="store_true", default=d.compile,
        help="torch.compile the particle step (deposit and gather in separate regions); compile time is extra")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   **({} if suppress_defaults else {"default": True}), help="hide the progress bar")
    return p


def parse_sweep(cfg: SimConfig) -> tuple[str, list[float]]:
    if cfg.sweep is None:
        return "chi", [cfg.chi]
    name, sep, values = cfg.sweep.partition("=")
    if not sep or name not in ("chi", "gamma") or not values:
        raise UsageError(f"--sweep {cfg.sweep!r} must look like chi=0.5,1,2 or gamma=0.005,0.01")
    try:
        vals = [float(v) for v in values.split(",")]
    except ValueError:
        raise UsageError(f"--sweep {cfg.sweep!r} holds a value that is not a number") from None
    for v in vals:
        if not math.isfinite(v) or v < 0:
            raise UsageError(f"--sweep {name} value {v} must be finite and >= 0")
    return name, vals


def validate(cfg: SimConfig):
    """Check every value before anything is written; returns params, grid, initial condition, members."""
    for flag, value, choices in (("method", cfg.method, METHODS), ("c-update", cfg.c_update, C_UPDATES),
                                 ("limiter", cfg.limiter, LIMITERS), ("interp", cfg.interp, tuple(INTERPS)),
                                 ("deposit", cfg.deposit, DEPOSITS), ("compare", cfg.compare, (None, "fdm")),
                                 ("cnn-precision", cfg.cnn_precision, PRECISIONS)):
        if value not in choices:
            raise UsageError(f"unknown --{flag} {value!r}; choose one of {', '.join(c for c in choices if c)}")
    if not (math.isfinite(cfg.dt) and cfg.dt > 0):
        raise UsageError(f"--dt must be a finite number > 0, got {cfg.dt}")
    if math.isfinite(cfg.T) and 0 < cfg.T < cfg.dt:
        raise UsageError(f"--dt {cfg.dt} is longer than the whole run --T {cfg.T}")
    for flag, value, low in (("snapshots", cfg.snapshots, 1), ("diag-every", cfg.diag_every, 1), ("batch", cfg.batch, 1),
                             ("P", cfg.P, 1), ("save-particles", cfg.save_particles, 0),
                             ("checkpoint-every", cfg.checkpoint_every, 0)):
        if value < low:
            raise UsageError(f"--{flag} must be >= {low}, got {value}")
    if cfg.method == "fdm" and cfg.batch > 1:
        raise UsageError("--batch > 1 needs a particle method: fdm is deterministic, its seeds would be copies")
    if cfg.method == "fdm" and cfg.compare:
        raise UsageError("--compare fdm compares a particle method with fdm; use --method sipf or nsipf")
    if cfg.ic_file is not None:
        ic = load_ic_file(cfg.ic_file)
        cfg.dim, cfg.N = ic.dim, ic.N
    else:
        ic = get_ic(cfg.ic)
    params = Params(gamma=cfg.gamma, chi=cfg.chi, L=cfg.L, dim=cfg.dim, M0=cfg.M0, T=cfg.T)
    grid = Grid(cfg.N, cfg.dim, cfg.L, resolve_device(cfg.device), resolve_dtype(cfg.dtype))
    if cfg.cnn_precision == "tf32" and grid.device.type != "cuda":
        raise UsageError(f"--cnn-precision tf32 needs a CUDA device, the run is on {grid.device.type}")
    name, values = parse_sweep(cfg)
    members = []
    for v in values:
        for _ in range(cfg.batch):
            member = {"gamma": cfg.gamma, "chi": cfg.chi, "seed": cfg.seed + len(members)}
            member[name] = v
            members.append(member)
    return params, grid, ic, members


def make_runner(cfg: SimConfig, grid: Grid, ic, members: list[dict], world: World = World()):
    if world.size > 1:
        if cfg.method == "fdm":
            raise UsageError("fdm is not sharded: run it without torchrun (one process)")
        if cfg.checkpoint_every or cfg.resume:
            raise UsageError("--checkpoint-every/--resume need a single process (the state is not gathered from ranks)")
        world.shard(cfg.P)  # P must split evenly: refuse up front, on every rank
    if cfg.method == "fdm":
        runner = FDRunner(grid, ic, members, cfg.M0, limiter=cfg.limiter, c_update=cfg.c_update)
        n_sub = fd.fd_substep_count(runner.c, cfg.dt, runner.gamma, runner.chi, grid.h, grid.dim, rho=runner.rho)
        if n_sub > MAX_FD_SUBSTEPS:
            raise UsageError(f"--dt {cfg.dt} would need {n_sub} positive FD sub-steps per step at N = {grid.N} "
                             f"(more than {MAX_FD_SUBSTEPS}); use a smaller --dt")
        return runner
    if cfg.method == "nsipf":
        interp = neural_interp(cfg.model, grid, cfg.cnn_precision)
    else:
        interp = make_interp(cfg.interp, grid)
    return ParticleRunner(grid, ic, members, cfg.M0, cfg.P, interp, c_update=cfg.c_update, deposit_method=cfg.deposit,
                          world=world, compile=cfg.compile)


def step_count(T: float, dt: float) -> int:
    """Steps of size dt to reach T; the last one is shortened to land on T exactly."""
    return math.ceil(T / dt - 1e-9) if T > 0 else 0


def step_time(k: int, n_steps: int, T: float, dt: float) -> float:
    """The time after k steps of the schedule of :func:`step_count`."""
    return T if k == n_steps else k * dt


def resume_config(argv: list[str]) -> tuple[SimConfig, dict]:
    """The saved config and state of --resume DIR; any flag given now that differs from it is an error."""
    given = vars(build_parser(suppress_defaults=True).parse_args(argv))
    run_dir = Path(given.pop("resume"))
    state = load_torch(run_dir / "state.pt") if (run_dir / "state.pt").exists() else None
    if state is None:
        raise UsageError(f"--resume {str(run_dir)!r}: no state.pt there (run with --checkpoint-every K to make one)")
    saved = SimConfig(**state["config"])
    for key, value in given.items():
        if key not in ("progress",) and getattr(saved, key) != value:
            raise UsageError(f"--resume: --{key.replace('_', '-')} {value!r} conflicts with the saved {getattr(saved, key)!r}")
    saved.progress = given.get("progress", True)
    saved.resume = str(run_dir)
    return saved, state


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = SimConfig(**vars(build_parser().parse_args(argv)))
    world, state = World(), None
    try:
        if cfg.resume is not None:
            cfg, state = resume_config(argv)
        params, grid, ic, members = validate(cfg)
        world = init_world(grid.device)
        runner = make_runner(cfg, grid, ic, members, world)
        out = ensure_writable_dir(cfg.resume or cfg.out) if world.is_main else Path(cfg.out)
    except ValueError as err:
        print(f"simulate.py: error: {err}", file=sys.stderr)
        close_world(world)
        return 2
    try:
        return run(cfg, params, grid, runner, members, out, world, state)
    finally:
        close_world(world)


def run(cfg: SimConfig, params: Params, grid: Grid, runner, members: list[dict], out: Path,
        world: World = World(), state: dict | None = None) -> int:
    """The time loop. Every rank steps and takes part in the collectives; only rank 0 writes and reports."""
    main_rank = world.is_main
    n_steps = step_count(params.T, cfg.dt)
    snap_steps = sorted({round(k * n_steps / cfg.snapshots) for k in range(cfg.snapshots + 1)})
    per_member = {k: np.array([m[k] for m in members]) for k in ("gamma", "chi", "seed")}
    x = grid.centres()
    log = DiagnosticsLog(out if main_rank else None, members)
    step, substeps, snaps = 0, 0, []
    if state is not None:  # --resume: the state resume_config read
        runner.load_state_dict(state["runner"])
        step, substeps, snaps, log.rows = state["step"], state["substeps"], [out / s for s in state["snaps"]], state["log"]
    elif main_rank:
        save_json(out / "config.json", {"config": asdict(cfg), "params": params.to_dict(), "members": members,
                                        "device": str(grid.device), "torch": torch.__version__})

    def time_at(k: int) -> float:
        return step_time(k, n_steps, params.T, cfg.dt)

    def save_snapshot(k: int) -> None:
        rho, c = runner.fields()  # a collective with several ranks
        extra = {"X": runner.particles(cfg.save_particles)} if cfg.save_particles and hasattr(runner, "particles") else {}
        path = out / f"snap_{len(snaps):04d}.npz"
        if main_rank:
            save_npz(path, t=time_at(k), step=k, x=x, rho=rho, c=c, **per_member, **extra)
        snaps.append(path)

    def save_state(k: int) -> None:
        save_torch(out / "state.pt", {"config": asdict(cfg), "runner": runner.state_dict(), "step": k,
                                      "substeps": substeps, "snaps": [p.name for p in snaps], "log": log.rows})

    if step == 0:
        log.record(0, 0.0, runner.diagnostics())
        save_snapshot(0)
    status, start = 0, time.perf_counter()
    bar = tqdm(total=n_steps, initial=step, desc=f"{cfg.method} {cfg.ic_file or cfg.ic} N={grid.N}",
               disable=not (cfg.progress and main_rank), unit="step")
    try:
        while step < n_steps:
            substeps += runner.advance(time_at(step + 1) - time_at(step))
            step += 1
            if step % cfg.diag_every == 0 or step in snap_steps:
                check_finite(step, time_at(step), **runner.checked())
                log.record(step, time_at(step), runner.diagnostics())
            if step in snap_steps:
                save_snapshot(step)
            if cfg.checkpoint_every and (step % cfg.checkpoint_every == 0 or step == n_steps):
                save_state(step)
            bar.update(1)
            if cfg.method == "fdm":
                bar.set_postfix(substeps=substeps, refresh=False)
    except NonFiniteError as err:
        print(f"simulate.py: error: {err}; run stopped, last good snapshot {snaps[-1].name} kept", file=sys.stderr)
        status = 1
    finally:
        bar.close()
    wall = time.perf_counter() - start
    if not main_rank:
        return status
    if status == 0:
        save_npz(out / "final.npz", **dict(np.load(snaps[-1])))
    log.close()
    write_figures(cfg, grid, snaps, log, out)
    if cfg.vtk:
        write_paraview(grid, snaps, out)
    summary(cfg, grid, log, members, wall, n_steps, substeps, snaps, out)
    if cfg.compare == "fdm" and status == 0:
        compare_with_fdm(cfg, grid, members, snaps[-1], out)
    return status


def write_figures(cfg: SimConfig, grid: Grid, snaps: list[Path], log: DiagnosticsLog, out: Path) -> None:
    """Mid-plane cross-sections of member 0 with colour limits fixed across snapshots, and diagnostics."""
    data = [np.load(p) for p in snaps]
    rho_max = max(float(d["rho"][0].max()) for d in data)
    c_max = max(float(d["c"][0].max()) for d in data)
    title = f"{cfg.method}{'-' + cfg.interp if cfg.method == 'sipf' else ''}, {cfg.ic_file or cfg.ic}, N = {grid.N}"
    for path, d in zip(snaps, data):
        plot_cross_section(path.with_suffix(".png"), float(d["t"]), d["rho"][0], d["c"][0], grid.L, grid.dim,
                           rho_max, c_max, title)
    ts, mass = log.series("mass")
    series = {k: log.series(k)[1].numpy() for k in ("mean_r2", "max_rho", "min_c")}
    series["|M(t) - M0| / M0"] = ((mass - cfg.M0).abs() / cfg.M0).numpy()
    plot_diagnostics(out / "diagnostics.png", ts, series, title)


def write_paraview(grid: Grid, snaps: list[Path], out: Path) -> None:
    """Member 0 of every snapshot as .vti (and .vtu particles), collected in fields.pvd / particles.pvd."""
    fields, points = [], []
    for path in snaps:
        d = np.load(path)
        t = float(d["t"])
        write_vti(path.with_suffix(".vti"), {"rho": d["rho"][0], "c": d["c"][0]}, grid.L, time=t)
        fields.append((t, path.with_suffix(".vti").name))
        if "X" in d.files:
            write_vtu_points(path.with_suffix(".vtu"), d["X"][0], time=t)
            points.append((t, path.with_suffix(".vtu").name))
    write_pvd(out / "fields.pvd", fields)
    if points:
        write_pvd(out / "particles.pvd", points)


def summary(cfg, grid, log, members, wall, n_steps, substeps, snaps, out) -> None:
    ts, mass = log.series("mass")
    _, r2 = log.series("mean_r2")
    _, neg = log.series("n_negative_c")
    drift = float(((mass - cfg.M0).abs() / cfg.M0).max())
    sub = f" ({substeps} FD sub-steps)" if cfg.method == "fdm" else ""
    print(f"{cfg.method} {cfg.ic_file or cfg.ic}, N = {grid.N}, {len(members)} member(s): "
          f"{n_steps} steps{sub} in {wall:.1f} s on {grid.device}")
    print(f"  mass {float(mass[-1].mean()):.15g} (max relative drift {drift:.1e}); mean |x|^2 "
          f"{float(r2[0].mean()):.4f} -> {float(r2[-1].mean()):.4f} at t = {ts[-1]:.4g}")
    if float(neg.max()) > 0:
        print(f"  WARNING: the euler c-update drove c negative in up to {int(neg.max())} cells "
              f"(min c = {float(log.series('min_c')[1].min()):.3g}); --c-update exp keeps c >= 0")
    if "tile_overflow" in log.rows[-1] and max(r["tile_overflow"] for r in log.rows) > 0:
        print(f"  note: the CNN skipped up to {int(max(r['tile_overflow'] for r in log.rows))} occupied tiles in a step "
              "(they kept linear upsampling); lower --diag-every to re-plan the tile list more often")
    if cfg.ic == "annuli" and cfg.ic_file is None:
        last = np.load(snaps[-1])
        rho = torch.from_numpy(last["rho"]).double()
        cpu = grid.to(device="cpu", dtype=torch.float64)
        inner, outer = (float(ring_fraction(rho, cpu, R).mean()) for R in (0.35, 0.7))
        print(f"  where the mass went at t = {float(last['t']):.4g}: {inner:.1%} within 0.12 of the inner ring "
              f"(R = 0.35), {outer:.1%} within 0.12 of the outer ring (R = 0.7)")
    print(f"  outputs in {out}/")


def compare_with_fdm(cfg: SimConfig, grid: Grid, members: list[dict], final: Path, out: Path) -> None:
    """Run the FD reference on the same problem; plot rho and c along x through the centre; print rel_l2."""
    ic = load_ic_file(cfg.ic_file) if cfg.ic_file else get_ic(cfg.ic)
    keys = sorted({(m["gamma"], m["chi"]) for m in members})
    fd_members = [{"gamma": g, "chi": c, "seed": 0} for g, c in keys]
    ref = FDRunner(grid, ic, fd_members, cfg.M0, limiter=cfg.limiter)
    n_steps = step_count(cfg.T, cfg.dt)
    for k in tqdm(range(n_steps), desc="fdm reference", disable=not cfg.progress, unit="step"):
        ref.advance(step_time(k + 1, n_steps, cfg.T, cfg.dt) - step_time(k, n_steps, cfg.T, cfg.dt))
    rho_fd, c_fd = (f.cpu().double() for f in ref.fields())
    d = np.load(final)
    which = torch.tensor([keys.index((m["gamma"], m["chi"])) for m in members])
    coarse = 16 if grid.N % 16 == 0 else grid.N
    err_rho = rel_l2(torch.from_numpy(d["rho"]).double(), rho_fd[which], coarse, grid.dim)
    err_c = rel_l2(torch.from_numpy(d["c"]).double(), c_fd[which], coarse, grid.dim)
    save_npz(out / "fdm_reference.npz", t=cfg.T, x=grid.centres(), rho=rho_fd, c=c_fd,
             gamma=np.array([k[0] for k in keys]), chi=np.array([k[1] for k in keys]))
    label = f"{cfg.method}{'-' + cfg.interp if cfg.method == 'sipf' else ''} (P = {cfg.P})"
    x = grid.centres().cpu().numpy()
    first = (which == 0).numpy()
    for name, ours, ref_field in (("rho", d["rho"], rho_fd), ("c", d["c"], c_fd)):
        plot_line_profiles(out / f"compare_{name}.png", x,
                           {"FD reference": centre_line(ref_field[0].numpy(), grid.dim),
                            label: centre_line(ours[first], grid.dim)},
                           name, f"{cfg.ic_file or cfg.ic}, N = {grid.N}, t = {cfg.T:g}")
    print(f"  rel_l2 against fdm on {coarse}^{grid.dim} coarse cells: rho {err_rho.mean():.3f} "
          f"(members {', '.join(f'{e:.3f}' for e in err_rho.tolist())}), c {err_c.mean():.3f}")


if __name__ == "__main__":
    sys.exit(main())
