"""The Keller-Segel family's tables (issue 20), as (columns, rows) from the results files that
``studies.keller_segel`` and ``studies.time_spectral`` write; :mod:`studies.render_docs` puts them between
their markers.

    docs/results/ks_validation.json        python -m studies.keller_segel --out FILE
    docs/results/ks_spectral_timing.json   python -m studies.time_spectral --out FILE
    docs/results/ks_consumption.json       python -m studies.ks_consumption --out FILE
    docs/results/ks_3d.json                python -m studies.keller_segel --part blob3d|ring3d --out FILE
"""
from __future__ import annotations

import math

KS_VALIDATION = "docs/results/ks_validation.json"
KS_TIMING = "docs/results/ks_spectral_timing.json"
KS_CONSUMPTION = "docs/results/ks_consumption.json"
KS_3D = "docs/results/ks_3d.json"


def growth_rates(data: dict) -> tuple[list[str], list[list[str]]]:
    """Measured FD growth rate of each instability case against the dispersion relation's root."""
    columns = ["case", "Φ", "κ", "γ", "χ", "mode m", "N", "σ theory", "σ FD", "error", "tolerance", "within"]
    rows = [[r["case"], r["sensitivity"], f"{r['kappa']:g}" if r["sensitivity"] != "linear" else "–",
             f"{r['gamma']:g}", f"{r['chi']:g}", r["m"], f"{r['N']}²", f"{r['sigma_theory']:.5f}",
             f"{r['sigma_fd']:.5f}", f"{r['error']:.1e}", f"{r['tolerance']:.1e}", "yes" if r["ok"] else "**no**"]
            for r in data["instability"]]
    return columns, rows


def critical_mass(data: dict) -> tuple[list[str], list[list[str]]]:
    """Each method's run of pks_blob below and above M_c: spread to T, or the collapse's time and place."""
    columns = ["method", "N", "P", "M0 (M_c = 0.251)", "T*_box", "outcome", "M₂/M0 start → end"]
    rows = []
    for r in data["critical_mass"]:
        hit = r["collapse"]
        outcome = (f"collapse at t = {hit['t']:.3f}, x = ({', '.join(f'{v:g}' for v in hit['x'])}), "
                   f"{hit['peak_mass']:.3f} in the peak cell" if hit else f"spreads to T = {r['T']:g}")
        star = "∞ (subcritical)" if math.isinf(r["T_star_box"]) else f"{r['T_star_box']:.3f}"
        rows.append([r["method"], f"{r['N']}²", f"{r['P']:,}" if r["P"] else "–", f"{r['M0']:g}", star, outcome,
                     f"{r['mean_r2_start']:.4f} → {r['mean_r2_end']:.4f}"])
    return columns, rows


def collapse_vs_grid(data: dict) -> tuple[list[str], list[list[str]]]:
    """FD's collapse time of M0 = 0.5 per grid."""
    columns = ["N", "collapse t", "mass in the peak cell", "FD sub-steps"]
    rows = [[f"{r['N']}²", f"{r['collapse_t']:.3f}", f"{r['peak_mass']:.4f}", r["substeps"]]
            for r in data["collapse_time_vs_grid"]]
    return columns, rows


def second_moment(data: dict) -> tuple[list[str], list[list[str]]]:
    """The mean slope of M2 over [0, 0.05] against the law evaluated at the measured M2, per method, mass and grid
    (the particle methods: mean +- standard error over seeds)."""
    columns = ["method", "M0", "M0 / M_c", "N", "P × seeds", "dM₂/dt measured", "law", "relative error", "within"]
    rows = []
    for r in data["second_moment"]["rows"]:
        particles = r["P"] is not None
        slope = f"{r['slope']:+.6f}" + (f" ± {r['slope_se']:.6f}" if particles else "")
        err = f"{100 * r['rel_error']:+.2f} %" + (f" ± {100 * r['rel_error_se']:.2f} %" if particles else "")
        within = ("yes (2 SE)" if particles else "yes (2 %)") if r["ok"] else "no"
        rows.append([r["method"], f"{r['M0']:g}", f"{r['M_over_Mc']:.2f}", f"{r['N']}²",
                     f"{r['P']:,} × {r['seeds']}" if particles else "–", slope, f"{r['theory']:+.6f}", err, within])
    return columns, rows


def sipf_growth(data: dict) -> tuple[list[str], list[list[str]]]:
    """Mode 1's growth rate per method against the dispersion relation's root and against FD at the same
    amplitude and step (the particle methods: mean +- standard error over seeds)."""
    columns = ["method", "P × seeds", "σ theory", "rate measured", "rate − σ", "rate − FD's", "within"]
    rows = []
    for r in data["sipf_growth"]["rows"]:
        particles = r["P"] is not None
        se = f" ± {r['rate_se']:.4f}" if particles else ""
        within = ("yes (2 SE)" if particles else "yes (1 %)") if r["ok"] else "no"
        rows.append([r["method"], f"{r['P']:,} × {r['seeds']}" if particles else "–", f"{r['sigma_theory']:.4f}",
                     f"{r['rate']:.4f}{se}", f"{r['error']:+.4f}{se}",
                     f"{r['minus_fd']:+.4f}{se}" if particles else "–", within])
    return columns, rows


def spectral_timing(data: dict) -> tuple[list[str], list[list[str]]]:
    """The DCT-II elliptic solve through torch.fft, before and after a change (``--baseline REV``), against
    scipy.fft.dctn, one thread, medians of interleaved calls."""
    columns = ["N³, float64", "before", "after", "scipy", "before / scipy", "after / scipy"]
    rows = [[f"{r['N']}³", f"{r['baseline_ms']:.3g} ms", f"{r['torch_ms']:.3g} ms", f"{r['scipy_ms']:.3g} ms",
             f"{r['baseline_ratio_over_scipy']:.2f}", f"{r['ratio_torch_over_scipy']:.2f}"] for r in data["rows"]]
    return columns, rows


def consumption(data: dict) -> tuple[list[str], list[list[str]]]:
    """FD's successive differences and observed orders, and SIPF beside FD at one grid, per sensitivity."""
    first = data["rows"][0]
    Ns = first["Ns"]
    columns = (["Φ"] + [f"e({a}→{b})" for a, b in zip(Ns, Ns[1:])] + ["observed orders"]
               + [f"SIPF-spline {first['N_sipf']}², P = {first['P']:,}", f"FDM {first['N_sipf']}²"])
    rows = [[r["sensitivity"], *(f"{e:.2e}" for e in r["errors"]), ", ".join(f"{o:.2f}" for o in r["orders"]),
             f"{r['sipf_vs_fd']:.4f}", f"{r['fd_same_grid_vs_fd']:.4f}"] for r in data["rows"]]
    return columns, rows


def _outcome(hit: dict | None, T: float) -> str:
    if not hit:
        return f"spreads to T = {T:g}"
    return (f"collapse at t = {hit['t']:.3f}, x = ({', '.join(f'{v:g}' for v in hit['x'])}), "
            f"Pe_h {hit['peclet_start']:.2f} → {hit['peclet']:.2f}")


def blob3d_slopes(data: dict) -> tuple[list[str], list[list[str]]]:
    """dM2/dt at t = 0 of the 3D blob per method, grid and mass against the Gaussian's law, and the measured
    interaction term over the law's (the particle methods: mean +- standard error over seeds)."""
    part = data["blob3d"]
    columns = ["method", "N", "P × seeds", "M0", "M0 / M*", "dM₂/dt(0) measured", "law", "interaction / law's"]
    rows = []
    for r in part["slopes"]:
        particles = r["P"] is not None
        se = f" ± {r['slope_se']:.4f}" if particles else ""
        rows.append([r["method"], f"{r['N']}³", f"{r['P']:,} × {r['seeds']}" if particles else "–",
                     f"{r['M0']:.4f}", f"{r['M_over_Mstar']:.1f}", f"{r['slope']:+.4f}{se}", f"{r['law']:+.4f}",
                     f"{r['interaction_ratio']:.3f}" + (f" ± {r['interaction_ratio_se']:.3f}" if particles else "")])
    return columns, rows


def blob3d_runs(data: dict) -> tuple[list[str], list[list[str]]]:
    """Each 3D blob mass to T in FD and SIPF-spline: the collapse's time, place and cell Peclet number at the
    start and at the stop, or "spreads"; M2 / M at the start and at the stop (or T); the Jensen bound."""
    part = data["blob3d"]
    columns = ["method", "N", "P", "M0", "M0 / M*", "T*_J", "outcome", "M₂/M start → end"]
    rows = []
    for method in ("fdm", "sipf"):
        run = part["runs"][method]
        for r in run["rows"]:
            hit, m2 = r["collapse"], r["M2_over_M"]  # a frozen member's M2 stays at its collapse's value
            star = "∞ (not closed)" if math.isinf(r["T_jensen"]) else f"{r['T_jensen']:.3f}"
            rows.append([r["method"], f"{r['N']}³", f"{r['P']:,}" if r["P"] else "–", f"{r['M0']:.4f}",
                         f"{r['M_over_Mstar']:.1f}", star, _outcome(hit, r["T"]), f"{m2[0]:.4f} → {m2[-1]:.4f}"])
    return columns, rows


def blob3d_grid(data: dict) -> tuple[list[str], list[list[str]]]:
    """FD's outcome for the masses nearest M* per grid (64^3 from the main runs)."""
    part = data["blob3d"]
    main = {r["M0"]: r for r in part["runs"]["fdm"]["rows"]}
    columns = ["M0 / M*", "N", "outcome"]
    grids = [(g["N"], g["rows"]) for g in part["grid"]]
    masses = [r["M0"] for r in grids[0][1]]
    grids.insert(1, (part["runs"]["fdm"]["rows"][0]["N"], [main[m] for m in masses]))
    rows = [[f"{r['M_over_Mstar']:.1f}", f"{N}³", _outcome(r["collapse"], r["T"])]
            for m in masses for N, rs in grids for r in rs if r["M0"] == m]
    return columns, rows


def ring3d(data: dict) -> tuple[list[str], list[list[str]]]:
    """The 3D rings per problem, mass and method: collapse time, place, the peak's radius and the azimuthal
    modulation of rho (max / min on the circle, mid-plane) at the start and at the collapse, or "spreads"."""
    part = data["ring3d"]
    columns = ["problem", "method", "N", f"M0 (M_line = {part['M_line']:.2f})", "outcome", "radius of the peak",
               "max / min on the circle: start → stop", "mean radius at the end"]
    rows = []
    for r in part["rows"]:
        hit = r["collapse"]
        modulation = f"{r['modulation_start']:.2f} → " + (f"{r['modulation']:.2f}" if hit else "–")
        rows.append([r["problem"], r["method"], f"{r['N']}³", f"{r['M0']:g}", _outcome(hit, r["T"]),
                     f"{r['radius']:.3f}" if hit else "–", modulation, f"{r['mean_radius_end']:.3f}"])
    return columns, rows


KS_3D_TABLES = {"ks3d-slopes": blob3d_slopes, "ks3d-blob": blob3d_runs, "ks3d-grid": blob3d_grid, "ks3d-ring": ring3d}
