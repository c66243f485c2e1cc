"""Runtime tables like the paper's (docs/MODEL.md §4), measured on this machine, with the paper's figures beside.

    nsipf-benchmark                              # quick suite: N in {32, 64} (<= 10 min on a 2-core CPU)
    nsipf-benchmark --suite paper                # adds N = 128 (<= 60 min on a 2-core CPU)
    nsipf-benchmark --suite gpu --device cuda    # GPU sizes, the GPU target rows (P up to 1e8 at 256^3)
    nsipf-benchmark --tables histogram --Ps 1e6  # deposit histogram forms, spread and hot, side by side
    nsipf-benchmark --Ns 128 --methods fdm,nsipf --Ps 20000 --repeats 1   # one comparison at 128^3

Table 1: two_blobs in 3D, T = 0.2, dt = 1e-3, every method (nsipf_torch/methods.py; a table label such as
NSIPF names its method too) with its documented defaults (FDM: MUSCL-minmod, automatic positive sub-steps;
particles: NGP deposit, exact c-update). The paper's resolutions are unknown; we assume res 1, 2, 3 =
32^3, 64^3, 128^3. Table 2: time per step against P at N = 64 (runs of --steps2 steps), plus a "hot" case
with all particles in the 2^3 cells around the centre. Targets (suites gpu, tiny): the rows of the GPU
targets (BENCHMARKS.md), with the peak device memory of each and, last, ``nsipf-train`` with its shipped
config, data generation included. Spectral: the DCT field solve of the Keller-Segel family (elliptic solve and
exact parabolic step, nsipf_torch/solvers/spectral.py) at the suite's sizes, 256^3 in gpu (the issue-21
target, <= 5 ms). Histogram: the integer histogram forms of the NGP deposit. The lab's
suites (python -m studies.NAME): scipy_baseline (the paper's classical SIPF in scipy against ours),
convergence (the paper's Fig. 8), work_precision (error against wall time).

Timing rules (nsipf_torch/benchmarks/timing.py): every row runs the loop of simulate() (ceil(T/dt) steps);
a warm-up run (first calls, allocator, compilation) is excluded and reported separately; the device is
synchronised around every timed region; each figure is the median of --repeats whole runs with the min-max
range. Results go to DIR/results.md and DIR/results.json with the device, the torch version, the commit
and the full config. Every size is checked (memory included) before anything runs or is written.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

from nsipf_torch.api import step_count
from nsipf_torch.benchmarks.render import render_markdown
from nsipf_torch.benchmarks.spectral import spectral_rows
from nsipf_torch.benchmarks.tables import TABLE2_METHODS, histogram_rows, table1_rows, table2_rows, target_rows, train_row
from nsipf_torch.benchmarks.tables import fd_compile_rows
from nsipf_torch.benchmarks.timing import bench_setup, provenance
from nsipf_torch.commands.cli import option, parse_config, prog_name, usage_error
from nsipf_torch.io.files import ensure_writable_dir, save_json
from nsipf_torch.methods import METHODS, parse_methods
from nsipf_torch.problems.grid import resolve_device, resolve_dtype

PROG = prog_name("benchmark.py")  # nsipf-benchmark when started as the console script
# Target rows: (label, method, N, P, steps or None for T = --T, timed as "run" or "step"); the GPU targets
# in BENCHMARKS.md. tiny: the same rows at test sizes (the CPU dry run of studies/gpu_check.sh).
GPU_TARGETS = (("FDM two_blobs 128^3 to T", "fdm", 128, 0, None, "run"),
               ("SIPF-spline 128^3 P=2e4 200 steps", "sipf-spline", 128, 20_000, 200, "run"),
               ("NSIPF 128^3 P=2e4 200 steps", "nsipf", 128, 20_000, 200, "run"),
               ("NSIPF 128^3 P=1e6 per step", "nsipf", 128, 1_000_000, 20, "step"),
               ("SIPF-trilinear 256^3 P=1e8 per step", "sipf-trilinear", 256, 100_000_000, 10, "step"),
               ("NSIPF 256^3 P=1e8 per step", "nsipf", 256, 100_000_000, 10, "step"))
TINY_TARGETS = (("FDM two_blobs 16^3 to T", "fdm", 16, 0, None, "run"),
                ("SIPF-spline 16^3 P=500 4 steps", "sipf-spline", 16, 500, 4, "run"),
                ("NSIPF 16^3 P=500 4 steps", "nsipf", 16, 500, 4, "run"),
                ("SIPF-trilinear 16^3 P=2e3 per step", "sipf-trilinear", 16, 2_000, 4, "step"),
                ("NSIPF 16^3 P=2e3 per step", "nsipf", 16, 2_000, 4, "step"))
# nsipf-train's row: the shipped config (its defaults) on the device; tiny: a seconds-long config
TINY_TRAIN = ("--dim", "2", "--n-traj", "2", "--n-val-traj", "1", "--snapshots", "1", "--grids-per-traj", "1",
              "--patches-per-grid", "4", "--P-max", "3000", "--data-T", "0.02", "--data-Nr", "96", "--width", "4",
              "--epochs", "1")
SUITES = {
    "quick": {"Ns": (32, 64), "Ps": (1_000, 5_000, 10_000, 20_000, 100_000, 1_000_000), "spectral_Ns": (64,)},
    "paper": {"Ns": (32, 64, 128), "Ps": (1_000, 5_000, 10_000, 20_000, 100_000, 1_000_000),
              "spectral_Ns": (64, 128)},
    "gpu": {"Ns": (32, 64, 128), "Ps": (1_000, 5_000, 10_000, 20_000, 100_000, 1_000_000, 10_000_000),
            "targets": GPU_TARGETS, "train_argv": (), "spectral_Ns": (128, 256),
            # the fast-path tables: NSIPF at P = 1e6, N = 128; CNN precision (speed at the large size, accuracy
            # end to end at the accuracy table's N = 64, P = 2e5); deposit kernels; eager vs torch.compile:
            # (method, N, P, compile modes beside eager), the targets' sizes and the launch-bound small runs
            # that CUDA graphs (reduce-overhead) are for
            "fast_path": {"big": (128, 1_000_000), "accuracy": (64, 200_000), "deposit_Ps": (1_000_000, 10_000_000),
                          "compile": (("sipf-trilinear", 64, 10_000_000, ("default",)),
                                      ("nsipf", 128, 1_000_000, ("reduce-overhead",)),
                                      ("nsipf", 64, 20_000, ("reduce-overhead",)))}},
    # the test suite's smoke run and the CPU dry run of the GPU script (no compilation: slow here)
    "tiny": {"Ns": (8, 16), "Ps": (100, 1_000), "targets": TINY_TARGETS, "train_argv": TINY_TRAIN,
             "spectral_Ns": (16,),
             "fast_path": {"big": (16, 2_000), "accuracy": (16, 1_000), "deposit_Ps": (1_000,), "compile": ()}},
}
TABLES = ("table1", "table2", "fast_path", "targets", "spectral", "train", "histogram", "fd_compile")
DEFAULT_TABLES = ["table1", "table2", "fast_path", "targets", "spectral", "train"]


@dataclass
class BenchConfig:
    suite: str = option("quick", "which sizes to run", choices=tuple(SUITES))
    device: str = option("auto", "auto, cpu, cuda or cuda:K")
    dtype: str = option("float32", "floating-point type of every method", choices=("float32", "float64"))
    repeats: int = option(3, "timed whole runs per figure (median, min-max)")
    out: str = option("bench/latest", "output directory for results.md and results.json")
    T: float = option(0.2, "Table 1 final time")
    dt: float = option(1e-3, "time step of every method")
    P: int = option(20_000, "Table 1 particle count")
    N2: int = option(64, "Table 2 grid size")
    steps2: int = option(20, "steps per Table 2 run")
    methods: list[str] = option(list(METHODS), f"Table 1 rows, comma separated ({', '.join(METHODS)}; "
                                "a table label such as NSIPF also names its method)")
    Ns: list[int] = option([], "override the suite's Table 1 grid sizes, e.g. 128 (empty: the suite's)")
    Ps: list[int] = option([], "override the suite's Table 2 particle counts, e.g. 20000,1e6 (empty: the suite's)")
    tables: list[str] = option(DEFAULT_TABLES, "which parts to run, comma separated (fast_path, targets and train "
                               "only in suites that define them: gpu, tiny; histogram on request)", choices=TABLES)
    progress: bool = option(True, "print each row as it is measured")

    def validate(self) -> None:
        for name in ("repeats", "P", "N2", "steps2"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        for name in ("Ns", "Ps"):
            bad = [v for v in getattr(self, name) if v < 1]
            if bad:
                raise ValueError(f"--{name} values must be >= 1, got {bad[0]}")
        for name in ("dt", "T"):
            value = getattr(self, name)
            if not (value > 0 and value < float("inf")):
                raise ValueError(f"--{name} must be a finite number > 0, got {value}")
        if self.T < self.dt:
            raise ValueError(f"--dt {self.dt:g} is longer than the whole run --T {self.T:g}: no step to time")
        step_count(self.T, self.dt)  # refuses a step count beyond the API's limit
        self.methods = parse_methods(self.methods)
        if not self.tables:
            raise ValueError("--tables must name at least one entry")


def parse_args(argv) -> BenchConfig:
    return parse_config(BenchConfig, argv, prog=PROG, description=__doc__.split("\n\n")[0])


def suite_sizes(cfg: BenchConfig) -> dict:
    """The suite's sizes with --Ns and --Ps applied."""
    suite = dict(SUITES[cfg.suite])
    if cfg.Ns:
        suite["Ns"] = tuple(cfg.Ns)
    if cfg.Ps:
        suite["Ps"] = tuple(cfg.Ps)
    return suite


def check_sizes(cfg: BenchConfig, suite: dict) -> None:
    """Every run the requested tables make at the given sizes, checked as simulate() checks a run (grid
    size, step count, memory on the device): a ``ValueError`` naming the flag before anything runs. The
    suites' own fixed rows (targets, fast path) are recorded as errors instead, if one does not fit."""
    tables = set(cfg.tables)

    def check(flag, value, method, N, P, T):
        try:
            bench_setup(method, N, P, T, cfg)
        except ValueError as err:
            raise ValueError(f"{flag} {value if value < 1e12 else format(float(value), '.3g')}: {err}") from None

    particle = [m for m in cfg.methods if METHODS[m].particles]
    if tables & {"table1", "fd_compile"}:
        for N in suite["Ns"]:
            check("--Ns", N, "fdm", N, 1, cfg.T)
    if "table1" in tables:
        for method in particle:
            check("--P", cfg.P, method, min(suite["Ns"]), cfg.P, cfg.T)
        for N in suite["Ns"]:
            for method in cfg.methods:
                check("--Ns", N, method, N, cfg.P, cfg.T)
    if tables & {"table2", "histogram"}:
        check("--N2", cfg.N2, "fdm", cfg.N2, 1, cfg.dt)
    N2 = min(cfg.N2, max(suite["Ns"]))
    for P in suite["Ps"]:
        if "table2" in tables:
            for method in (m for m in TABLE2_METHODS if m in cfg.methods):
                check("--Ps", P, method, N2, P, cfg.steps2 * cfg.dt)
        if "histogram" in tables:
            check("--Ps", P, "sipf-trilinear", cfg.N2, P, cfg.dt)


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_args(argv)
        device, dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype)
        suite = suite_sizes(cfg)
        check_sizes(cfg, suite)
        out = ensure_writable_dir(cfg.out)
    except ValueError as err:
        return usage_error(PROG, err)
    meta = {**provenance(cfg, device), "command": " ".join(sys.argv[1:] if argv is None else argv)}
    return run_suite(cfg, suite, meta, device, dtype, out)


def run_suite(cfg: BenchConfig, suite: dict, meta: dict, device: torch.device, dtype: torch.dtype, out) -> int:
    """Every requested table in order; results.json is rewritten after each, so a run cut short keeps data."""
    tables = set(cfg.tables)
    log = print if cfg.progress else (lambda *a, **k: None)
    log(f"# benchmark suite {cfg.suite} on {meta['device']}, torch {meta['torch']}, commit {meta['commit']}")
    results = {**meta, "table1": [], "table2": []}

    def checkpoint(key, value):
        results[key] = value
        save_json(out / "results.json", results)

    # the GPU targets first: the rows a short lease on a GPU must not miss
    if "targets" in tables and "targets" in suite:
        checkpoint("targets", target_rows(suite["targets"], cfg, device, log, lambda rows: checkpoint("targets", rows)))
    if "spectral" in tables:
        checkpoint("spectral", spectral_rows(suite["spectral_Ns"], cfg, device, dtype, log))
    if "train" in tables and "train_argv" in suite:
        checkpoint("train", train_row(suite["train_argv"], device, out, log))
    if "histogram" in tables:
        checkpoint("histogram", histogram_rows(cfg.N2, suite["Ps"], cfg.repeats, device, log))
    if "fd_compile" in tables:
        checkpoint("fd_compile", fd_compile_rows(suite["Ns"], cfg, device, log))
    if "table1" in tables:
        checkpoint("table1", table1_rows(suite["Ns"], cfg, device, log))
    if "table2" in tables:
        checkpoint("table2", table2_rows(suite, cfg, device, log))
    if "fast_path" in suite and "fast_path" in tables:
        from nsipf_torch.benchmarks.fast_path import fast_path_tables
        checkpoint("fast_path", fast_path_tables(suite["fast_path"], cfg, device, dtype, log,
                                                 lambda fp: checkpoint("fast_path", fp)))
    md = render_markdown(results, step_count(cfg.T, cfg.dt))
    (out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
