"""Infer the chemo-sensitivity chi and the diffusion gamma of the Keller-Segel system from observed densities.

    rho_t = div(gamma grad rho - chi rho grad c),   c_t = -c rho,   no-flux walls     (paper eqs. 1-2)

The forward model is the finite-volume solver (--method fdm) on a model grid of --model-N cells per axis
(default 2N), started from the observed rho0 (refined conservatively) and c0 (cubic spline), observed by
block-averaging rho onto the data grid. Levenberg-Marquardt in (chi, log gamma), chi >= 0, with the
Jacobian from forward-mode autograd through every FD sub-step; standard errors and 95% intervals from the
Gauss-Newton curvature and the residuals (the sandwich form, valid when cells are unequally noisy).
docs/INFERENCE.md has the method and the validation.

The same fit runs on the Keller-Segel family (issue 20) with eps, D, alpha, beta, kappa known: simulate.py's
flags --c-equation parabolic|elliptic, --eps, --Dc, --alpha, --beta, --sensitivity log|receptor, --kappa.
By default the system is the data's own (a simulate.py run's config.json, an obs.npz's c_equation key); a
flag that contradicts it is refused. A trial point that collapses on the model grid is a failed step.

Identifiability: c_t = -c rho is linear in c, so scaling c0 by a has the same effect as scaling chi by a:
chi is identified only when c0 is known in absolute units. gamma is weakly identified (on two_blobs a 3% change of
gamma moves rho by 0.2-0.3%), so the discretisation error of a model at the data's own resolution is
absorbed into gamma first: compare the fits at N and 2N in the discretisation check.

Data (--data obs.npz; nsipf_torch/inference/observations.py): t (K,) > 0 increasing; rho (K, N, ..., N) observed
cell averages on the N^d cell-centred grid of [-L, L]^d; rho0 (N^d cell averages) and c0 (N^d centre
values) at t = 0; optional L (default 1), M0 (default: the mass of rho0) and c_equation (the system, a JSON
string of the c-equation flags).

Examples:
  python infer.py --synthetic two_blobs --dim 2 --N 64 --chi 1.3 --gamma 0.012 --noise 0.05 --seed 0 --write-data obs.npz
  python infer.py --data obs.npz --out runs/infer                 # fit chi and gamma from chi = 1, gamma = 0.01
  python infer.py --data obs.npz --fit chi --gamma 0.012 --out runs/infer_chi
  python simulate.py --method fdm --ic two_blobs --dim 2 --N 64 --dtype float64 --out runs/sim
  python infer.py --from-run runs/sim --write-data obs.npz        # simulate.py output -> obs.npz
  python simulate.py --method fdm --c-equation elliptic --ic pks_blob --dim 2 --N 32 --gamma 0.05 --T 0.2 --dtype float64 --out runs/pks
  python infer.py --from-run runs/pks --out runs/infer_pks        # fits chi, gamma of the elliptic system

Outputs in --out DIR: result.json (estimates, standard errors, 95% intervals, misfit, iterations, wall
time, the discretisation check, the config), fit.png (observed against fitted rho along the centre line at
each time, and the cost per iteration), fit.npz (observed and fitted rho), TensorBoard scalars in DIR/tb.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


from nsipf_torch.commands.cli import (add_dataclass_arguments, check_output_dir, check_output_file, config_from_args,
                                      make_parser, one_line_warnings, option, prog_name, usage_error)
from nsipf_torch.solvers.c_equation import C_UPDATES, OPTIONS as C_EQUATION_OPTIONS, CEquation
from nsipf_torch.inference.observations import resolve_c_equation
from nsipf_torch.io.files import ensure_writable_dir, save_json, save_npz
from nsipf_torch.methods import METHODS as REGISTRY
from nsipf_torch.solvers.stencils import LIMITERS

# the forward models a fit can differentiate through: the deterministic (FD) methods of the one table
METHODS = tuple(name for name, m in REGISTRY.items() if not m.particles)
PROG = prog_name("infer.py")  # nsipf-infer when started as the console script


SOURCE = "data (one of --data, --from-run, --synthetic)"

SYSTEM_HELP = ("the c-equation, known (simulate.py's flags): by default the data's own (a simulate.py run's "
               "config.json, an obs.npz's c_equation key), else simulate.py's defaults; a flag that contradicts "
               "the data's is refused")


@dataclass
class InferConfig:
    data: str | None = option(None, "obs.npz to fit (keys t, rho, rho0, c0; optional L, M0, c_equation)")
    from_run: str | None = option(None, "a simulate.py run directory: its snapshots become the data")
    member: int = option(0, "batch member of --from-run")
    synthetic: str | None = option(None, "make data from a problem (e.g. two_blobs) with --chi/--gamma as the truth: FD at "
                                   "--data-factor * N, block-averaged to N, times (1 + noise * e), e ~ N(0, 1) seeded")
    dim: int = option(2, "--synthetic: space dimension", choices=(2, 3))
    N: int = option(64, "--synthetic: data grid cells per axis")
    times: list[float] = option([0.05, 0.1, 0.15, 0.2], "--synthetic: observation times, comma separated")
    noise: float = option(0.05, "--synthetic: multiplicative noise level")
    seed: int = option(0, "--synthetic: noise seed")
    data_factor: int = option(2, "--synthetic: the data are simulated at this multiple of N")
    write_data: str | None = option(None, "write the data as obs.npz here and stop (no fit)")
    fit: str = option("chi,gamma", "parameters to fit: chi,gamma, chi or gamma")
    chi: float | None = option(None, "initial guess of chi, or its fixed value when not fitted; the truth with "
                               "--synthetic (default when not given: 1)")
    gamma: float | None = option(None, "initial guess of gamma, or its fixed value when not fitted; the truth with "
                                 "--synthetic (default when not given: 0.01)")
    model_N: int | None = option(None, "model grid cells per axis, a multiple of N (default when not given: 2N)")
    check: bool = option(True, "the discretisation check: the fits at model N and 2N side by side")
    method: str = option("fdm", "forward model", choices=METHODS)
    dt: float = option(0.01, "largest outer step; each is sub-stepped within the positivity bound")
    weights: str = option("relative", "least-squares weights: relative (1/max(m, floor * max m), m the mean of a cell's "
                          "observed neighbours: for multiplicative noise) or none")
    weight_floor: float = option(1e-3, "floor of the relative weights")
    limiter: str = option("minmod", "FD drift reconstruction", choices=LIMITERS)
    c_update: str = option("exp", "FD c step", choices=C_UPDATES)
    max_iter: int = option(40, "Levenberg-Marquardt iterations per fit")
    step_tol: float = option(0.5, "converged when the Gauss-Newton step is below this many standard errors")
    compile: bool = option(True, "torch.compile the FD sub-step and its tangents (10-25 s per model grid on a CPU, "
                           "repaid many times over by a fit; --no-compile runs eagerly)")
    device: str = option("cpu", "cpu, cuda or auto")
    dtype: str = option("float64", "float64 or float32")
    out: str = option("runs/infer", "output directory, created")
    progress: bool = option(True, "show progress bars")
    # the c-equation flags given on the command line (simulate.py's, parsed by its definitions)
    system: dict = field(default_factory=dict, init=False, metadata={"help": SYSTEM_HELP})


def parse_args(argv: list[str]) -> InferConfig:
    from nsipf_torch.api import SimConfig

    parser = make_parser(PROG, __doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2])
    add_dataclass_arguments(parser, InferConfig)
    others = [f.name for f in fields(SimConfig) if f.name not in C_EQUATION_OPTIONS]
    add_dataclass_arguments(parser.add_argument_group("c-equation", SYSTEM_HELP), SimConfig, exclude=others,
                            suppress_defaults=True)
    ns = parser.parse_args(argv)
    cfg = config_from_args(InferConfig, ns)
    cfg.system = {name: getattr(ns, name) for name in C_EQUATION_OPTIONS if hasattr(ns, name)}
    return cfg


def load_data(cfg: InferConfig):
    """The observations named by the config (exactly one source); ValueError on any problem."""
    from nsipf_torch.inference.fit import synthetic_observations
    from nsipf_torch.inference.observations import load_observations, observations_from_run

    sources = [s for s in (cfg.data, cfg.from_run, cfg.synthetic) if s is not None]
    if len(sources) != 1:
        raise ValueError("give exactly one of --data, --from-run, --synthetic")
    if cfg.data is not None:
        return load_observations(cfg.data)
    if cfg.from_run is not None:
        return observations_from_run(cfg.from_run, cfg.member)
    if cfg.chi is None or cfg.gamma is None:
        raise ValueError("--synthetic needs the true --chi and --gamma")
    if cfg.dim not in (2, 3):
        raise ValueError(f"--dim must be 2 or 3, got {cfg.dim}")
    if cfg.N < 4:
        raise ValueError(f"--N must be >= 4, got {cfg.N}")
    if not (math.isfinite(cfg.chi) and cfg.chi >= 0 and math.isfinite(cfg.gamma) and cfg.gamma > 0):
        raise ValueError(f"--synthetic needs chi >= 0 and gamma > 0, got chi = {cfg.chi}, gamma = {cfg.gamma}")
    return synthetic_observations(cfg.synthetic, cfg.dim, cfg.N, cfg.chi, cfg.gamma, tuple(cfg.times), cfg.noise,
                                  cfg.seed, cfg.data_factor, dt=cfg.dt, limiter=cfg.limiter, c_update=cfg.c_update,
                                  compile=cfg.compile,
                                  ceq=CEquation.from_options(**cfg.system) if cfg.system else None)


def validate(cfg: InferConfig) -> None:
    """Every flag's value, checked before any data are made or anything is written."""
    if cfg.method not in METHODS:
        raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {cfg.method!r}")
    if cfg.limiter not in LIMITERS:
        raise ValueError(f"--limiter must be one of {', '.join(LIMITERS)}, got {cfg.limiter!r}")
    if cfg.c_update not in C_UPDATES:
        raise ValueError(f"--c-update must be one of {', '.join(C_UPDATES)}, got {cfg.c_update!r}")
    if not (math.isfinite(cfg.dt) and cfg.dt > 0):
        raise ValueError(f"--dt must be a finite number > 0, got {cfg.dt}")
    CEquation.from_options(**cfg.system)  # simulate.py's refusals (eps, Dc, alpha, beta, kappa, a mean-free c)
    from nsipf_torch.inference.fit import check_fit_options, parse_fit

    if cfg.synthetic is None:  # with --synthetic, --chi and --gamma are the truth (checked by load_data)
        parse_fit(cfg.fit)
        check_fit_options(1.0 if cfg.chi is None else cfg.chi, 0.01 if cfg.gamma is None else cfg.gamma,
                          cfg.max_iter, cfg.step_tol, flags=True)
    else:
        check_fit_options(1.0, 0.01, cfg.max_iter, cfg.step_tol, flags=True)


def plot_fit(path: Path, result, model) -> None:
    """Observed (dots) and fitted (lines) rho along the centre line at every time, and the cost per iteration."""
    import matplotlib.pyplot as plt

    from nsipf_torch.io.files import atomic_write
    from nsipf_torch.io.plotting import centre_line

    obs, fit = result.observations, result.main
    x = model.data_grid.centres().cpu().numpy()
    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    fitted = fit.prediction.cpu().numpy()
    for k, t in enumerate(obs.t):
        ax.plot(x, centre_line(obs.rho[k], obs.dim), "o", ms=2.5, color=f"C{k}", alpha=0.6)
        ax.plot(x, centre_line(fitted[k], obs.dim), "-", color=f"C{k}", lw=1.3, label=f"t = {t:g}")
    ax.set_xlabel("x (centre line)")
    ax.set_ylabel("ρ")
    est = ", ".join(f"{k} = {v:.4g}" for k, v in fit.params.items())
    ax.set_title(f"observed (dots) and fitted (lines): {est}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    for n, f in sorted(result.check.items()):
        ax_loss.semilogy([h["iteration"] for h in f.history], [h["cost"] for h in f.history], "o-", ms=3,
                         label=f"model N = {n}")
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("cost |r|² / 2")
    ax_loss.legend(fontsize=8)
    ax_loss.grid(alpha=0.3)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def summary(result) -> str:
    d = result.to_dict()
    lines = [f"estimates at model N = {result.main.model_N} ({'converged' if result.main.converged else 'NOT converged'}, "
             f"{result.main.iterations} iterations, {result.main.wall_time_s:.1f} s):"]
    for k in result.main.fit:
        lo, hi = d["ci95"][k]
        truth = f"   truth {d['truth'][k]:.6g}" if k in d.get("truth", {}) else ""
        lines.append(f"  {k:5s} = {d['estimates'][k]:.6g} ± {d['standard_errors'][k]:.2g}   95% [{lo:.6g}, {hi:.6g}]{truth}")
    lines.append(f"  relative misfit {result.main.relative_misfit:.4g}")
    if len(result.check) > 1:
        lines.append("discretisation check (model N: " + ", ".join(result.main.fit) + "):")
        for n, f in sorted(result.check.items()):
            lines.append(f"  N = {n:4d}: " + ", ".join(f"{k} = {f.params[k]:.6g}" for k in result.main.fit))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    with one_line_warnings(PROG):
        try:
            cfg = parse_args(argv)
            validate(cfg)
            if cfg.write_data is not None:
                check_output_file(cfg.write_data, "--write-data")
                obs = load_data(cfg)
            else:
                check_output_dir(cfg.out, "--out")
                obs = load_data(cfg)
            ceq = resolve_c_equation(obs, cfg.system)
        except ValueError as err:
            return usage_error(PROG, err)
        if cfg.write_data is not None:
            from nsipf_torch.inference.observations import save_observations
            target = Path(cfg.write_data)
            target.parent.mkdir(parents=True, exist_ok=True)
            save_observations(target, obs)
            print(f"wrote {target} (K = {obs.K}, N = {obs.N}, d = {obs.dim})")
            return 0
        return run(cfg, obs, ceq)


def run(cfg: InferConfig, obs, ceq: CEquation) -> int:
    from nsipf_torch.inference.fit import infer, ForwardModel
    from nsipf_torch.inference.forward import RejectedTrial

    try:
        start = {"chi": 1.0 if cfg.chi is None else cfg.chi, "gamma": 0.01 if cfg.gamma is None else cfg.gamma}
        # build one model first: every remaining option (model N, weights, device, dtype) is checked here
        probe = ForwardModel(obs, cfg.model_N, cfg.dt, cfg.weights, cfg.weight_floor, cfg.limiter, cfg.c_update,
                             cfg.device, _dtype(cfg.dtype), ceq=ceq)
        out = ensure_writable_dir(cfg.out)
    except ValueError as err:
        return usage_error(PROG, err)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(out / "tb"))

    def log(model_N, iteration, record):
        for key in ("cost", "chi", "gamma"):
            writer.add_scalar(f"model_N_{model_N}/{key}", record[key], iteration)

    t0, cpu0 = time.perf_counter(), time.process_time()
    try:
        result = infer(obs, fit=cfg.fit, chi=start["chi"], gamma=start["gamma"], model_N=cfg.model_N, check=cfg.check,
                       dt=cfg.dt, weights=cfg.weights, weight_floor=cfg.weight_floor, limiter=cfg.limiter,
                       c_update=cfg.c_update, device=cfg.device, dtype=cfg.dtype, max_iter=cfg.max_iter,
                       step_tol=cfg.step_tol, compile=cfg.compile, progress=cfg.progress, callback=log,
                       c_equation=ceq)
    except RejectedTrial as err:  # the start itself cannot be run: a failed fit, reported in one line
        writer.close()
        print(f"{PROG}: error: the fit cannot start from chi = {start['chi']}, gamma = {start['gamma']}: {err}",
              file=sys.stderr)
        return 1
    writer.close()
    record = result.to_dict()
    record["wall_time_total_s"] = time.perf_counter() - t0
    record["cpu_time_total_s"] = time.process_time() - cpu0  # the honest measure on a shared machine
    record["config"] = asdict(cfg)
    save_json(out / "result.json", record)
    save_npz(out / "fit.npz", t=obs.t, observed=obs.rho, fitted=result.main.prediction, x=probe.data_grid.centres())
    plot_fit(out / "fit.png", result, probe)
    print(summary(result))
    print(f"wrote {out / 'result.json'}, {out / 'fit.png'} ({record['wall_time_total_s']:.1f} s in all, "
          f"{record['cpu_time_total_s']:.1f} s of CPU)")
    return 0


def _dtype(name: str):
    from nsipf_torch.problems.grid import resolve_dtype
    return resolve_dtype(name)


if __name__ == "__main__":
    sys.exit(main())
