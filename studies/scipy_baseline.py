"""Classical SIPF as the paper ran it (numpy and scipy ``interpn(method='cubic')`` on the CPU), timed per
step, beside our SIPF-spline step at the same size: eager, and through ``torch.compile`` (CUDA graphs on
a GPU).

    python -m studies.scipy_baseline                           # N = 32, P = 2e4 (about a minute on a CPU)
    python -m studies.scipy_baseline --device cuda --out bench/baseline_gpu

Ours is timed as nsipf-benchmark times a row (nsipf_torch/benchmarks/timing.py: the loop of simulate(),
warm-up and compilation excluded, median of --repeats runs of --steps steps). Writes OUT/results.md and
OUT/results.json.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from nsipf_torch.api import make_runner
from nsipf_torch.benchmarks.timing import bench_setup, provenance, timed
from nsipf_torch.commands.cli import option, parse_config, usage_error
from nsipf_torch.io.files import ensure_writable_dir, save_json
from nsipf_torch.problems.grid import Grid, resolve_device
from nsipf_torch.problems.initial import get_ic

PROG = "scipy_baseline.py"


@dataclass
class BaselineConfig:
    N: int = option(32, "grid cells per axis (>= 4)")
    P: int = option(20_000, "particles")
    dt: float = option(1e-3, "time step")
    scipy_steps: int = option(3, "steps of the scipy baseline (seconds each at the default size)")
    steps: int = option(20, "steps per timed run of ours")
    repeats: int = option(3, "timed runs of ours (median, min-max)")
    compile: bool = option(True, "also time our step through torch.compile (compilation excluded, reported)")
    device: str = option("auto", "auto, cpu or cuda")
    dtype: str = option("float32", "dtype of ours", choices=("float32", "float64"))
    out: str = option("bench/baseline", "output directory for results.md and results.json")

    def validate(self) -> None:
        for name in ("N", "P", "scipy_steps", "steps", "repeats"):
            if getattr(self, name) < (4 if name == "N" else 1):
                raise ValueError(f"--{name.replace('_', '-')} must be >= {4 if name == 'N' else 1}, "
                                 f"got {getattr(self, name)}")
        if not 0 < self.dt < float("inf"):
            raise ValueError(f"--dt must be a finite number > 0, got {self.dt}")


def scipy_step_time(N: int, P: int, steps: int, dt: float) -> float:
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


def baseline(cfg: BaselineConfig, device: torch.device) -> dict:
    """The scipy step beside ours (eager, and compiled with --compile)."""
    row = {"N": cfg.N, "P": cfg.P, "scipy_s_per_step": scipy_step_time(cfg.N, cfg.P, cfg.scipy_steps, cfg.dt)}
    setup = bench_setup("sipf-spline", cfg.N, cfg.P, cfg.steps * cfg.dt, cfg)
    ours = timed(setup, cfg.repeats, device)
    row["ours_s_per_step"] = ours["median_s"] / ours["steps"]
    row["speedup"] = row["scipy_s_per_step"] / row["ours_s_per_step"]
    if cfg.compile:
        mode = "reduce-overhead" if device.type == "cuda" else "default"
        fast = timed(setup, cfg.repeats, device, lambda: make_runner(setup, compile=mode))
        row.update(compiled_mode=mode, compiled_s_per_step=fast["median_s"] / fast["steps"], compile_s=fast["warmup_s"])
        row["compiled_speedup"] = row["scipy_s_per_step"] / row["compiled_s_per_step"]
    return row


def markdown(b: dict, meta: dict) -> str:
    lines = [f"# Paper-faithful baseline (timed per step): N = {b['N']}³, P = {b['P']:,}", "",
             f"Device: {meta['device']}; torch {meta['torch']}; commit {meta['commit']}; {meta['date']}.", "",
             "| classical SIPF | s/step |", "|---|---|",
             f"| scipy `interpn(method='cubic')`, CPU (the paper's approach) | {b['scipy_s_per_step']:.3g} |",
             f"| ours, SIPF-spline | {b['ours_s_per_step']:.3g} |",
             f"| **speedup** | **{b['speedup']:.0f}×** |"]
    if "compiled_s_per_step" in b:
        lines += [f"| ours, SIPF-spline, `torch.compile` mode {b['compiled_mode']} (compilation "
                  f"{b['compile_s']:.0f} s, excluded) | {b['compiled_s_per_step']:.3g} |",
                  f"| **speedup, compiled** | **{b['compiled_speedup']:.0f}×** |"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    try:
        cfg = parse_config(BaselineConfig, argv, prog=PROG, description=__doc__.split("\n\n")[0])
        device = resolve_device(cfg.device)
        bench_setup("sipf-spline", cfg.N, cfg.P, cfg.steps * cfg.dt, cfg)  # sizes and memory, before anything runs
        out = ensure_writable_dir(cfg.out)
    except ValueError as err:
        return usage_error(PROG, err)
    meta = provenance(cfg, device)
    row = baseline(cfg, device)
    save_json(out / "results.json", {**meta, "baseline": row})
    md = markdown(row, meta)
    (out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
