"""How much memory a run needs, estimated before anything is allocated, and refused when it cannot fit.

The estimate is linear in the particles and the grid cells of every member:

    bytes ~ B (per_particle P + per_cell N^d) (itemsize / 4) + fixed

with the coefficients measured per method as the peak resident memory of a few steps above the
process's baseline (CPU, torch 2.14.1, float32): ``python -m nsipf_torch.run.memory`` re-measures them and
prints the table that BENCHMARKS.md records. A test checks the estimate within 2x of the measured peak
at sizes other than those the coefficients came from.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

# (bytes per particle, bytes per grid cell) per member, float32; measured by measure_coefficients().
COEFFICIENTS = {
    "fdm": (0.0, 125.8),
    "sipf-trilinear": (91.6, 66.6),
    "sipf-spline": (249.1, 68.4),
    "nsipf": (256.8, 117.8),
}
FIXED_BYTES = 8 * 2**20  # allocator slack and small buffers


def _key(method: str, interp: str) -> str:
    if method == "fdm":
        return "fdm"
    return "nsipf" if method == "nsipf" or interp == "neural" else f"sipf-{interp}"


def estimate_bytes(method: str, interp: str, *, N: int, dim: int, P: int, B: int = 1,
                   dtype: torch.dtype = torch.float32) -> int:
    """The estimated peak memory of a run in bytes (see the module docstring)."""
    per_particle, per_cell = COEFFICIENTS[_key(method, interp)]
    particles = 0 if method == "fdm" else P
    itemsize = torch.finfo(dtype).bits // 8
    return int(B * (per_particle * particles + per_cell * float(N) ** dim) * itemsize / 4 + FIXED_BYTES)


def available_bytes(device: torch.device) -> int:
    """Free memory where the run will live: the GPU's free memory, or the host's available memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def check_memory(method: str, interp: str, *, N: int, dim: int, P: int, B: int, dtype: torch.dtype,
                 device: torch.device) -> int:
    """Refuse a run whose estimated memory exceeds what the device has free (``ValueError`` naming both);
    returns the estimate."""
    need = estimate_bytes(method, interp, N=N, dim=dim, P=P, B=B, dtype=dtype)
    have = available_bytes(device)
    if need > have:
        raise ValueError(f"the run needs about {need / 2**30:.3g} GiB ({method}, N = {N}, d = {dim}, "
                         f"P = {P:,}, {B} member(s)) but {device} has {have / 2**30:.3g} GiB available; "
                         "lower --N, --P or the batch")
    return need


_PROBE = r"""
import json, sys, torch
torch.set_num_threads(1)
def rss(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
from nsipf_torch.api import check_config, make_runner, SimConfig
cfg = SimConfig(**json.loads(sys.argv[1]))
setup = check_config(cfg)
base = rss("VmRSS")
runner = make_runner(setup)
for _ in range(2):
    runner.advance(cfg.dt)
runner.fields()
print(json.dumps({"peak": rss("VmHWM") - base}))
"""


def measure_peak(method: str, interp: str = "spline", *, N: int, dim: int, P: int, B: int = 1,
                 dtype: str = "float32") -> int:
    """Peak resident bytes above the baseline of two steps of a run, in a fresh process (CPU)."""
    cfg = {"method": method, "interp": interp, "N": N, "dim": dim, "P": P, "batch": B, "dtype": dtype,
           "device": "cpu", "ic": "two_blobs", "T": 0.002, "dt": 0.001}
    if method == "fdm":
        cfg.pop("batch")
    # the probe imports this very package, from wherever it was found
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(cfg)], capture_output=True, text=True,
                         env=env, check=True, timeout=900)
    return int(json.loads(out.stdout.strip().splitlines()[-1])["peak"])


def measure_coefficients(N_cells: int = 128, P_particles: int = 10_000_000) -> dict:
    """Per-particle and per-cell bytes of each method: P = ``P_particles`` on a 32^3 grid, and the grid
    ``N_cells``^3 with 1,000 particles (each peak divided by the count it grew with)."""
    table = {}
    for key in COEFFICIENTS:
        method, _, interp = key.partition("-")
        interp = interp or "spline"
        per_cell = measure_peak(method, interp, N=N_cells, dim=3, P=1000) / N_cells**3
        per_particle = 0.0 if method == "fdm" else \
            max(measure_peak(method, interp, N=32, dim=3, P=P_particles) - per_cell * 32**3, 0) / P_particles
        table[key] = (round(per_particle, 1), round(per_cell, 1))
    return table


if __name__ == "__main__":
    print(json.dumps(measure_coefficients(), indent=2))
