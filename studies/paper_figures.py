"""Reproduce the paper's experiment figures (its Figs. 3-7) for the three canonical problems in 3D:
NSIPF beside the FD reference, mid-plane cross-sections of rho at several times, and profiles along x.

    python -m studies.paper_figures                     # N = 32, P = 2e4 (the paper's P), all three problems
    python -m studies.paper_figures --N 64 --P 200000 --problems two_blobs

Runs nsipf_torch.simulate twice per problem (fdm and nsipf), saves both runs into --runs, then writes
docs/figures/<problem>.png (cross-sections, FD top row, NSIPF bottom row), docs/figures/<problem>_profile.png,
and a ParaView-style 3D view of the NSIPF particles, docs/figures/<problem>_particles3d.png. NSIPF keeps its
CNN outside the validity domain (``fallback=False``; at 64^3, P = 2e5 is outside it): the figures are NSIPF's.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import nsipf_torch as nt
from nsipf_torch.commands.cli import check_output_dir, parse_config, usage_error
from nsipf_torch.problems.initial import get_ic
from nsipf_torch.io.plotting import centre_line, mid_plane


@dataclass
class FiguresConfig:
    problems: list[str] = field(default_factory=lambda: ["blob", "two_blobs", "annuli"],
                                metadata={"help": "problems (initial conditions), comma separated"})
    N: int = field(default=32, metadata={"help": "grid cells per axis"})
    P: int = field(default=20_000, metadata={"help": "NSIPF particles (2e4 is accepted)"})
    snapshots: int = field(default=4, metadata={"help": "snapshot intervals over [0, T]"})
    runs: str = field(default="runs/paper_figures", metadata={"help": "where the two runs of each problem are saved"})
    figures: str = field(default="docs/figures", metadata={"help": "where the figures go"})

    def validate(self) -> None:
        if not self.problems:
            raise ValueError("--problems must name at least one problem")
        for problem in self.problems:
            try:
                get_ic(problem)
            except ValueError as err:
                raise ValueError(f"--problems: {err}") from None
        for name in ("N", "P", "snapshots"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        check_output_dir(self.runs, "--runs")
        check_output_dir(self.figures, "--figures")


def main(argv=None) -> int:
    try:
        args = parse_config(FiguresConfig, argv, prog="paper_figures.py", description=__doc__.split("\n\n")[0])
    except ValueError as err:
        return usage_error("paper_figures.py", err)
    figs = Path(args.figures)
    figs.mkdir(parents=True, exist_ok=True)
    for problem in args.problems:
        runs = {"fdm": nt.simulate(problem, method="fdm", N=args.N, snapshots=args.snapshots),
                "nsipf": nt.simulate(problem, method="nsipf", N=args.N, P=args.P, snapshots=args.snapshots,
                                     save_particles=4000, fallback=False)}
        for method, result in runs.items():
            result.save(Path(args.runs) / f"{problem}_{method}", figures=False)
        cross_sections(runs, problem, args, figs / f"{problem}.png")
        profiles(runs, problem, figs / f"{problem}_profile.png")
        particles(runs["nsipf"], problem, figs / f"{problem}_particles3d.png")
        print(f"wrote {figs}/{problem}.png, {problem}_profile.png, {problem}_particles3d.png")
    return 0


def cross_sections(runs, problem: str, args, path: Path) -> None:
    """Mid-plane rho of FD (top) and NSIPF (bottom) at every snapshot, one colour scale."""
    vmax = float(runs["fdm"].rho[0].max())
    k = len(runs["fdm"].times)
    fig, axes = plt.subplots(2, k, figsize=(2.6 * k, 5.4), layout="constrained")
    for i, (m, label) in enumerate((("fdm", "FD reference"), ("nsipf", f"NSIPF, P = {args.P:,}"))):
        for j, t in enumerate(runs[m].times):
            im = axes[i, j].imshow(mid_plane(runs[m].rho[0, j].numpy(), 3).T, origin="lower",
                                   extent=(-1, 1, -1, 1), vmin=0, vmax=vmax, cmap="magma")
            axes[i, j].set_title(f"{label}\nt = {t:.3g}", fontsize=9)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.8, label="ρ (z = 0)")
    fig.suptitle(f"{problem}, 3D, N = {args.N}³")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def profiles(runs, problem: str, path: Path) -> None:
    """rho along x through the centre at mid-run and at T, FD solid, NSIPF dashed."""
    x = runs["fdm"].grid.centres().numpy()
    k = len(runs["fdm"].times)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for j, color in zip((k // 2, k - 1), ("C0", "C3")):
        t = runs["fdm"].times[j]
        ax.plot(x, centre_line(runs["fdm"].rho[0, j].numpy(), 3), color=color, label=f"FD, t = {t:.3g}")
        ax.plot(x, centre_line(runs["nsipf"].rho[0, j].numpy(), 3), color=color, ls="--", label=f"NSIPF, t = {t:.3g}")
    ax.set_xlabel("x (y = z = 0)")
    ax.set_ylabel("ρ")
    ax.set_title(f"{problem}: profiles along x")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def particles(result, problem: str, path: Path) -> None:
    """4,000 NSIPF particles at T in 3D."""
    X = result.X[0, -1].numpy()
    fig = plt.figure(figsize=(5, 5))
    ax = fig.add_subplot(projection="3d")
    ax.scatter(X[:, 0], X[:, 1], X[:, 2], s=1.5, c=X[:, 2], cmap="viridis", alpha=0.6, depthshade=True)
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    ax.set_zlim(-1, 1)
    ax.set_box_aspect((1, 1, 1))
    ax.set_title(f"{problem}: NSIPF particles at t = {result.times[-1]:.3g}")
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
