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
to stdout and --out, the rows as JSON beside it (``.json``) and the configuration, commit, torch version and
device as ``.config.json``.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from nsipf_torch.api import MAX_STEPS, Result, make_runner, prepare, run
from nsipf_torch.benchmarks.timing import provenance
from nsipf_torch.io.files import atomic_write, save_json
from nsipf_torch.commands.cli import check_output_file, parse_config, usage_error
from nsipf_torch.io.resources import default_checkpoint, reference_path
from nsipf_torch.methods import METHODS, get_method, parse_methods
from nsipf_torch.metrics import rel_l2
from nsipf_torch.problems.exact import ring_fraction
from nsipf_torch.run.callbacks import Snapshots
from studies.render_docs import accuracy_lines

LABELS = tuple(m.label for m in METHODS.values())  # the table's columns


@dataclass
class AccuracyConfig:
    problems: list[str] = field(default_factory=lambda: ["blob", "two_blobs", "annuli"],
                                metadata={"help": "canonical problems, comma separated (each needs its FD reference)"})
    N: list[int] = field(default_factory=lambda: [32, 64], metadata={"help": "grid sizes, comma separated"})
    P: list[int] = field(default_factory=lambda: [20_000, 200_000],
                         metadata={"help": "particle counts, comma separated (2e5 is accepted)"})
    methods: list[str] = field(default_factory=lambda: list(LABELS),
                               metadata={"help": f"table columns, comma separated ({', '.join(LABELS)})"})
    dim: int = field(default=3, metadata={"help": "space dimension", "choices": (2, 3)})
    dt: float = field(default=1e-3, metadata={"help": "time step"})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2],
                             metadata={"help": "particle seeds, comma separated, averaged (run as one batch)"})
    model: str | None = field(default=None, metadata={"help": "NSIPF checkpoint (None: the shipped checkpoints/nsipf_{dim}d.pt)"})
    out: str = field(default="docs/accuracy_table.md", metadata={"help": "markdown output (JSON beside it)"})

    def validate(self) -> None:
        self.methods = [METHODS[m].label for m in parse_methods(self.methods)]
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
        check_output_file(config_path(Path(self.out)), "--out")


def run_with_snapshots(problem, method: str, N: int, P: int, dim: int, dt: float, T: float, seeds, at_times,
                       model=None, gamma: float = 0.01, chi: float = 1.0, dtype: str = "float32", **options) -> Result:
    """One run of ``method`` (a name or label) to T through simulate()'s loop, with rho and c at ``at_times``
    (and T) only; the particle methods run ``seeds`` as the members of one batch, FD one member. ``options``
    are further :class:`~nsipf_torch.api.SimConfig` fields (e.g. ``fallback=False``)."""
    particles = get_method(method).particles
    setup = prepare(problem, method, N=N, dim=dim, P=P, T=T, dt=dt, gamma=gamma, chi=chi, model=model, dtype=dtype,
                    device="cpu", diag_every=MAX_STEPS, seeds=list(seeds) if particles else None, **options)
    snaps = Snapshots([*(setup.step_at(t) for t in at_times), setup.n_steps])
    return run(setup, make_runner(setup), [snaps])


def run_case(problem, N, P, method, dim, dt, seeds, model=None):
    """Errors of one method (mean over ``seeds``; ``per_seed`` lists each member's) and the wall time. NSIPF
    keeps its CNN outside the validity domain (``fallback=False``): the column is the method it names."""
    ref = np.load(reference_path(problem, dim))
    times = {"half": float(ref["t_half"]), "T": float(ref["t_T"])}
    ring = problem == "annuli"
    start = time.perf_counter()
    result = run_with_snapshots(problem, method, N, P, dim, dt, times["T"], seeds,
                                [times["half"], *([0.05] if ring else [])], model, fallback=False)
    out = {"wall_s": time.perf_counter() - start}
    at = {t: k for k, t in enumerate(result.times)}
    per_seed = {}
    for key, t in times.items():
        for name, values in (("rho", result.rho), ("c", result.c)):
            target = torch.from_numpy(ref[f"{name}_{key}"]).double()[None]
            errs = rel_l2(values[:, at[t]].double(), target, dim=dim)
            out[f"{name}_{key}"] = float(errs.mean())
            per_seed[f"{name}_{key}"] = [float(e) for e in errs]
    if len(per_seed["rho_T"]) > 1:
        out["per_seed"] = per_seed
    if ring:
        grid = result.grid.to(device="cpu", dtype=torch.float64)
        out["inner_ring_t0.05"] = float(ring_fraction(result.rho[:, at[0.05]].double(), grid).mean())
        out["outer_ring_T"] = float(ring_fraction(result.rho[:, at[times["T"]]].double(), grid, R=0.7).mean())
    return out


def main(argv=None) -> int:
    argv_used = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = parse_config(AccuracyConfig, argv, prog="accuracy_table.py", description=__doc__.split("\n\n")[0])
    except ValueError as err:
        return usage_error("accuracy_table.py", err)
    rows = []
    bar = tqdm(total=len(cfg.problems) * len(cfg.N) * len(cfg.P) * len(cfg.methods), desc="accuracy table",
               unit="run")
    for problem in cfg.problems:
        for N in cfg.N:
            fd_row = None
            for P in cfg.P:
                row = {"problem": problem, "N": N, "P": P}
                for method in cfg.methods:
                    bar.set_postfix_str(f"{problem} N={N} P={P} {method}")
                    if method == "FDM" and fd_row is not None:
                        row["FDM"] = fd_row  # the FD solution does not depend on P
                    else:
                        row[method] = run_case(problem, N, P, method, cfg.dim, cfg.dt, cfg.seeds, cfg.model)
                        if method == "FDM":
                            fd_row = row["FDM"]
                        tqdm.write(f"{problem} {N} {P} {method} {row[method]}")
                    bar.update()
                rows.append(row)
    bar.close()
    md = "\n".join(accuracy_lines(rows, cfg.methods)) + "\n"  # the docs' rendering (studies/render_docs.py)
    print(md)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: tmp.write_text(md))
    atomic_write(out.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(rows, indent=2)))
    save_json(config_path(out), {**provenance(cfg, torch.device("cpu")),
                                 "command": " ".join(["python -m studies.accuracy_table", *argv_used])})
    return 0


def config_path(out: Path) -> Path:
    """Where the run's configuration, commit, torch version and device are saved beside ``--out``."""
    return out.with_name(out.stem + ".config.json")


if __name__ == "__main__":
    sys.exit(main())
