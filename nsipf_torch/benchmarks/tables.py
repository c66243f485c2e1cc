"""The runtime tables of ``nsipf-benchmark`` (docs/MODEL.md §4), each row a timed run of the one loop
(:mod:`nsipf_torch.benchmarks.timing`) on two_blobs in 3D.

    table1_rows      every method's whole run to T at each N (the paper's Table 1)
    fd_compile_rows  FDM with its sub-step eager and fused by torch.compile
    table2_rows      time per step against P at N2, and the hot case (the paper's Table 2)
    target_rows      the GPU targets (BENCHMARKS.md) with peak device memory
    train_row        the ``nsipf-train`` command with a given config, data generation included
    histogram_rows   the integer histogram forms of the NGP deposit, spread and hot
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from nsipf_torch.benchmarks.timing import bench_setup, fmt, guarded, per_step, time_calls, timed
from nsipf_torch.methods import METHODS
from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.grid import synchronize as sync
from nsipf_torch.problems.initial import InitialCondition, get_ic

PAPER_TABLE1 = {"FDM": (7.31, 56.89, 742.24), "SIPF-spline": (2955.73, 3919.37, 7599.54),
                "NSIPF": (8.69, 33.12, 243.86)}
PAPER_RESOLUTIONS = {32: 0, 64: 1, 128: 2}  # assumed: the paper's res 1, 2, 3 (docs/MODEL.md §4)
PAPER_TABLE2 = {"SIPF-spline": {1000: 211.27, 5000: 998.38, 10000: 1959.34},
                "NSIPF": {1000: 31.97, 5000: 32.21, 10000: 32.42}}
MEMORY_LIMIT_GB = 80  # "fits" in the GPU targets
TABLE2_METHODS = ("sipf-spline", "nsipf", "sipf-trilinear")


class HotIC(InitialCondition):
    """two_blobs' c0 with every particle in the 2^d cells around the centre: late aggregation, where the
    deposit's atomic adds contend (rho0 uniform on those cells, zero elsewhere; N even)."""

    name = "hot"

    def __init__(self):
        self.base = get_ic("two_blobs")

    def c0(self, grid: Grid) -> torch.Tensor:
        return self.base.c0(grid)

    def rho0(self, grid: Grid, M0: float = 1.0) -> torch.Tensor:
        inner = (torch.stack(grid.mesh(), dim=-1).abs() < grid.h).all(dim=-1)  # the centres at +-h/2
        rho = inner.to(grid.dtype)
        return rho * (M0 / (float(rho.sum()) * grid.cell_volume))


def table1_rows(Ns, cfg, device, log) -> list[dict]:
    """Table 1: every method's whole run of two_blobs to T at each N."""
    rows = []
    for N in Ns:
        res = PAPER_RESOLUTIONS.get(N)
        for name in cfg.methods:
            method = METHODS[name]
            setup = bench_setup(name, N, cfg.P, cfg.T, cfg)
            r = timed(setup, cfg.repeats, device)
            paper = PAPER_TABLE1.get(method.label, (None,) * 3)[res] if res is not None else None
            rows.append({"method": method.label, "N": N, **r, "steps_per_s": r["steps"] / r["median_s"],
                         "particle_steps_per_s": cfg.P * r["steps"] / r["median_s"] if method.particles else None,
                         "paper_s": paper})
            log(f"  table 1  {method.label:15s} N={N:4d}: {fmt(r)}")
    return rows


def fd_compile_rows(Ns, cfg, device, log) -> list[dict]:
    """FDM two_blobs to T with the sub-step eager and fused by ``torch.compile``, side by side in one run
    (compilation happens in the warm-up, reported and excluded)."""
    rows = []
    for N in Ns:
        for mode in ("eager", "compiled"):
            setup = bench_setup("fdm", N, 1, cfg.T, cfg, compile=mode == "compiled")
            r = timed(setup, cfg.repeats, device)
            rows.append({"N": N, "mode": mode, **r, "ms_per_substep": 1e3 * r["median_s"] / r["substeps"]})
            log(f"  fd sub-step {mode:8s} N={N:4d}: {fmt(r)}")
    return rows


def table2_rows(suite: dict, cfg, device, log) -> list[dict]:
    """Table 2: time per step against P at N2 (runs of steps2 steps), and the hot case at the largest P."""
    rows = []
    N2 = min(cfg.N2, max(suite["Ns"]))
    T = cfg.steps2 * cfg.dt
    for name in (m for m in TABLE2_METHODS if m in cfg.methods):
        label = METHODS[name].label
        cases = [(P, "spread", "two_blobs") for P in suite["Ps"]] + [(max(suite["Ps"]), "hot", HotIC())]
        for P, case, problem in cases:
            r = timed(bench_setup(name, N2, P, T, cfg, problem=problem), cfg.repeats, device)
            rows.append({"method": label, "N": N2, "P": P, "case": case, **r, "s_per_step": r["median_s"] / r["steps"],
                         "particle_steps_per_s": P * r["steps"] / r["median_s"],
                         "paper_s": PAPER_TABLE2.get(label, {}).get(P) if case == "spread" else None})
            log(f"  table 2  {label:15s} P={P:>9,d} {case}: {fmt(r)}")
    return rows


def peak_memory_gb(device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def target_rows(targets, cfg, device, log, checkpoint) -> list[dict]:
    """The GPU target rows ``(label, method, N, P, steps or None for T, "run" or "step")``: median of
    --repeats, warm-up excluded and reported, each with the peak device memory and whether it fits
    MEMORY_LIMIT_GB; ``checkpoint(rows)`` after each."""
    rows = []
    for label, name, N, P, steps, kind in targets:
        T = cfg.T if steps is None else steps * cfg.dt
        row = {"row": label, "method": METHODS[name].label, "N": N, "P": P, "kind": kind}
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)

        def work():
            r = timed(bench_setup(name, N, P, T, cfg), cfg.repeats, device)
            r = {**r, **(per_step(r) if kind == "step" else {})}
            memory = peak_memory_gb(device)
            return {**r, "peak_memory_gb": memory, "fits": None if memory is None else memory <= MEMORY_LIMIT_GB}
        guarded(rows, row, work, log, label)
        checkpoint(rows)
    return rows


def train_row(train_argv, device, out: Path, log) -> dict:
    """``nsipf-train --device DEVICE`` with the config ``train_argv`` (empty: its shipped defaults), data
    generation included: a fresh cache folder, the checkpoint and logs under DIR/train."""
    from nsipf_torch.commands import train
    folder = out / "train"
    argv = [*train_argv, "--device", str(device), "--out", str(folder / "model.pt"),
            "--cache-dir", str(folder / f"cache-{time.strftime('%Y%m%d-%H%M%S')}"), "--logdir", str(folder / "runs")]
    row = {"row": "nsipf-train " + " ".join(train_argv) + f" --device {device}", "argv": argv}

    def work():
        sync(device)
        start = time.perf_counter()
        code = train.main(argv)
        sync(device)
        return {"wall_s": time.perf_counter() - start, "exit": code}
    guarded([], row, work, log, "nsipf-train")
    return row


def histogram_candidates():
    """Integer histograms of flat indices into a known number of bins: the shipped form and the others."""
    from nsipf_torch.particles.deposit import histogram

    def accumulate(dtype, how):
        def run(flat, n):
            ones = torch.ones((), dtype=dtype, device=flat.device).expand(flat.shape[0])
            return getattr(torch.zeros(n, dtype=dtype, device=flat.device), how)(0, flat, ones)
        return run

    return {"bincount (syncs on a GPU)": lambda flat, n: torch.bincount(flat, minlength=n),
            "index_add_ int32 (shipped)": lambda flat, n: histogram(flat, n, flat.shape[0]),
            "index_add_ int64": accumulate(torch.int64, "index_add_"),
            "scatter_add_ int32": accumulate(torch.int32, "scatter_add_"),
            "scatter_add_ int64": accumulate(torch.int64, "scatter_add_"),
            "index_put_ accumulate int64": lambda flat, n: torch.zeros(n, dtype=torch.int64, device=flat.device)
            .index_put_((flat,), torch.ones((), dtype=torch.int64, device=flat.device).expand(flat.shape[0]),
                        accumulate=True)}


def histogram_rows(N: int, Ps, repeats: int, device, log) -> list[dict]:
    """Each histogram form on P flat cell indices of an N^3 grid: spread (uniform) and hot (8 cells)."""
    rows, n = [], N**3
    candidates = histogram_candidates()
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
                guarded(rows, row, work, log, f"histogram {name} P={P:,} {case}")
    return rows
