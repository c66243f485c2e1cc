"""The declared validity domain of a neural interpolator checkpoint: where its CNN has seen data.

The CNN is exactly scale-equivariant and never sees chi or gamma (docs/MODEL.md §3, ``nsipf_torch/neural/model.py``),
so the domain lives on the axes it does see, each derived from the training recipe of
``nsipf_torch/neural/data.py`` (radial trajectories on grids h = 2/N, N log-uniform in [N_min, N_max], P particles
per trajectory in [P_min, P_max]):

- ``particles_per_cell``: P / N^d, the roughness of the field the CNN upsamples. The recipe draws N and P
  (particles per trajectory, [P_min, P_max]) independently, so its support is the box of (N, P), not a box
  of (N, P / N^d): at a grid size N the training saw P_min / N^d to P_max / N^d particles per cell (2D,
  P_max = 262144: at most 16 per cell at N = 128, 64 at N = 64, 256 at N = 32; 3D, P_max = 131072: at
  most 0.5 per cell at N = 64, 4 at N = 32). A run is checked against that range at its own N, within the
  range over all N, [P_min / N_max^d, P_max / N_min^d] (3D: 0.0048-4; 2D: 0.61-256), which is all that a
  stored domain without a ``P`` range declares. Measured outside the range at its N (docs/VALIDATION.md,
  held-out tables), the CNN at P = 10^6 loses to the spline on the 2D fronts at 128^2 (1.25x), on
  two_blobs with chi = 3 at 64^2 (1.33x) and on the 3D front at 64^3 (1.18x) while it wins on other rows,
  and a retrain with another seed reverses rows: so this axis falls back like every numeric one. The 3D
  paper sizes (P = 2*10^5 and 10^6 at 64^3: 0.76 and 3.8 per cell) lie outside it and run the spline
  unless ``--no-fallback``; the remedy is a retrain with a larger ``--P-max``;
- ``N``: the grid size, [N_min, N_max] = [32, 128];
- ``c0_width_over_h``: the narrowest feature of c0 in cells, sigma_c / h with sigma_c in [0.08, 0.4]:
  [0.08 N_min / 2, 0.4 N_max / 2] = [1.28, 25.6];
- ``dim``: the checkpoint's dimension (a 3-D CNN never saw 2-D data, and the loader refuses the mismatch);
- ``geometry``: training fields are radially symmetric (Gaussian balls, and rings: circles in 2D,
  spherical shells in 3D). The held-out families of :mod:`nsipf_torch.problems.initial` (``planar``, ``mixture``,
  the amplitude-30 variants) are declared outside; a user's own problem is not classified.

``train.py`` stores these ranges in every checkpoint under ``"domain"`` (the same keys, (lo, hi) pairs;
:func:`training_domain`); for a checkpoint without them (the ablations predate it)
:func:`domain_of` derives them from the stored training config and the data recipe's fixed bounds
(``DataConfig`` defaults N_min, N_max and train.py's P_min = min(10^4, P_max)).

What a run outside does (:func:`decide`): on a numeric axis (particles per cell, N, c0's width over h,
dimension) NSIPF falls back to SIPF with the cubic spline, which has no training domain, and says so in one
line; ``fallback=False`` (``--no-fallback``) keeps the CNN and warns per axis; ``strict`` refuses the run
and wins over it. The geometry axis only warns: a shape is no range that the recipe bounds, and NSIPF's
error on the held-out families is measured against the spline's (docs/VALIDATION.md). So does a diffusion
D > 0 of the consumption equation (``Dc``): the training fields solve it with D = 0 (paper eq. 2). Another
c-equation or sensitivity is refused before, never replaced (:func:`nsipf_torch.api.check_config`): the
fields the CNN would see are not the ones it learnt.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from nsipf_torch.neural.data import DataConfig

_SIGMA_C = (0.08, 0.4)  # the c0 widths of nsipf_torch.neural.data.sample_problems
FALLBACK_AXES = ("dim", "particles_per_cell", "N", "c0_width_over_h")  # numeric: the spline takes over


def training_domain(dim: int, P_max: int) -> dict:
    """{axis: (lo, hi)} plus ``dim`` covered by ``train.py``'s recipe in ``dim`` dimensions with ``P_max``."""
    data = DataConfig(dim=int(dim), P_max=int(P_max), P_min=min(10_000, int(P_max)))
    d = data.dim
    return {
        "dim": d,
        "particles_per_cell": (data.P_min / data.N_max**d, data.P_max / data.N_min**d),
        "N": (data.N_min, data.N_max),
        "P": (data.P_min, data.P_max),
        "c0_width_over_h": (_SIGMA_C[0] * data.N_min / 2.0, _SIGMA_C[1] * data.N_max / 2.0),
    }


def domain_of(checkpoint: Mapping) -> dict:
    """{axis: (lo, hi)} plus ``dim`` from a loaded checkpoint (``nsipf_torch.io.files.load_torch``): its stored
    ``"domain"``, else the one its stored training config implies."""
    config = checkpoint.get("config")
    derivable = isinstance(config, Mapping) and "dim" in config and "P_max" in config
    if "domain" in checkpoint:
        domain = dict(checkpoint["domain"])
        if "P" not in domain and derivable:  # stored before train.py stored P: the same recipe's
            domain["P"] = training_domain(config["dim"], config["P_max"])["P"]
        return domain
    if not derivable:
        raise ValueError("the checkpoint stores neither a validity domain nor the training config it comes from")
    return training_domain(config["dim"], config["P_max"])


def axes_outside(checkpoint: Mapping, *, N: int, P: int, dim: int, L: float = 1.0, c0_width: float | None = None,
                 held_out: bool = False, ic_name: str = "the initial condition",
                 Dc: float = 0.0) -> list[tuple[str, str]]:
    """(axis, message) for each axis on which the run (grid N^dim on [-L, L]^dim, P particles per member,
    c0's narrowest width, whether the problem is a held-out family, the diffusion of c) lies outside the
    checkpoint's domain; the axes are ``FALLBACK_AXES``, ``"geometry"`` and ``"diffusion"``. An empty list
    inside it."""
    if N < 1 or P < 1 or L <= 0:
        raise ValueError(f"need N >= 1, P >= 1, L > 0, got N={N}, P={P}, L={L}")
    dom = domain_of(checkpoint)
    out = []
    if dim != dom["dim"]:
        out.append(("dim", f"dimension {dim} differs from the checkpoint's {dom['dim']}"))

    def axis(key: str, value: float, what: str, bounds: tuple[float, float] | None = None, note: str = "") -> None:
        lo, hi = bounds or dom[key]
        if not lo <= value <= hi:
            out.append((key, f"{what} = {value:.3g} is outside the training range {lo:.3g}-{hi:.3g}{note}"))

    bounds, note = dom["particles_per_cell"], ""
    if "P" in dom:  # the support is the (N, P) box: P / N^d at this N (at an N no trajectory had: over all N)
        (lo, hi), (P_lo, P_hi) = bounds, dom["P"]
        at_N = (max(lo, P_lo / N**dim), min(hi, P_hi / N**dim))
        if at_N[0] <= at_N[1]:
            bounds, note = at_N, f" at N = {N} (P = {P:.3g} per member; the training drew {P_lo:.3g}-{P_hi:.3g})"
    axis("particles_per_cell", P / N**dim, f"particles per cell P/N^{dim}", bounds, note)
    axis("N", N, "grid size N")
    if c0_width is not None:
        axis("c0_width_over_h", c0_width / (2.0 * L / N), "c0's narrowest width over h")
    if held_out:
        out.append(("geometry", f"geometry: {ic_name} is a held-out family that no training trajectory resembles"))
    if Dc > 0:
        out.append(("diffusion", f"--Dc {Dc:g}: the CNN's training fields are those of the consumption equation "
                                 "with D = 0"))
    return out


def check_run(checkpoint: Mapping, **run) -> list[str]:
    """The messages of :func:`axes_outside` (same arguments), one per axis outside; empty inside."""
    return [message for _, message in axes_outside(checkpoint, **run)]


@dataclass(frozen=True)
class Verdict:
    """What an NSIPF run does about its domain: the warning lines, and the numeric axes that send it to
    SIPF with the cubic spline (empty: the CNN runs)."""

    messages: tuple[str, ...]
    fallback_axes: tuple[str, ...]


def decide(checkpoint: Mapping, *, strict: bool = False, fallback: bool = True, **run) -> Verdict:
    """The module docstring's rule for a run (``run``: the arguments of :func:`axes_outside`).

    ``ValueError`` with ``strict`` for a run outside on any axis. Falling back gives one line naming every
    axis outside."""
    found = axes_outside(checkpoint, **run)
    if found and strict:
        raise ValueError(f"outside the CNN's validity domain: {'; '.join(m for _, m in found)} "
                         "(--strict refuses the run)")
    numeric = tuple(key for key, _ in found if key in FALLBACK_AXES)
    if not numeric or not fallback:
        return Verdict(tuple(m for _, m in found), ())
    line = ("; ".join(m for _, m in found) + ": runs SIPF with the cubic spline instead (--no-fallback keeps "
            "the CNN, --strict refuses)")
    return Verdict((line,), numeric)
