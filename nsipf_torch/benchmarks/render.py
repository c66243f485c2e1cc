"""The markdown of a benchmark's results.json: the tables that were measured, in the order a reader wants
them (targets, DCT field solve, FD compile, Table 1, Table 2, fast path)."""
from __future__ import annotations

from nsipf_torch.benchmarks.timing import fmt


def render_markdown(results: dict, n_steps: int) -> str:
    cfg = results["config"]
    lines = [f"# nsipf_torch benchmark ({cfg['suite']} suite)", "",
             f"Device: {results['device']}; torch {results['torch']}; commit {results['commit']}; {results['date']}.",
             f"Command: `nsipf-benchmark {results.get('command', '')}`; dtype {cfg['dtype']}; median of {cfg['repeats']} "
             "runs (min–max); warm-up excluded."]
    lines += render_targets(results)
    if results.get("fd_compile"):
        lines += ["", f"## FD sub-step: eager and `torch.compile`d, two_blobs 3D to T = {cfg['T']}", "",
                  "| N | mode | wall time | FD sub-steps | ms per sub-step | warm-up (compilation) |",
                  "|---|---|---|---|---|---|"]
        for r in results["fd_compile"]:
            lines.append(f"| {r['N']}³ | {r['mode']} | {fmt(r)} | {r['substeps']} | {r['ms_per_substep']:.3g} | "
                         f"{r['warmup_s']:.3g} s |")
    if results.get("table1"):
        lines += ["", f"## Table 1: two_blobs 3D, T = {cfg['T']}, dt = {cfg['dt']} ({n_steps} steps), P = {cfg['P']:,}", "",
                  "| method | N | wall time | steps/s | particle-steps/s | FD sub-steps | warm-up | paper (res = 32/64/128 "
                  "assumed) |", "|---|---|---|---|---|---|---|---|"]
    for r in results.get("table1", []):
        ps = f"{r['particle_steps_per_s']:.3g}" if r["particle_steps_per_s"] else "–"
        sub = str(r["substeps"]) if r["method"] == "FDM" else "–"
        paper = f"{r['paper_s']} s" if r["paper_s"] else "–"
        lines.append(f"| {r['method']} | {r['N']}³ | {fmt(r)} | {r['steps_per_s']:.3g} | {ps} | {sub} | "
                     f"{r['warmup_s']:.3g} s | {paper} |")
    if results.get("table2"):
        lines += ["", f"## Table 2: time per step against P, N = {results['table2'][0]['N']}³, runs of {cfg['steps2']} "
                  "steps", "", "| method | P | case | s/step | particle-steps/s | paper (whole run, res 2) |",
                  "|---|---|---|---|---|---|"]
    for r in results.get("table2", []):
        paper = f"{r['paper_s']} s" if r["paper_s"] else "–"
        lines.append(f"| {r['method']} | {r['P']:,} | {r['case']} | {r['s_per_step']:.3g} | "
                     f"{r['particle_steps_per_s']:.3g} | {paper} |")
    if "fast_path" in results:
        lines += render_fast_path(results["fast_path"], cfg)
    return "\n".join(lines) + "\n"


def render_targets(results: dict) -> list[str]:
    """The target rows, the training command's wall time and the histogram comparison, where measured."""
    lines = []
    if results.get("targets"):
        lines += ["", "## Targets (warm-up = first calls and compilation, excluded)", "",
                  "| row | time (median, min–max) | warm-up | peak memory | fits 80 GB |", "|---|---|---|---|---|"]
        for r in results["targets"]:
            if "error" in r:
                lines.append(f"| {r['row']} | {r['error']} |  |  |  |")
                continue
            time_text = (f"{1e3 * r['s_per_step']:.3g} ms/step ({1e3 * r['min_s_per_step']:.3g}–"
                         f"{1e3 * r['max_s_per_step']:.3g})" if r["kind"] == "step" else fmt(r))
            memory = "–" if r["peak_memory_gb"] is None else f"{r['peak_memory_gb']:.1f} GB"
            fits = "–" if r["fits"] is None else ("yes" if r["fits"] else "**no**")
            lines.append(f"| {r['row']} | {time_text} | {r['warmup_s']:.3g} s | {memory} | {fits} |")
    lines += render_spectral(results.get("spectral"))
    if results.get("train"):
        r = results["train"]
        value = r["error"] if "error" in r else f"{r['wall_s']:.1f} s (exit {r['exit']})"
        lines += ["", f"`{r['row']}` (data generation included): {value}"]
    if results.get("histogram"):
        lines += ["", "## Histogram forms of the NGP deposit (one call, median over repeats of 10 calls)", "",
                  "| form | N | P | case | ms/call (min–max) |", "|---|---|---|---|---|"]
        for r in results["histogram"]:
            ms = r["error"] if "error" in r else (f"{1e3 * r['s_per_call']:.3g} ({1e3 * r['min_s']:.3g}–"
                                                  f"{1e3 * r['max_s']:.3g})")
            lines.append(f"| {r['histogram']} | {r['N']}³ | {r['P']:,} | {r['case']} | {ms} |")
    return lines


def render_spectral(rows) -> list[str]:
    """The DCT field solve: ms per call, the residual of the elliptic solve, the issue-21 target where set."""
    if not rows:
        return []
    lines = ["", "## DCT field solve (nsipf_torch.solvers.spectral; one call, median over repeats of 10 calls)", "",
             "| solve | N | ms/call (min–max) | residual | peak memory | target |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['solve']} | {r['N']}³ | {r['error']} |  |  |  |")
            continue
        ms = 1e3 * r["s_per_call"]
        target = "–" if r["target_ms"] is None else (f"≤ {r['target_ms']:g} ms: "
                                                      + ("met" if ms <= r["target_ms"] else "**missed**"))
        memory = "–" if r["peak_memory_gb"] is None else f"{r['peak_memory_gb']:.2f} GB"
        residual = f"{r['residual']:.1e}" if "residual" in r else "–"
        lines.append(f"| {r['solve']} | {r['N']}³ | {ms:.3g} ({1e3 * r['min_s']:.3g}–{1e3 * r['max_s']:.3g}) | "
                     f"{residual} | {memory} | {target} |")
    return lines


def _cell(r: dict, key: str, spec: str = ".3g") -> str:
    return r["error"] if "error" in r else format(r[key], spec) if r.get(key) is not None else "–"


def render_fast_path(fp: dict, cfg: dict) -> list[str]:
    lines = ["", f"## Fast path: CNN precision (NSIPF two_blobs, runs of {cfg['steps2']} steps)", "",
             "| precision | N | P | s/step (min–max) | warm-up |", "|---|---|---|---|---|"]
    for r in fp["precision_speed"]:
        span = "" if "error" in r else f" ({r['min_s_per_step']:.3g}–{r['max_s_per_step']:.3g})"
        lines.append(f"| {r['precision']} | {r['N']}³ | {r['P']:,} | {_cell(r, 's_per_step')}{span} | "
                     f"{_cell(r, 'warmup_s')} |")
    lines += ["", "Accuracy effect (same seed and noise; rho rel_l2 against the converged FD reference at "
              "T/2 / T, as in docs/VALIDATION.md; difference from the fp32 run; the CNN alone on the fp32 run's "
              "T/2 state):", "",
              "| precision | N | P | rho error T/2 | rho error T | rho vs fp32 T/2 | rho vs fp32 T | fine field vs fp32 | "
              "grad c vs fp32 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in fp["precision_accuracy"]:
        if "error" in r and "precision" not in r:
            lines.append(f"| {r['error']} |  |  |  |  |  |  |  |  |")
            continue
        lines.append(f"| {r['precision']} | {r['N']}³ | {r['P']:,} | {_cell(r, 'rho_err_half', '.4f')} | "
                     f"{_cell(r, 'rho_err_T', '.4f')} | {_cell(r, 'rho_diff_fp32_half', '.2e')} | "
                     f"{_cell(r, 'rho_diff_fp32_T', '.2e')} | {_cell(r, 'fine_field_rel_diff', '.2e')} | "
                     f"{_cell(r, 'grad_c_rel_diff', '.2e')} |")
    lines += ["", "## Fast path: deposit kernels (one call, median over repeats of 20 calls)", "",
              "| deposit | N | P | case | ms/call | particles/s |", "|---|---|---|---|---|---|"]
    for r in fp["deposit"]:
        rate = "–" if "error" in r else f"{r['P'] / r['s_per_call']:.3g}"
        ms = r["error"] if "error" in r else f"{1e3 * r['s_per_call']:.3g}"
        lines.append(f"| {r['deposit']} | {r['N']}³ | {r['P']:,} | {r['case']} | {ms} | {rate} |")
    if fp["compile"]:
        lines += ["", "## Fast path: eager vs torch.compile (warm-up = compilation, excluded from s/step)", "",
                  "| method | N | P | mode | s/step (min–max) | particle-steps/s | warm-up |", "|---|---|---|---|---|---|---|"]
        for r in fp["compile"]:
            span = "" if "error" in r else f" ({r['min_s_per_step']:.3g}–{r['max_s_per_step']:.3g})"
            rate = "–" if "error" in r else f"{r['P'] / r['s_per_step']:.3g}"
            lines.append(f"| {r['method']} | {r['N']}³ | {r['P']:,} | {r['mode']} | {_cell(r, 's_per_step')}{span} | "
                         f"{rate} | {_cell(r, 'warmup_s')} |")
    return lines
