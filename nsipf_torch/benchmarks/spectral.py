"""The DCT field solve of the Keller-Segel family (:mod:`nsipf_torch.solvers.spectral`, issue 20) as a
benchmark table: one call of the elliptic solve and of the exact parabolic step on an N^3 field, median
over repeats of 10 calls (:func:`~nsipf_torch.benchmarks.timing.time_calls`), with its peak device memory.

Each row also records the solve's residual, so a timing never stands for a wrong answer: the relative
max-norm of (alpha - D Delta_h) c - beta (rho - mean rho) with the finite-volume Laplacian of the solvers
(:mod:`nsipf_torch.solvers.stencils`), which the DCT inverts exactly (round-off times the conditioning).
"""
from __future__ import annotations

import torch

from nsipf_torch.benchmarks.timing import guarded, time_calls
from nsipf_torch.solvers.spectral import elliptic_solve, parabolic_step
from nsipf_torch.solvers.stencils import divergence, face_differences

# the issue-21 GPU target (BENCHMARKS.md): the elliptic DCT solve at 256^3 within 5 ms
SPECTRAL_TARGETS_MS = {256: 5.0}
D, ALPHA, BETA, CALLS = 1.0, 0.0, 1.0, 10


def residual(c: torch.Tensor, rho: torch.Tensor, h: float) -> float:
    """max |(alpha - D Delta_h) c - beta (rho - mean rho)| / max |beta (rho - mean rho)|, in float64."""
    c, rho = c.double(), rho.double()
    lap = sum(divergence(face_differences(c, a) / h, a, h) for a in (-3, -2, -1))
    rhs = BETA * (rho - rho.mean(dim=(-3, -2, -1), keepdim=True))
    return float((ALPHA * c - D * lap - rhs).abs().max() / rhs.abs().max())


def spectral_rows(Ns, cfg, device: torch.device, dtype: torch.dtype, log) -> list[dict]:
    """Each N: the elliptic solve (mean-free, alpha = 0) and the parabolic step over tau = --dt (eps = 1)."""
    rows = []
    for N in Ns:
        h = 2.0 / N
        gen = torch.Generator(device=device).manual_seed(0)
        rho = torch.rand((1, N, N, N), generator=gen, device=device, dtype=dtype)
        c0 = torch.rand((1, N, N, N), generator=gen, device=device, dtype=dtype)
        solves = {"elliptic": lambda: elliptic_solve(rho, 3, h, D, ALPHA, BETA),
                  "parabolic": lambda: parabolic_step(c0, rho, cfg.dt, 3, h, D, ALPHA, BETA)}
        for name, fn in solves.items():
            row = {"solve": name, "N": N, "target_ms": SPECTRAL_TARGETS_MS.get(N) if name == "elliptic" else None}

            def work(fn=fn, name=name):
                out = {"residual": residual(fn(), rho, h)} if name == "elliptic" else {}
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                out.update(time_calls(fn, CALLS, cfg.repeats, device))
                out["peak_memory_gb"] = (torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda"
                                         else None)
                return out
            guarded(rows, row, work, log, f"spectral {name} {N}^3")
    return rows
