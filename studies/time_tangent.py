"""Time one FD sub-step with and without the tangents the inference's Jacobian carries (docs/INFERENCE.md).

Four ways, on a random positive state, float64, the median of --repeats calls after a warm-up (compilation
excluded and reported apart): the plain sub-step eager and compiled; the sub-step with two tangents as
forward-mode dual tensors with one batch member per direction (``torch.autograd.forward_ad``, the primal
repeated); and ``finite_volume.tangent_substep`` (``torch.func.jvp`` vmapped over the directions, the
primal once) eager and compiled.

    python -m studies.time_tangent --N 64 --dim 3
    python -m studies.time_tangent --N 128 --dim 2 --threads 1
"""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.autograd.forward_ad as fwAD

import nsipf_torch.solvers.finite_volume as fv
from nsipf_torch.commands.cli import parse_config, usage_error

PROG = "time_tangent.py"


@dataclass
class TangentConfig:
    N: int = field(default=64, metadata={"help": "cells per axis"})
    dim: int = field(default=3, metadata={"help": "space dimension", "choices": (2, 3)})
    repeats: int = field(default=5, metadata={"help": "timed calls per figure (median)"})
    threads: int = field(default=0, metadata={"help": "torch threads (0: torch's default)"})

    def validate(self) -> None:
        if self.N < 4 or self.repeats < 1 or self.threads < 0:
            raise ValueError(f"need --N >= 4, --repeats >= 1, --threads >= 0; got {self.N}, {self.repeats}, {self.threads}")


def median_ms(call, repeats: int) -> tuple[float, float]:
    """(median milliseconds of ``repeats`` calls, seconds of the first call: warm-up or compilation)."""
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times), first


def main(argv=None) -> int:
    try:
        cfg = parse_config(TangentConfig, argv, prog=PROG, description=__doc__)
    except ValueError as err:
        return usage_error(PROG, err)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    g = torch.Generator().manual_seed(0)
    shape, f64 = (1,) + (cfg.N,) * cfg.dim, torch.float64
    rho = torch.rand(shape, generator=g, dtype=f64) + 0.1
    c = torch.rand(shape, generator=g, dtype=f64)
    geom = fv.CartesianGeometry(2.0 / cfg.N, cfg.dim)
    gamma, chi = torch.full((1,), 0.012, dtype=f64), torch.full((1,), 1.3, dtype=f64)
    dt = torch.tensor(1e-4, dtype=f64)
    d_rho = torch.zeros((2, *shape), dtype=f64)
    d_gamma, d_chi = torch.tensor([[0.0], [0.012]], dtype=f64), torch.tensor([[1.0], [0.0]], dtype=f64)
    plain = lambda step: (lambda: step(rho, c, dt, gamma, chi, geom))
    tangent = lambda step: (lambda: step(rho, c, d_rho, d_rho, dt, gamma, chi, d_gamma, d_chi, geom))

    def dual():
        with fwAD.dual_level():
            members = (2,) + shape[1:]
            g2 = fwAD.make_dual(gamma.expand(2).clone(), d_gamma[:, 0].clone())
            x2 = fwAD.make_dual(chi.expand(2).clone(), d_chi[:, 0].clone())
            return fv.substep(rho.expand(members), c.expand(members), dt, g2, x2, geom)

    rows = [("plain, eager", plain(fv.substep)), ("plain, compiled", plain(fv.compiled_substep())),
            ("2 tangents, dual tensors (2 members)", dual), ("2 tangents, jvp + vmap, eager", tangent(fv.tangent_substep)),
            ("2 tangents, jvp + vmap, compiled", tangent(fv.compiled_tangent_substep()))]
    print(f"FD sub-step, {cfg.dim}D {cfg.N}^{cfg.dim}, float64, {torch.get_num_threads()} threads, torch {torch.__version__}")
    fv.load_forward_mode()
    with torch.no_grad():
        for label, call in rows:
            ms, first = median_ms(call, cfg.repeats)
            print(f"  {label:40s} {ms:9.2f} ms   (first call {first:.1f} s)")
        eager, fused = rows[3][1](), rows[4][1]()
        worst = max(float(((a - b).abs().max() / b.abs().max())) for a, b in zip(eager, fused))
    print(f"  compiled against eager tangent sub-step: largest difference {worst:.1e} of each output's maximum")
    return 0


if __name__ == "__main__":
    sys.exit(main())
