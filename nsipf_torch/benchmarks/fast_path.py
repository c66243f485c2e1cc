"""The GPU suite's fast-path tables: NSIPF at scale in each CNN precision (speed, and accuracy end to end),
the deposit kernels, and eager against ``torch.compile`` modes. Every row is guarded (a failure is
recorded, the suite goes on) and ``checkpoint(tables)`` runs after each table.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from nsipf_torch.api import make_runner, run
from nsipf_torch.benchmarks.tables import HotIC
from nsipf_torch.benchmarks.timing import bench_setup, guarded, per_step, time_calls, timed
from nsipf_torch.io.resources import reference_path
from nsipf_torch.methods import make_interp
from nsipf_torch.particles.sipf import initial_state
from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.grid import synchronize as sync
from nsipf_torch.problems.initial import get_ic
from nsipf_torch.run.callbacks import Snapshots

PRECISION_REFERENCE = reference_path("two_blobs", 3)


def precision_accuracy(N: int, P: int, precisions, cfg, device) -> list[dict]:
    """NSIPF two_blobs end to end in each CNN precision, same seed and noise: rel_l2 of rho against the
    converged FD reference at T/2 and T (as in the accuracy table), the rho difference from the fp32 run,
    and the CNN's direct effect at the fp32 run's T/2 state (fine field and grad c at the particles)."""
    from nsipf_torch.metrics import rel_l2
    ref = np.load(PRECISION_REFERENCE)
    rows, fp32_rho, fp32_half = [], {}, None
    for precision in precisions:
        setup = bench_setup("nsipf", N, P, float(ref["t_T"]), cfg, cnn_precision=precision)
        snaps = Snapshots([setup.step_at(float(ref["t_half"])), setup.n_steps], particles=P if precision == "fp32" else 0)
        start = time.perf_counter()
        result = run(setup, make_runner(setup), [snaps])
        sync(device)
        row = {"precision": precision, "N": N, "P": P, "wall_s": time.perf_counter() - start}
        for k, key in enumerate(("half", "T")):
            rho = result.rho[:, k].double()
            row[f"rho_err_{key}"] = float(rel_l2(rho, torch.from_numpy(ref[f"rho_{key}"]).double()[None]).mean())
            if precision == "fp32":
                fp32_rho[key] = rho
            elif key in fp32_rho:
                row[f"rho_diff_fp32_{key}"] = float(rel_l2(rho, fp32_rho[key]).mean())
        if precision == "fp32":
            fp32_half = (result.X[:, 0], result.c[:, 0])
        rows.append(row)
    if fp32_half is not None:  # the CNN alone, on one state: what the precision does before chaos amplifies it
        grid = Grid(N, 3, 1.0, device, setup.grid.dtype)
        X, c = (t.to(device) for t in fp32_half)
        base = make_interp("neural", grid, precision="fp32")
        f0, g0 = base.fine_field(c).double(), base.grad_c(c, X).double()
        for row in rows:
            if row["precision"] != "fp32":
                other = make_interp("neural", grid, precision=row["precision"])
                row["fine_field_rel_diff"] = float((other.fine_field(c).double() - f0).norm() / f0.norm())
                row["grad_c_rel_diff"] = float((other.grad_c(c, X).double() - g0).norm() / g0.norm())
    return rows


def deposit_candidates():
    """The two shipped deposits: NGP (one fixed-size integer histogram) and CIC (index_add_ of weights)."""
    from nsipf_torch.particles.deposit import deposit
    return {"NGP (shipped)": lambda X, g: deposit(X, g, 1.0, "ngp"),
            "CIC": lambda X, g: deposit(X, g, 1.0, "cic")}


def fast_path_tables(fp: dict, cfg, device, dtype, log, checkpoint) -> dict:
    """The tables of the suite's ``fast_path`` sizes: {"big": (N, P), "accuracy": (N, P), "deposit_Ps": Ps,
    "compile": ((method, N, P, modes), ...)}."""
    out = {"precision_speed": [], "precision_accuracy": [], "deposit": [], "compile": []}
    precisions = ("fp32", "tf32", "bf16") if device.type == "cuda" else ("fp32", "bf16")
    T = cfg.steps2 * cfg.dt

    N, P = fp["big"]
    for precision in precisions:
        guarded(out["precision_speed"], {"method": "NSIPF", "N": N, "P": P, "precision": precision},
                lambda: per_step(timed(bench_setup("nsipf", N, P, T, cfg, cnn_precision=precision), cfg.repeats,
                                       device)), log, f"fast path NSIPF N={N} P={P:,} {precision}")
    checkpoint(out)

    try:
        out["precision_accuracy"] = precision_accuracy(*fp["accuracy"], precisions, cfg, device)
    except Exception as err:  # noqa: BLE001
        out["precision_accuracy"] = [{"error": f"{type(err).__name__}: {err}"}]
    for row in out["precision_accuracy"]:
        log(f"  fast path accuracy {row}")
    checkpoint(out)

    N2 = min(cfg.N2, max(fp["big"][0], 16))
    grid = Grid(N2, 3, 1.0, device, dtype)
    for P in fp["deposit_Ps"]:
        for case, ic in (("spread", get_ic("two_blobs")), ("hot", HotIC())):
            X = initial_state(ic, grid, P, [0]).X
            for name, fn in deposit_candidates().items():
                guarded(out["deposit"], {"deposit": name, "N": N2, "P": P, "case": case},
                        lambda: time_calls(lambda: fn(X, grid), 20, cfg.repeats, device), log,
                        f"fast path deposit {name} P={P:,} {case}")
    checkpoint(out)

    for method, N, P, modes in fp["compile"]:
        setup = bench_setup(method, N, P, T, cfg)
        shared = make_runner(setup).interp  # one interpolator for every run: compiled code is reused, not redone
        for mode in ("eager", *modes):
            def make(setup=setup, mode=mode, shared=shared):
                return make_runner(setup, compile=False if mode == "eager" else mode, shared_interp=shared)
            guarded(out["compile"], {"method": method, "N": N, "P": P, "mode": mode},
                    lambda: per_step(timed(setup, cfg.repeats, device, make)), log,
                    f"fast path {method} N={N} P={P:,} {mode}")
            torch._dynamo.reset()
        checkpoint(out)
    return out
