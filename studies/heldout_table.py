"""Held-out accuracy table: rho error at T of FD, SIPF-trilinear, SIPF-spline and NSIPF on problems no
training trajectory of the CNN resembles, each against its reference, with the reference's own error.

Cases are ``PROBLEM[@chi=X][@gamma=Y]`` (PROBLEM a name for ``--ic``: ``planar``, ``planar:SEED``,
``planar_c30``, ``mixture:SEED``, ``two_blobs_c30``, ...). References (``studies.references``):
planar problems by the 1-D FD solver at a resolution chosen by its own convergence (<= --ref-tol between
NR and 2 NR cells, NR >= 2048, at most --ref-max cells), the others by FD at --ref-factors times N. Each
reference's own error is Richardson's estimate on 16^d blocks (the table's metric, ``metrics.rel_l2``).

    python -m studies.heldout_table --dim 2 --N 64 --P 100000 --seeds 0,1,2 --out runs/heldout_2d
    python -m studies.heldout_table --dim 3 --N 32 --P 100000 --cases planar,planar:1,planar_c30

NSIPF runs twice where its default differs: the CNN forced (``fallback=False``) and the default (the CNN
inside the checkpoint's validity domain, SIPF-spline where a numeric axis is outside it); the table shows
both, with what ran. ``--nsipf default`` runs the default alone (``--nsipf forced`` the CNN alone).

Writes OUT/heldout_table.md, OUT/heldout_table.json ({config, commit, torch, rows}) and OUT/config.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from nsipf_torch.commands.cli import add_dataclass_arguments, check_output_dir, config_from_args, make_parser, usage_error
from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.initial import PlanarIC, get_ic
from nsipf_torch.io.files import save_json
from nsipf_torch.metrics import block_average, rel_l2
from nsipf_torch.io.resources import default_checkpoint
from nsipf_torch.api import prepare
from nsipf_torch.benchmarks.timing import commit_hash
from nsipf_torch.methods import METHODS, parse_methods
from studies.accuracy_table import LABELS, run_with_snapshots
from studies.references import fd_reference, planar_reference

PROG = "heldout_table.py"
DEFAULT_CASES = "planar,planar:1,planar:2,planar@chi=3,planar@gamma=0.003,planar_c30,mixture:101,mixture:102"


@dataclasses.dataclass
class Case:
    name: str
    problem: str
    gamma: float = 0.01
    chi: float = 1.0


def parse_case(text: str) -> Case:
    """``PROBLEM[@chi=X][@gamma=Y]`` -> Case; ValueError naming the text on anything else."""
    problem, *mods = text.strip().split("@")
    get_ic(problem)  # unknown names fail here, naming the known ones
    case = Case(text.strip(), problem)
    for mod in mods:
        key, sep, value = mod.partition("=")
        if not sep or key not in ("chi", "gamma"):
            raise ValueError(f"case {text!r}: a modifier must be chi=X or gamma=Y, got {mod!r}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"case {text!r}: {key} must be a number, got {value!r}") from None
        if not (math.isfinite(number) and number >= 0):
            raise ValueError(f"case {text!r}: {key} must be finite and >= 0, got {value!r}")
        setattr(case, key, number)
    return case


def parse_cases(text: str, parse) -> list:
    """Comma-separated cases, each through ``parse``; a ValueError naming --cases on any bad one or none."""
    try:
        cases = [parse(c) for c in text.split(",") if c.strip()]
    except ValueError as err:
        raise ValueError(f"--cases: {err}") from None
    if not cases:
        raise ValueError("--cases must name at least one case")
    return cases


@dataclass
class HeldoutConfig:
    cases: str = field(default=DEFAULT_CASES, metadata={"help": "comma-separated PROBLEM[@chi=X][@gamma=Y]"})
    dim: int = field(default=2, metadata={"help": "space dimension", "choices": (2, 3)})
    N: int = field(default=64, metadata={"help": "grid size of the compared runs (a multiple of 16)"})
    P: int = field(default=100_000, metadata={"help": "particles per member"})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2],
                             metadata={"help": "particle seeds, comma separated, run as one batch and averaged"})
    methods: list[str] = field(default_factory=lambda: list(LABELS),
                               metadata={"help": f"table columns, comma separated ({', '.join(LABELS)})"})
    nsipf: list[str] = field(default_factory=lambda: ["forced", "default"],
                             metadata={"help": "NSIPF's columns, comma separated: forced (the CNN, fallback=False), "
                                               "default (what a plain run does: the spline outside the domain)"})
    T: float = field(default=0.2, metadata={"help": "final time"})
    dt: float = field(default=1e-3, metadata={"help": "time step"})
    dtype: str = field(default="float32", metadata={"help": "precision of the compared runs",
                                                    "choices": ("float32", "float64")})
    model: str | None = field(default=None, metadata={"help": "NSIPF checkpoint (None: the shipped one for --dim)"})
    ref_tol: float = field(default=1e-3, metadata={"help": "planar references: convergence between NR and 2NR cells"})
    ref_max: int = field(default=4096, metadata={"help": "planar references: the most cells tried (>= 2048)"})
    ref_factors: list[int] = field(default_factory=lambda: [2, 4],
                                   metadata={"help": "other problems: FD references at these multiples of N"})
    threads: int = field(default=1, metadata={"help": "torch threads (1: on a shared CPU OpenMP spin-waits; 0: torch's)"})
    out: str = field(default="runs/heldout", metadata={"help": "output folder"})

    def parsed_cases(self) -> list[Case]:
        """The --cases as Case objects; ValueError naming --cases."""
        return parse_cases(self.cases, parse_case)

    def validate(self) -> None:
        check_output_dir(self.out, "--out")
        self.parsed_cases()
        self.methods = [METHODS[m].label for m in parse_methods(self.methods)]
        if not self.nsipf or any(n not in ("forced", "default") for n in self.nsipf):
            raise ValueError(f"--nsipf must name forced, default or both, got {','.join(self.nsipf)}")
        for name in ("seeds", "methods"):
            if not getattr(self, name):
                raise ValueError(f"--{name} must name at least one entry")
        if any(s < 0 for s in self.seeds):
            raise ValueError(f"--seeds must be >= 0, got {min(self.seeds)}")
        f = self.ref_factors
        if len(f) < 2 or f != sorted(set(f)) or f[0] < 1:
            raise ValueError(f"--ref-factors must be two or more increasing integers >= 1, got {f}")
        checks = [("--N", self.N >= 16 and self.N % 16 == 0, "a multiple of 16", self.N),
                  ("--P", self.P >= 1, ">= 1", self.P), ("--T", self.T > 0, "> 0", self.T),
                  ("--dt", self.dt > 0, "> 0", self.dt), ("--threads", self.threads >= 0, ">= 0", self.threads),
                  ("--ref-tol", self.ref_tol > 0, "> 0", self.ref_tol),
                  ("--ref-max", self.ref_max >= 2048, ">= 2048", self.ref_max)]
        for flag, ok, need, value in checks:
            if not ok:
                raise ValueError(f"{flag} must be {need}, got {value}")
        model = self.model or default_checkpoint(self.dim)
        if "NSIPF" in self.methods and not Path(model).is_file():
            raise ValueError(f"--model {str(model)!r} is not a file")


def reference_for(case: Case, grid: Grid, T: float, dt: float, cfg: HeldoutConfig, log) -> dict:
    """{"rho16": reference rho on 16^d blocks' grid (float64), "error": its own error, "how": a description}."""
    ic = get_ic(case.problem)
    g16 = Grid(16, grid.dim, grid.L)
    start = time.perf_counter()
    if isinstance(ic, PlanarIC):
        ref = planar_reference(ic, grid.dim, case.gamma, case.chi, T, dt, L=grid.L, tol=cfg.ref_tol,
                               NR_max=cfg.ref_max, progress=lambda n, s: log(f"  1-D reference {n} cells: {s:.1f} s"))
        how = (f"1-D FD, {ref.NR} cells ({'converged' if ref.converged else 'NOT converged'} to {cfg.ref_tol:g}; "
               f"observed order {ref.order_observed:.2f}, used {ref.order_used:.2f})")
        return {"rho16": ref.on(g16.to(dtype=torch.float64)), "error": ref.error16, "how": how,
                "seconds": time.perf_counter() - start, "differences": ref.differences}
    factors = tuple(cfg.ref_factors)
    rho, err, _ = fd_reference(ic, grid, case.gamma, case.chi, T, dt, factors=factors, compile=True)  # fused: same solution
    return {"rho16": block_average(rho, 16, grid.dim), "error": err,
            "how": f"FD at {' and '.join(f'{grid.N * f}^{grid.dim}' for f in factors)} (Richardson, order 2 assumed)",
            "seconds": time.perf_counter() - start}


def run_method(method: str, case: Case, grid: Grid, P: int, seeds: list[int], T: float, dt: float, model,
               ref16: torch.Tensor, **options) -> dict:
    """rho's error at T (mean over the seeds, and each seed's), the wall time of one method's run, and what
    ran (``applied``: the method and interpolator the run's config records, after any fallback)."""
    start = time.perf_counter()
    result = run_with_snapshots(case.problem, method, grid.N, P, grid.dim, dt, T, seeds, [], model,
                                gamma=case.gamma, chi=case.chi, dtype=str(grid.dtype).removeprefix("torch."),
                                **options)
    errs = rel_l2(result.rho[:, -1].double(), ref16[None], 16, grid.dim)
    ran = result.config["config"]
    applied = "NSIPF (CNN)" if ran["method"] == "nsipf" else f"{ran['method']}-{ran['interp']}" if ran["method"] == "sipf" else ran["method"]
    return {"rho_T": float(errs.mean()), "per_seed": [float(e) for e in errs], "wall_s": time.perf_counter() - start,
            "applied": applied, "validity_warnings": list(result.config["validity_warnings"])}


def nsipf_columns(case: Case, grid: Grid, cfg: HeldoutConfig, ref16: torch.Tensor) -> dict:
    """NSIPF twice (``cfg.nsipf`` picks): the CNN forced (``fallback=False``, column "NSIPF") and the default
    (``NSIPF default``: the CNN inside its validity domain, SIPF-spline where a numeric axis is outside it).
    The fallback flag only chooses what runs (``nsipf_torch.api.validity_messages``), so where no numeric
    axis is outside and both columns are asked for, the default is the forced run itself, not run twice."""
    columns = {}
    if "forced" in cfg.nsipf:
        columns["NSIPF"] = run_method("NSIPF", case, grid, cfg.P, cfg.seeds, cfg.T, cfg.dt, cfg.model, ref16,
                                      fallback=False)
    if "default" in cfg.nsipf:
        setup = prepare(case.problem, "nsipf", N=grid.N, dim=grid.dim, P=cfg.P, T=cfg.T, dt=cfg.dt,
                        gamma=case.gamma, chi=case.chi, model=cfg.model, dtype=str(grid.dtype).removeprefix("torch."),
                        device="cpu", seeds=list(cfg.seeds))
        if setup.cfg.method == "nsipf" and "NSIPF" in columns:
            columns["NSIPF default"] = {**columns["NSIPF"], "wall_s": 0.0, "same_run_as": "NSIPF"}
        else:
            columns["NSIPF default"] = run_method("NSIPF", case, grid, cfg.P, cfg.seeds, cfg.T, cfg.dt, cfg.model,
                                                  ref16)
    return columns


def ran_label(applied: str) -> str:
    """What an NSIPF default run ran, as the tables name it: "CNN", or the method it fell back to."""
    return "CNN" if applied == "NSIPF (CNN)" else f"{applied}, fallback"


def table(rows: list[dict], methods: list[str]) -> tuple[list[str], list[list[str]]]:
    """(columns, cells) of the table: each method's rho error and, for NSIPF, the CNN forced and the default
    (with what ran) where measured, each over the spline; the study's markdown and docs/VALIDATION.md both
    render this."""
    others = [m for m in methods if m != "NSIPF"]
    spline = "SIPF-spline" in methods
    forced = "NSIPF" in methods and any("NSIPF" in row for row in rows)
    default = "NSIPF" in methods and any("NSIPF default" in row for row in rows)
    columns = ["case", "reference (own error)", *others]
    columns += [*(["NSIPF, CNN forced", *(["CNN / spline"] if spline else [])] if forced else []),
                *(["NSIPF, default (what ran)", *(["default / spline"] if spline else [])] if default else [])]
    cells = []
    for row in rows:
        line = [row["case"], f"{row['reference_error']:.1e} ({row['reference']})",
                *(f"{row[m]['rho_T']:.3f}" for m in others)]
        ratio = (lambda key: [f"{row[key]['rho_T'] / row['SIPF-spline']['rho_T']:.2f}"] if spline else [])
        if forced:
            line += [f"{row['NSIPF']['rho_T']:.3f}", *ratio("NSIPF")]
        if default:
            default = row["NSIPF default"]
            line += [f"{default['rho_T']:.3f} ({ran_label(default['applied'])})", *ratio("NSIPF default")]
        cells.append(line)
    return columns, cells


def markdown(rows: list[dict], methods: list[str], header: str) -> str:
    columns, cells = table(rows, methods)
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(line) + " |" for line in cells]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> HeldoutConfig:
    """A validated HeldoutConfig from the command line; ``ValueError`` naming the flag on bad input."""
    parser = make_parser(PROG, __doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    try:
        ns = add_dataclass_arguments(parser, HeldoutConfig).parse_args(sys.argv[1:] if argv is None else argv)
    except argparse.ArgumentTypeError as err:  # raised directly by some argparse versions
        raise ValueError(str(err)) from None
    cfg = config_from_args(HeldoutConfig, ns)
    cfg.validate()
    return cfg


def table_rows(cfg: HeldoutConfig, cases: list[Case], grid: Grid, out: Path) -> list[dict]:
    """One row per case: its reference and every method's error; the JSON rewritten after each case."""
    rows = []
    bar = tqdm(total=len(cases) * (len(cfg.methods) + 1), desc="held-out table", unit="run")
    for case in cases:
        bar.set_postfix_str(f"{case.name}: reference")
        ref = reference_for(case, grid, cfg.T, cfg.dt, cfg, bar.write)
        bar.update()
        row = {"case": case.name, "problem": case.problem, "gamma": case.gamma, "chi": case.chi,
               "reference": ref["how"], "reference_error": ref["error"], "reference_s": ref["seconds"]}
        for method in cfg.methods:
            bar.set_postfix_str(f"{case.name}: {method}")
            if method == "NSIPF":
                row.update(nsipf_columns(case, grid, cfg, ref["rho16"]))
            else:
                row[method] = run_method(method, case, grid, cfg.P, cfg.seeds, cfg.T, cfg.dt, None, ref["rho16"])
            for key in (["NSIPF", "NSIPF default"] if method == "NSIPF" else [method]):
                if key in row:
                    bar.write(f"{case.name} {key}: rho error {row[key]['rho_T']:.4f} ({row[key]['wall_s']:.1f} s)"
                              + (f", ran {row[key]['applied']}" if key == "NSIPF default" else ""))
            bar.update()
        rows.append(row)
        save_json(out / "heldout_table.json", {"config": dataclasses.asdict(cfg), "commit": commit_hash(),
                                               "torch": torch.__version__, "rows": rows})  # a stopped run keeps what it measured
    bar.close()
    return rows


def main(argv=None) -> int:
    try:
        cfg = parse_args(argv)
    except ValueError as err:
        return usage_error(PROG, err)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    grid = Grid(cfg.N, cfg.dim, dtype=cfg.dtype)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_json(out / "config.json", dataclasses.asdict(cfg))
    rows = table_rows(cfg, cfg.parsed_cases(), grid, out)
    header = (f"{cfg.dim}D, N = {cfg.N}, P = {cfg.P:,}, seeds {','.join(map(str, cfg.seeds))}, {cfg.dtype}, "
              f"T = {cfg.T}, dt = {cfg.dt}: rel_l2 of rho at T on 16^{cfg.dim} blocks")
    md = markdown(rows, cfg.methods, header)
    (out / "heldout_table.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
