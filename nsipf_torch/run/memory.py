"""How much memory a run needs, estimated before anything is allocated, and refused when it cannot fit.

The estimate is linear in the particles and the grid cells of every member:

    bytes ~ B (per_particle P + per_cell N^d) (itemsize / 4) + fixed

with the coefficients measured per method (:mod:`nsipf_torch.methods` names) as the peak resident memory
of a few steps above the process's baseline (CPU, torch 2.14.1, float32): ``python -m studies.run_memory``
re-measures them and prints the table that BENCHMARKS.md records. A test checks the estimate within 2x of
the measured peak at sizes other than those the coefficients came from.
"""
from __future__ import annotations

import os

import torch

# (bytes per particle, bytes per grid cell) per member, float32; measured by studies.run_memory.
COEFFICIENTS = {
    "fdm": (0.0, 138.5),
    "sipf-trilinear": (153.2, 66.5),
    "sipf-spline": (236.6, 76.4),
    "nsipf": (257.4, 141.3),
}
FIXED_BYTES = 8 * 2**20  # allocator slack and small buffers


def estimate_bytes(method: str, *, N: int, dim: int, P: int, B: int = 1,
                   dtype: torch.dtype = torch.float32) -> int:
    """The estimated peak memory of a run of ``method`` (a registry name) in bytes (see the module
    docstring); a particle method without its own coefficients (a registered interpolator) is given the
    largest measured ones."""
    per_particle, per_cell = COEFFICIENTS.get(method) or max(v for k, v in COEFFICIENTS.items() if k != "fdm")
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


def _count(n) -> str:
    """A count as a reader takes it in: 20,000, or 1e+99 beyond a trillion."""
    return f"{n:,}" if n < 1e12 else f"{float(n):.3g}"


def check_memory(method: str, *, N: int, dim: int, P: int, B: int, dtype: torch.dtype,
                 device: torch.device) -> int:
    """Refuse a run whose estimated memory exceeds what the device has free (``ValueError`` naming both);
    returns the estimate."""
    need = estimate_bytes(method, N=N, dim=dim, P=P, B=B, dtype=dtype)
    have = available_bytes(device)
    if need > have:
        raise ValueError(f"the run needs about {need / 2**30:.3g} GiB ({method}, N = {_count(N)}, d = {dim}, "
                         f"P = {_count(P)}, {B} member(s)) but {device} has {have / 2**30:.3g} GiB available; "
                         "lower --N, --P or the batch")
    return need

