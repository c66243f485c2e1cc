"""Calibrate the warning threshold of the ``interp_gap`` monitor: the gap over whole NSIPF runs.

Each case is ``PROBLEM:DIM:N:P[@chi=X][@gamma=Y]`` and runs ``nsipf_torch.simulate(method="nsipf")`` with
the diagnostics every ``--diag-every`` steps, recording ``interp_gap`` at every diagnostics step
(``nsipf_torch.run.monitor``). The default cases are the canonical runs the docs state (the main job, the 3D
runs of the accuracy tables, the 2D canonical problems) and runs far outside the declared validity domain
(the issue's ``--N 8 --P 100000`` and grids with far fewer or far more particles per cell than training).
``monitor.GAP_WARNING`` is read from this table together with the held-out scatter (docs/VALIDATION.md).

    python -m studies.gap_calibration --out runs/gap_calibration             # the default cases (~15 min, 2 cores)
    python -m studies.gap_calibration --cases annuli:3:32:20000 --out runs/gap_main

Writes OUT/gap_calibration.md, OUT/gap_calibration.json (every series), OUT/config.json and
OUT/gap_series.png (the gap against time, one line per case).
"""
from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nsipf_torch.commands.cli import check_output_dir, parse_config, usage_error
from nsipf_torch.io.files import save_json
from studies.heldout_table import parse_case, parse_cases

PROG = "gap_calibration.py"
CANONICAL = ("annuli:3:32:20000", "blob:3:32:20000", "two_blobs:3:32:20000", "two_blobs:3:64:200000",
             "annuli:3:64:200000", "two_blobs:2:64:100000", "annuli:2:64:100000", "blob:2:64:100000")
OUTSIDE = ("two_blobs:3:8:100000", "two_blobs:3:16:200000", "two_blobs:3:128:5000", "two_blobs:2:32:200")
DEFAULT_CASES = ",".join(CANONICAL + OUTSIDE)


@dataclass
class Case:
    name: str
    problem: str
    dim: int
    N: int
    P: int
    chi: float = 1.0
    gamma: float = 0.01


def parse_run(text: str) -> Case:
    """``PROBLEM:DIM:N:P[@chi=X][@gamma=Y]`` -> Case; ValueError naming the text otherwise."""
    head, _, mods = text.strip().partition("@")
    parts = head.rsplit(":", 3)
    if len(parts) != 4:
        raise ValueError(f"case {text!r} must be PROBLEM:DIM:N:P[@chi=X][@gamma=Y]")
    try:
        dim, N, P = (int(float(p)) for p in parts[1:])
    except ValueError:
        raise ValueError(f"case {text!r}: DIM, N and P must be integers") from None
    if dim not in (2, 3) or N < 4 or P < 1:
        raise ValueError(f"case {text!r}: need DIM in (2, 3), N >= 4, P >= 1")
    modifiers = parse_case(parts[0] + ("@" + mods if mods else ""))  # the problem name and chi/gamma checked there
    return Case(text.strip(), parts[0], dim, N, P, modifiers.chi, modifiers.gamma)


@dataclass
class CalibrationConfig:
    cases: str = field(default=DEFAULT_CASES, metadata={"help": "comma-separated PROBLEM:DIM:N:P[@chi=X][@gamma=Y]"})
    T: float = field(default=0.2, metadata={"help": "final time"})
    dt: float = field(default=1e-3, metadata={"help": "time step"})
    diag_every: int = field(default=10, metadata={"help": "steps between diagnostics (the monitor's cadence)"})
    seed: int = field(default=0, metadata={"help": "particle seed"})
    threads: int = field(default=0, metadata={"help": "torch threads (0: torch's default)"})
    out: str = field(default="runs/gap_calibration", metadata={"help": "output folder"})

    def parsed_cases(self) -> list[Case]:
        return parse_cases(self.cases, parse_run)

    def validate(self) -> None:
        check_output_dir(self.out, "--out")
        self.parsed_cases()
        for flag, ok, value in (("--T", self.T > 0, self.T), ("--dt", self.dt > 0, self.dt),
                                ("--diag-every", self.diag_every >= 1, self.diag_every),
                                ("--threads", self.threads >= 0, self.threads)):
            if not ok:
                raise ValueError(f"{flag} must be positive, got {value}")


def run_case(case: Case, cfg: CalibrationConfig) -> dict:
    """One NSIPF run; the gap series, the validity messages it raised and its wall time."""
    import nsipf_torch as nt

    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = nt.simulate(case.problem, method="nsipf", dim=case.dim, N=case.N, P=case.P, T=cfg.T, dt=cfg.dt,
                             chi=case.chi, gamma=case.gamma, diag_every=cfg.diag_every, seeds=cfg.seed, snapshots=1)
    t, gap = result.series("interp_gap")
    gap = gap[:, 0]
    return {"case": case.name, "dim": case.dim, "N": case.N, "P": case.P,
            "particles_per_cell": case.P / case.N ** case.dim, "t": list(t), "interp_gap": gap.tolist(),
            "max": float(gap.max()), "t_of_max": float(t[int(gap.argmax())]), "at_T": float(gap[-1]),
            "validity": [str(w.message) for w in caught if "validity domain" in str(w.message)],
            "wall_s": time.perf_counter() - start}


def markdown(rows: list[dict], cfg: CalibrationConfig) -> str:
    lines = [f"NSIPF, T = {cfg.T}, dt = {cfg.dt}, interp_gap every {cfg.diag_every} steps, seed {cfg.seed}", "",
             "| case | particles per cell | inside the domain | max interp_gap (at t) | at T | wall |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        inside = "yes" if not r["validity"] else f"no ({len(r['validity'])} axes)"
        lines.append(f"| {r['case']} | {r['particles_per_cell']:.3g} | {inside} | {r['max']:.3f} ({r['t_of_max']:.3f}) "
                     f"| {r['at_T']:.3f} | {r['wall_s']:.0f} s |")
    return "\n".join(lines) + "\n"


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        style = "-" if not r["validity"] else "--"
        ax.plot(r["t"], r["interp_gap"], style, label=r["case"])
    ax.set_xlabel("t")
    ax.set_ylabel("interp_gap")
    ax.set_title("interp_gap along NSIPF runs (dashed: outside the validity domain)")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    try:
        cfg = parse_config(CalibrationConfig, argv, prog=PROG, description=__doc__)
    except ValueError as err:
        return usage_error(PROG, err)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_json(out / "config.json", dataclasses.asdict(cfg))
    rows = []
    for case in cfg.parsed_cases():
        rows.append(run_case(case, cfg))
        print(f"{case.name}: max interp_gap {rows[-1]['max']:.3f} at t = {rows[-1]['t_of_max']:.3f} "
              f"({rows[-1]['wall_s']:.0f} s)", flush=True)
        save_json(out / "gap_calibration.json", {"config": dataclasses.asdict(cfg), "rows": rows})
    md = markdown(rows, cfg)
    (out / "gap_calibration.md").write_text(md)
    figure(rows, out / "gap_series.png")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
