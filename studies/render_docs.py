"""Render the measured tables of the docs from the committed results files, or check that they match.

    python -m studies.render_docs            # rewrite every table between its markers, in place
    python -m studies.render_docs --check    # exit 1, naming each table that differs from its results file

A table that a script produced sits in README.md, BENCHMARKS.md, docs/VALIDATION.md or docs/INFERENCE.md
between the lines ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->`` (indented like the table when it is
inside a list); docs/accuracy_table.md is one such table as a whole file.
:data:`TABLES` maps NAME to its results file and its renderer. The results files are small JSON:

- ``docs/benchmarks/*.json`` and ``docs/accuracy_table.json``: what ``benchmark.py`` and
  ``studies.accuracy_table`` wrote, rendered field by field;
- ``docs/results/*.json``: tables transcribed once from runs that take hours to repeat, one file per family,
  each table with the command and the commit that produced it and its cells as the run printed them.

Hand-written tables (flags, what each script does, targets and their status) carry no marker.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Callable

from nsipf_torch.methods import METHODS as REGISTRY, get_method
from studies import render_ks

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "BENCHMARKS.md", "docs/VALIDATION.md", "docs/INFERENCE.md")
RESULTS = ROOT / "docs" / "results"
MARKER = re.compile(r"^(?P<indent>[ \t]*)<!-- table:(?P<name>[\w.-]+) -->$")
METHODS = tuple(m.label for m in REGISTRY.values())  # the tables' method labels: FDM, SIPF-trilinear, ...
LEGACY = {"FD": "FDM"}  # labels of results files written before the method table (nsipf_torch/methods.py)


def label(name: str) -> str:
    """The method table's label of a method name or label, an older results file's label included."""
    return get_method(LEGACY.get(name, name)).label


def on_particles(name: str) -> bool:
    return get_method(LEGACY.get(name, name)).particles


@lru_cache(maxsize=None)
def load(relpath: str):
    return json.loads((ROOT / relpath).read_text())


def markdown(columns: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


# ---------------------------------------------------------------------------------------------------
# Transcribed tables: docs/results/FAMILY.json, {"tables": {KEY: {"command", "commit", "columns", "rows"}}}.

def transcribed(family: str, key: str, hide: tuple[str, ...] = (), first: int | None = None) -> Callable[[], list[str]]:
    """The table ``key`` of ``family``, without the columns ``hide``, its first ``first`` rows (all: None)."""
    def render() -> list[str]:
        table = load(f"docs/results/{family}.json")["tables"][key]
        keep = [i for i, c in enumerate(table["columns"]) if c not in hide]
        rows = table["rows"][:first]
        columns = [LEGACY.get(table["columns"][i], table["columns"][i]) for i in keep]
        return markdown(columns, [[row[i] for i in keep] for row in rows])
    render.source, render.key = f"docs/results/{family}.json", key
    return render


# studies.heldout_table's own JSON, one per table: docs/results/heldout_affine.json,
# {"tables": {KEY: {"command", "commit", "study": {config, commit, torch, rows}}}}.

HELDOUT = "docs/results/heldout_affine.json"


def heldout_study(key: str, forced_only: bool = False) -> Callable[[], list[str]]:
    """Table ``key`` as studies.heldout_table prints it (:func:`studies.heldout_table.table`); ``forced_only``
    leaves out the default column (a run made under an earlier fallback rule, re-measured in another table)."""
    def render() -> list[str]:
        from studies.heldout_table import table  # here: heldout_table imports accuracy_table, which imports this
        study = load(HELDOUT)["tables"][key]["study"]
        rows = [{k: v for k, v in row.items() if not (forced_only and k == "NSIPF default")} for row in study["rows"]]
        return markdown(*table(rows, study["config"]["methods"]))
    render.source, render.key = HELDOUT, key
    return render


def heldout_default(key: str, against: str) -> Callable[[], list[str]]:
    """The default column of table ``key`` (a ``--nsipf default`` run) beside the spline column of table
    ``against`` (the same cases, sizes and seeds): the ratio, and whether every seed's error is the
    spline's to the last bit (a fallback runs the spline's computation itself)."""
    def render() -> list[str]:
        from studies.heldout_table import ran_label  # lazily, as in heldout_study
        tables = load(HELDOUT)["tables"]
        spline = {row["case"]: row["SIPF-spline"] for row in tables[against]["study"]["rows"]}
        cells = []
        for row in tables[key]["study"]["rows"]:
            default, ref = row["NSIPF default"], spline[row["case"]]
            ran = ran_label(default["applied"])
            cells.append([row["case"], f"{ref['rho_T']:.3f}", f"{default['rho_T']:.3f} ({ran})",
                          f"{default['rho_T'] / ref['rho_T']:.2f}",
                          "yes" if default["per_seed"] == ref["per_seed"] else "no"])
        return markdown(["case", f"SIPF-spline (table {against})", "NSIPF, default (what ran)", "default / spline",
                         "every seed's error the spline's, bit for bit"], cells)
    render.source, render.key = HELDOUT, key
    return render


# ---------------------------------------------------------------------------------------------------
# benchmark.py's results.json (docs/benchmarks/*.json, docs/results/cpu_quick_*.json).

def _g(x: float) -> str:
    return f"{x:.3g}"


def _span(r: dict) -> str:
    return f"{_g(r['median_s'])} s ({_g(r['min_s'])}–{_g(r['max_s'])})"


def bench(path: str, part: str) -> Callable[[], list[str]]:
    def render() -> list[str]:
        return BENCH_PARTS[part](load(path))
    render.source = path
    return render


def _table1(res: dict) -> list[str]:
    rows = []
    for r in res["table1"]:
        ps = _g(r["particle_steps_per_s"]) if r["particle_steps_per_s"] else "–"
        rows.append([r["method"], f"{r['N']}³", _span(r), _g(r["steps_per_s"]), ps,
                     "–" if on_particles(r["method"]) else str(r["substeps"]), f"{_g(r['warmup_s'])} s",
                     f"{r['paper_s']} s" if r["paper_s"] else "–"])
    return markdown(["method", "N", "wall time", "steps/s", "particle-steps/s", "FD sub-steps", "warm-up",
                     "paper (res = 32/64/128 assumed)"], rows)


def _baseline(res: dict) -> list[str]:
    b = res["baseline"]
    rows = [["scipy `interpn(method='cubic')`, CPU (the paper's approach)", _g(b["scipy_s_per_step"])],
            ["ours, SIPF-spline", _g(b["ours_s_per_step"])], ["**speedup**", f"**{b['speedup']:.0f}×**"]]
    if "compiled_s_per_step" in b:
        rows += [[f"ours, SIPF-spline, `torch.compile` mode {b['compiled_mode']} (compilation {b['compile_s']:.0f} s,"
                  " excluded)", _g(b["compiled_s_per_step"])],
                 ["**speedup, compiled**", f"**{b['compiled_speedup']:.0f}×**"]]
    return markdown(["classical SIPF", "s/step"], rows)


def _table2(res: dict) -> list[str]:
    rows = [[r["method"], f"{r['P']:,}", r["case"], _g(r["s_per_step"]), _g(r["particle_steps_per_s"]),
             f"{r['paper_s']} s" if r["paper_s"] else "–"] for r in res["table2"]]
    return markdown(["method", "P", "case", "s/step", "particle-steps/s", "paper (whole run, res 2)"], rows)


def _precision_speed(res: dict) -> list[str]:
    rows = [[r["precision"], f"{r['N']}³", f"{r['P']:,}",
             f"{_g(r['s_per_step'])} ({_g(r['min_s_per_step'])}–{_g(r['max_s_per_step'])})", _g(r["warmup_s"])]
            for r in res["fast_path"]["precision_speed"]]
    return markdown(["precision", "N", "P", "s/step (min–max)", "warm-up"], rows)


def _precision_accuracy(res: dict) -> list[str]:
    def cell(r, key, spec):
        return format(r[key], spec) if r.get(key) is not None else "–"
    rows = [[r["precision"], f"{r['N']}³", f"{r['P']:,}", cell(r, "rho_err_half", ".4f"), cell(r, "rho_err_T", ".4f"),
             cell(r, "rho_diff_fp32_half", ".2e"), cell(r, "rho_diff_fp32_T", ".2e"),
             cell(r, "fine_field_rel_diff", ".2e"), cell(r, "grad_c_rel_diff", ".2e")]
            for r in res["fast_path"]["precision_accuracy"]]
    return markdown(["precision", "N", "P", "rho error T/2", "rho error T", "rho vs fp32 T/2", "rho vs fp32 T",
                     "fine field vs fp32", "grad c vs fp32"], rows)


def _deposit(res: dict) -> list[str]:
    rows = [[r["deposit"], f"{r['N']}³", f"{r['P']:,}", r["case"], _g(1e3 * r["s_per_call"]),
             _g(r["P"] / r["s_per_call"])] for r in res["fast_path"]["deposit"]]
    return markdown(["deposit", "N", "P", "case", "ms/call", "particles/s"], rows)


def _compile(res: dict) -> list[str]:
    rows = [[r["method"], f"{r['N']}³", f"{r['P']:,}", r["mode"],
             f"{_g(r['s_per_step'])} ({_g(r['min_s_per_step'])}–{_g(r['max_s_per_step'])})",
             _g(r["P"] / r["s_per_step"]), _g(r["warmup_s"])] for r in res["fast_path"]["compile"]]
    return markdown(["method", "N", "P", "mode", "s/step (min–max)", "particle-steps/s", "warm-up"], rows)


BENCH_PARTS = {"table1": _table1, "baseline": _baseline, "table2": _table2, "precision_speed": _precision_speed,
               "precision_accuracy": _precision_accuracy, "deposit": _deposit, "compile": _compile}


# ---------------------------------------------------------------------------------------------------
# studies.accuracy_table's docs/accuracy_table.json: the end-to-end table and annuli's ring fractions.

ACCURACY = "docs/accuracy_table.json"


def accuracy_lines(rows: list[dict], methods=METHODS) -> list[str]:
    """The end-to-end table of ``studies.accuracy_table``'s rows: ρ error at T/2 / T (c error at T; wall time)."""
    cells = [[row["problem"], str(row["N"]), f"{row['P']:,}",
              *(f"{r['rho_half']:.3f} / {r['rho_T']:.3f} (c {r['c_T']:.3f}; {r['wall_s']:.1f} s)"
                for r in (row[m] for m in methods))] for row in rows]
    return markdown(["problem", "N", "P", *methods], cells)


def accuracy_json() -> list[dict]:
    """The rows of docs/accuracy_table.json, each method's entry under its label (older files: FD)."""
    return [{k if k in ("problem", "N", "P") else label(k): v for k, v in row.items()} for row in load(ACCURACY)]


def accuracy_rows() -> list[str]:
    return accuracy_lines(accuracy_json())


def ring_rows() -> list[str]:
    rows = [[f"{row['N']}, {_power(row['P'])}",
             *(f"{row[m]['inner_ring_t0.05']:.3f} / {row[m]['outer_ring_T']:.3f}" for m in METHODS)]
            for row in accuracy_json() if row["problem"] == "annuli"]
    return markdown(["N, P", f"{METHODS[0]} (same N)", *METHODS[1:]], rows)


accuracy_rows.source = ring_rows.source = ACCURACY


def _power(P: int) -> str:
    """2·10⁴ for 20000, 10⁶ for 1000000 (the docs' notation for particle counts)."""
    k = int(math.floor(math.log10(P)))
    m = round(P / 10**k)
    sup = str(k).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"10{sup}" if m == 1 else f"{m}·10{sup}"


# ---------------------------------------------------------------------------------------------------
# studies.work_precision (then benchmark.py --suite work-precision): docs/benchmarks/work_precision_cpu.json.

WORK_PRECISION = "docs/benchmarks/work_precision_cpu.json"
WP_LEVELS = (0.3, 0.2, 0.1, 0.05, 0.04, 0.03)


def _wall(w: float) -> str:
    return f"{w:.2f}" if w < 1 else f"{w:.1f}" if w < 10 else f"{w:.0f}"


def _wp_points(problem: str) -> list[dict]:
    return [p for p in load(WORK_PRECISION)["points"] if p["problem"] == problem]


def work_precision_rows() -> list[str]:
    keyed = {}
    for problem in ("two_blobs", "planar"):
        for p in _wp_points(problem):
            keyed.setdefault((p["method"], p["N"], p["P"]), {})[problem] = p
    rows = []
    for (method, N, P), by in keyed.items():
        if on_particles(method) and P == 20_000:
            continue  # the 2·10⁴ runs are in the JSON and the figure; the table keeps P >= 2·10⁵
        if on_particles(method) and N != 64:
            continue
        rows.append([label(method), str(N), _power(P) if on_particles(method) else "–",
                     *(f"{by[q]['error']:.3f} / {_wall(by[q]['wall_s'])} s" for q in ("two_blobs", "planar"))])
    return markdown(["method", "N", "P", "`two_blobs` error / wall", "`planar` error / wall"], rows)


def _wp_run(p: dict) -> str:
    return f"{label(p['method'])} {p['N']}³" + (f", P = {_power(p['P'])}" if on_particles(p["method"]) else "")


def cheapest_rows() -> list[str]:
    rows = []
    for level in WP_LEVELS:
        cells = []
        for problem in ("two_blobs", "planar"):
            points = _wp_points(problem)
            ok = [p for p in points if p["error"] <= level]
            if ok:
                p = min(ok, key=lambda q: q["wall_s"])
                cells.append(f"{_wp_run(p)}: {_wall(p['wall_s'])} s ({p['error']:.3f})")
                continue
            best = min(round(p["error"], 3) for p in points)
            tied = [p for p in points if round(p["error"], 3) == best]
            names = " and ".join(dict.fromkeys(label(p["method"]) for p in tied))
            where = _wp_run(tied[0]).split(" ", 1)[1]
            cells.append(f"none of the runs (best: {names} {where}, {best:.3f})")
        rows.append([f"≤ {level}", *cells])
    return markdown(["accuracy wanted (ρ error at T)", "`two_blobs`: cheapest run", "`planar`: cheapest run"], rows)


work_precision_rows.source = cheapest_rows.source = WORK_PRECISION


# ---------------------------------------------------------------------------------------------------
# The registry: every marked table in the docs.

def results(path: str, part: Callable[[dict], tuple[list[str], list[list[str]]]]) -> Callable[[], list[str]]:
    """A table that ``part`` makes from a study's own results file (command and commit at its top level)."""
    def render() -> list[str]:
        return markdown(*part(load(path)))
    render.source = path
    return render


QUICK = "docs/results/cpu_quick_2026-11-27.json"
PAPER = "docs/benchmarks/cpu_paper_2026-11-27.json"
GPU = "docs/benchmarks/gpu_h100_2026-11-27.json"

TABLES: dict[str, Callable[[], list[str]]] = {
    # README.md and docs/VALIDATION.md: the shipped CNNs against naive upsampling (train.py --evaluate)
    "readme-cnn-patch-errors": transcribed("validation_neural", "patch_errors", hide=("input, target",), first=2),
    "cnn-patch-errors": transcribed("validation_neural", "patch_errors"),
    # BENCHMARKS.md: benchmark.py's suites
    "quick-table1": bench(QUICK, "table1"), "quick-baseline": bench(QUICK, "baseline"),
    "quick-table2": bench(QUICK, "table2"),
    "paper-table1": bench(PAPER, "table1"), "paper-baseline": bench(PAPER, "baseline"),
    "gpu-table1": bench(GPU, "table1"), "gpu-baseline": bench(GPU, "baseline"), "gpu-table2": bench(GPU, "table2"),
    "gpu-precision-speed": bench(GPU, "precision_speed"), "gpu-precision-accuracy": bench(GPU, "precision_accuracy"),
    "gpu-deposit": bench(GPU, "deposit"), "gpu-compile": bench(GPU, "compile"),
    "histogram-cpu": transcribed("benchmarks_cpu", "histogram"),
    "fd-compile-cpu": transcribed("benchmarks_cpu", "fd_compile"),
    "memory-coefficients": transcribed("benchmarks_cpu", "memory_coefficients"),
    "memory-check": transcribed("benchmarks_cpu", "memory_check"),
    "tangent-cpu": transcribed("benchmarks_cpu", "tangent"),
    "convergence-cpu": transcribed("benchmarks_cpu", "convergence"),
    "time-sipf-main": transcribed("benchmarks_cpu", "time_sipf_main"),
    "time-sipf-parts": transcribed("benchmarks_cpu", "time_sipf_parts"),
    "time-sipf-batched": transcribed("benchmarks_cpu", "time_sipf_batched"),
    "work-precision": work_precision_rows, "work-precision-cheapest": cheapest_rows,
    # docs/VALIDATION.md: the FD solver, the radial solver, the SIPF core, the CNN
    **{f"fd-{key}": transcribed("validation_fd", key) for key in (
        "heat-kernel", "mass", "grid-convergence", "batching", "references", "references-128", "coarse-runs",
        "wall-time", "behaviour", "behaviour-annuli")},
    "radial-figures": transcribed("validation_radial", "figures"),
    "radial-timing": transcribed("validation_radial", "timing"),
    "sipf-chi2": transcribed("validation_sipf", "chi2"),
    "sipf-agreement": transcribed("validation_sipf", "agreement"),
    "neural-roughness": transcribed("validation_neural", "roughness"),
    "neural-keep": transcribed("validation_neural", "keep"),
    "neural-speed": transcribed("validation_neural", "speed"),
    "neural-affine": transcribed("validation_neural", "affine"),
    "neural-drift-tried": transcribed("validation_neural", "drift_tried"),
    "accuracy": accuracy_rows, "accuracy-rings": ring_rows,
    **{f"heldout-{key}": transcribed("heldout", key, hide=("interp_gap at T",)) for key in (
        "2d64-1e5", "3d32", "3d64", "2d64-1e6", "2d64-1e6-more", "2d128", "2d128-more", "3d64-1e6",
        "2d-fronts-retrain")},
    **{f"heldout-affine-{key}": heldout_study(key) for key in ("2d128", "2d64", "3d32", "2d128-pmax1m", "2d64-pmax1m",
                                                                 "3d32-pmax1m", "3d64-pmax1m", "3d32-p131k",
                                                                 "3d64-p131k", "3d32-central", "3d64-central",
                                                                 "2d64-2e5-slope", "2d64-2e5-central", "2d64-2e5",
                                                                 "2d128-2e5")},
    **{f"heldout-affine-{key}-default": heldout_default(f"{key}-default", key) for key in ("2d128", "2d64", "3d64")},
    "heldout-affine-3d64": heldout_study("3d64", forced_only=True),
    # docs/VALIDATION.md and BENCHMARKS.md: the Keller-Segel family
    "ks-growth-rates": results(render_ks.KS_VALIDATION, render_ks.growth_rates),
    "ks-critical-mass": results(render_ks.KS_VALIDATION, render_ks.critical_mass),
    "ks-collapse-vs-grid": results(render_ks.KS_VALIDATION, render_ks.collapse_vs_grid),
    "ks-second-moment": results(render_ks.KS_VALIDATION, render_ks.second_moment),
    "ks-sipf-growth": results(render_ks.KS_VALIDATION, render_ks.sipf_growth),
    "ks-spectral-timing": results(render_ks.KS_TIMING, render_ks.spectral_timing),
    "ks-consumption": results(render_ks.KS_CONSUMPTION, render_ks.consumption),
    **{name: results(render_ks.KS_3D, part) for name, part in render_ks.KS_3D_TABLES.items()},
    # docs/INFERENCE.md
    "inference-validation": transcribed("inference", "validation"),
    "inference-ks": transcribed("inference", "keller_segel"),
}


# The command of results files written by the run itself, which record the commit but not the command line.
COMMANDS = {
    ACCURACY: ("python -m studies.accuracy_table", "ec2108c"),
    WORK_PRECISION: ("python -m studies.work_precision --out runs/wp_cpu", None),
    PAPER: ("python benchmark.py --suite paper --out bench/paper", None),
    GPU: ("bash studies/gpu_check.sh OUT (python benchmark.py --suite gpu --device cuda --out OUT)", None),
}


def provenance(name: str) -> tuple[str, str | None, str | None]:
    """(results file, command, commit) of table ``name``; None where the file does not say."""
    render = TABLES[name]
    source = render.source
    data = load(source)
    if "tables" in data:
        table = data["tables"][render.key]
        return source, table.get("command"), table.get("commit")
    command, commit = COMMANDS.get(source, (None, None))
    if isinstance(data, dict):
        command, commit = data.get("command", command), data.get("commit", commit)
    return source, command, commit


# Files that are one table, as the study that measured it writes them.
WHOLE_FILES = {"docs/accuracy_table.md": accuracy_rows}


def render_doc(text: str) -> tuple[str, list[str]]:
    """``text`` with every marked table re-rendered, and the names of the markers found."""
    lines, out, names, i = text.split("\n"), [], [], 0
    while i < len(lines):
        m = MARKER.match(lines[i])
        out.append(lines[i])
        i += 1
        if not m:
            continue
        name, indent = m["name"], m["indent"]
        end = f"{indent}<!-- /table:{name} -->"
        try:
            j = lines.index(end, i)
        except ValueError:
            raise ValueError(f"<!-- table:{name} --> has no closing {end.strip()}") from None
        if name not in TABLES:
            raise ValueError(f"unknown table {name!r}; known: {', '.join(TABLES)}")
        names.append(name)
        out += [indent + line for line in TABLES[name]()] + [end]
        i = j + 1
    return "\n".join(out), names


def check() -> list[str]:
    """One line per doc table that differs from what its results file renders, or per table not in any doc."""
    problems, seen = [], []
    for doc in DOCS:
        text = (ROOT / doc).read_text()
        rendered, names = render_doc(text)
        seen += names
        if rendered != text:
            old, new = text.split("\n"), rendered.split("\n")
            first = next((k for k, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
            problems.append(f"{doc}:{first + 1}: differs from its results file (python -m studies.render_docs)")
    problems += [f"table {name!r} is in no doc" for name in TABLES if name not in seen]
    for doc, render in WHOLE_FILES.items():
        if (ROOT / doc).read_text() != "\n".join(render()) + "\n":
            problems.append(f"{doc}: differs from its results file (python -m studies.render_docs)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.render_docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if a table differs")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        print("\n".join(problems) or f"{len(TABLES)} tables match their results files")
        return 1 if problems else 0
    for doc in DOCS:
        path = ROOT / doc
        text = path.read_text()
        rendered, _ = render_doc(text)
        if rendered != text:
            path.write_text(rendered)
            print(f"rewrote {doc}")
    for doc, render in WHOLE_FILES.items():
        text = "\n".join(render()) + "\n"
        if (ROOT / doc).read_text() != text:
            (ROOT / doc).write_text(text)
            print(f"rewrote {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
