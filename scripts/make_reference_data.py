"""Write small converged FD reference solutions of the canonical problems into tests/data/.

For each problem (MODEL.md §5: gamma = 0.01, chi = 1, M0 = 1, T = 0.2) and dimension, the FD solver
(nsipf_torch/fd.py) runs at a fine N and at the next coarser N; the fine solution at t = T/2 and t = T is
block-averaged to 16^d cells (metrics.block_average, the grid of rel_l2) and saved as float32 with its
metadata. The rel_l2 between the two resolutions is printed and stored, as the evidence of convergence, with
the mean |x|^2 trajectories (MODEL.md §5 behaviour figures) of both runs.

    python -m scripts.make_reference_data                       # 3D at 96^3 (vs 64^3) and 2D at 256^2 (vs 128^2)
    python -m scripts.make_reference_data --dim 3 --problems annuli --N 128 --coarse-N 64 --device cuda
    python -m scripts.make_reference_data --dim 2 --N 256 --coarse-N 128 --problems two_blobs
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


from nsipf_torch.fd import fd_solve
from nsipf_torch.resources import REFERENCES
from nsipf_torch.grid import Grid, resolve_dtype
from nsipf_torch.initial import get_ic
from nsipf_torch.metrics import block_average, rel_l2
from nsipf_torch.validation import mean_r2, ring_fraction

GAMMA, CHI, M0, T = 0.01, 1.0, 1.0, 0.2
COARSE = 16


def run(name: str, dim: int, N: int, dt: float, dtype: torch.dtype, limiter: str, device="cpu"):
    grid = Grid(N, dim=dim, dtype=dtype, device=device)
    grid64 = grid.to(dtype=torch.float64)
    ic = get_ic(name)
    rho, c = ic.rho0(grid, M0)[None], ic.c0(grid)[None]
    n_half = round(T / 2 / dt)
    snaps, traj = {}, [(0.0, float(mean_r2(rho.double(), grid64)), float(ring_fraction(rho.double(), grid64)[0]))]
    mass0 = float(grid64.integrate(rho.double()))
    drift = [0.0]

    def record(k, t, rho, c, n_sub):
        if k % 10 == 0:
            traj.append((round(t, 6), float(mean_r2(rho.double(), grid64)),
                         float(ring_fraction(rho.double(), grid64)[0])))
        if k == n_half:
            snaps["half"] = (rho.clone(), c.clone())
        drift[0] = max(drift[0], abs(float(grid64.integrate(rho.double())) - mass0) / mass0)

    t0 = time.perf_counter()
    with torch.inference_mode():
        rho, c, total = fd_solve(rho, c, T, dt, GAMMA, CHI, grid, limiter=limiter, callback=record)
    wall = time.perf_counter() - t0
    snaps["T"] = (rho, c)
    return snaps, {"N": N, "wall_s": round(wall, 1), "substeps": total, "trajectory": traj,
                   "mass_drift": drift[0], "min_rho": float(rho.min()), "min_c": float(c.min())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, nargs="+", default=[3, 2])
    ap.add_argument("--N", type=int, default=None, help="fine N (default 96 in 3D, 256 in 2D)")
    ap.add_argument("--coarse-N", type=int, default=None, help="comparison N (default 64 in 3D, 128 in 2D)")
    ap.add_argument("--problems", nargs="+", default=["blob", "two_blobs", "annuli"])
    ap.add_argument("--dt", type=float, default=1e-3)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--limiter", default="minmod")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--summary", default="out/fd_reference_summary.json", help="JSON of all measured figures")
    ap.add_argument("--out", default=str(REFERENCES))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = resolve_dtype(args.dtype)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for dim in args.dim:
        N = args.N or {3: 96, 2: 256}[dim]
        Nc = args.coarse_N or {3: 64, 2: 128}[dim]
        for name in args.problems:
            fine, info = run(name, dim, N, args.dt, dtype, args.limiter, args.device)
            coarse, info_c = run(name, dim, Nc, args.dt, dtype, args.limiter, args.device)
            conv = {key: {"rho": float(rel_l2(coarse[key][0].double(), fine[key][0].double(), COARSE, dim)),
                          "c": float(rel_l2(coarse[key][1].double(), fine[key][1].double(), COARSE, dim))}
                    for key in ("half", "T")}
            arrays = {}
            for key in ("half", "T"):
                rho, c = fine[key]
                arrays[f"rho_{key}"] = block_average(rho.double(), COARSE, dim)[0].cpu().numpy().astype(np.float32)
                arrays[f"c_{key}"] = block_average(c.double(), COARSE, dim)[0].cpu().numpy().astype(np.float32)
            path = out / f"fd_{name}_{dim}d.npz"
            np.savez_compressed(
                path, **arrays, t_half=T / 2, t_T=T, N=N, coarse=COARSE, dt=args.dt, limiter=args.limiter,
                c_update="exp", dtype=args.dtype, gamma=GAMMA, chi=CHI, M0=M0, substeps=info["substeps"],
                compared_N=Nc, rel_l2_rho_vs_compared_T=conv["T"]["rho"])
            summary[f"{name}_{dim}d"] = {"fine": info, "coarse": info_c, "rel_l2_coarse_vs_fine": conv,
                                         "file": path.name, "bytes": path.stat().st_size}
            print(f"{name} {dim}D: N={N} ({info['wall_s']} s, {info['substeps']} sub-steps) vs N={Nc} "
                  f"({info_c['wall_s']} s): rel_l2 rho T/2 {conv['half']['rho']:.4f}, T {conv['T']['rho']:.4f}; "
                  f"c T {conv['T']['c']:.4f}; mean|x|^2 at T {info['trajectory'][-1][1]:.4f}; "
                  f"{path.name} {path.stat().st_size} B", flush=True)
            json_path = Path(args.summary)  # rewritten after every problem so a cut-short run keeps its figures
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(summary, indent=1))
    print(f"summary -> {args.summary}")


if __name__ == "__main__":
    main()
