"""End-to-end accuracy table: FD, SIPF-trilinear, SIPF-spline and NSIPF against converged FD
references, rel_l2 of rho and c on 16^d blocks at t = T/2 and T, with wall times; and the `annuli`
behaviour check (mass within 0.12 of the inner ring at t = 0.05 against FD on the same grid; ring-shaped
food is in the training data, so this is not a held-out test: studies/heldout_table.py has those).

    python -m studies.accuracy_table                          # 3D, N in {32, 64}, P in {2e4, 2e5}, seeds 0-2
    python -m studies.accuracy_table --N 32 --P 20000 --problems two_blobs
    python -m studies.accuracy_table --problems two_blobs --N 64 --P 200000 --seeds 0     # one seed

With several seeds the particle methods run them as members of one batch; the table shows the mean over
seeds (the JSON also holds each seed's errors under ``per_seed``).

The references are nsipf_torch/reference/fd_<ic>_<d>d.npz (studies/make_reference_data.py). Writes a markdown table
to stdout and --out (JSON beside it).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nsipf_torch.commands.cli import check_output_file, parse_config, usage_error
from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.initial import get_ic
from nsipf_torch.metrics import rel_l2
from nsipf_torch.io.resources import default_checkpoint, reference_path
from nsipf_torch.problems.params import Params
import nsipf_torch.run.runners as runners
from nsipf_torch.problems.exact import ring_fraction
from studies.render_docs import accuracy_lines

METHODS = ("FD", "SIPF-trilinear", "SIPF-spline", "NSIPF")


@dataclass
class AccuracyConfig:
    problems: list[str] = field(default_factory=lambda: ["blob", "two_blobs", "annuli"],
                                metadata={"help": "canonical problems, comma separated (each needs its FD reference)"})
    N: list[int] = field(default_factory=lambda: [32, 64], metadata={"help": "grid sizes, comma separated"})
    P: list[int] = field(default_factory=lambda: [20_000, 200_000],
                         metadata={"help": "particle counts, comma separated (2e5 is accepted)"})
    methods: list[str] = field(default_factory=lambda: list(METHODS),
                               metadata={"help": "table columns, comma separated", "choices": METHODS})
    dim: int = field(default=3, metadata={"help": "space dimension", "choices": (2, 3)})
    dt: float = field(default=1e-3, metadata={"help": "time step"})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2],
                             metadata={"help": "particle seeds, comma separated, averaged (run as one batch)"})
    model: str | None = field(default=None, metadata={"help": "NSIPF checkpoint (None: the shipped checkpoints/nsipf_{dim}d.pt)"})
    out: str = field(default="docs/accuracy_table.md", metadata={"help": "markdown output (JSON beside it)"})

    def validate(self) -> None:
        for name in ("problems", "N", "P", "methods", "seeds"):
            if not getattr(self, name):
                raise ValueError(f"--{name} must name at least one entry")
        for name in ("N", "P"):
            bad = [v for v in getattr(self, name) if v < 1]
            if bad:
                raise ValueError(f"--{name} values must be >= 1, got {bad[0]}")
        if any(s < 0 for s in self.seeds):
            raise ValueError(f"--seeds must be >= 0, got {min(self.seeds)}")
        if not self.dt > 0:
            raise ValueError(f"--dt must be > 0, got {self.dt}")
        for problem in self.problems:
            if not reference_path(problem, self.dim).is_file():
                raise ValueError(f"--problems {problem!r} has no {self.dim}D FD reference "
                                 f"({reference_path(problem, self.dim)})")
        model = self.model or default_checkpoint(self.dim)
        if "NSIPF" in self.methods and not Path(model).is_file():
            raise ValueError(f"--model {str(model)!r} is not a file")
        check_output_file(self.out, "--out")
        check_output_file(Path(self.out).with_suffix(".json"), "--out")


def runner_for(method, grid, ic, P, seeds, model=None, gamma=0.01, chi=1.0):
    """The runner of a table column ("FD" is the runners' "FDM")."""
    return runners.runner_for("FDM" if method == "FD" else method, grid, ic, Params(gamma=gamma, chi=chi, dim=grid.dim),
                              P, seeds, model)


def run_case(problem, N, P, method, dim, dt, seeds, model=None):
    """Errors of one method (mean over ``seeds``; ``per_seed`` lists each member's) and the wall time."""
    ref = np.load(reference_path(problem, dim))
    grid = Grid(N, dim, dtype=torch.float32)
    runner = runner_for(method, grid, get_ic(problem), P, list(seeds), model)
    per_seed = {}
    out, step, start = {}, 0, time.perf_counter()
    ring_t = None
    for key in ("half", "T"):
        t_target = float(ref[f"t_{key}"])
        while step < round(t_target / dt):
            runner.advance(dt)
            step += 1
            if problem == "annuli" and step == round(0.05 / dt):
                ring_t = float(ring_fraction(runner.fields()[0].double(), grid.to(dtype=torch.float64)).mean())
        rho, c = runner.fields()
        for name, values in (("rho", rho), ("c", c)):
            target = torch.from_numpy(ref[f"{name}_{key}"]).double()[None]
            errs = rel_l2(values.double().cpu(), target, dim=dim)
            out[f"{name}_{key}"] = float(errs.mean())
            per_seed[f"{name}_{key}"] = [float(e) for e in errs]
    out["wall_s"] = time.perf_counter() - start
    if len(per_seed["rho_T"]) > 1:
        out["per_seed"] = per_seed
    if ring_t is not None:
        out["inner_ring_t0.05"] = ring_t
        out["outer_ring_T"] = float(ring_fraction(runner.fields()[0].double(), grid.to(dtype=torch.float64), R=0.7).mean())
    return out


def main(argv=None) -> int:
    try:
        cfg = parse_config(AccuracyConfig, argv, prog="accuracy_table.py", description=__doc__.split("\n\n")[0])
    except ValueError as err:
        return usage_error("accuracy_table.py", err)
    rows = []
    for problem in cfg.problems:
        for N in cfg.N:
            fd_row = None
            for P in cfg.P:
                row = {"problem": problem, "N": N, "P": P}
                for method in cfg.methods:
                    if method == "FD" and fd_row is not None:
                        row["FD"] = fd_row  # the FD solution does not depend on P
                        continue
                    row[method] = run_case(problem, N, P, method, cfg.dim, cfg.dt, cfg.seeds, cfg.model)
                    if method == "FD":
                        fd_row = row["FD"]
                    print(problem, N, P, method, row[method], flush=True)
                rows.append(row)
    md = "\n".join(accuracy_lines(rows, cfg.methods)) + "\n"  # the docs' rendering (studies/render_docs.py)
    print(md)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
