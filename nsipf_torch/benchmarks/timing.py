"""Timing runs through the one time loop, and the provenance every benchmark table carries.

A timed run is :func:`nsipf_torch.api.run` on a checked :class:`~nsipf_torch.api.Setup` (the end-time
rule of ``simulate()``: ceil(T/dt) steps, the last one shortened) with a :class:`Timer` last among its
callbacks: the seconds from its first step to its last, the device synchronised at both ends; the last
step's diagnostics and snapshot (the run's output) are inside, the step-0 ones are not. Runs are made
with one diagnostics step (the last) and one snapshot interval.

Rules: a warm-up run (first calls, allocator, compilation: its first 3 steps) is excluded and reported;
each figure is the median of ``repeats`` whole runs with the min-max range.
"""
from __future__ import annotations

import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

from nsipf_torch.api import MAX_STEPS, Setup, make_runner, prepare, run
from nsipf_torch.problems.grid import synchronize as sync
from nsipf_torch.run.callbacks import StopAt, Timer

WARMUP_STEPS = 3


def bench_setup(method: str, N: int, P: int, T: float, cfg, problem="two_blobs", **options) -> Setup:
    """The checked run of ``method`` (a :mod:`nsipf_torch.methods` name) at N^3 with P particles to T,
    with the benchmark's dt, device and dtype from ``cfg``; ``options`` are further SimConfig fields. NSIPF
    keeps its CNN outside the validity domain (``fallback=False``): a row times the method it names."""
    return prepare(problem, method, N=N, dim=3, P=max(int(P), 1), T=T, dt=cfg.dt, device=str(cfg.device),
                   dtype=cfg.dtype, snapshots=1, diag_every=MAX_STEPS, **{"fallback": False, **options})


def run_timed(setup: Setup, runner, device, stop: int | None = None) -> tuple[float, int]:
    """Seconds of one run of ``runner`` through ``setup`` (to step ``stop`` if given) and its FD sub-steps."""
    timer = Timer(device)
    result = run(setup, runner, [*([StopAt(stop)] if stop else []), timer])
    if not result.complete:
        raise RuntimeError(result.error)
    return timer.seconds, result.substeps


def timed(setup: Setup, repeats: int, device, make=None) -> dict:
    """A warm-up run (its first WARMUP_STEPS steps; excluded, reported), then ``repeats`` whole runs, each
    with a fresh runner from ``make()`` (default: ``make_runner(setup)``)."""
    make = make or (lambda: make_runner(setup))
    warm, _ = run_timed(setup, make(), device, stop=min(WARMUP_STEPS, setup.n_steps))
    runs = [run_timed(setup, make(), device) for _ in range(repeats)]
    times = [r[0] for r in runs]
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "warmup_s": warm,
            "substeps": runs[0][1], "steps": setup.n_steps}


def per_step(r: dict) -> dict:
    return {"s_per_step": r["median_s"] / r["steps"], "min_s_per_step": r["min_s"] / r["steps"],
            "max_s_per_step": r["max_s"] / r["steps"], "warmup_s": r["warmup_s"]}


def time_calls(fn, calls: int, repeats: int, device) -> dict:
    """Seconds per call of ``fn`` (median over ``repeats`` of ``calls`` calls, after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync(device)
        times.append((time.perf_counter() - start) / calls)
    return {"s_per_call": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def guarded(rows: list, row: dict, work, log, label: str) -> None:
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


def fmt(r: dict) -> str:
    return f"{r['median_s']:.3g} s ({r['min_s']:.3g}–{r['max_s']:.3g})"


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


def provenance(cfg, device: torch.device) -> dict:
    """device, torch, commit, config and date: what every results.json starts with."""
    from dataclasses import asdict
    return {"device": device_name(device), "torch": torch.__version__, "commit": commit_hash(),
            "config": asdict(cfg), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
