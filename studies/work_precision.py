"""Work-precision study: rho error at T against wall time, one curve per method (the way SciML's
DiffEqBenchmarks compare ODE solvers), on ``two_blobs`` and the held-out ``planar`` problem in 3D.

Each point is one run to T of FD (N per axis; the fused ``torch.compile`` sub-step, compile time excluded
and reported apart, so FD is timed at its best) or of SIPF-trilinear, SIPF-spline or NSIPF (N, P; NGP
deposit, exact c-update, eager), float32, dt = 1e-3, one seed. Error: ``metrics.rel_l2`` of rho at T on
16^d blocks (paper eq. 1's density) against a reference better than every point:

- ``planar``: the 1-D FD reference (:func:`studies.references.planar_reference`, converged to 1e-3
  between NR and 2NR cells, NR >= 2048), exact for the 3-D problem up to its own error (module docstring
  there); Richardson's estimate of that error is reported.
- ``two_blobs``: FD in float64 at ``ref_N`` (twice the finest FD point), Richardson's estimate of its own
  error from ref_N / 2 and ref_N with order 2 assumed (:func:`studies.references.fd_reference`).

Wall time: from the runner's construction (initial sampling included) to rho at T on the host, after one
warm-up run of the same method and grid (first calls, allocator, CNN loading, compilation) that is not
counted. Every run is simulate()'s loop (:func:`nsipf_torch.api.run`), one snapshot at T. Sizes in
:data:`SIZES`:

    python -m studies.work_precision                    # the CPU sizes on a CPU, the GPU sizes on a GPU
    python -m studies.work_precision --sizes tiny --T 0.01 --out bench/wp_tiny

writes OUT/work_precision.png, OUT/results.md (every point, the cheapest run per accuracy) and
OUT/results.json.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass

import torch

from nsipf_torch.api import MAX_STEPS, make_runner, prepare, run
from nsipf_torch.benchmarks.timing import provenance
from nsipf_torch.commands.cli import option, parse_config, usage_error
from nsipf_torch.io.files import ensure_writable_dir, save_json
from nsipf_torch.methods import METHODS, parse_methods
from nsipf_torch.metrics import block_average, rel_l2
from nsipf_torch.problems.grid import Grid, resolve_device
from nsipf_torch.problems.grid import synchronize as sync
from nsipf_torch.problems.initial import get_ic
from studies.references import fd_reference, planar_reference

PROBLEMS = ("two_blobs", "planar")
SIZES = {  # FD grids; particle grids and counts; the two_blobs reference grid (two levels: ref_N / 2, ref_N);
    # whether FD (points and reference) runs the compiled sub-step
    "cpu": {"fd_Ns": (32, 48, 64), "particle_Ns": (32, 64), "Ps": (20_000, 200_000, 1_000_000), "ref_N": 128,
            "compile": True},
    "gpu": {"fd_Ns": (32, 48, 64, 96, 128), "particle_Ns": (32, 64, 128), "Ps": (20_000, 200_000, 1_000_000),
            "ref_N": 256, "compile": True},
    "tiny": {"fd_Ns": (16, 32), "particle_Ns": (16,), "Ps": (500, 2_000), "ref_N": 64, "compile": False},  # tests
}
ACCURACY_LEVELS = (0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01)


@dataclass
class Point:
    problem: str
    method: str  # the table label (FDM, SIPF-spline, ...)
    N: int
    P: int  # 0 for FDM
    error: float
    wall_s: float
    warmup_s: float

    @property
    def label(self) -> str:
        return f"{self.N}" if self.method == "FDM" else f"{self.N}/{self.P:.0e}".replace("e+0", "e")


def run_to(method: str, problem: str, N: int, P: int, dim: int, T: float, dt: float, device,
           compile: bool = True) -> tuple[torch.Tensor, float]:
    """rho at T (float64, host) and the wall seconds of the whole run, from the runner's construction
    (``compile``: FD's fused sub-step). NSIPF keeps its CNN outside the validity domain (``fallback=False``):
    a point is the method it names."""
    options = {"compile": compile} if not METHODS[method].particles else {}
    setup = prepare(problem, method, N=N, dim=dim, P=max(P, 1), T=T, dt=dt, device=str(device), dtype="float32",
                    snapshots=1, diag_every=MAX_STEPS, fallback=False, **options)
    sync(device)
    start = time.perf_counter()
    result = run(setup, make_runner(setup))
    rho = result.rho[:1, -1].double()
    sync(device)
    return rho, time.perf_counter() - start


def reference(problem: str, dim: int, ref_N: int, T: float, dt: float, device,
              compile: bool = True) -> tuple[torch.Tensor, float, str]:
    """(reference rho on 16^d blocks, float64; Richardson's estimate of its own error; how it was made)."""
    g16 = Grid(16, dim, dtype=torch.float64)
    ic = get_ic(problem)
    if problem.startswith("planar"):
        ref = planar_reference(ic, dim, 0.01, 1.0, T, dt)
        return ref.on(g16)[None], ref.error16, f"1-D FD at {ref.NR} cells"
    coarse = Grid(ref_N // 2, dim, device=device, dtype=torch.float64)
    rho, error, _ = fd_reference(ic, coarse, 0.01, 1.0, T, dt, factors=(1, 2), compile=compile)
    return block_average(rho[None].cpu(), 16, dim), error, f"FD float64 at {ref_N}^{dim} (Richardson from {ref_N // 2})"


def study(sizes: dict, problems=PROBLEMS, methods=METHODS, dim: int = 3, T: float = 0.2, dt: float = 1e-3,
          device: torch.device | str = "cpu", log=print) -> tuple[list[Point], dict]:
    """Every point of the study and {problem: (reference error, description, seconds)}; ``methods`` are
    :mod:`nsipf_torch.methods` names."""
    device = torch.device(device)
    points, references = [], {}
    for problem in problems:
        start = time.perf_counter()
        ref, ref_error, how = reference(problem, dim, sizes["ref_N"], T, dt, device, sizes["compile"])
        references[problem] = {"error": ref_error, "how": how, "seconds": time.perf_counter() - start}
        log(f"{problem}: reference {how}, own error {ref_error:.2e} ({references[problem]['seconds']:.0f} s)")
        for method in methods:
            label, particles = METHODS[method].label, METHODS[method].particles
            for N in (sizes["particle_Ns"] if particles else sizes["fd_Ns"]):
                counts = sizes["Ps"] if particles else (0,)
                _, warmup = run_to(method, problem, N, min(counts), dim, 5 * dt, dt, device, sizes["compile"])
                for P in counts:
                    rho, wall = run_to(method, problem, N, P, dim, T, dt, device, sizes["compile"])
                    error = float(rel_l2(rho, ref, 16, dim)[0])
                    points.append(Point(problem, label, N, P, error, wall, warmup))
                    log(f"  {label:15s} N={N:4d} P={P:>9,d}: error {error:.4f}, {wall:8.3g} s (warm-up {warmup:.3g} s)")
    return points, references


def cheapest(points: list[Point], problem: str, levels=ACCURACY_LEVELS) -> list[tuple[float, Point | None]]:
    """For each accuracy level, the fastest point of ``problem`` with error <= level (None if none)."""
    mine = [p for p in points if p.problem == problem]
    out = []
    for level in levels:
        ok = [p for p in mine if p.error <= level]
        out.append((level, min(ok, key=lambda p: p.wall_s) if ok else None))
    return out


def markdown(points: list[Point], references: dict, header: str) -> str:
    lines = [header, ""]
    for problem, ref in references.items():
        lines += [f"**{problem}** (reference: {ref['how']}, own error {ref['error']:.1e})", "",
                  "| method | N | P | rho error at T | wall (s) | warm-up (s) |", "|---|---|---|---|---|---|"]
        for p in (q for q in points if q.problem == problem):
            lines.append(f"| {p.method} | {p.N} | {p.P:,} | {p.error:.4f} | {p.wall_s:.3g} | {p.warmup_s:.3g} |")
        lines += ["", "| accuracy wanted | cheapest run (wall) |", "|---|---|"]
        for level, p in cheapest(points, problem):
            best = f"{p.method} {p.label} ({p.wall_s:.3g} s, error {p.error:.3f})" if p else "none of the runs"
            lines.append(f"| <= {level} | {best} |")
        lines.append("")
    return "\n".join(lines)


def pareto(points: list[Point]) -> list[Point]:
    """The points no other point beats in both wall time and error, by increasing wall time."""
    front, best = [], math.inf
    for p in sorted(points, key=lambda p: (p.wall_s, p.error)):
        if p.error < best:
            front.append(p)
            best = p.error
    return front


def figure(points: list[Point], references: dict, path) -> None:
    """Log-log error against wall time, one panel per problem: every run of a method as a marker (labelled
    N or N/P), one curve per method through its Pareto front, the reference's own error dotted."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = list(references)
    fig, axes = plt.subplots(1, len(problems), figsize=(6 * len(problems), 4.8), squeeze=False)
    for ax, problem in zip(axes[0], problems):
        for method, marker in zip((m.label for m in METHODS.values()), "osD^"):
            mine = [p for p in points if p.problem == problem and p.method == method]
            if not mine:
                continue
            front = pareto(mine)
            line, = ax.loglog([p.wall_s for p in front], [p.error for p in front], "-", label=method)
            ax.scatter([p.wall_s for p in mine], [p.error for p in mine], marker=marker, color=line.get_color())
            for p in mine:
                ax.annotate(p.label, (p.wall_s, p.error), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ref_error = references[problem]["error"]
        if math.isfinite(ref_error) and ref_error > 0:
            ax.axhline(ref_error, ls=":", color="gray", label="reference's own error")
        ax.set_xlabel("wall time to T (s)")
        ax.set_ylabel("rel. L2 error of rho at T (16^d blocks)")
        ax.set_title(problem)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@dataclass
class WorkPrecisionConfig:
    sizes: str = option("auto", "auto (gpu on a GPU, else cpu), cpu, gpu or tiny (the tests')",
                        choices=("auto", "cpu", "gpu", "tiny"))
    methods: list[str] = option(list(METHODS), f"methods, comma separated ({', '.join(METHODS)})")
    T: float = option(0.2, "final time")
    dt: float = option(1e-3, "time step")
    device: str = option("auto", "auto, cpu or cuda")
    out: str = option("bench/work_precision", "output directory")

    def validate(self) -> None:
        self.methods = parse_methods(self.methods)
        if not (0 < self.dt <= self.T < math.inf):
            raise ValueError(f"--dt and --T must be finite with 0 < dt <= T, got {self.dt} and {self.T}")


def main(argv=None) -> int:
    try:
        cfg = parse_config(WorkPrecisionConfig, argv, prog="work_precision.py", description=__doc__.split("\n\n")[0])
        device = resolve_device(cfg.device)
        out = ensure_writable_dir(cfg.out)
    except ValueError as err:
        return usage_error("work_precision.py", err)
    meta = provenance(cfg, device)
    size = cfg.sizes if cfg.sizes != "auto" else ("gpu" if device.type == "cuda" else "cpu")
    print(f"# work-precision ({size} sizes) on {meta['device']}, torch {meta['torch']}, commit {meta['commit']}")
    start = time.perf_counter()
    points, references = study(SIZES[size], methods=cfg.methods, T=cfg.T, dt=cfg.dt, device=device)
    wall = time.perf_counter() - start
    figure(points, references, out / "work_precision.png")
    save_json(out / "results.json", {**meta, "sizes": size, "references": references, "wall_s": wall,
                                     "points": [asdict(p) for p in points]})
    header = (f"# nsipf_torch work-precision ({size} sizes)\n\nDevice: {meta['device']}; torch {meta['torch']}; "
              f"commit {meta['commit']}; T = {cfg.T}, dt = {cfg.dt}, float32 runs, one seed; {wall:.0f} s in all.")
    md = markdown(points, references, header) + "\n![work-precision](work_precision.png)\n"
    (out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
