"""The Python API: ``simulate(problem, method, ...) -> Result``, the run's config and its checks; the one
time loop itself is :mod:`nsipf_torch.run.loop` (``run_loop``, ``run``, ``Result``, re-exported here).

    import nsipf_torch as nt
    r = nt.simulate("two_blobs", method="nsipf", N=32, P=20_000, T=0.2)     # prints and writes nothing
    r.rho.shape            # (B, K + 1, N, N, N): members, snapshots, cells
    r.save("runs/tb")      # the files simulate.py writes (config.json, snap_*.npz, figures, ...)

Methods: ``fdm`` (the finite-volume reference, docs/MODEL.md §1), ``sipf`` (paper eqs. 32-34 with a classical
interpolator, ``interp="spline"`` or ``"trilinear"``), ``nsipf`` (SIPF with the CNN interpolator, the
paper's NSIPF), or a name of the one method table :mod:`nsipf_torch.methods` (``"sipf-spline"``). A problem is a registered name (:func:`nsipf_torch.problems.initial.known_ics`), an
:class:`~nsipf_torch.problems.initial.InitialCondition` (e.g. a ``GriddedIC``), or a pair of callables
``(rho0, c0)`` evaluated at the cell centres (``x`` of shape (*cells, d)).

The c-equation is a choice (issue 20): ``c_equation="consumption"`` (the paper's c_t = -c rho, the
default; ``Dc`` > 0 lets the nutrient diffuse), ``"parabolic"`` (eps c_t = D Delta c - alpha c + beta rho) or
``"elliptic"`` (eps = 0), with the drift chi grad Phi(c) of ``sensitivity`` linear, log or receptor
(:class:`~nsipf_torch.solvers.c_equation.CEquation`); a collapse ends such a run early as a result
(``Result.collapse``).

``gamma``, ``chi`` or ``M0`` given as a sequence make one member per value (a sweep); ``seeds`` makes replicas:
an int is the base seed (member k gets seed + k, ``batch`` replicas per value), a sequence gives each
value's replicas their seeds (common random numbers across the sweep). Every bad value is a
``ValueError`` naming it, raised here at entry and never inside the time loop; so are runs that would not
fit in memory or would take more than ``MAX_STEPS`` steps.
"""
from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Sequence

import numpy as np
import torch

from nsipf_torch.config import check_field_types
from nsipf_torch.run.callbacks import Callback
from nsipf_torch.run.loop import Result, run, run_loop  # noqa: F401 - the API's names
from nsipf_torch.particles.deposit import DEPOSITS
from nsipf_torch.particles.distributed import World
from nsipf_torch.solvers.c_equation import C_EQUATIONS, C_UPDATES, SENSITIVITIES, CEquation
from nsipf_torch.solvers.c_equation import OPTIONS as C_EQUATION_OPTIONS  # the flags SimConfig's fields mirror
from nsipf_torch.problems.grid import Grid, resolve_device, resolve_dtype
from nsipf_torch.problems.initial import FunctionIC, InitialCondition, get_ic, known_ics
from nsipf_torch.methods import INTERPS
from nsipf_torch.methods import FAMILIES, from_config, get_method
from nsipf_torch.run.memory import check_memory
from nsipf_torch.neural.model import load_model
from nsipf_torch.neural.interp import PRECISIONS
from nsipf_torch.problems.params import Params, check_magnitude, check_sequence
from nsipf_torch.io.resources import default_checkpoint
from nsipf_torch.solvers.stencils import LIMITERS
from nsipf_torch.neural.validity import decide

METHODS = FAMILIES  # fdm, sipf, nsipf: with --interp, a method of nsipf_torch.methods
MAX_STEPS = 10_000_000        # outer steps: beyond this a dt is a mistake, not a request to wait for years
MAX_FD_SUBSTEPS = 10_000      # FD sub-steps per outer step, likewise
STATE_KEYS = {"runner", "snapshots", "step", "substeps", "log"}  # what run() reads from a state.pt


@dataclass
class SimConfig:
    """One run's configuration: what ``simulate`` takes, what simulate.py's flags set, and what
    config.json and state.pt store."""

    method: str = field(default="nsipf", metadata={"help": "solver: fdm (finite volumes), sipf (classical "
                                                   "interpolator), nsipf (the CNN interpolator)", "choices": METHODS})
    ic: str = field(default="annuli", metadata={"help": "initial condition: a registered problem, e.g. "
                                                "blob, two_blobs, annuli"})
    ic_file: str | None = field(default=None, metadata={"help": "an .npz with gridded rho0 and c0 (N^d arrays); "
                                                        "overrides --ic, sets --N and --dim"})
    dim: int = field(default=3, metadata={"help": "space dimension d (2 or 3; 1 for fdm)"})
    N: int = field(default=32, metadata={"help": "grid cells per axis (h = 2L/N)"})
    L: float = field(default=1.0, metadata={"help": "half width of the box [-L, L]^d"})
    T: float | None = field(default=None, metadata={"help": "final time (default: the problem's own, 0.2 for the "
                                                    "paper's problems and the held-out ones, 0.6 for pks_blob)"})
    dt: float = field(default=1e-3, metadata={"help": "time step; fdm sub-steps it automatically to stay "
                                              "positive (docs/MODEL.md §6)"})
    gamma: float = field(default=0.01, metadata={"help": "diffusion coefficient γ >= 0"})
    chi: float = field(default=1.0, metadata={"help": "chemo-sensitivity χ >= 0"})
    M0: float = field(default=1.0, metadata={"help": "total mass of ρ"})
    P: int = field(default=20_000, metadata={"help": "particles per member (sipf, nsipf), each of mass M0/P"})
    interp: str = field(default="spline", metadata={"help": "sipf interpolator of c (neural: the same as --method nsipf)",
                                                    "choices": tuple(INTERPS)})
    deposit: str = field(default="ngp", metadata={"help": "particle deposit: nearest grid point or cloud-in-cell",
                                                  "choices": DEPOSITS})
    c_update: str = field(default="exp", metadata={"help": "c step: exp (exact for frozen ρ, c >= 0) or euler "
                                                   "(paper eq. 33; may go negative, reported)", "choices": C_UPDATES})
    limiter: str = field(default="minmod", metadata={"help": "fdm drift reconstruction", "choices": LIMITERS})
    model: str | None = field(default=None, metadata={"help": "nsipf checkpoint (default: the shipped one for --dim)"})
    cnn_precision: str = field(default="fp32", metadata={
        "help": "nsipf CNN convolutions (tf32 needs CUDA; bf16 runs the residual in bfloat16; BENCHMARKS.md gives "
                "the speed and accuracy of each)", "choices": PRECISIONS})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    dtype: str = field(default="float32", metadata={"help": "float32 or float64", "choices": ("float32", "float64")})
    snapshots: int = field(default=4, metadata={"help": "snapshot intervals: snap_0000 (t = 0) ... snap_K (t = T)"})
    diag_every: int = field(default=10, metadata={"help": "steps between diagnostics (mass, min/max, NaN/Inf check)"})
    seed: int = field(default=0, metadata={"help": "base seed; member k uses seed + k"})
    sweep: str | None = field(default=None, metadata={"help": "one member per value, e.g. chi=0.5,1,2, gamma=0.005,0.01 or M0=0.1,0.5"})
    batch: int = field(default=1, metadata={"help": "seeds per sweep value (particle methods)"})
    seeds: tuple[int, ...] | None = field(default=None, metadata={
        "help": "the replicas' seeds, reused for every sweep value (overrides seed and batch)", "cli": False})
    save_particles: int = field(default=0, metadata={"help": "store M particle positions per member in each snapshot"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the step (the particle step's deposit and "
                                                   "gather in separate regions; the FD sub-step fused); compile time is extra"})
    strict: bool = field(default=False, metadata={"help": "refuse an nsipf run outside the CNN's declared validity "
                                                  "domain (nsipf_torch/neural/validity.py) instead of falling "
                                                  "back or warning; wins over --no-fallback"})
    fallback: bool = field(default=True, metadata={"help": "an nsipf run outside the CNN's validity domain on a "
                                                   "numeric axis runs sipf with the cubic spline; --no-fallback "
                                                   "keeps the CNN (a warning per axis)"})
    # The Keller-Segel family (issue 20): eps c_t = D Delta c - alpha c + beta rho, drift chi grad Phi(c).
    c_equation: str = field(default="consumption", metadata={
        "help": "c-equation: consumption (c_t = D Δc - cρ, the paper's at D = 0), parabolic (ε c_t = D Δc - αc + βρ) "
                "or elliptic (ε = 0, Patlak-Keller-Segel; mean-free c when α = 0)", "choices": C_EQUATIONS})
    eps: float = field(default=1.0, metadata={"help": "ε > 0 of the parabolic c-equation"})
    Dc: float | None = field(default=None, metadata={"help": "diffusion D of c (default: 0 for consumption, 1 for "
                                                     "parabolic and elliptic, which need D > 0)"})
    alpha: float = field(default=0.0, metadata={"help": "decay α >= 0 of c (parabolic, elliptic)"})
    beta: float = field(default=1.0, metadata={"help": "production β > 0 of c by ρ (parabolic, elliptic)"})
    sensitivity: str = field(default="linear", metadata={
        "help": "Φ in the drift χ∇Φ(c): linear Φ = c, log Φ = log(c + κ), receptor Φ = c/(1 + c/κ)",
        "choices": SENSITIVITIES})
    kappa: float = field(default=1.0, metadata={"help": "κ > 0 of the log and receptor sensitivities"})

    def c_equation_spec(self) -> CEquation:
        """The run's :class:`~nsipf_torch.solvers.c_equation.CEquation` (a ``ValueError`` names a bad value)."""
        return CEquation.from_options(**{name: getattr(self, name) for name in C_EQUATION_OPTIONS})

    @property
    def interpolator(self) -> str | None:
        """The particle methods' interpolator: NSIPF is SIPF with the "neural" one."""
        return None if self.method == "fdm" else "neural" if self.method == "nsipf" else self.interp

    def members(self) -> list[dict]:
        """One dict (gamma, chi, M0, seed) per batch member, from the sweep and the batch."""
        name, values = parse_sweep(self.sweep, self.chi)
        out = []
        for v in values:
            for j in range(self.batch if self.seeds is None else len(self.seeds)):
                seed = self.seed + len(out) if self.seeds is None else self.seeds[j]
                member = {"gamma": self.gamma, "chi": self.chi, "M0": self.M0, "seed": seed}
                member[name] = v
                out.append(member)
        return out


def parse_sweep(sweep: str | None, chi: float) -> tuple[str, list[float]]:
    """``chi=0.5,1,2`` -> ("chi", [0.5, 1.0, 2.0]); None -> ("chi", [chi]); ``M0=...`` values must be > 0."""
    if sweep is None:
        return "chi", [chi]
    name, sep, values = sweep.partition("=")
    if not sep or name not in ("chi", "gamma", "M0") or not values:
        raise ValueError(f"--sweep {sweep!r} must look like chi=0.5,1,2, gamma=0.005,0.01 or M0=0.1,0.5")
    try:
        vals = [float(v) for v in values.split(",")]
    except ValueError:
        raise ValueError(f"--sweep {sweep!r} holds a value that is not a number") from None
    for v in vals:
        if not math.isfinite(v) or v < 0 or (name == "M0" and v == 0):
            raise ValueError(f"--sweep {name} value {v} must be finite and {'>' if name == 'M0' else '>='} 0")
    return name, vals


@dataclass
class Setup:
    """A checked run: its config, parameters, grid, problem, members and step schedule."""

    cfg: SimConfig
    params: Params
    grid: Grid
    ic: InitialCondition
    members: list[dict]
    n_steps: int
    validity: list[str] = field(default_factory=list)
    ceq: CEquation = field(default_factory=CEquation)

    def time_at(self, k: int) -> float:
        """The time after k steps; the last step is shortened to land on T exactly."""
        return self.params.T if k == self.n_steps else k * self.cfg.dt

    def step_at(self, t: float) -> int:
        """The step after which the run's time is ``t`` (a multiple of dt up to round-off, or T); a
        ``ValueError`` naming t when no step lands there."""
        k = step_count(t, self.cfg.dt) if t >= 0 else -1
        if not 0 <= k <= self.n_steps or abs(self.time_at(k) - t) > 1e-9 * max(1.0, abs(t)):
            raise ValueError(f"no step of the run lands on t = {t:g} (dt = {self.cfg.dt:g}, T = {self.params.T:g})")
        return k


def step_count(T: float, dt: float) -> int:
    """Steps of size dt to reach T (the last one shortened); refuses more than MAX_STEPS."""
    n = T / dt
    if not math.isfinite(n) or n > MAX_STEPS:
        raise ValueError(f"--dt {dt:g} would take {n:.3g} steps to reach --T {T:g} (the limit is {MAX_STEPS:,}); "
                         "use a larger --dt")
    return math.ceil(n - 1e-9) if T > 0 else 0


def check_config(cfg: SimConfig, ic: InitialCondition | None = None, world: World = World()) -> Setup:
    """Check every value of ``cfg`` once, before anything is allocated or written; under torchrun
    (``world``) the memory check is this rank's: its share of the particles beside the whole grid."""
    for flag, value, choices in (("method", cfg.method, METHODS), ("c-update", cfg.c_update, C_UPDATES),
                                 ("limiter", cfg.limiter, LIMITERS), ("interp", cfg.interp, tuple(INTERPS)),
                                 ("deposit", cfg.deposit, DEPOSITS), ("cnn-precision", cfg.cnn_precision, PRECISIONS)):
        if value not in choices:
            raise ValueError(f"unknown --{flag} {value!r}; choose one of {', '.join(choices)}")
    if not (isinstance(cfg.dt, (int, float)) and math.isfinite(cfg.dt) and cfg.dt > 0):
        raise ValueError(f"--dt must be a finite number > 0, got {cfg.dt}")
    for flag, value, low in (("snapshots", cfg.snapshots, 1), ("diag-every", cfg.diag_every, 1), ("batch", cfg.batch, 1),
                             ("P", cfg.P, 1), ("save-particles", cfg.save_particles, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"--{flag} must be an integer >= {low}, got {value!r}")
    if cfg.method == "fdm" and (cfg.batch > 1 or (cfg.seeds is not None and len(cfg.seeds) > 1)):
        raise ValueError("--batch > 1 needs a particle method: fdm is deterministic, its seeds would be copies")
    if cfg.method != "fdm" and cfg.dim not in (2, 3):
        raise ValueError(f"--dim {cfg.dim}: the particle methods run in 2 or 3 dimensions")
    ceq = cfg.c_equation_spec()
    if cfg.interpolator == "neural" and not (ceq.equation == "consumption" and ceq.sensitivity == "linear"):
        raise ValueError(f"nsipf's CNNs were trained on consumption fields with Φ = c, not --c-equation "
                         f"{ceq.equation} --sensitivity {ceq.sensitivity}; use --method sipf")
    if ic is None:
        ic = get_ic(cfg.ic)
    if cfg.T is None:  # what runs is what config.json records
        cfg = replace(cfg, T=getattr(ic, "final_time", InitialCondition.final_time))
    if math.isfinite(cfg.T) and 0 < cfg.T < cfg.dt:
        raise ValueError(f"--dt {cfg.dt} is longer than the whole run --T {cfg.T}")
    members = cfg.members()
    params = Params(gamma=torch.tensor([m["gamma"] for m in members], dtype=torch.float64),
                    chi=torch.tensor([m["chi"] for m in members], dtype=torch.float64),
                    M0=_member_masses(cfg, members), T=cfg.T)
    grid = Grid(cfg.N, cfg.dim, cfg.L, resolve_device(cfg.device), resolve_dtype(cfg.dtype))
    if cfg.cnn_precision == "tf32" and grid.device.type != "cuda":
        raise ValueError(f"--cnn-precision tf32 needs a CUDA device, the run is on {grid.device.type}")
    if hasattr(ic, "check_grid"):
        ic.check_grid(grid)
    n_steps = step_count(params.T, cfg.dt)
    check_run_request(cfg, members, grid, n_steps)
    validity, fallback = validity_messages(cfg, ic, ceq)
    if fallback:  # what runs is what the Setup (and so config.json and the Result) records
        cfg = replace(cfg, method="sipf", interp="spline", model=None)
    check_memory(from_config(cfg.method, cfg.interp).name, N=cfg.N, dim=cfg.dim, P=-(-cfg.P // world.size), B=len(members),
                 dtype=grid.dtype, device=grid.device)
    return Setup(cfg, params, grid, ic, members, n_steps, validity, ceq)


def check_run_request(cfg: SimConfig, members: list[dict], grid: Grid, n_steps: int) -> None:
    """The values that are fine alone but not together, or not in the run's precision."""
    most = max(n_steps, SimConfig.snapshots)  # the default stays valid for runs of a few steps (frames repeat)
    if cfg.snapshots > most:
        raise ValueError(f"--snapshots {cfg.snapshots} asks for more snapshot intervals than the run has steps "
                         f"({n_steps}); use at most {most}")
    if cfg.save_particles and (cfg.method == "fdm" or cfg.save_particles > cfg.P):
        raise ValueError(f"--save-particles {cfg.save_particles} needs a particle method with at least as many "
                         f"particles (--method {cfg.method}, --P {cfg.P})")
    if cfg.model is not None and cfg.interpolator != "neural":
        uses = "no interpolator" if cfg.method == "fdm" else f"the {cfg.interp} interpolator"
        raise ValueError(f"--model {cfg.model!r} is an nsipf checkpoint; --method {cfg.method} ({uses}) would not use it")
    for seed in (cfg.seed, *(cfg.seeds or ())):
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"--seed must be an integer >= 0, got {seed!r}")
    for m in members:
        check_magnitude("--chi", m["chi"], grid.dtype)
        check_magnitude("--gamma", m["gamma"], grid.dtype, scale=1 / grid.h**2)
        check_magnitude("--M0", m["M0"], grid.dtype, scale=1 / grid.cell_volume)


def _member_masses(cfg: SimConfig, members: list[dict]):
    """M0 of every member as a (B,) tensor under --sweep M0=..., else the one float (the paper's path, bit for bit)."""
    if cfg.sweep is not None and cfg.sweep.startswith("M0="):
        return torch.tensor([m["M0"] for m in members], dtype=torch.float64)
    return cfg.M0


def validity_messages(cfg: SimConfig, ic: InitialCondition, ceq: CEquation) -> tuple[list[str], tuple[str, ...]]:
    """Where an NSIPF run leaves its checkpoint's declared validity domain: (warning lines, the numeric axes
    that send it to the spline), by :func:`nsipf_torch.neural.validity.decide` (which raises for --strict);
    loading the checkpoint here also refuses a bad one early."""
    if cfg.interpolator != "neural":
        return [], ()
    _, meta = load_model(cfg.model or default_checkpoint(cfg.dim), dim=cfg.dim)
    verdict = decide(meta, strict=cfg.strict, fallback=cfg.fallback, N=cfg.N, P=cfg.P, dim=cfg.dim, L=cfg.L,
                     c0_width=getattr(ic, "c0_width", None), held_out=getattr(ic, "held_out", False),
                     ic_name=cfg.ic_file or cfg.ic, Dc=ceq.D)
    return list(verdict.messages), verdict.fallback_axes


def make_runner(setup: Setup, world: World = World(), **options):
    """The solver object of the run's method (:mod:`nsipf_torch.methods`), with the options of the run's
    config that the method takes (``options`` override them, e.g. a ``compile`` mode or a
    ``shared_interp``); an FD runner is checked for its sub-step count."""
    cfg, grid = setup.cfg, setup.grid
    method = from_config(cfg.method, cfg.interp)
    if world.size > 1:
        if not method.particles:
            raise ValueError("fdm is not sharded: run it without torchrun (one process)")
        world.shard(cfg.P)  # P must split evenly: refuse up front, on every rank
    taken = {name: getattr(cfg, name) for name in method.options if hasattr(cfg, name)}
    runner = method.runner(grid, setup.ic, setup.params, seeds=[m["seed"] for m in setup.members], P=cfg.P,
                           world=world, **{**taken, "ceq": setup.ceq, **options})
    if not method.particles:
        n_sub = runner.substep_count(cfg.dt)
        if n_sub > MAX_FD_SUBSTEPS:
            raise ValueError(f"--dt {cfg.dt} would need {n_sub} positive FD sub-steps per step at N = {grid.N} "
                             f"(more than {MAX_FD_SUBSTEPS}); use a smaller --dt")
    return runner


def simulate(problem: str | InitialCondition | tuple[Callable, Callable] = "annuli", method: str = "nsipf", *,
             callbacks: Sequence[Callback] = (), seeds: int | Sequence[int] | None = None,
             resume: dict | None = None, world: World | None = None, **options: Any) -> Result:
    """Run one simulation and return its :class:`Result`; prints nothing and writes nothing unless a
    callback does.

    ``method`` is fdm, sipf or nsipf, or a name of :mod:`nsipf_torch.methods` (``"sipf-spline"`` is
    ``method="sipf", interp="spline"``). ``options`` are the fields of :class:`SimConfig` (N, P, T, dt,
    gamma, chi, M0, L, dim, device, dtype, snapshots, diag_every, interp, deposit, c_update, limiter, model,
    cnn_precision, compile, save_particles, batch, seed; the c-equation: c_equation, eps, Dc, alpha, beta,
    sensitivity, kappa); ``gamma``, ``chi`` or ``M0`` may be a sequence (one member per value). ``callbacks`` run after every step (:mod:`nsipf_torch.run.callbacks`); a ``Snapshots`` among
    them replaces the default schedule (``snapshots`` equal intervals). ``resume`` is the content of a
    state.pt written by the ``Checkpoint`` callback. Warnings (e.g. c driven negative by
    ``c_update="euler"``) go through ``warnings.warn``. A NaN/Inf mid-run returns the result so far with
    ``complete=False``; so does a collapse of a Keller-Segel run, with ``collapse`` saying when and where (in a
    batch the collapsed members are frozen, ``collapses`` per member, while the others run on).
    NSIPF outside its CNN's validity domain on a numeric axis runs SIPF with the cubic spline, with one
    warning and the config of what ran in the Result (``fallback=False`` keeps the CNN, ``strict=True``
    refuses; :mod:`nsipf_torch.neural.validity`).
    """
    bad = [cb for cb in callbacks if not isinstance(cb, Callback)]
    if bad:
        raise ValueError(f"callbacks must be Callback instances (nsipf_torch.run.callbacks), got {bad[0]!r}")
    if resume is not None and not (isinstance(resume, dict) and STATE_KEYS <= resume.keys()):
        raise ValueError(f"resume must be the content of a state.pt (keys {', '.join(sorted(STATE_KEYS))}), "
                         f"got {type(resume).__name__} {sorted(resume) if isinstance(resume, dict) else ''}")
    setup = prepare(problem, method, seeds=seeds, **options)
    for message in setup.validity:
        warnings.warn(f"outside the CNN's validity domain: {message}", stacklevel=2)
    return run(setup, make_runner(setup, world or World()), callbacks, resume)


def prepare(problem: str | InitialCondition | tuple[Callable, Callable] = "annuli", method: str = "nsipf", *,
            seeds: int | Sequence[int] | None = None, **options: Any) -> Setup:
    """:func:`simulate`'s arguments checked into a :class:`Setup`, nothing run: for a driver that times or
    watches the loop itself (``run(setup, make_runner(setup), callbacks)``); validity messages are in
    ``setup.validity``, unwarned."""
    if method not in FAMILIES:
        chosen = get_method(method)
        if chosen.particles and options.setdefault("interp", chosen.interp) != chosen.interp:
            raise ValueError(f"method {method!r} uses interp {chosen.interp!r}, not {options['interp']!r}")
        method = chosen.family
    cfg, ic = _config(problem, method, seeds, options)
    return check_config(cfg, ic)


def _config(problem, method, seeds, options) -> tuple[SimConfig, InitialCondition]:
    names = {f.name for f in fields(SimConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    options = dict(options)
    options["sweep"] = _sweep_option(options)
    if isinstance(seeds, int):
        options["seed"] = seeds
    elif seeds is not None:
        seeds = [int(s) for s in seeds]
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct integers, got {seeds}")
        options["seeds"] = tuple(seeds)
    check_field_types(SimConfig, {"method": method, **options}, exclude=("seeds",))
    cfg = SimConfig(method=method, **options)
    if isinstance(problem, str):
        cfg.ic, ic = problem, get_ic(problem)
    elif isinstance(problem, InitialCondition):
        cfg.ic, ic = getattr(problem, "name", type(problem).__name__), problem
        if getattr(problem, "N", None) is not None:
            cfg.N, cfg.dim = problem.N, problem.dim
    elif isinstance(problem, tuple) and len(problem) == 2 and all(callable(f) for f in problem):
        ic = FunctionIC("function", *problem)
        cfg.ic = ic.name
    else:
        raise ValueError(f"problem must be a name ({', '.join(known_ics())}), an InitialCondition or a pair "
                         f"of callables (rho0, c0), got {type(problem).__name__}")
    return cfg, ic


def _sweep_option(options: dict) -> str | None:
    """gamma, chi or M0 given as a sequence become a sweep (one member per value)."""
    for k in ("gamma", "chi", "M0"):
        if getattr(options.get(k), "ndim", None) == 0:  # a 0-d array or tensor is one number
            options[k] = options[k].item()
    swept = [k for k in ("gamma", "chi", "M0") if isinstance(options.get(k), (list, tuple, torch.Tensor, np.ndarray))
             and getattr(options[k], "ndim", 1) > 0]
    if len(swept) > 1:
        raise ValueError(f"sweep one of gamma, chi and M0 at a time, not {' and '.join(swept)}")
    if not swept:
        return options.pop("sweep", None)
    name = swept[0]
    values = check_sequence(name, options[name])
    options[name] = values[0]
    return f"{name}={','.join(repr(v) for v in values)}"


