"""Wall time of the elliptic field solve (nsipf_torch.solvers.spectral, torch.fft) against the same solve
with scipy.fft.dctn / idctn, side by side, one thread each: the two solves alternate within one process
(the machine may be shared), and each figure is the median of --repeat timed solves.

    python -m studies.time_spectral                     # N = 64, 128 in 3D, float64, median of --repeat
    python -m studies.time_spectral --N 32,64 --dim 2 --dtype float32
    python -m studies.time_spectral --baseline 9f4e1f1 # also the solver as of that commit, alternating

Both solve -D Delta_h c = beta (rho - mean rho) (alpha = 0) on the same random rho and must agree to
round-off (checked, printed). Timings are reported, not asserted (speed only in benchmarks).
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.fft
import torch

from nsipf_torch.benchmarks.timing import commit_hash, git_checkout
from nsipf_torch.commands.cli import parse_config, usage_error
from nsipf_torch.problems.grid import DTYPES
from nsipf_torch.solvers.spectral import elliptic_solve, symbol


@dataclass
class TimeSpectralConfig:
    N: list[int] = field(default_factory=lambda: [64, 128], metadata={"help": "grid sizes, comma separated"})
    dim: int = field(default=3, metadata={"help": "space dimension", "choices": (1, 2, 3)})
    dtype: str = field(default="float64", metadata={"help": "floating-point type", "choices": tuple(DTYPES)})
    repeat: int = field(default=7, metadata={"help": "timed solves per method, alternating (the median is reported)"})
    out: str | None = field(default=None, metadata={"help": "also write the rows as JSON here"})
    baseline: str | None = field(default=None, metadata={
        "help": "also time nsipf_torch/solvers/spectral.py as of this git revision (e.g. 9f4e1f1), alternating"})


def module_at(rev: str):
    """nsipf_torch/solvers/spectral.py as of git revision ``rev`` of this checkout, as a module; ValueError if
    there is none (no checkout, unknown revision, no such file there)."""
    root = git_checkout()
    show = subprocess.run(["git", "show", f"{rev}:nsipf_torch/solvers/spectral.py"], capture_output=True, text=True,
                          cwd=root, timeout=30) if root else None
    if show is None or show.returncode != 0:
        raise ValueError(f"--baseline {rev}: no nsipf_torch/solvers/spectral.py at that revision of a git checkout")
    module = types.ModuleType(f"spectral_at_{rev}")
    exec(compile(show.stdout, f"{rev}:nsipf_torch/solvers/spectral.py", "exec"), module.__dict__)
    return module


def scipy_solve(rho: np.ndarray, k2: np.ndarray, D: float = 1.0, beta: float = 1.0) -> np.ndarray:
    """The reference: scipy's DCT-II over every axis, the division by D k_h^2 (mean mode dropped), the inverse."""
    rhat = scipy.fft.dctn(rho, type=2, workers=1)
    lam = D * k2
    chat = np.where(lam > 0, beta * rhat / np.where(lam > 0, lam, 1.0), 0.0)
    return scipy.fft.idctn(chat, type=2, workers=1)


def interleaved_medians(fns: list, repeat: int) -> list[float]:
    """Seconds per call of each of ``fns``, called in turn ``repeat`` times after one warm-up call each (plans,
    caches): the median of each, so a load spike on a shared machine hits both methods alike."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, t in zip(fns, times):
            start = time.perf_counter()
            fn()
            t.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_config(TimeSpectralConfig, argv, prog="python -m studies.time_spectral",
                           description=__doc__.split("\n\n")[0])
    except ValueError as err:
        return usage_error("python -m studies.time_spectral", err)
    try:
        base = module_at(cfg.baseline) if cfg.baseline else None
    except ValueError as err:
        return usage_error("python -m studies.time_spectral", err)
    torch.set_num_threads(1)
    dtype = DTYPES[cfg.dtype]
    gen = torch.Generator().manual_seed(0)
    print(f"elliptic solve, {cfg.dim}D, {cfg.dtype}, one thread (torch {torch.__version__}, scipy {scipy.__version__})")
    rows = []
    for N in cfg.N:
        h = 2.0 / N
        rho = torch.rand((1,) + (N,) * cfg.dim, generator=gen, dtype=torch.float64).to(dtype)
        k2 = symbol(N, cfg.dim, h, torch.device("cpu"), torch.float64).numpy()
        rho_np = rho[0].numpy()
        solves = [lambda: elliptic_solve(rho, cfg.dim, h, 1.0, 0.0, 1.0), lambda: scipy_solve(rho_np, k2)]
        if base:
            solves.append(lambda: base.elliptic_solve(rho, cfg.dim, h, 1.0, 0.0, 1.0))
        ours, ref, *then = interleaved_medians(solves, cfg.repeat)
        diff = np.abs(elliptic_solve(rho, cfg.dim, h, 1.0, 0.0, 1.0)[0].numpy() - scipy_solve(rho_np, k2)).max()
        print(f"  N = {N:4d}: torch.fft {ours * 1e3:9.2f} ms   scipy.fft {ref * 1e3:9.2f} ms   "
              f"ratio torch/scipy {ours / ref:5.2f}   max |difference| {diff:.1e}"
              + (f"   at {cfg.baseline}: {then[0] * 1e3:9.2f} ms, ratio {then[0] / ref:5.2f}" if base else ""))
        rows.append({"N": N, "dim": cfg.dim, "dtype": cfg.dtype, "torch_ms": ours * 1e3, "scipy_ms": ref * 1e3,
                     "ratio_torch_over_scipy": ours / ref, "max_abs_difference": float(diff),
                     **({"baseline": cfg.baseline, "baseline_ms": then[0] * 1e3,
                         "baseline_ratio_over_scipy": then[0] / ref} if base else {})})
    if cfg.out:
        command = "python -m studies.time_spectral " + " ".join(sys.argv[1:] if argv is None else argv)
        Path(cfg.out).write_text(json.dumps({"command": command, "commit": commit_hash(), "threads": 1,
                                             "statistic": "median, interleaved",
                                             "torch": torch.__version__,
                                             "scipy": scipy.__version__, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
