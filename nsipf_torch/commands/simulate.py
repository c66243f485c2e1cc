"""Simulate the parabolic-hyperbolic Keller-Segel system (docs/MODEL.md §1) on [-L, L]^d.

    rho_t = div(gamma grad rho - chi rho grad c),   c_t = -c rho,   no-flux walls     (paper eqs. 1-2)

Methods (--method):
  fdm    the finite-volume reference: MUSCL drift, Strang splitting, automatic positive sub-steps
  sipf   the stochastic interacting particle-field method (paper eqs. 32-34), --interp trilinear|spline
  nsipf  SIPF with the neural interpolator (the shipped CNN, or --model; the paper's NSIPF)

Examples (CUDA is used when present; --device cpu forces the CPU):
  python simulate.py --ic annuli                                   # the main job
  python simulate.py --method fdm --ic two_blobs --N 64 --out runs/fdm64
  python simulate.py --method sipf --interp spline --ic two_blobs --compare fdm
  python simulate.py --method sipf --sweep chi=0.5,1,2 --batch 4 --ic blob
  python simulate.py --method fdm --ic-file my_ic.npz              # keys rho0, c0 on an N^d grid
  python simulate.py --ic blob --checkpoint-every 50 --out runs/b; python simulate.py --resume runs/b
  python simulate.py --method fdm --c-equation elliptic --ic pks_blob --dim 2 --N 128 --M0 0.5
        # the Keller-Segel family (--c-equation, --eps, --Dc, --alpha, --beta, --sensitivity, --kappa):
        # a collapse stops the run cleanly (exit 0) and summary.json says when and where
  python simulate.py --method fdm --c-equation elliptic --ic pks_blob --dim 2 --N 64 --sweep M0=0.12,0.5
        # a critical-mass scan in one tensor: a collapsed member is frozen while the others run on
  torchrun --nproc_per_node=4 simulate.py --method sipf --P 4000000 --N 128     # particles sharded over 4 GPUs
  torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 simulate.py ...

Outputs in --out DIR: config.json; summary.json (complete, t_end, collapse, collapses); snap_KKKK.npz and final.npz
(keys t, x, rho, c with a leading batch axis, and gamma, chi, seed per member; particles with
--save-particles); diagnostics.csv; PNG
cross-sections (snap_KKKK.png) and diagnostics.png; TensorBoard scalars; ParaView files with --vtk.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from nsipf_torch.api import Result, SimConfig, Setup, check_config, make_runner, run
from nsipf_torch.run.callbacks import Checkpoint, ProgressBar, TensorBoard
from nsipf_torch.commands.cli import (add_dataclass_arguments, config_from_args, make_parser, one_line_warnings,
                                      prog_name, usage_error)
from nsipf_torch.particles.distributed import World, close_world, init_world
from nsipf_torch.problems.grid import resolve_device
from nsipf_torch.problems.initial import load_ic_file
from nsipf_torch.io.files import ensure_writable_dir, load_torch
from nsipf_torch.metrics import rel_l2
from nsipf_torch.run.collapse import GROWTH_LIMIT, PECLET_LIMIT
from nsipf_torch.io.output import run_title
from nsipf_torch.io.plotting import centre_line, plot_line_profiles
from nsipf_torch.problems.exact import ring_fraction

PROG = prog_name("simulate.py")  # nsipf-simulate when started as the console script


@dataclass
class OutputOptions:
    """Where and what simulate.py writes (the run itself is a SimConfig)."""

    out: str = field(default="runs/latest", metadata={"help": "output directory (created)"})
    vtk: bool = field(default=False, metadata={"help": "also write ParaView files (.vti fields, .vtu particles, .pvd series)"})
    compare: str | None = field(default=None, metadata={
        "help": "'fdm': also run the FD reference, plot both along x and print rel_l2", "choices": ("fdm",)})
    checkpoint_every: int = field(default=0, metadata={"help": "write DIR/state.pt every K steps (0: never)"})
    resume: str | None = field(default=None, metadata={"help": "continue the run saved in this directory (its state.pt)"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


def build_parser(suppress_defaults: bool = False):
    parser = make_parser(PROG, __doc__.split("\n\n")[0])
    add_dataclass_arguments(parser, SimConfig, exclude=("seeds",), suppress_defaults=suppress_defaults)
    add_dataclass_arguments(parser, OutputOptions, suppress_defaults=suppress_defaults)
    return parser


def parse(argv: list[str]) -> tuple[SimConfig, OutputOptions, dict | None]:
    """The run's config and output options; with --resume DIR, the saved ones and the saved state (any
    flag given now that differs from the saved value is an error)."""
    ns = build_parser().parse_args(argv)
    cfg, opts = config_from_args(SimConfig, ns), config_from_args(OutputOptions, ns)
    if opts.checkpoint_every < 0:
        raise ValueError(f"--checkpoint-every must be >= 0, got {opts.checkpoint_every}")
    if opts.resume is None:
        return cfg, opts, None
    return resumed(opts, vars(build_parser(suppress_defaults=True).parse_args(argv)))


def resumed(opts: OutputOptions, given: dict) -> tuple[SimConfig, OutputOptions, dict]:
    """The saved config, output options and state of the run in --resume DIR; ``given`` (the flags given
    now) must agree with them, and DIR's outputs must be that run's (its config.json, when there is one)."""
    run_dir = Path(opts.resume)
    if not (run_dir / "state.pt").exists():
        raise ValueError(f"--resume {str(run_dir)!r}: no state.pt there (run with --checkpoint-every K to make one)")
    if "out" in given and Path(given["out"]).absolute() != run_dir.absolute():
        raise ValueError(f"--resume {str(run_dir)!r} continues the run in place; --out {given['out']!r} names "
                         "another directory (copy the run there and resume the copy)")
    state = load_torch(run_dir / "state.pt")
    saved_cfg, saved_opts = SimConfig(**state["config"]["sim"]), OutputOptions(**state["config"]["output"])
    for key, value in given.items():
        saved = getattr(saved_cfg, key) if hasattr(saved_cfg, key) else getattr(saved_opts, key)
        if key not in ("progress", "resume", "out") and saved != value:
            raise ValueError(f"--resume: --{key.replace('_', '-')} {value!r} conflicts with the saved {saved!r}")
    check_same_run(run_dir, state["config"]["sim"])
    saved_opts.progress, saved_opts.resume, saved_opts.out = opts.progress, str(run_dir), str(run_dir)
    return saved_cfg, saved_opts, state


def check_same_run(run_dir: Path, sim: dict) -> None:
    """A config.json in ``run_dir`` must describe the run of its state.pt: resuming overwrites the outputs."""
    path = run_dir / "config.json"
    if not path.exists():
        return
    try:
        written = json.loads(path.read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"--resume {str(run_dir)!r}: its config.json is unreadable; resuming would overwrite "
                         "it with this run's outputs") from None
    ours = json.loads(json.dumps(sim, default=str))  # as config.json writes it (tuples become lists)
    differ = sorted(k for k in set(ours) | set(written) if ours.get(k) != written.get(k))
    if differ:
        raise ValueError(f"--resume {str(run_dir)!r}: config.json there belongs to another run than state.pt "
                         f"(they differ in {', '.join(differ)}); resuming would overwrite that run's outputs")


def check_ic_file_flags(argv: list[str], ic, path: str) -> None:
    """--N and --dim, when given beside --ic-file, must be the file's (the file sets them)."""
    given = vars(build_parser(suppress_defaults=True).parse_args(argv))
    for key, value in (("N", ic.N), ("dim", ic.dim)):
        if key in given and given[key] != value:
            raise ValueError(f"--{key} {given[key]} disagrees with --ic-file {path!r}, which has {key} = {value} "
                             f"(leave --{key} out: the file sets it)")


def prepare(argv: list[str]) -> tuple[Setup, OutputOptions, dict | None, World, object, Path]:
    """Everything that can fail on bad input, before anything is written."""
    cfg, opts, state = parse(argv)
    ic = None
    if cfg.ic_file is not None:
        ic = load_ic_file(cfg.ic_file)
        check_ic_file_flags(argv, ic, cfg.ic_file)
        cfg.dim, cfg.N = ic.dim, ic.N
    if cfg.method == "fdm" and opts.compare:
        raise ValueError("--compare fdm compares a particle method with fdm; use --method sipf or nsipf")
    device = resolve_device(cfg.device)  # opens no CUDA context
    world = init_world(device)  # the process group first, then this rank's device, then the checks there
    try:
        if world.size > 1:
            cfg.device = str(world.place(device))
            if opts.checkpoint_every or opts.resume:
                raise ValueError("--checkpoint-every/--resume need a single process (the state is not gathered "
                                 "from ranks)")
        setup = check_config(cfg, ic, world)
        runner = make_runner(setup, world)
        out = ensure_writable_dir(opts.out) if world.is_main else Path(opts.out)
    except ValueError:
        close_world(world)
        raise
    return setup, opts, state, world, runner, out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    world = World()
    try:
        setup, opts, state, world, runner, out = prepare(argv)
    except ValueError as err:
        close_world(world)
        return usage_error(PROG, err)
    if world.is_main:
        for message in setup.validity:  # recorded in config.json too
            print(f"{PROG}: warning: outside the CNN's validity domain: {message}", file=sys.stderr)
    try:
        with one_line_warnings(PROG):
            result = run(setup, runner, callbacks(setup, opts, world, out), resume=state)
            return report(result, setup, opts, out) if world.is_main else int(not result.complete)
    finally:
        close_world(world)


def callbacks(setup: Setup, opts: OutputOptions, world: World, out: Path) -> list:
    cfg = setup.cfg
    bar = ProgressBar(f"{cfg.method} {cfg.ic_file or cfg.ic} N={cfg.N}", disable=not (opts.progress and world.is_main))
    if not world.is_main:
        return [bar]
    found = [bar, TensorBoard(out)]
    if opts.checkpoint_every:
        found.append(Checkpoint(out / "state.pt", opts.checkpoint_every,
                                {"sim": asdict(cfg), "output": asdict(opts)}))
    return found


def report(result: Result, setup: Setup, opts: OutputOptions, out: Path) -> int:
    """Write the outputs, print the summary (and the FD comparison); the exit status."""
    result.config["output"] = asdict(opts)
    result.save(out, vtk=opts.vtk, tensorboard=False)
    if not result.complete and result.collapse is None:
        print(f"{PROG}: error: {result.error}; run stopped, last good snapshot snap_{len(result.times) - 1:04d}.npz kept",
              file=sys.stderr)
        return 1
    summary(result, setup, out)
    if opts.compare == "fdm":
        compare_with_fdm(result, setup, opts, out)
    return 0


def _steps_run(result: Result) -> str:
    """"200" for a whole run; "301 of 600" for one a collapse or a NaN stopped early."""
    done = result.steps[-1] if result.steps else 0
    return f"{result.n_steps}" if done >= result.n_steps else f"{done} of {result.n_steps}"


def summary(result: Result, setup: Setup, out: Path) -> None:
    cfg, grid = setup.cfg, setup.grid
    ts, mass = result.series("mass")
    _, r2 = result.series("mean_r2")
    _, neg = result.series("n_negative_c")
    M0 = np.array([m["M0"] for m in result.members])  # per member (a sweep over mass)
    drift = float((np.abs(mass.numpy() - M0) / M0).max())
    sub = f" ({result.substeps} FD sub-steps)" if cfg.method == "fdm" else ""
    print(f"{cfg.method} {cfg.ic_file or cfg.ic}, N = {grid.N}, {len(result.members)} member(s): "
          f"{_steps_run(result)} steps{sub} in {result.wall_time:.1f} s on {grid.device}")
    digits = 7 if grid.dtype == torch.float32 else 15  # the run's precision: more digits would show only round-off
    print(f"  mass {float(mass[-1].mean()):.{digits}g} (max relative drift {drift:.1e}); mean |x|^2 "
          f"{float(r2[0].mean()):.4f} -> {float(r2[-1].mean()):.4f} at t = {ts[-1]:.4g}")
    if float(neg.max()) > 0 and cfg.c_update == "euler" and cfg.c_equation == "consumption":
        print(f"  WARNING: the euler c-update drove c negative in up to {int(neg.max())} cells "
              f"(min c = {float(result.series('min_c')[1].min()):.3g}); --c-update exp keeps c >= 0")
    if cfg.ic == "annuli" and cfg.ic_file is None and grid.dim >= 2:
        rho = result.rho[:, -1].double()
        cpu = grid.to(device="cpu", dtype=torch.float64)
        inner, outer = (float(ring_fraction(rho, cpu, R).mean()) for R in (0.35, 0.7))
        print(f"  where the mass went at t = {result.times[-1]:.4g}: {inner:.1%} within 0.12 of the inner ring "
              f"(R = 0.35), {outer:.1%} within 0.12 of the outer ring (R = 0.7)")
    for hit in result.collapses or []:
        if hit is None:
            continue
        stopped = "run stopped there" if len(result.members) == 1 else "member frozen there"
        print(f"  COLLAPSE at t = {hit['t']:.4g}: member {hit['member']} concentrated at x = {hit['x']} beyond the "
              f"grid (cell Peclet number {hit['peclet']:.2f}; mass {hit['peak_mass']:.3g} of "
              f"{result.members[hit['member']]['M0']:g} in the peak cell); {stopped}, snapshots kept")
        if (hit.get("peclet_start") or 0.0) > PECLET_LIMIT:
            print(f"  note: the initial data were already beyond the grid (cell Peclet number {hit['peclet_start']:.2f} "
                  f"at t = 0, above {PECLET_LIMIT:g}), so the stop was its growth by {GROWTH_LIMIT:g}x; "
                  "a larger --N resolves the concentration")
    print(f"  outputs in {out}/")


def compare_with_fdm(result: Result, setup: Setup, opts: OutputOptions, out: Path) -> None:
    """Run the FD reference on the same problem (one member per parameter value); plot rho and c along x
    through the centre; print rel_l2."""
    from dataclasses import replace

    from nsipf_torch.io.files import save_npz
    cfg, grid = setup.cfg, setup.grid
    fd_cfg = replace(cfg, method="fdm", batch=1, seeds=None, compile=False, model=None, save_particles=0)
    fd_setup = check_config(fd_cfg, setup.ic)
    ref = run(fd_setup, make_runner(fd_setup), [ProgressBar("fdm reference", disable=not opts.progress)])
    rho_fd, c_fd = ref.rho[:, -1].double(), ref.c[:, -1].double()
    replicas = len(result.members) // len(ref.members)
    which = torch.arange(len(result.members)) // replicas
    coarse = 16 if grid.N % 16 == 0 else grid.N
    err_rho = rel_l2(result.rho[:, -1].double(), rho_fd[which], coarse, grid.dim)
    err_c = rel_l2(result.c[:, -1].double(), c_fd[which], coarse, grid.dim)
    save_npz(out / "fdm_reference.npz", t=cfg.T, x=grid.centres(), rho=rho_fd, c=c_fd,
             gamma=np.array([m["gamma"] for m in ref.members]), chi=np.array([m["chi"] for m in ref.members]))
    label = f"{run_title(result.config).split(',')[0]} (P = {cfg.P})"
    x = grid.centres().cpu().numpy()
    for name, ours, ref_field in (("rho", result.rho[:, -1], rho_fd), ("c", result.c[:, -1], c_fd)):
        plot_line_profiles(out / f"compare_{name}.png", x,
                           {"FD reference": centre_line(ref_field[0].numpy(), grid.dim),
                            label: centre_line(ours[which == 0].numpy(), grid.dim)},
                           name, f"{cfg.ic_file or cfg.ic}, N = {grid.N}, t = {cfg.T:g}")
    print(f"  rel_l2 against fdm on {coarse}^{grid.dim} coarse cells: rho {err_rho.mean():.3f} "
          f"(members {', '.join(f'{e:.3f}' for e in err_rho.tolist())}), c {err_c.mean():.3f}")


if __name__ == "__main__":
    sys.exit(main())
