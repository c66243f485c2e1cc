"""Measure the memory coefficients of nsipf_torch/run/memory.py: the peak resident memory of a short run
of each method above the process's baseline, in a fresh process (CPU), per particle and per grid cell.

    python -m studies.run_memory             # prints COEFFICIENTS as JSON (about 10 min on a 2-core CPU)

The run is two steps of ``simulate()``'s loop (:func:`nsipf_torch.api.run`, its diagnostics and its two
snapshots included): what :func:`nsipf_torch.run.memory.check_memory` refuses before a run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from nsipf_torch.methods import METHODS
from nsipf_torch.run.memory import COEFFICIENTS

_PROBE = r"""
import json, sys, torch
torch.set_num_threads(1)
def rss(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
from nsipf_torch.api import SimConfig, check_config, make_runner, run
setup = check_config(SimConfig(**json.loads(sys.argv[1])))
base = rss("VmRSS")
run(setup, make_runner(setup))
print(json.dumps({"peak": rss("VmHWM") - base}))
"""


def measure_peak(method: str, *, N: int, dim: int, P: int, B: int = 1, dtype: str = "float32") -> int:
    """Peak resident bytes above the baseline of a two-step run of ``method`` (a registry name), in a
    fresh process (CPU)."""
    m = METHODS[method]
    cfg = {"method": m.family, "interp": m.interp or "spline", "N": N, "dim": dim, "P": P, "batch": B,
           "dtype": dtype, "device": "cpu", "ic": "two_blobs", "T": 0.002, "dt": 0.001, "snapshots": 1,
           "fallback": False}  # NSIPF's peak, also at sizes outside its CNN's validity domain
    if not m.particles:
        cfg.pop("batch")
    # the probe imports the package from wherever this process found it
    import nsipf_torch
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(nsipf_torch.__file__)))
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(cfg)], capture_output=True, text=True,
                         env=env, check=True, timeout=900)
    return int(json.loads(out.stdout.strip().splitlines()[-1])["peak"])


def measure_coefficients(N_cells: int = 128, P_particles: int = 10_000_000) -> dict:
    """Per-particle and per-cell bytes of each method: P = ``P_particles`` on a 32^3 grid, and the grid
    ``N_cells``^3 with 1,000 particles (each peak divided by the count it grew with)."""
    table = {}
    for name in COEFFICIENTS:
        per_cell = measure_peak(name, N=N_cells, dim=3, P=1000) / N_cells**3
        per_particle = 0.0 if not METHODS[name].particles else \
            max(measure_peak(name, N=32, dim=3, P=P_particles) - per_cell * 32**3, 0) / P_particles
        table[name] = (round(per_particle, 1), round(per_cell, 1))
    return table


if __name__ == "__main__":
    print(json.dumps(measure_coefficients(), indent=2))
