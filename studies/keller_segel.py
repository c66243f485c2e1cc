"""Validation of the Keller-Segel family (issue 20): linear instability rates (FD and SIPF), the 2D critical
mass and the second-moment law; in 3D one blob around the derived contraction mass and a ring
(:mod:`studies.keller_segel_3d`).

    python -m studies.keller_segel                          # every 2D table, printed and written as JSON
    python -m studies.keller_segel --part second-moment --out docs/results/ks_validation.json   # one part
                                                            # rewritten in place, the file's others kept
    python -m studies.keller_segel --part blob3d --out docs/results/ks_3d.json --figures docs/figures
    python -m studies.keller_segel --part ring3d --out docs/results/ks_3d.json --figures docs/figures

Linear instability. Around the uniform state rho_bar = M0 / |Omega|, c_bar = beta rho_bar / alpha, a
cosine perturbation of mode m grows at the larger root sigma of
(sigma + gamma k^2)(eps sigma + D k^2 + alpha) = chi Phi'(c_bar) beta rho_bar k^2 (eps = 0: elliptic), with
k^2 the grid's symbol (4 / h^2) sin^2(k h / 2), k = m pi / (2L). The FD solver starts on the eigenvector
(:class:`~nsipf_torch.problems.keller_segel.InstabilityIC`) and the measured rate is
ln(a(T) / a(0)) / T of the mode's amplitude a. Criterion: within 1 % where |sigma| >= 0.05, else 5e-4.

Critical mass. pks_blob in 2D, elliptic with alpha = 0, gamma = 0.01, chi = D = beta = 1
(M_c = 8 pi gamma D / (chi beta) ~ 0.251): M0 = 0.12 spreads to T = 0.5, M0 = 0.5 collapses before
T*_box = -ln(1 - B M2(0) / A) / B (:func:`~nsipf_torch.problems.keller_segel.blowup_time_box`); the FD
collapse time at 64^2, 128^2, 256^2 shows the stop approaching the continuum collapse from below.

Second-moment law. In the same setting, while the mass stays away from the walls,
dM2/dt = 4 gamma M - chi beta M^2 / (2 pi D) + chi beta M M2 / (D |Omega|) exactly (M2 = int |x|^2 rho about
the centre; the last term is the mean-free source's uniform sink). The law is linear in M2, so its mean over
a window [0, t1] is exact: (M2(t1) - M2(0)) / t1 = A + B <M2>, <M2> the trapezoidal time average of the
measured M2 (diagnostics every step). FD at N = 32 ... 256 (the deviation is the grid's, O(h^2)); SIPF-spline
and SIPF-trilinear at 128^2 with several seeds, mean +- standard error. Criterion: FD within 2 % for
M <= 0.5 M_c and M >= 1.5 M_c, the particle methods within their noise.

SIPF's growth rate. One unstable elliptic case (alpha = 0, gamma = 0.01, chi = 4, M0 = 1, mode 1, 32^2,
amplitude 0.05 so that the mode stands above the particles' noise, dt = 0.0025) through the public API: the
rate is the least-squares slope of ln a(t) over 11 snapshots to 1.5 e-folds, a the deposited density's
projection on the mode; SIPF-spline and SIPF-trilinear over 8 seeds (mean +- standard error), FD beside
them at the same amplitude and step (FD's own deviation there, -0.36 %, is mostly the amplitude's:
-0.29 % at dt = 0.001; at amplitude 0.01, -0.14 % at dt = 0.0025 and -0.06 % at dt = 0.001).
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import nsipf_torch as nt
from nsipf_torch.benchmarks.timing import commit_hash
from nsipf_torch.commands.cli import parse_config, usage_error
from nsipf_torch.problems.keller_segel import (InstabilityIC, blowup_time_box, critical_mass, discrete_k2,
                                               growth_rate)
from nsipf_torch.solvers.c_equation import CEquation
from studies import keller_segel_3d

#: (label, CEquation keywords, gamma, chi, mode m): both sides of the threshold, every c-equation/sensitivity
INSTABILITY_CASES = (
    ("elliptic a=0 unstable", dict(equation="elliptic", D=1.0), 0.05, 1.0, 1),
    ("elliptic a=0 stable", dict(equation="elliptic", D=1.0), 0.2, 1.0, 1),
    ("elliptic a=0 m=3 stable", dict(equation="elliptic", D=1.0), 0.05, 1.0, 3),
    ("elliptic a=1 near threshold", dict(equation="elliptic", D=1.0, alpha=1.0), 0.02, 1.0, 2),
    ("parabolic eps=1 a=1 unstable", dict(equation="parabolic", D=1.0, alpha=1.0), 0.01, 2.0, 2),
    ("parabolic eps=1 a=1 stable", dict(equation="parabolic", D=1.0, alpha=1.0), 0.1, 1.0, 2),
    ("parabolic eps=0.1 a=0 unstable", dict(equation="parabolic", eps=0.1, D=1.0), 0.05, 1.0, 1),
    ("parabolic log kappa=1 unstable", dict(equation="parabolic", D=1.0, alpha=1.0, sensitivity="log"), 0.01, 4.0, 1),
    ("elliptic receptor kappa=0.5 unstable", dict(equation="elliptic", D=1.0, alpha=1.0, sensitivity="receptor",
                                                  kappa=0.5), 0.02, 3.0, 1),
    ("elliptic receptor kappa=0.5 stable", dict(equation="elliptic", D=1.0, alpha=1.0, sensitivity="receptor",
                                                kappa=0.5), 0.1, 3.0, 1),
)


def fd_growth_rate(ceq: CEquation, gamma: float, chi: float, m: int, N: int = 32, dim: int = 2, M0: float = 1.0,
                   amp: float = 1e-4, dt: float = 0.01, efolds: float = 1.5) -> tuple[float, float]:
    """(measured FD rate, theory's sigma) of mode m started on the linearised system's eigenvector; the run
    lasts ``efolds`` / |sigma| (at most 20). float64 on the CPU, L = 1."""
    rho_bar = M0 / 2.0**dim
    k2 = discrete_k2(m, N, 1.0)
    c_bar = ceq.beta * rho_bar / ceq.alpha if ceq.alpha > 0 else 0.0
    sigma = growth_rate(k2, gamma, chi, rho_bar, ceq, c_bar)
    lam = ceq.D * k2 + ceq.alpha
    c_amp = 0.0 if ceq.elliptic else ceq.beta * amp * rho_bar / (ceq.eps * sigma + lam)
    ic = InstabilityIC("instability", m, amp, c_bar, c_amp)
    T = min(efolds / max(abs(sigma), 1e-9), 20.0)
    steps = max(1, round(T / dt))
    r = nt.simulate(ic, "fdm", dim=dim, N=N, T=T, dt=T / steps, gamma=gamma, chi=chi, M0=M0, snapshots=1,
                    c_equation=ceq.equation, eps=ceq.eps, Dc=ceq.D, alpha=ceq.alpha, beta=ceq.beta,
                    sensitivity=ceq.sensitivity, kappa=ceq.kappa, dtype="float64", device="cpu")
    mode = ic._mode(r.grid)
    a = ((r.rho[0].double() - rho_bar) * mode).sum(tuple(range(1, dim + 1))) / (mode * mode).sum()  # (2,): t = 0, T
    return math.log(float(a[-1] / a[0])) / r.times[-1], sigma


def instability_table(N: int = 32) -> list[dict]:
    rows = []
    for label, kw, gamma, chi, m in INSTABILITY_CASES:
        ceq = CEquation(**kw)
        measured, sigma = fd_growth_rate(ceq, gamma, chi, m, N=N)
        tol = 0.01 * abs(sigma) if abs(sigma) >= 0.05 else 5e-4
        rows.append({"case": label, **ceq.to_dict(), "gamma": gamma, "chi": chi, "m": m, "N": N,
                     "sigma_theory": sigma, "sigma_fd": measured, "error": measured - sigma, "tolerance": tol,
                     "ok": abs(measured - sigma) <= tol})
    return rows


def critical_mass_table(N: int = 128, P: int = 100_000) -> list[dict]:
    rows = []
    gamma, L = 0.01, 1.0
    for method, interp in (("fdm", "spline"), ("sipf", "trilinear"), ("sipf", "spline")):
        for M0, T in ((0.12, 0.5), (0.5, 0.6)):
            r = nt.simulate("pks_blob", method, dim=2, N=N, P=P, T=T, gamma=gamma, M0=M0, c_equation="elliptic",
                            interp=interp, dtype="float64", device="cpu")
            t0, m2 = r.series("mean_r2")
            rows.append({"method": method if method == "fdm" else f"sipf-{interp}", "N": N, "P": P if method != "fdm" else None,
                         "M0": M0, "M_c": critical_mass(gamma, 1.0), "T": T,
                         "T_star_box": blowup_time_box(M0, M0 * float(m2[0, 0]), gamma, 1.0, L),
                         "complete": r.complete, "t_end": r.t_end, "collapse": r.collapse,
                         "mean_r2_start": float(m2[0, 0]), "mean_r2_end": float(m2[-1, 0]), "wall_s": r.wall_time})
    return rows


def collapse_time_vs_grid(Ns=(64, 128, 256)) -> list[dict]:
    """The FD collapse time of pks_blob at M0 = 0.5 per grid: the time the grid stops resolving the
    concentration, which approaches the continuum collapse from below as h shrinks."""
    rows = []
    for N in Ns:
        r = nt.simulate("pks_blob", "fdm", dim=2, N=N, T=0.6, gamma=0.01, M0=0.5, c_equation="elliptic",
                        dtype="float64", device="cpu")
        rows.append({"N": N, "collapse_t": r.collapse["t"] if r.collapse else None,
                     "peak_mass": r.collapse["peak_mass"] if r.collapse else None, "substeps": r.substeps})
    return rows


SECOND_MOMENT_MASSES = (0.06, 0.12, 0.38, 0.5)  # 0.24, 0.48, 1.51, 1.99 M_c


def second_moment_slope(method: str, M0: float, N: int, t1: float = 0.05, dt: float = 1e-3, P: int = 100_000,
                        seeds: list[int] | None = None, interp: str = "spline") -> tuple[np.ndarray, np.ndarray]:
    """(measured, theory) mean slope of M2 over [0, t1] per member of pks_blob (2D, elliptic, alpha = 0,
    gamma = 0.01, chi = D = beta = 1): measured (M2(t1) - M2(0)) / t1, theory A + B <M2> with
    A = 4 gamma M - M^2 / (2 pi), B = M / |Omega| and <M2> the measured M2's trapezoidal time average."""
    gamma = 0.01
    r = nt.simulate("pks_blob", method, dim=2, N=N, P=P, T=t1, dt=dt, gamma=gamma, M0=M0, c_equation="elliptic",
                    interp=interp, dtype="float64", device="cpu", diag_every=1, snapshots=1, seeds=seeds)
    t, r2 = r.series("mean_r2")
    t, m2 = np.asarray(t), M0 * r2.numpy()
    window = t[-1] - t[0]
    measured = (m2[-1] - m2[0]) / window
    average = np.trapezoid(m2, t, axis=0) / window
    return measured, 4 * gamma * M0 - M0**2 / (2 * math.pi) + M0 / (2.0 * r.grid.L) ** 2 * average


def second_moment_table(Ns=(32, 64, 128, 256), N_particles: int = 128, P: int = 100_000,
                        seeds: int = 8) -> list[dict]:
    """FD's slope error per grid and mass; the particle methods' mean +- standard error over ``seeds``."""
    M_c = critical_mass(0.01, 1.0)
    rows = []
    for M0 in SECOND_MOMENT_MASSES:
        for N in Ns:
            measured, theory = second_moment_slope("fdm", M0, N)
            err = float((measured[0] - theory[0]) / abs(theory[0]))
            rows.append({"method": "fdm", "M0": M0, "M_over_Mc": M0 / M_c, "N": N, "P": None, "seeds": 1,
                         "slope": float(measured[0]), "slope_se": 0.0, "theory": float(theory[0]), "rel_error": err,
                         "rel_error_se": 0.0, "ok": abs(err) <= 0.02})
    for interp in ("spline", "trilinear"):
        for M0 in (0.12, 0.5):
            measured, theory = second_moment_slope("sipf", M0, N_particles, P=P, seeds=list(range(seeds)),
                                                   interp=interp)
            rel = (measured - theory) / np.abs(theory)
            se = float(rel.std(ddof=1) / math.sqrt(seeds))
            rows.append({"method": f"sipf-{interp}", "M0": M0, "M_over_Mc": M0 / M_c, "N": N_particles, "P": P,
                         "seeds": seeds, "slope": float(measured.mean()),
                         "slope_se": float(measured.std(ddof=1) / math.sqrt(seeds)), "theory": float(theory.mean()),
                         "rel_error": float(rel.mean()), "rel_error_se": se, "ok": abs(float(rel.mean())) <= 2 * se})
    return rows


def mode_growth_rates(method: str, interp: str = "spline", seeds: int = 8, P: int = 100_000, N: int = 32,
                      chi: float = 4.0, amp: float = 0.05, dt: float = 0.0025) -> tuple[np.ndarray, float]:
    """(rate per member, theory's sigma) of mode 1 of the elliptic system (alpha = 0, gamma = 0.01, M0 = 1):
    the least-squares slope of ln a(t) over the snapshots, a the projection of (rho - rho_bar) / rho_bar on the
    mode's cell averages."""
    gamma, M0 = 0.01, 1.0
    ic = InstabilityIC("instability:1", 1, amp)
    rho_bar = M0 / 4.0
    sigma = growth_rate(discrete_k2(1, N, 1.0), gamma, chi, rho_bar, CEquation(equation="elliptic", D=1.0))
    T = round(1.5 / sigma / dt) * dt
    r = nt.simulate(ic, method, dim=2, N=N, P=P, T=T, dt=dt, gamma=gamma, chi=chi, M0=M0, c_equation="elliptic",
                    interp=interp, dtype="float64", device="cpu", snapshots=10,
                    seeds=list(range(seeds)) if method != "fdm" else None)
    mode = ic._mode(r.grid)
    a = ((r.rho.double() - rho_bar) * mode).sum((-2, -1)) / (mode * mode).sum() / rho_bar  # (B, K + 1)
    t = np.asarray(r.times)
    return np.array([np.polyfit(t, np.log(a[b].numpy()), 1)[0] for b in range(a.shape[0])]), sigma


def sipf_growth_table(seeds: int = 8, P: int = 100_000) -> list[dict]:
    rows, fd_rate = [], None
    for method, interp in (("fdm", "spline"), ("sipf", "spline"), ("sipf", "trilinear")):
        rates, sigma = mode_growth_rates(method, interp, seeds=seeds, P=P)
        fd_rate = float(rates[0]) if fd_rate is None else fd_rate
        n = len(rates)
        se = float(rates.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
        err = float(rates.mean() - sigma)
        rows.append({"method": method if method == "fdm" else f"sipf-{interp}", "N": 32, "P": P if n > 1 else None,
                     "seeds": n, "gamma": 0.01, "chi": 4.0, "m": 1, "amp": 0.05, "dt": 0.0025, "sigma_theory": sigma,
                     "rate": float(rates.mean()), "rate_se": se, "error": err,
                     "minus_fd": float(rates.mean()) - fd_rate,
                     "ok": abs(err) <= (2 * se if n > 1 else 0.01 * abs(sigma))})
    return rows


@dataclass
class KSConfig:
    part: str = field(default="all", metadata={"help": "which table", "choices": ("all", "instability", "critical",
                                                                                 "second-moment", "sipf-growth",
                                                                                 "blob3d", "ring3d")})
    N: int = field(default=32, metadata={"help": "grid of the instability runs"})
    N_critical: int = field(default=128, metadata={"help": "grid of the critical-mass runs"})
    P: int = field(default=100_000, metadata={"help": "particles of the sipf critical-mass runs"})
    out: str | None = field(default=None, metadata={"help": "write the rows as JSON here"})
    figures: str | None = field(default=None, metadata={"help": "write the 3D parts' figures (PNG) into this folder"})


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_config(KSConfig, argv, prog="python -m studies.keller_segel", description=__doc__.split("\n\n")[0])
    except ValueError as err:
        return usage_error("python -m studies.keller_segel", err)
    out = {"command": "python -m studies.keller_segel " + " ".join(sys.argv[1:] if argv is None else argv),
           "commit": commit_hash()}
    if cfg.part in ("all", "instability"):
        out["instability"] = instability_table(cfg.N)
        for r in out["instability"]:
            print(f"{r['case']:40s} sigma {r['sigma_theory']:+.5f}  fd {r['sigma_fd']:+.5f}  "
                  f"err {r['error']:+.1e} (tol {r['tolerance']:.1e}) {'ok' if r['ok'] else 'FAIL'}")
    if cfg.part in ("all", "critical"):
        out["critical_mass"] = critical_mass_table(cfg.N_critical, cfg.P)
        out["collapse_time_vs_grid"] = collapse_time_vs_grid()
        print("fdm collapse time of M0 = 0.5 by grid: " + ", ".join(
            f"N = {r['N']}: {r['collapse_t']}" for r in out["collapse_time_vs_grid"]))
        for r in out["critical_mass"]:
            hit = r["collapse"]
            print(f"{r['method']:15s} M0 {r['M0']:.2f} (M_c {r['M_c']:.3f}): T*_box {r['T_star_box']:.3f}, "
                  f"{'collapse at t = %.3f, x = %s' % (hit['t'], hit['x']) if hit else 'no collapse'}, "
                  f"t_end {r['t_end']:.3f}, mean|x|^2 {r['mean_r2_start']:.4f} -> {r['mean_r2_end']:.4f}")
    if cfg.part in ("all", "second-moment"):
        out["second_moment"] = {"command": out["command"], "commit": out["commit"], "rows": second_moment_table()}
        for r in out["second_moment"]["rows"]:
            print(f"{r['method']:15s} M0 {r['M0']:.2f} N {r['N']:4d}  dM2/dt {r['slope']:+.6f} (theory "
                  f"{r['theory']:+.6f})  rel {r['rel_error']:+.4f} +- {r['rel_error_se']:.4f}")
    if cfg.part in ("all", "sipf-growth"):
        out["sipf_growth"] = {"command": out["command"], "commit": out["commit"], "rows": sipf_growth_table()}
        for r in out["sipf_growth"]["rows"]:
            print(f"{r['method']:15s} sigma {r['sigma_theory']:.5f}  rate {r['rate']:.5f} +- {r['rate_se']:.5f}  "
                  f"error {r['error']:+.5f}")
    if cfg.part in ("blob3d", "ring3d"):
        out[cfg.part] = {"command": out["command"], "commit": out["commit"], **run_3d(cfg.part, cfg.figures)}
    if cfg.out:
        path = Path(cfg.out)
        if cfg.part != "all" and path.exists():  # one part rerun: the file's other tables are kept
            out = {**json.loads(path.read_text()), **{k: v for k, v in out.items() if k not in ("command", "commit")}}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1, default=float) + "\n")
    return 0


def run_3d(part: str, figures: str | None) -> dict:
    """One 3D part (not in ``all``: its results file is docs/results/ks_3d.json), printed, its figure written."""
    if part == "blob3d":
        data = keller_segel_3d.blob_table()
        for r in data["slopes"]:
            print(f"{r['method']:12s} N {r['N']} M0 {r['M0']:.4f} ({r['M_over_Mstar']:.1f} M*)  dM2/dt(0) "
                  f"{r['slope']:+.5f} +- {r['slope_se']:.5f}  law {r['law']:+.5f}  interaction ratio "
                  f"{r['interaction_ratio']:.4f}")
        for method, run in data["runs"].items():
            for r in run["rows"]:
                hit = r["collapse"]
                print(f"{method:5s} M0 {r['M0']:.4f} ({r['M_over_Mstar']:.1f} M*) T_J {r['T_jensen']:.3f}: "
                      + (f"collapse t = {hit['t']:.3f} x = {hit['x']}" if hit else "spreads"))
        if figures:
            keller_segel_3d.blob_figure(data, Path(figures) / "ks3d_blob_m2.png")
        return data
    data, slices = keller_segel_3d.ring_table()
    for r in data["rows"]:
        hit = r["collapse"]
        outcome = (f"collapse t = {hit['t']:.3f} x = {hit['x']} r = {r['radius']:.3f} modulation "
                   f"{r['modulation']:.2f}" if hit else "spreads")
        print(f"{r['problem']:8s} {r['method']:12s} N {r['N']} M0 {r['M0']:g}: {outcome}")
    if figures:
        for problem in ("ring64", "pks_ring"):
            keller_segel_3d.ring_figure(slices, data, Path(figures) / f"ks3d_{problem}_slices.png", problem, 4.5)
    return data


if __name__ == "__main__":
    sys.exit(main())
