"""The 3D Keller-Segel studies (issue 20 §6), run by ``python -m studies.keller_segel --part blob3d|ring3d``:
one Gaussian blob above and below the mass the docs derive, and a ring of mass collapsing onto its circle,
FD and SIPF-spline side by side through the public API (elliptic, alpha = 0, chi = D = beta = 1,
gamma = 0.05, box [-1, 1]^3).

Blob (``pks_blob``, sigma = 0.1). In 3D there is no critical mass; the second moment of a Gaussian falls at
t = 0 iff M > M* = 24 pi^{3/2} gamma D sigma / (chi beta (1 - 8 pi^{3/2} sigma^3 / |Omega|)) ~ 0.672
(:func:`~nsipf_torch.problems.keller_segel.contraction_mass_3d`, docs/MODEL.md §7), an initial-contraction
threshold, not a blow-up theorem; above sqrt(6 / pi) M* the virial inequality closes and bounds the collapse
time (:func:`~nsipf_torch.problems.keller_segel.blowup_time_3d`). Measured: (i) dM2/dt at t = 0, the
derivative at 0 of a quadratic fitted to M2 over the first 5 steps (dt = 1e-3, diagnostics every step),
against the law, FD at 32^3, 48^3, 64^3 and SIPF-spline at 64^3 (4 seeds, mean +- standard error); (ii)
each mass (0.5 ... 3 M*, one batch per method, a collapsed member frozen) to T = 0.5 at 64^3 (SIPF:
P = 2e5 per member), collapse time and place by the cell-Peclet criterion (nsipf_torch/run/collapse.py) or
"spreads"; (iii) FD's collapse time under refinement (48^3, 64^3, 96^3) for the masses nearest M*.

Ring (``pks_ring``: 16 Gaussians of sigma = 0.05 on the circle R = 0.5, z = 0, 3.9 sigma apart; and
``ring64``, the same circle with 64 of them, a smooth tube). A thin ring of line density M / (2 pi R)
collapses in its cross-section like the 2D problem when that exceeds 8 pi gamma D / (chi beta) (a heuristic):
M_line = 16 pi^2 gamma D R / (chi beta) ~ 3.95; each of pks_ring's bumps would contract on its own above
16 M*(0.05) ~ 5.35 (and, like the blob, does somewhat below). Masses below and above, FD and SIPF to T = 0.3
at 64^3, and ring64's 4.5 in FD at 48^3 and 96^3: collapse time, radius of the peak, and the azimuthal
modulation (max / min of rho on the circle through the peak, mid-plane; at the start on R) at the
collapse: near 1 for a ring-shaped collapse, large for beads.
"""
from __future__ import annotations

import math

import numpy as np
import torch

import nsipf_torch as nt
from nsipf_torch.problems.initial import GaussianComponent, GaussianMixtureIC
from nsipf_torch.problems.keller_segel import blowup_time_3d, contraction_mass_3d, second_moment_rate_3d

GAMMA, SIGMA, L = 0.05, 0.1, 1.0
BLOB_FRACTIONS = (0.5, 0.7, 0.9, 1.5, 3.0)  # of M*
RING_CASES = (("pks_ring", (3.0, 4.5, 6.0)), ("ring64", (3.5, 4.5, 6.0)))
RING_R, RING_SIGMA = 0.5, 0.05


def _common(method: str) -> dict:
    return dict(dim=3, gamma=GAMMA, c_equation="elliptic", interp="spline", device="cpu",
                dtype="float64" if method == "fdm" else "float32")


def _sweep(masses) -> str:
    return "M0=" + ",".join(f"{m:.6g}" for m in masses)


def blob_masses() -> list[float]:
    m_star = contraction_mass_3d(SIGMA, GAMMA, 1.0, L=L)
    return [float(f"{f * m_star:.6g}") for f in BLOB_FRACTIONS]


def initial_slopes(method: str, N: int, P: int = 200_000, seeds: int = 4, steps: int = 5) -> list[dict]:
    """dM2/dt at t = 0 per blob mass: a quadratic fitted to M2 over ``steps`` steps, differentiated at 0."""
    masses, m_star = blob_masses(), contraction_mass_3d(SIGMA, GAMMA, 1.0, L=L)
    particles = method != "fdm"
    r = nt.simulate("pks_blob", method, N=N, P=P, T=steps * 1e-3, dt=1e-3, sweep=_sweep(masses), diag_every=1,
                    snapshots=1, seeds=list(range(seeds)) if particles else None, **{**_common(method),
                                                                                   "dtype": "float64"})
    t, r2 = r.series("mean_r2")
    t, r2 = np.asarray(t), r2.numpy()
    rows = []
    for i, M in enumerate(masses):
        members = [b for b, m in enumerate(r.members) if abs(m["M0"] - M) < 1e-12]
        slopes = np.array([np.polyfit(t, M * r2[:, b], 2)[1] for b in members])
        M2 = float(M * r2[0, members].mean())
        law = second_moment_rate_3d(M, M2, SIGMA, GAMMA, 1.0, L=L)
        slope, se = float(slopes.mean()), float(slopes.std(ddof=1) / math.sqrt(len(slopes))) if particles else 0.0
        # the interaction term measured: 6 gamma M + sink - slope, against the Gaussian's M^2 / (4 pi^{3/2} sigma)
        interaction = M * M / (4 * math.pi**1.5 * SIGMA)
        rows.append({"method": "fdm" if not particles else "sipf-spline", "N": N, "P": P if particles else None,
                     "seeds": len(slopes), "M0": M, "M_over_Mstar": M / m_star, "M2_start": M2, "slope": slope,
                     "slope_se": se, "law": law, "interaction_ratio": (law + interaction - slope) / interaction,
                     "interaction_ratio_se": se / interaction})
    return rows


def blob_runs(method: str, N: int = 64, P: int = 200_000, T: float = 0.5, masses=None) -> dict:
    """One batch of the blob masses to T: per member the collapse (or None), M2(t), the Jensen bound."""
    masses = masses or blob_masses()
    r = nt.simulate("pks_blob", method, N=N, P=P, T=T, dt=1e-3, sweep=_sweep(masses), diag_every=5, snapshots=1,
                    seed=0, **_common(method))
    t, r2 = r.series("mean_r2")
    rows = []
    for b, M in enumerate(masses):
        M2 = M * float(r2[0, b])
        rows.append({"method": method if method == "fdm" else "sipf-spline", "N": N,
                     "P": P if method != "fdm" else None, "M0": M,
                     "M_over_Mstar": M / contraction_mass_3d(SIGMA, GAMMA, 1.0, L=L), "T": T,
                     "T_jensen": blowup_time_3d(M, M2, GAMMA, 1.0, L=L), "collapse": r.collapses[b],
                     "M2_over_M": [round(float(v), 6) for v in r2[:, b]]})
    return {"times": [round(v, 6) for v in t], "rows": rows, "wall_s": r.wall_time}


def blob_table(N: int = 64, P: int = 200_000) -> dict:
    slopes = [row for n in (32, 48, 64) for row in initial_slopes("fdm", n)] + initial_slopes("sipf", 64, P)
    runs = {method: blob_runs(method, N, P) for method in ("fdm", "sipf")}
    near = blob_masses()[1:3]  # 0.7 and 0.9 M*: where the outcome turns
    grid = [{"N": n, "rows": blob_runs("fdm", n, T=0.3, masses=near)["rows"]} for n in (48, 96)]
    return {"M_star": contraction_mass_3d(SIGMA, GAMMA, 1.0, L=L), "M_star_whole_space":
            contraction_mass_3d(SIGMA, GAMMA, 1.0), "gamma": GAMMA, "sigma": SIGMA, "slopes": slopes, "runs": runs,
            "grid": grid}


def ring_modulation(rho: np.ndarray, centres: np.ndarray, radius: float, samples: int = 64) -> float:
    """max / min of the mid-plane density (mean of the two layers beside z = 0) on the circle ``radius``,
    bilinear in the plane."""
    mid = rho[:, :, rho.shape[2] // 2 - 1: rho.shape[2] // 2 + 1].mean(-1)
    h = centres[1] - centres[0]
    angles = np.linspace(0.0, 2 * math.pi, samples, endpoint=False)
    fx, fy = (radius * np.cos(angles) - centres[0]) / h, (radius * np.sin(angles) - centres[0]) / h
    i, j = np.floor(fx).astype(int), np.floor(fy).astype(int)
    wx, wy = fx - i, fy - j
    values = ((1 - wx) * (1 - wy) * mid[i, j] + wx * (1 - wy) * mid[i + 1, j] + (1 - wx) * wy * mid[i, j + 1]
              + wx * wy * mid[i + 1, j + 1])
    return float(values.max() / values.min())


def smooth_ring() -> GaussianMixtureIC:
    """``pks_ring``'s circle with 64 Gaussians of sigma = 0.05 instead of 16: spaced 0.049 ~ sigma, a smooth
    tube (pks_ring's are 3.9 sigma apart, beads)."""
    return GaussianMixtureIC("ring64", [GaussianComponent(1.0 / 64, (RING_R * math.cos(2 * math.pi * j / 64),
                                                                     RING_R * math.sin(2 * math.pi * j / 64), 0.0),
                                                          RING_SIGMA) for j in range(64)], lambda mesh: 0 * mesh[0])


def ring_runs(problem: str, masses, method: str, N: int = 64, P: int = 200_000, T: float = 0.3,
              snapshots: int = 12) -> dict:
    """The ring's masses in one batch to T: per member the collapse, its radius, the modulation at the start
    and at the last snapshot (the collapse state of a frozen member), and the mid-plane slices."""
    ic = smooth_ring() if problem == "ring64" else problem
    r = nt.simulate(ic, method, N=N, P=P, T=T, dt=1e-3, sweep=_sweep(masses), diag_every=5,
                    snapshots=snapshots, seed=0, **_common(method))
    centres = r.grid.centres().double().numpy()
    radius_of_cell = np.hypot(*np.meshgrid(centres, centres, indexing="ij"))[..., None]
    rows = []
    for b, M in enumerate(masses):
        hit, rho = r.collapses[b], r.rho[b, -1].double().numpy()
        radius = math.hypot(*hit["x"][:2]) if hit else None
        rows.append({"problem": problem, "method": method if method == "fdm" else "sipf-spline", "N": N,
                     "P": P if method != "fdm" else None, "M0": M, "T": T, "collapse": hit, "radius": radius,
                     "modulation_start": ring_modulation(r.rho[b, 0].double().numpy(), centres, RING_R),
                     "modulation": ring_modulation(rho, centres, radius) if hit else None,
                     "mean_radius_end": float((rho * radius_of_cell).sum() / rho.sum())})
    mid = r.rho[..., N // 2 - 1: N // 2 + 1].double().mean(-1)  # (B, K + 1, N, N): the mid-plane
    return {"rows": rows, "times": list(r.times), "slices": mid, "wall_s": r.wall_time}


def ring_table(N: int = 64, P: int = 200_000) -> tuple[dict, dict]:
    """(the JSON part, {(problem, method): (times, slices)} for the figures)."""
    runs = {(problem, method): ring_runs(problem, masses, method, N, P)
            for problem, masses in RING_CASES for method in ("fdm", "sipf")}
    grid = [row for n in (48, 96) for row in ring_runs("ring64", (4.5,), "fdm", n, T=0.15, snapshots=1)["rows"]]
    beads = 16 * contraction_mass_3d(RING_SIGMA, GAMMA, 1.0, L=L)
    return ({"M_line": 16 * math.pi**2 * GAMMA * RING_R, "M_beads": beads,
             "gamma": GAMMA, "N": N, "P": P, "rows": [row for run in runs.values() for row in run["rows"]] + grid,
             "wall_s": {f"{p} {m}": run["wall_s"] for (p, m), run in runs.items()}},
            {key: (run["times"], run["slices"]) for key, run in runs.items()})


def blob_figure(data: dict, path) -> None:
    """M2 / M(t) per mass, FD solid and SIPF dashed, the law's initial slope dotted, collapses marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=90)
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(BLOB_FRACTIONS)))
    for method, style in (("fdm", "-"), ("sipf", "--")):
        run = data["runs"][method]
        t = np.asarray(run["times"])
        for row, colour in zip(run["rows"], colours):
            m2 = np.asarray(row["M2_over_M"])
            hit = row["collapse"]
            keep = t <= (hit["t"] if hit else np.inf) + 1e-9
            label = f"{row['M_over_Mstar']:.1f} M*" if method == "fdm" else None
            ax.plot(t[keep], m2[keep], style, color=colour, label=label)
            if hit:
                ax.plot(t[keep][-1], m2[keep][-1], "x", color=colour, ms=7)
            if method == "fdm":
                slope = second_moment_rate_3d(row["M0"], row["M0"] * m2[0], SIGMA, GAMMA, 1.0, L=L) / row["M0"]
                ax.plot([0, 0.06], [m2[0], m2[0] + 0.06 * slope], ":", color=colour, lw=2)
    ax.set(xlabel="t", ylabel="M₂ / M", ylim=(0.02, 0.06), xlim=(0, data["runs"]["fdm"]["rows"][0]["T"]),
           title="pks_blob 3D, 64³: FD (solid), SIPF-spline (dashed), law at t = 0 (dotted), × collapse")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def ring_figure(slices: dict, data: dict, path, problem: str, M0: float, frames: int = 4) -> None:
    """Mid-plane slices of one ring member: FD on the top row, SIPF below; the last column is the state at the
    collapse (a frozen member's later snapshots hold it)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, frames, figsize=(1.9 * frames, 4.0), dpi=90)
    for row, method in zip(axes, ("fdm", "sipf")):
        times, mid = slices[(problem, method)]
        masses = dict(RING_CASES)[problem]
        member = masses.index(M0)
        hit = next(r for r in data["rows"] if r["problem"] == problem and r["method"].startswith(method[:3])
                   and r["M0"] == M0)["collapse"]
        t_end = hit["t"] if hit else times[-1]
        before = [k for k, t in enumerate(times) if t < t_end - 1e-9]
        pick = before[:: max(1, math.ceil(len(before) / (frames - 1)))][: frames - 1] + [len(times) - 1]
        for ax in row:
            ax.set_axis_off()
        for ax, k in zip(row, pick):
            image = mid[member, k].numpy()
            ax.imshow(image.T, origin="lower", extent=(-L, L, -L, L), cmap="magma")
            t = hit["t"] if hit and k == len(times) - 1 else times[k]
            stop = " (stop)" if hit and k == pick[-1] else ""
            ax.set_title(f"{'FD' if method == 'fdm' else 'SIPF'} t = {t:.3f}{stop}\nmax {image.max():.0f}", fontsize=8)
            ax.set(xlim=(-0.8, 0.8), ylim=(-0.8, 0.8))
    fig.suptitle(f"{problem} 3D, M0 = {M0:g}, ρ on z = 0 ({data['N']}³)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
