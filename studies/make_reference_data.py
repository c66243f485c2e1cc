"""Write small converged FD reference solutions of the canonical problems into nsipf_torch/reference/ (--out).

For each problem (docs/MODEL.md §5: gamma = 0.01, chi = 1, M0 = 1, T = 0.2) and dimension, the FD solver
(nsipf_torch/solvers/fd.py) runs at a fine N and at the next coarser N; the fine solution at t = T/2 and t = T is
block-averaged to 16^d cells (metrics.block_average, the grid of rel_l2) and saved as float32 with its
metadata. The rel_l2 between the two resolutions is printed and stored, as the evidence of convergence, with
the mean |x|^2 trajectories (docs/MODEL.md §5 behaviour figures) of both runs.

    python -m studies.make_reference_data                       # 3D at 96^3 (vs 64^3) and 2D at 256^2 (vs 128^2)
    python -m studies.make_reference_data --dim 3 --problems two_blobs,annuli --N 128 --coarse-N 64 --compile
                                                                # the shipped 3D two_blobs and annuli files
    python -m studies.make_reference_data --dim 3 --problems annuli --N 128 --coarse-N 64 --device cuda
    python -m studies.make_reference_data --dim 2 --N 256 --coarse-N 128 --problems two_blobs
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nsipf_torch.commands.cli import check_output_dir, check_output_file, parse_config, usage_error
from nsipf_torch.solvers.fd import fd_solve
from nsipf_torch.io.resources import REFERENCES
from nsipf_torch.problems.grid import DTYPES, Grid, resolve_device, resolve_dtype
from nsipf_torch.problems.initial import get_ic
from nsipf_torch.metrics import block_average, rel_l2
from nsipf_torch.solvers.stencils import LIMITERS
from nsipf_torch.problems.exact import mean_r2, ring_fraction

GAMMA, CHI, M0, T = 0.01, 1.0, 1.0, 0.2
COARSE = 16


@dataclass
class ReferenceConfig:
    dim: list[int] = field(default_factory=lambda: [3, 2],
                           metadata={"help": "space dimensions, comma separated", "choices": (2, 3)})
    N: int | None = field(default=None, metadata={"help": f"fine N, a multiple of {COARSE} (None: 96 in 3D, 256 in 2D)"})
    coarse_N: int | None = field(default=None, metadata={
        "help": f"comparison N, a multiple of {COARSE} (None: 64 in 3D, 128 in 2D)"})
    problems: list[str] = field(default_factory=lambda: ["blob", "two_blobs", "annuli"],
                                metadata={"help": "problems (initial conditions), comma separated"})
    dt: float = field(default=1e-3, metadata={"help": "outer time step"})
    dtype: str = field(default="float32", metadata={"help": "floating-point type of the runs", "choices": tuple(DTYPES)})
    limiter: str = field(default="minmod", metadata={"help": "drift reconstruction of the FD solver", "choices": LIMITERS})
    threads: int = field(default=1, metadata={"help": "torch intra-op threads"})
    compile: bool = field(default=False, metadata={
        "help": "fuse the FD sub-step with torch.compile (fd_solve's option: the same solution up to round-off, "
                "several times faster on a CPU at 128^3)"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda or auto"})
    summary: str = field(default="out/fd_reference_summary.json", metadata={"help": "JSON of all measured figures"})
    out: str = field(default=str(REFERENCES), metadata={"help": "folder of the fd_<problem>_<dim>d.npz files"})

    def validate(self) -> None:
        if not self.dim or not self.problems:
            raise ValueError("--dim and --problems must name at least one entry")
        for flag, value in (("--N", self.N), ("--coarse-N", self.coarse_N)):
            if value is not None and (value < COARSE or value % COARSE):
                raise ValueError(f"{flag} must be a positive multiple of {COARSE} (the block average), got {value}")
        for problem in self.problems:
            try:
                get_ic(problem)
            except ValueError as err:
                raise ValueError(f"--problems: {err}") from None
        if not self.dt > 0:
            raise ValueError(f"--dt must be > 0, got {self.dt}")
        if self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        try:
            resolve_device(self.device)
        except ValueError as err:
            raise ValueError(f"--device: {err}") from None
        check_output_dir(self.out, "--out")
        check_output_file(self.summary, "--summary")


def run(name: str, dim: int, N: int, dt: float, dtype: torch.dtype, limiter: str, device="cpu",
        compile: bool = False):
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
        rho, c, total = fd_solve(rho, c, T, dt, GAMMA, CHI, grid, limiter=limiter, callback=record, compile=compile)
    wall = time.perf_counter() - t0
    snaps["T"] = (rho, c)
    return snaps, {"N": N, "wall_s": round(wall, 1), "substeps": total, "trajectory": traj,
                   "mass_drift": drift[0], "min_rho": float(rho.min()), "min_c": float(c.min())}


def main(argv=None) -> int:
    try:
        args = parse_config(ReferenceConfig, argv, prog="make_reference_data.py",
                            description=__doc__.split("\n\n")[0])
    except ValueError as err:
        return usage_error("make_reference_data.py", err)
    torch.set_num_threads(args.threads)
    dtype = resolve_dtype(args.dtype)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for dim in args.dim:
        N = args.N or {3: 96, 2: 256}[dim]
        Nc = args.coarse_N or {3: 64, 2: 128}[dim]
        for name in args.problems:
            fine, info = run(name, dim, N, args.dt, dtype, args.limiter, args.device, args.compile)
            coarse, info_c = run(name, dim, Nc, args.dt, dtype, args.limiter, args.device, args.compile)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
