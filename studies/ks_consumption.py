"""Consumption with a diffusing nutrient (issue 20): FD convergence order and FD-SIPF agreement for each
sensitivity.

    python -m studies.ks_consumption --out docs/results/ks_consumption.json

``two_blobs`` in 2D, c_t = D Delta c - c rho with D = 0.1 (the consumption c-equation with D > 0), the drift
chi grad Phi(c) with Phi = c, log(c + kappa) or c / (1 + c / kappa), kappa = 1; gamma = 0.01, chi = 1, T = 0.2,
float64. FD at N = 32, 64, 128, 256: e(N) = rel_l2(rho_N, rho_2N) on 16^2 blocks at T, and the observed
order log2(e(N) / e(2N)); SIPF-spline at N = 64 (P = 10^5, seed 0) against the finest FD, beside FD at the
same grid against it.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nsipf_torch as nt
from nsipf_torch.benchmarks.timing import commit_hash
from nsipf_torch.commands.cli import parse_config, usage_error

SENSITIVITIES = ("linear", "log", "receptor")


def rows_for(sensitivity: str, Ns: list[int], N_sipf: int, P: int, D: float) -> dict:
    """One sensitivity: FD's successive errors and orders, SIPF's and FD's error at N_sipf against the finest FD."""
    common = dict(dim=2, T=0.2, c_equation="consumption", Dc=D, sensitivity=sensitivity, kappa=1.0,
                  dtype="float64", device="cpu")
    fd = {N: nt.simulate("two_blobs", "fdm", N=N, **common).rho[0, -1] for N in Ns}
    errors = [float(nt.rel_l2(fd[a], fd[b], coarse=16, dim=2)) for a, b in zip(Ns, Ns[1:])]
    orders = [math.log2(e1 / e2) for e1, e2 in zip(errors, errors[1:])]
    sipf = nt.simulate("two_blobs", "sipf", interp="spline", N=N_sipf, P=P, seeds=0, **common).rho[0, -1]
    finest = fd[Ns[-1]]
    return {"sensitivity": sensitivity, "D": D, "Ns": Ns, "errors": errors, "orders": orders,
            "N_sipf": N_sipf, "P": P, "sipf_vs_fd": float(nt.rel_l2(sipf, finest, coarse=16, dim=2)),
            "fd_same_grid_vs_fd": float(nt.rel_l2(fd[N_sipf], finest, coarse=16, dim=2))}


@dataclass
class ConsumptionConfig:
    N: list[int] = field(default_factory=lambda: [32, 64, 128, 256], metadata={"help": "FD grids, comma separated"})
    N_sipf: int = field(default=64, metadata={"help": "the SIPF run's grid"})
    P: int = field(default=100_000, metadata={"help": "SIPF particles"})
    Dc: float = field(default=0.1, metadata={"help": "D of the nutrient"})
    out: str | None = field(default=None, metadata={"help": "write the rows as JSON here"})


def main(argv: list[str] | None = None) -> int:
    prog = "python -m studies.ks_consumption"
    try:
        cfg = parse_config(ConsumptionConfig, argv, prog=prog, description=__doc__.split("\n\n")[0])
    except ValueError as err:
        return usage_error(prog, err)
    out = {"command": prog + " " + " ".join(sys.argv[1:] if argv is None else argv), "commit": commit_hash(),
           "rows": [rows_for(s, list(cfg.N), cfg.N_sipf, cfg.P, cfg.Dc) for s in SENSITIVITIES]}
    for r in out["rows"]:
        print(f"{r['sensitivity']:9s} FD e(N) {[f'{e:.2e}' for e in r['errors']]} orders "
              f"{[f'{o:.2f}' for o in r['orders']]}; SIPF {r['sipf_vs_fd']:.3f} vs FD {r['fd_same_grid_vs_fd']:.3f} "
              f"at N = {r['N_sipf']}")
    if cfg.out:
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
