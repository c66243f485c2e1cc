"""Runtime tables like the paper's (docs/MODEL.md §4), measured on this machine, with the paper's figures beside.

    python benchmark.py                         # quick suite: N in {32, 64} (<= 10 min on a 2-core CPU)
    python benchmark.py --suite paper           # adds N = 128 (<= 60 min on a 2-core CPU)
    python benchmark.py --suite gpu --device cuda   # GPU sizes, the GPU target rows (P up to 1e8 at 256^3)
    python benchmark.py --tables histogram --Ps 1e6 # deposit histogram forms, spread and hot, side by side
    python benchmark.py --suite convergence     # the paper's Fig. 8: error against P and dt, with slopes (30 s)
    python benchmark.py --suite work-precision  # rho error against wall time per method (two_blobs, planar; CPU sizes)
    python benchmark.py --Ns 128 --methods FDM,NSIPF --Ps 20000 --repeats 1   # one comparison at 128^3

Table 1: two_blobs in 3D, T = 0.2, dt = 1e-3, every method with its documented defaults (FDM: MUSCL-minmod,
automatic positive sub-steps; particles: NGP deposit, exact c-update). The paper's resolutions are unknown;
we assume res 1, 2, 3 = 32^3, 64^3, 128^3. Table 2: time per step against P at N = 64 (runs of
--steps2 steps), plus a "hot" case with all particles packed into 2^3 cells. Baseline: classical SIPF as
the paper ran it (scipy interpn, cubic, on the CPU), timed per step, beside our spline step at the same size.
Targets (suites gpu, tiny): the rows of the GPU targets (BENCHMARKS.md), with the peak device memory
of each and, last, ``train.py`` with its shipped config, data generation included. Histogram: the integer
histogram forms of the NGP deposit (torch.bincount and fixed-size scatter_add_/index_add_ variants) on a
spread and a hot (all particles in 8 cells) case.

Timing rules: a warm-up run (first calls, allocator, compilation) is excluded and reported separately;
torch.cuda.synchronize brackets every timed region on a GPU; each figure is the median of --repeats whole
runs with the min-max range. Results go to DIR/results.md and DIR/results.json with the device, the torch
version, the commit and the full config.
"""
from __future__ import annotations

import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from nsipf_torch.commands.cli import parse_config, usage_error
from nsipf_torch.problems.grid import Grid, resolve_device, resolve_dtype
from nsipf_torch.problems.grid import synchronize as sync
from nsipf_torch.problems.initial import get_ic
from nsipf_torch.particles.interp import make_interp
from nsipf_torch.io.files import ensure_writable_dir, save_json
from nsipf_torch.problems.params import Params
from nsipf_torch.io.resources import reference_path
from nsipf_torch.run.runners import METHODS, ParticleRunner, runner_for
from nsipf_torch.particles.sipf import compiled_advance

PAPER_TABLE1 = {"FDM": (7.31, 56.89, 742.24), "SIPF-spline": (2955.73, 3919.37, 7599.54),
                "NSIPF": (8.69, 33.12, 243.86)}
PAPER_RESOLUTIONS = {32: 0, 64: 1, 128: 2}  # assumed: the paper's res 1, 2, 3 (docs/MODEL.md §4)
PAPER_TABLE2 = {"SIPF-spline": {1000: 211.27, 5000: 998.38, 10000: 1959.34},
                "NSIPF": {1000: 31.97, 5000: 32.21, 10000: 32.42}}
# Target rows: (label, method, N, P, steps or None for T = --T, timed as "run" or "step"); the GPU targets
# in BENCHMARKS.md. tiny: the same rows at test sizes (the CPU dry run of studies/gpu_check.sh).
GPU_TARGETS = (("FDM two_blobs 128^3 to T", "FDM", 128, 0, None, "run"),
               ("SIPF-spline 128^3 P=2e4 200 steps", "SIPF-spline", 128, 20_000, 200, "run"),
               ("NSIPF 128^3 P=2e4 200 steps", "NSIPF", 128, 20_000, 200, "run"),
               ("NSIPF 128^3 P=1e6 per step", "NSIPF", 128, 1_000_000, 20, "step"),
               ("SIPF-trilinear 256^3 P=1e8 per step", "SIPF-trilinear", 256, 100_000_000, 10, "step"),
               ("NSIPF 256^3 P=1e8 per step", "NSIPF", 256, 100_000_000, 10, "step"))
TINY_TARGETS = (("FDM two_blobs 16^3 to T", "FDM", 16, 0, None, "run"),
                ("SIPF-spline 16^3 P=500 4 steps", "SIPF-spline", 16, 500, 4, "run"),
                ("NSIPF 16^3 P=500 4 steps", "NSIPF", 16, 500, 4, "run"),
                ("SIPF-trilinear 16^3 P=2e3 per step", "SIPF-trilinear", 16, 2_000, 4, "step"),
                ("NSIPF 16^3 P=2e3 per step", "NSIPF", 16, 2_000, 4, "step"))
# train.py's row: the shipped config (its defaults) on the device; tiny: a seconds-long config
TINY_TRAIN = ("--dim", "2", "--n-traj", "2", "--n-val-traj", "1", "--snapshots", "1", "--grids-per-traj", "1",
              "--patches-per-grid", "4", "--P-max", "3000", "--data-T", "0.02", "--data-Nr", "96", "--width", "4",
              "--epochs", "1")
MEMORY_LIMIT_GB = 80  # "fits" in the GPU targets
SUITES = {
    "quick": {"Ns": (32, 64), "Ps": (1_000, 5_000, 10_000, 20_000, 100_000, 1_000_000)},
    "paper": {"Ns": (32, 64, 128), "Ps": (1_000, 5_000, 10_000, 20_000, 100_000, 1_000_000)},
    "gpu": {"Ns": (32, 64, 128), "Ps": (1_000, 5_000, 10_000, 20_000, 100_000, 1_000_000, 10_000_000),
            "targets": GPU_TARGETS, "train_argv": (),
            # the fast-path tables: NSIPF at P = 1e6, N = 128; CNN precision (speed at the large size, accuracy
            # end to end at the accuracy table's N = 64, P = 2e5); deposit kernels; eager vs torch.compile:
            # (method, N, P, compile modes beside eager), the targets' sizes and the launch-bound small runs
            # that CUDA graphs (reduce-overhead) are for
            "fast_path": {"big": (128, 1_000_000), "accuracy": (64, 200_000), "deposit_Ps": (1_000_000, 10_000_000),
                          "compile": (("SIPF-trilinear", 64, 10_000_000, ("default",)),
                                      ("NSIPF", 128, 1_000_000, ("reduce-overhead",)),
                                      ("NSIPF", 64, 20_000, ("reduce-overhead",)))}},
    # the test suite's smoke run and the CPU dry run of the GPU script (no compilation: slow here)
    "tiny": {"Ns": (8, 16), "Ps": (100, 1_000), "compiled_baseline": False, "targets": TINY_TARGETS,
             "train_argv": TINY_TRAIN,
             "fast_path": {"big": (16, 2_000), "accuracy": (16, 1_000), "deposit_Ps": (1_000,), "compile": ()}},
}
PRECISION_REFERENCE = reference_path("two_blobs", 3)


TABLES = ("table1", "baseline", "table2", "fast_path", "targets", "train", "histogram", "fd_compile", "monitor")
MONITOR_SIZES = ((32, 20_000), (64, 200_000))  # the main job's size and the accuracy tables' (two_blobs 3D)
DEFAULT_TABLES = ["table1", "baseline", "table2", "fast_path", "targets", "train"]


def _opt(default, help, **extra):
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class BenchConfig:
    suite: str = _opt("quick", "which sizes to run (convergence: the paper's Fig. 8; work-precision: error against "
                      "wall time, studies/work_precision.py)", choices=(*SUITES, "convergence", "work-precision"))
    device: str = _opt("auto", "auto, cpu, cuda or cuda:K")
    dtype: str = _opt("float32", "floating-point type of every method", choices=("float32", "float64"))
    repeats: int = _opt(3, "timed whole runs per figure (median, min-max)")
    out: str = _opt("bench/latest", "output directory for results.md and results.json")
    T: float = _opt(0.2, "Table 1 final time")
    dt: float = _opt(1e-3, "time step of every method")
    P: int = _opt(20_000, "Table 1 particle count")
    N2: int = _opt(64, "Table 2 grid size")
    steps2: int = _opt(20, "steps per Table 2 run")
    baseline_steps: int = _opt(3, "steps of the scipy baseline")
    methods: list[str] = _opt(list(METHODS), "Table 1 rows, comma separated", choices=METHODS)
    Ns: list[int] = _opt([], "override the suite's Table 1 grid sizes, e.g. 128 (empty: the suite's)")
    Ps: list[int] = _opt([], "override the suite's Table 2 particle counts, e.g. 20000,1e6 (empty: the suite's)")
    tables: list[str] = _opt(DEFAULT_TABLES, "which parts to run, comma separated (fast_path, targets and train "
                             "only in suites that define them: gpu, tiny; histogram on request)", choices=TABLES)
    wp_sizes: str = _opt("auto", "work-precision sizes: auto (gpu on a GPU, else cpu), cpu, gpu or tiny (the tests')",
                         choices=("auto", "cpu", "gpu", "tiny"))
    progress: bool = _opt(True, "print each row as it is measured")

    def validate(self) -> None:
        for name in ("repeats", "P", "N2", "steps2", "baseline_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("Ns", "Ps"):
            bad = [v for v in getattr(self, name) if v < 1]
            if bad:
                raise ValueError(f"--{name} values must be >= 1, got {bad[0]}")
        if not (self.dt > 0 and self.T > 0):
            raise ValueError(f"--dt and --T must be > 0, got {self.dt} and {self.T}")
        if not self.methods or not self.tables:
            raise ValueError("--methods and --tables must name at least one entry")


def parse_args(argv) -> BenchConfig:
    return parse_config(BenchConfig, argv, prog="benchmark.py", description=__doc__.split("\n\n")[0])


def make_runner(method: str, grid: Grid, P: int, precision: str = "fp32"):
    """The runner of ``method`` on two_blobs (the tables' problem), one seed."""
    return runner_for(method, grid, get_ic("two_blobs"), Params(dim=grid.dim), P, precision=precision)


def run_steps(runner, n_steps: int, dt: float, device: torch.device) -> tuple[float, int]:
    """Seconds for ``n_steps`` steps of an already built runner (synchronised), and its FD sub-steps."""
    sync(device)
    start, substeps = time.perf_counter(), 0
    for _ in range(n_steps):  # the runner re-plans NSIPF's tile list itself
        substeps += runner.advance(dt)
    sync(device)
    return time.perf_counter() - start, substeps


def timed(factory, n_steps: int, dt: float, repeats: int, device: torch.device, prepare=None) -> dict:
    """A warm-up run of 3 steps (excluded, reported), then ``repeats`` whole runs of ``n_steps`` steps."""
    def fresh():
        runner = factory()
        if prepare is not None:
            prepare(runner)
        return runner

    warm, _ = run_steps(fresh(), min(3, n_steps), dt, device)
    runs = [run_steps(fresh(), n_steps, dt, device) for _ in range(repeats)]
    times = [r[0] for r in runs]
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "warmup_s": warm,
            "substeps": runs[0][1], "steps": n_steps}


def scipy_baseline_step_time(N: int, P: int, steps: int, dt: float) -> float:
    """Classical SIPF as the paper ran it: numpy histogram, c-update, np.gradient, and scipy interpn (cubic)
    of the three gradient components at the particles, Euler-Maruyama, reflection. Seconds per step."""
    from scipy.interpolate import interpn

    grid = Grid(N, 3)
    ic = get_ic("two_blobs")
    X = ic.sample(P, torch.Generator().manual_seed(0), grid).numpy()
    c = ic.c0(grid).numpy()
    x = grid.centres().numpy()
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(steps):
        counts, _ = np.histogramdd(X, bins=N, range=[(-1, 1)] * 3)
        rho = counts / (P * grid.cell_volume)
        c = c * np.exp(-dt * rho)
        grads = np.gradient(c, grid.h)
        drift = np.stack([interpn((x, x, x), g, X, method="cubic", bounds_error=False, fill_value=None)
                          for g in grads], axis=-1)
        X = X + dt * drift + np.sqrt(2 * 0.01 * dt) * rng.standard_normal(X.shape)
        X = np.where(X > 1, 2 - X, np.where(X < -1, -2 - X, X))
    return (time.perf_counter() - start) / steps


def git_checkout(start: Path | None = None) -> Path | None:
    """The root of the git checkout holding ``start`` (this file), or None (an installed package)."""
    here = (start or Path(__file__)).resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return None


def commit_hash() -> str:
    """The checkout's short commit (+dirty), read only where a git checkout exists; else "unknown"."""
    root = git_checkout()
    if root is None:
        return "unknown"
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=root, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=root, timeout=10).stdout.strip()
        return rev + ("+dirty" if dirty else "") if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def fmt(r: dict) -> str:
    return f"{r['median_s']:.3g} s ({r['min_s']:.3g}–{r['max_s']:.3g})"


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_args(argv)
        device, dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype)
        out = ensure_writable_dir(cfg.out)
    except ValueError as err:
        return usage_error("benchmark.py", err)
    meta = {"device": device_name(device), "torch": torch.__version__, "commit": commit_hash(),
            "config": asdict(cfg), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    if cfg.suite == "convergence":
        return convergence_suite(cfg, meta, device, out)
    if cfg.suite == "work-precision":
        return work_precision_suite(cfg, meta, device, out)
    return run_suite(cfg, meta, device, dtype, out)


def suite_sizes(cfg: BenchConfig) -> dict:
    """The suite's sizes with --Ns and --Ps applied."""
    suite = dict(SUITES[cfg.suite])
    if cfg.Ns:
        suite["Ns"] = tuple(cfg.Ns)
    if cfg.Ps:
        suite["Ps"] = tuple(cfg.Ps)
    return suite


def run_suite(cfg: BenchConfig, meta: dict, device: torch.device, dtype: torch.dtype, out: Path) -> int:
    """Every requested table in order; results.json is rewritten after each, so a run cut short keeps data."""
    suite, tables = suite_sizes(cfg), set(cfg.tables)
    n_steps = round(cfg.T / cfg.dt)
    log = print if cfg.progress else (lambda *a, **k: None)
    log(f"# benchmark suite {cfg.suite} on {meta['device']}, torch {meta['torch']}, commit {meta['commit']}")
    results = {**meta, "table1": [], "baseline": {}, "table2": []}

    def checkpoint(key, value):
        results[key] = value
        save_json(out / "results.json", results)

    # the GPU targets first: the rows a short lease on a GPU must not miss
    if "targets" in tables and "targets" in suite:
        checkpoint("targets", target_rows(suite["targets"], cfg, device, dtype, log,
                                          lambda rows: checkpoint("targets", rows)))
    if "train" in tables and "train_argv" in suite:
        checkpoint("train", train_row(suite["train_argv"], device, out, log))
    if "histogram" in tables:
        checkpoint("histogram", histogram_rows(cfg.N2, suite["Ps"], cfg.repeats, device, log))
    if "fd_compile" in tables:
        checkpoint("fd_compile", fd_compile_rows(suite["Ns"], cfg, n_steps, device, dtype, log))
    if "monitor" in tables:
        checkpoint("monitor", monitor_rows(cfg, device, dtype, log))
    if "table1" in tables:
        checkpoint("table1", table1_rows(suite["Ns"], cfg, n_steps, device, dtype, log))
    if "baseline" in tables:
        checkpoint("baseline", baseline_row(suite, cfg, device, dtype, log))
    if "table2" in tables:
        checkpoint("table2", table2_rows(suite, cfg, device, dtype, log))
    if "fast_path" in suite and "fast_path" in tables:
        checkpoint("fast_path", fast_path_tables(suite["fast_path"], cfg, device, dtype, log,
                                                 lambda fp: checkpoint("fast_path", fp)))
    md = render_markdown(results, n_steps)
    (out / "results.md").write_text(md)
    print(md)
    return 0


def table1_rows(Ns, cfg: BenchConfig, n_steps: int, device, dtype, log) -> list[dict]:
    """Table 1: every method's whole run of two_blobs to T at each N."""
    rows = []
    for N in Ns:
        grid = Grid(N, 3, 1.0, device, dtype)
        res = PAPER_RESOLUTIONS.get(N)
        for method in cfg.methods:
            r = timed(lambda: make_runner(method, grid, cfg.P), n_steps, cfg.dt, cfg.repeats, device)
            paper = PAPER_TABLE1.get(method, (None,) * 3)[res] if res is not None else None
            rows.append({"method": method, "N": N, **r, "steps_per_s": n_steps / r["median_s"],
                         "particle_steps_per_s": None if method == "FDM" else cfg.P * n_steps / r["median_s"],
                         "paper_s": paper})
            log(f"  table 1  {method:15s} N={N:4d}: {fmt(r)}")
    return rows


def fd_compile_rows(Ns, cfg: BenchConfig, n_steps: int, device, dtype, log) -> list[dict]:
    """FDM two_blobs to T with the sub-step eager and fused by ``torch.compile``, side by side in one run
    (compilation happens in the warm-up, reported and excluded)."""
    rows = []
    for N in Ns:
        grid = Grid(N, 3, 1.0, device, dtype)
        for mode in ("eager", "compiled"):
            def factory(grid=grid, compiled=mode == "compiled"):
                runner = make_runner("FDM", grid, cfg.P)
                runner.compile = compiled
                return runner
            r = timed(factory, n_steps, cfg.dt, cfg.repeats, device)
            rows.append({"N": N, "mode": mode, **r, "ms_per_substep": 1e3 * r["median_s"] / r["substeps"]})
            log(f"  fd sub-step {mode:8s} N={N:4d}: {fmt(r)}")
    return rows


def baseline_row(suite: dict, cfg: BenchConfig, device, dtype, log) -> dict:
    """The paper-faithful scipy step beside ours (eager, and compiled where the suite asks)."""
    baseline = {"N": min(suite["Ns"][0], 32), "P": cfg.P}
    baseline["scipy_s_per_step"] = scipy_baseline_step_time(baseline["N"], cfg.P, cfg.baseline_steps, cfg.dt)
    grid = Grid(baseline["N"], 3, 1.0, device, dtype)
    ours = timed(lambda: make_runner("SIPF-spline", grid, cfg.P), cfg.steps2, cfg.dt, cfg.repeats, device)
    baseline["ours_s_per_step"] = ours["median_s"] / cfg.steps2
    baseline["speedup"] = baseline["scipy_s_per_step"] / baseline["ours_s_per_step"]
    log(f"  baseline scipy interpn {baseline['scipy_s_per_step']:.3g} s/step, ours {baseline['ours_s_per_step']:.3g}"
        f" s/step: {baseline['speedup']:.0f}x")
    if suite.get("compiled_baseline", True):  # the same step through torch.compile (CUDA graphs on a GPU)
        mode = "reduce-overhead" if device.type == "cuda" else "default"
        step_fn = compiled_advance(**({"mode": mode} if mode != "default" else {}))

        def compiled_spline():
            runner = make_runner("SIPF-spline", grid, cfg.P)
            runner.step_fn = step_fn
            return runner
        fast = timed(compiled_spline, cfg.steps2, cfg.dt, cfg.repeats, device)
        baseline.update(compiled_mode=mode, compiled_s_per_step=fast["median_s"] / cfg.steps2,
                        compile_s=fast["warmup_s"])
        baseline["compiled_speedup"] = baseline["scipy_s_per_step"] / baseline["compiled_s_per_step"]
        log(f"  baseline ours compiled ({mode}) {baseline['compiled_s_per_step']:.3g} s/step: "
            f"{baseline['compiled_speedup']:.0f}x (compilation {fast['warmup_s']:.0f} s)")
        torch._dynamo.reset()
    return baseline


def table2_rows(suite: dict, cfg: BenchConfig, device, dtype, log) -> list[dict]:
    """Table 2: time per step against P at N2, and the hot case at the largest P."""
    rows = []
    N2 = min(cfg.N2, max(suite["Ns"]))
    grid = Grid(N2, 3, 1.0, device, dtype)
    for method in ("SIPF-spline", "NSIPF", "SIPF-trilinear"):
        if method not in cfg.methods:
            continue
        cases = [(P, "spread", None) for P in suite["Ps"]] + [(max(suite["Ps"]), "hot", pack_hot)]
        for P, case, prepare in cases:
            r = timed(lambda: make_runner(method, grid, P), cfg.steps2, cfg.dt, cfg.repeats, device, prepare=prepare)
            rows.append({"method": method, "N": N2, "P": P, "case": case, **r, "s_per_step": r["median_s"] / cfg.steps2,
                         "particle_steps_per_s": P * cfg.steps2 / r["median_s"],
                         "paper_s": PAPER_TABLE2.get(method, {}).get(P) if case == "spread" else None})
            log(f"  table 2  {method:15s} P={P:>9,d} {case}: {fmt(r)}")
    return rows


def peak_memory_gb(device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def target_rows(targets, cfg: BenchConfig, device, dtype, log, checkpoint) -> list[dict]:
    """The GPU target rows (median of --repeats, warm-up = compilation and first calls, excluded and
    reported), each with the peak device memory and whether it fits MEMORY_LIMIT_GB."""
    rows = []
    for label, method, N, P, steps, kind in targets:
        steps = steps or round(cfg.T / cfg.dt)
        grid = Grid(N, 3, 1.0, device, dtype)
        row = {"row": label, "method": method, "N": N, "P": P, "steps": steps, "kind": kind}
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)

        def work():
            r = timed(lambda: make_runner(method, grid, P), steps, cfg.dt, cfg.repeats, device)
            r = {**r, **(_per_step(r) if kind == "step" else {})}
            memory = peak_memory_gb(device)
            return {**r, "peak_memory_gb": memory,
                    "fits": None if memory is None else memory <= MEMORY_LIMIT_GB}
        _guarded(rows, row, work, log, label)
        checkpoint(rows)
    return rows


def train_row(train_argv, device, out: Path, log) -> dict:
    """``train.py --device DEVICE`` with its shipped config (or the tiny one), data generation included:
    a fresh cache folder, the checkpoint and logs under DIR/train."""
    import train
    folder = out / "train"
    argv = [*train_argv, "--device", str(device), "--out", str(folder / "model.pt"),
            "--cache-dir", str(folder / f"cache-{time.strftime('%Y%m%d-%H%M%S')}"), "--logdir", str(folder / "runs")]
    row = {"row": "train.py " + " ".join(train_argv) + f" --device {device}", "argv": argv}

    def work():
        sync(device)
        start = time.perf_counter()
        code = train.main(argv)
        sync(device)
        return {"wall_s": time.perf_counter() - start, "exit": code}
    _guarded([], row, work, log, "train.py")
    return row


def _histogram_candidates():
    """Integer histograms of flat indices into a known number of bins: the shipped form and the others."""
    from nsipf_torch.particles.deposit import histogram

    def index_add(dtype):
        def run(flat, n):
            ones = torch.ones((), dtype=dtype, device=flat.device).expand(flat.shape[0])
            return torch.zeros(n, dtype=dtype, device=flat.device).index_add_(0, flat, ones)
        return run

    def scatter_add(dtype):
        def run(flat, n):
            ones = torch.ones((), dtype=dtype, device=flat.device).expand(flat.shape[0])
            return torch.zeros(n, dtype=dtype, device=flat.device).scatter_add_(0, flat, ones)
        return run

    return {"bincount (syncs on a GPU)": lambda flat, n: torch.bincount(flat, minlength=n),
            "index_add_ int32 (shipped)": lambda flat, n: histogram(flat, n, flat.shape[0]),
            "index_add_ int64": index_add(torch.int64),
            "scatter_add_ int32": scatter_add(torch.int32),
            "scatter_add_ int64": scatter_add(torch.int64),
            "index_put_ accumulate int64": lambda flat, n: torch.zeros(n, dtype=torch.int64, device=flat.device)
            .index_put_((flat,), torch.ones((), dtype=torch.int64, device=flat.device).expand(flat.shape[0]),
                        accumulate=True)}


def histogram_rows(N: int, Ps, repeats: int, device, log) -> list[dict]:
    """Each histogram form on P flat cell indices of an N^3 grid: spread (uniform) and hot (8 cells)."""
    rows, n = [], N**3
    candidates = _histogram_candidates()
    for P in Ps:
        gen = torch.Generator(device=device).manual_seed(0)
        centre = (N // 2 - 1) * (N * N + N + 1)
        hot_cells = torch.tensor([centre + i * N * N + j * N + k for i in (0, 1) for j in (0, 1) for k in (0, 1)],
                                 device=device)
        cases = {"spread": torch.randint(0, n, (P,), generator=gen, device=device),
                 "hot": hot_cells[torch.randint(0, 8, (P,), generator=gen, device=device)]}
        for case, flat in cases.items():
            reference = torch.bincount(flat, minlength=n)
            for name, fn in candidates.items():
                row = {"histogram": name, "N": N, "P": P, "case": case}

                def work():
                    if not torch.equal(fn(flat, n).long(), reference):
                        raise AssertionError("counts differ from torch.bincount")
                    return time_calls(lambda: fn(flat, n), 10, repeats, device)
                _guarded(rows, row, work, log, f"histogram {name} P={P:,} {case}")
    return rows


def monitor_rows(cfg: BenchConfig, device, dtype, log) -> list[dict]:
    """The interp_gap monitor against an NSIPF step (nsipf_torch.run.monitor): two_blobs 3D advanced 100 steps
    (aggregating, the monitor's typical state), then one monitor call and one step timed alike; the share
    of a step at the default cadence is call / (diag_every * step)."""
    from nsipf_torch.api import SimConfig
    from nsipf_torch.run.monitor import DEFAULT_SUBSAMPLE

    rows, every = [], SimConfig.diag_every
    for N, P in MONITOR_SIZES:
        row = {"N": N, "P": P, "subsample": DEFAULT_SUBSAMPLE, "diag_every": every}

        def work():
            runner = make_runner("NSIPF", Grid(N, 3, device=device, dtype=dtype), P)
            for _ in range(100):
                runner.advance(cfg.dt)
            step = time_calls(lambda: runner.advance(cfg.dt), 5, cfg.repeats, device)["s_per_call"]
            call = time_calls(lambda: runner.gap(runner.c, runner.X), 5, cfg.repeats, device)["s_per_call"]
            return {"step_s": step, "monitor_s": call, "share": call / (every * step)}
        _guarded(rows, row, work, log, f"monitor N={N} P={P:,}")
    return rows


def work_precision_suite(cfg: BenchConfig, meta: dict, device: torch.device, out: Path) -> int:
    """rho error at T against wall time for every method on two_blobs and planar (studies.work_precision):
    DIR/work_precision.png, DIR/results.md (every point, the cheapest run per accuracy), DIR/results.json."""
    import studies.work_precision as wp

    size = cfg.wp_sizes if cfg.wp_sizes != "auto" else ("gpu" if device.type == "cuda" else "cpu")
    sizes = wp.SIZES[size]
    log = print if cfg.progress else (lambda *a, **k: None)
    log(f"# work-precision ({size} sizes) on {meta['device']}, torch {meta['torch']}, commit {meta['commit']}")
    start = time.perf_counter()
    methods = [m for m in METHODS if m in cfg.methods]
    points, references = wp.study(sizes, methods=methods, T=cfg.T, dt=cfg.dt, device=device, log=log)
    wall = time.perf_counter() - start
    wp.figure(points, references, out / "work_precision.png")
    save_json(out / "results.json", {**meta, "sizes": size, "references": references, "wall_s": wall,
                                     "points": [asdict(p) for p in points]})
    header = (f"# nsipf_torch work-precision ({size} sizes)\n\nDevice: {meta['device']}; torch {meta['torch']}; "
              f"commit {meta['commit']}; T = {cfg.T}, dt = {cfg.dt}, float32 runs, one seed; {wall:.0f} s in all.")
    md = wp.markdown(points, references, header) + "\n![work-precision](work_precision.png)\n"
    (out / "results.md").write_text(md)
    print(md)
    return 0


def convergence_suite(cfg: BenchConfig, meta: dict, device: torch.device, out: Path) -> int:
    """The paper's Fig. 8 for SIPF-trilinear on two_blobs, N = 32, T = 0.05 (studies.convergence)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from studies.convergence import convergence_in_dt, convergence_in_P

    grid = Grid(32, 3, 1.0, device, torch.float64)
    start = time.perf_counter()
    in_P = convergence_in_P(grid, 0.05, [5_000, 20_000, 80_000], 640_000, [1, 2, 3, 4])
    in_dt = convergence_in_dt(grid, 0.05, 20_000, 1.25e-4, [16, 8, 4])
    wall = time.perf_counter() - start
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
    for ax, r, x, label in ((axes[0], in_P, "P", "particles P"), (axes[1], in_dt, "dt", "time step δt")):
        xs = np.asarray(r[x], float)
        ax.loglog(xs, r["error"], "o-", label=f"measured, slope {r['slope']:.2f} ± {r['slope_se']:.2f}")
        ref = r["error"][0] * (xs / xs[0]) ** r["expected"]
        ax.loglog(xs, ref, "k--", label=f"slope {r['expected']:g}")
        ax.set_xlabel(label)
        ax.set_ylabel("rel_l2 of ρ" if x == "P" else "median |X − X_ref|")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle("SIPF-trilinear, two_blobs, N = 32³, T = 0.05")
    fig.savefig(out / "convergence.png", dpi=110)
    plt.close(fig)
    results = {**meta, "convergence_in_P": in_P, "convergence_in_dt": in_dt, "wall_s": wall}
    save_json(out / "results.json", results)
    md = "\n".join([
        "# nsipf_torch convergence study (the paper's Fig. 8)", "",
        f"Device: {meta['device']}; torch {meta['torch']}; commit {meta['commit']}; {wall:.0f} s.", "",
        "| study | points | errors | fitted slope | expected |", "|---|---|---|---|---|",
        f"| P (rel_l2 of ρ vs P_ref = {in_P['P_ref']:,}, 4 seeds) | {in_P['P']} | "
        f"{', '.join(f'{e:.4f}' for e in in_P['error'])} | {in_P['slope']:.3f} ± {in_P['slope_se']:.3f} | −0.5 |",
        f"| δt (coupled increments, median pathwise error vs δt = {in_dt['dt_ref']:g}) | {in_dt['dt']} | "
        f"{', '.join(f'{e:.2e}' for e in in_dt['error'])} | {in_dt['slope']:.3f} ± {in_dt['slope_se']:.3f} | 1 |",
        "", "![convergence](convergence.png)", ""])
    (out / "results.md").write_text(md)
    print(md)
    return 0


# --- fast path (gpu suite): NSIPF at scale, CNN precision, deposit kernels, torch.compile ---------------------

def _per_step(r: dict) -> dict:
    return {"s_per_step": r["median_s"] / r["steps"], "min_s_per_step": r["min_s"] / r["steps"],
            "max_s_per_step": r["max_s"] / r["steps"], "warmup_s": r["warmup_s"]}


def _guarded(rows: list, row: dict, work, log, label: str) -> None:
    """Run one measurement; a failure (e.g. out of memory, a compiler error) is recorded, not fatal."""
    try:
        row.update(work())
    except Exception as err:  # noqa: BLE001 - a benchmark row reports what broke and the suite goes on
        row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
        if "cuda" in str(err).lower():
            torch.cuda.empty_cache()
    rows.append(row)
    log(f"  {label}: " + (row.get("error") or ", ".join(
        f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float))))


def precision_accuracy(N: int, P: int, precisions, cfg: BenchConfig, device, dtype) -> list[dict]:
    """NSIPF two_blobs end to end in each CNN precision, same seed and noise: rel_l2 of rho against the
    converged FD reference at T/2 and T (as in the accuracy table), the rho difference from the fp32 run,
    and the CNN's direct effect at the fp32 run's T/2 state (fine field and grad c at the particles)."""
    from nsipf_torch.metrics import rel_l2
    ref = np.load(PRECISION_REFERENCE)
    grid = Grid(N, 3, 1.0, device, dtype)
    rows, fp32_rho, fp32_half = [], {}, None
    for precision in precisions:
        runner = make_runner("NSIPF", grid, P, precision)
        row, step, start = {"precision": precision, "N": N, "P": P}, 0, time.perf_counter()
        for key in ("half", "T"):
            while step < round(float(ref[f"t_{key}"]) / cfg.dt):
                runner.advance(cfg.dt)
                step += 1
            rho = runner.fields()[0].double().cpu()
            target = torch.from_numpy(ref[f"rho_{key}"]).double()[None]
            row[f"rho_err_{key}"] = float(rel_l2(rho, target).mean())
            if precision == "fp32":
                fp32_rho[key] = rho
                if key == "half":
                    fp32_half = (runner.X.clone(), runner.c.clone())
            elif key in fp32_rho:
                row[f"rho_diff_fp32_{key}"] = float(rel_l2(rho, fp32_rho[key]).mean())
        sync(device)
        row["wall_s"] = time.perf_counter() - start
        rows.append(row)
    if fp32_half is not None:  # the CNN alone, on one state: what the precision does before chaos amplifies it
        X, c = fp32_half
        base = make_interp("neural", grid, precision="fp32")
        f0, g0 = base.fine_field(c).double(), base.grad_c(c, X).double()
        for row in rows:
            if row["precision"] != "fp32":
                other = make_interp("neural", grid, precision=row["precision"])
                row["fine_field_rel_diff"] = float((other.fine_field(c).double() - f0).norm() / f0.norm())
                row["grad_c_rel_diff"] = float((other.grad_c(c, X).double() - g0).norm() / g0.norm())
    return rows


def _deposit_candidates():
    """The two shipped deposits: NGP (one fixed-size integer histogram) and CIC (index_add_ of weights)."""
    from nsipf_torch.particles.deposit import deposit
    return {"NGP (shipped)": lambda X, g: deposit(X, g, 1.0, "ngp"),
            "CIC": lambda X, g: deposit(X, g, 1.0, "cic")}


def time_calls(fn, calls: int, repeats: int, device) -> dict:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync(device)
        times.append((time.perf_counter() - start) / calls)
    return {"s_per_call": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def fast_path_tables(fp: dict, cfg: BenchConfig, device, dtype, log, checkpoint) -> dict:
    """The gpu suite's extra tables (each row guarded; results.json is rewritten after each table)."""
    steps = cfg.steps2
    out = {"precision_speed": [], "precision_accuracy": [], "deposit": [], "compile": []}
    precisions = ("fp32", "tf32", "bf16") if device.type == "cuda" else ("fp32", "bf16")

    N, P = fp["big"]
    grid = Grid(N, 3, 1.0, device, dtype)
    for precision in precisions:
        _guarded(out["precision_speed"], {"method": "NSIPF", "N": N, "P": P, "precision": precision},
                 lambda: _per_step(timed(lambda: make_runner("NSIPF", grid, P, precision), steps, cfg.dt, cfg.repeats,
                                         device)), log, f"fast path NSIPF N={N} P={P:,} {precision}")
    checkpoint(out)

    N, P = fp["accuracy"]
    try:
        out["precision_accuracy"] = precision_accuracy(N, P, precisions, cfg, device, dtype)
    except Exception as err:  # noqa: BLE001
        out["precision_accuracy"] = [{"error": f"{type(err).__name__}: {err}"}]
    for row in out["precision_accuracy"]:
        log(f"  fast path accuracy {row}")
    checkpoint(out)

    N2 = min(cfg.N2, max(fp["big"][0], 16))
    grid = Grid(N2, 3, 1.0, device, dtype)
    candidates = _deposit_candidates()
    for P in fp["deposit_Ps"]:
        for case in ("spread", "hot"):
            runner = make_runner("SIPF-trilinear", grid, P)
            if case == "hot":
                pack_hot(runner)
            X = runner.X
            for name, fn in candidates.items():
                _guarded(out["deposit"], {"deposit": name, "N": N2, "P": P, "case": case},
                         lambda: time_calls(lambda: fn(X, grid), 20, cfg.repeats, device), log,
                         f"fast path deposit {name} P={P:,} {case}")
    checkpoint(out)

    for method, N, P, modes in fp["compile"]:
        grid = Grid(N, 3, 1.0, device, dtype)
        base = make_runner(method, grid, P)  # one interpolator for every run: compiled code is reused, not redone
        for mode in ("eager", *modes):
            step_fn = None if mode == "eager" else compiled_advance(**({} if mode == "default" else {"mode": mode}))

            def factory(grid=grid, P=P, step_fn=step_fn, interp=base.interp):
                runner = ParticleRunner(grid, get_ic("two_blobs"), Params(dim=grid.dim), [0], P, interp)
                runner.step_fn = step_fn
                return runner
            _guarded(out["compile"], {"method": method, "N": N, "P": P, "mode": mode},
                     lambda: _per_step(timed(factory, steps, cfg.dt, cfg.repeats, device)), log,
                     f"fast path {method} N={N} P={P:,} {mode}")
            torch._dynamo.reset()
        checkpoint(out)
    return out


def pack_hot(runner) -> None:
    """Late aggregation: every particle inside the 2^3 cells around the centre (atomics contend there)."""
    if isinstance(runner, ParticleRunner):
        h = runner.grid.h
        X = runner.state.X
        gen = torch.Generator(device="cpu").manual_seed(1)
        packed = (torch.rand(X.shape, generator=gen, dtype=torch.float64) * 2 - 1) * (0.999 * h)
        runner.state = runner.state._replace(X=packed.to(X.device, X.dtype))


def render_markdown(results: dict, n_steps: int) -> str:
    cfg = results["config"]
    lines = [f"# nsipf_torch benchmark ({cfg['suite']} suite)", "",
             f"Device: {results['device']}; torch {results['torch']}; commit {results['commit']}; {results['date']}.",
             f"Command: `python benchmark.py {' '.join(sys.argv[1:])}`; dtype {cfg['dtype']}; median of {cfg['repeats']} "
             "runs (min–max); warm-up excluded."]
    lines += render_targets(results)
    if results.get("fd_compile"):
        lines += ["", f"## FD sub-step: eager and `torch.compile`d, two_blobs 3D to T = {cfg['T']}", "",
                  "| N | mode | wall time | FD sub-steps | ms per sub-step | warm-up (compilation) |",
                  "|---|---|---|---|---|---|"]
        for r in results["fd_compile"]:
            lines.append(f"| {r['N']}³ | {r['mode']} | {fmt(r)} | {r['substeps']} | {r['ms_per_substep']:.3g} | "
                         f"{r['warmup_s']:.3g} s |")
    if results.get("table1"):
        lines += ["", f"## Table 1: two_blobs 3D, T = {cfg['T']}, dt = {cfg['dt']} ({n_steps} steps), P = {cfg['P']:,}", "",
                  "| method | N | wall time | steps/s | particle-steps/s | FD sub-steps | warm-up | paper (res = 32/64/128 "
                  "assumed) |", "|---|---|---|---|---|---|---|---|"]
    for r in results.get("table1", []):
        ps = f"{r['particle_steps_per_s']:.3g}" if r["particle_steps_per_s"] else "–"
        sub = str(r["substeps"]) if r["method"] == "FDM" else "–"
        paper = f"{r['paper_s']} s" if r["paper_s"] else "–"
        lines.append(f"| {r['method']} | {r['N']}³ | {fmt(r)} | {r['steps_per_s']:.3g} | {ps} | {sub} | "
                     f"{r['warmup_s']:.3g} s | {paper} |")
    b = results.get("baseline")
    if b:
        lines += ["", f"## Paper-faithful baseline (timed per step): N = {b['N']}³, P = {b['P']:,}", "",
                  "| classical SIPF | s/step |", "|---|---|",
                  f"| scipy `interpn(method='cubic')`, CPU (the paper's approach) | {b['scipy_s_per_step']:.3g} |",
                  f"| ours, SIPF-spline | {b['ours_s_per_step']:.3g} |",
                  f"| **speedup** | **{b['speedup']:.0f}×** |"]
        if "compiled_s_per_step" in b:
            lines += [f"| ours, SIPF-spline, `torch.compile` mode {b['compiled_mode']} (compilation "
                      f"{b['compile_s']:.0f} s, excluded) | {b['compiled_s_per_step']:.3g} |",
                      f"| **speedup, compiled** | **{b['compiled_speedup']:.0f}×** |"]
    if results.get("table2"):
        lines += ["", f"## Table 2: time per step against P, N = {results['table2'][0]['N']}³, runs of {cfg['steps2']} "
                  "steps", "", "| method | P | case | s/step | particle-steps/s | paper (whole run, res 2) |",
                  "|---|---|---|---|---|---|"]
    for r in results.get("table2", []):
        paper = f"{r['paper_s']} s" if r["paper_s"] else "–"
        lines.append(f"| {r['method']} | {r['P']:,} | {r['case']} | {r['s_per_step']:.3g} | "
                     f"{r['particle_steps_per_s']:.3g} | {paper} |")
    if "fast_path" in results:
        lines += render_fast_path(results["fast_path"], cfg)
    return "\n".join(lines) + "\n"


def render_targets(results: dict) -> list[str]:
    """The target rows, train.py's wall time, the monitor's cost and the histogram comparison, where measured."""
    lines = []
    if results.get("targets"):
        lines += ["", "## Targets (warm-up = first calls and compilation, excluded)", "",
                  "| row | time (median, min–max) | warm-up | peak memory | fits 80 GB |", "|---|---|---|---|---|"]
        for r in results["targets"]:
            if "error" in r:
                lines.append(f"| {r['row']} | {r['error']} |  |  |  |")
                continue
            time_text = (f"{1e3 * r['s_per_step']:.3g} ms/step ({1e3 * r['min_s_per_step']:.3g}–"
                         f"{1e3 * r['max_s_per_step']:.3g})" if r["kind"] == "step" else fmt(r))
            memory = "–" if r["peak_memory_gb"] is None else f"{r['peak_memory_gb']:.1f} GB"
            fits = "–" if r["fits"] is None else ("yes" if r["fits"] else "**no**")
            lines.append(f"| {r['row']} | {time_text} | {r['warmup_s']:.3g} s | {memory} | {fits} |")
    if results.get("train"):
        r = results["train"]
        value = r["error"] if "error" in r else f"{r['wall_s']:.1f} s (exit {r['exit']})"
        lines += ["", f"`{r['row']}` (data generation included): {value}"]
    if results.get("monitor"):
        lines += ["", "## The interp_gap monitor against an NSIPF step (two_blobs 3D after 100 steps)", "",
                  "| N | P | monitor call (ms) | step (ms) | share of a step at diag_every |", "|---|---|---|---|---|"]
        for r in results["monitor"]:
            if "error" in r:
                lines.append(f"| {r['N']}³ | {r['P']:,} | {r['error']} | – | – |")
            else:
                lines.append(f"| {r['N']}³ | {r['P']:,} | {1e3 * r['monitor_s']:.2f} | {1e3 * r['step_s']:.2f} | "
                             f"{100 * r['share']:.1f}% (every {r['diag_every']} steps) |")
    if results.get("histogram"):
        lines += ["", "## Histogram forms of the NGP deposit (one call, median over repeats of 10 calls)", "",
                  "| form | N | P | case | ms/call (min–max) |", "|---|---|---|---|---|"]
        for r in results["histogram"]:
            ms = r["error"] if "error" in r else (f"{1e3 * r['s_per_call']:.3g} ({1e3 * r['min_s']:.3g}–"
                                                  f"{1e3 * r['max_s']:.3g})")
            lines.append(f"| {r['histogram']} | {r['N']}³ | {r['P']:,} | {r['case']} | {ms} |")
    return lines


def _cell(r: dict, key: str, spec: str = ".3g") -> str:
    return r["error"] if "error" in r else format(r[key], spec) if r.get(key) is not None else "–"


def render_fast_path(fp: dict, cfg: dict) -> list[str]:
    lines = ["", f"## Fast path: CNN precision (NSIPF two_blobs, runs of {cfg['steps2']} steps)", "",
             "| precision | N | P | s/step (min–max) | warm-up |", "|---|---|---|---|---|"]
    for r in fp["precision_speed"]:
        span = "" if "error" in r else f" ({r['min_s_per_step']:.3g}–{r['max_s_per_step']:.3g})"
        lines.append(f"| {r['precision']} | {r['N']}³ | {r['P']:,} | {_cell(r, 's_per_step')}{span} | "
                     f"{_cell(r, 'warmup_s')} |")
    lines += ["", "Accuracy effect (same seed and noise; rho rel_l2 against the converged FD reference at "
              "T/2 / T, as in docs/VALIDATION.md; difference from the fp32 run; the CNN alone on the fp32 run's "
              "T/2 state):", "",
              "| precision | N | P | rho error T/2 | rho error T | rho vs fp32 T/2 | rho vs fp32 T | fine field vs fp32 | "
              "grad c vs fp32 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in fp["precision_accuracy"]:
        if "error" in r and "precision" not in r:
            lines.append(f"| {r['error']} |  |  |  |  |  |  |  |  |")
            continue
        lines.append(f"| {r['precision']} | {r['N']}³ | {r['P']:,} | {_cell(r, 'rho_err_half', '.4f')} | "
                     f"{_cell(r, 'rho_err_T', '.4f')} | {_cell(r, 'rho_diff_fp32_half', '.2e')} | "
                     f"{_cell(r, 'rho_diff_fp32_T', '.2e')} | {_cell(r, 'fine_field_rel_diff', '.2e')} | "
                     f"{_cell(r, 'grad_c_rel_diff', '.2e')} |")
    lines += ["", "## Fast path: deposit kernels (one call, median over repeats of 20 calls)", "",
              "| deposit | N | P | case | ms/call | particles/s |", "|---|---|---|---|---|---|"]
    for r in fp["deposit"]:
        rate = "–" if "error" in r else f"{r['P'] / r['s_per_call']:.3g}"
        ms = r["error"] if "error" in r else f"{1e3 * r['s_per_call']:.3g}"
        lines.append(f"| {r['deposit']} | {r['N']}³ | {r['P']:,} | {r['case']} | {ms} | {rate} |")
    if fp["compile"]:
        lines += ["", "## Fast path: eager vs torch.compile (warm-up = compilation, excluded from s/step)", "",
                  "| method | N | P | mode | s/step (min–max) | particle-steps/s | warm-up |", "|---|---|---|---|---|---|---|"]
        for r in fp["compile"]:
            span = "" if "error" in r else f" ({r['min_s_per_step']:.3g}–{r['max_s_per_step']:.3g})"
            rate = "–" if "error" in r else f"{r['P'] / r['s_per_step']:.3g}"
            lines.append(f"| {r['method']} | {r['N']}³ | {r['P']:,} | {r['mode']} | {_cell(r, 's_per_step')}{span} | "
                         f"{rate} | {_cell(r, 'warmup_s')} |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
