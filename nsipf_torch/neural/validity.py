"""The declared validity domain of a neural interpolator checkpoint: where its CNN has seen data.

The CNN is exactly scale-equivariant and never sees chi or gamma (docs/MODEL.md §3, ``nsipf_torch/neural/model.py``),
so the domain lives on the axes it does see, each derived from the training recipe of
``nsipf_torch/neural/data.py`` (radial trajectories on grids h = 2/N, N log-uniform in [N_min, N_max], P particles
per trajectory in [P_min, P_max]):

- ``particles_per_cell``: P / N^d, the roughness of the field the CNN upsamples; training covered
  [P_min / N_max^d, P_max / N_min^d] (3D: 0.0048-4, P_max = 131072; 2D: 0.61-29, P_max = 30000);
- ``N``: the grid size, [N_min, N_max] = [32, 128];
- ``c0_width_over_h``: the narrowest feature of c0 in cells, sigma_c / h with sigma_c in [0.08, 0.4]:
  [0.08 N_min / 2, 0.4 N_max / 2] = [1.28, 25.6];
- ``dim``: the checkpoint's dimension (a 3-D CNN never saw 2-D data, and the loader refuses the mismatch);
- ``geometry``: training fields are radially symmetric (Gaussian balls, and rings: circles in 2D,
  spherical shells in 3D). The held-out families of :mod:`nsipf_torch.problems.initial` (``planar``, ``mixture``,
  the amplitude-30 variants) are declared outside; a user's own problem is not classified.

``train.py`` stores these ranges in every checkpoint under ``"domain"`` (the same keys, (lo, hi) pairs;
:func:`training_domain`); for a checkpoint without them (the shipped 2D one and the ablations predate it)
:func:`domain_of` derives them from the stored training config and the data recipe's fixed bounds
(``DataConfig`` defaults N_min, N_max and train.py's P_min = min(10^4, P_max)).
"""
from __future__ import annotations

from typing import Mapping

from nsipf_torch.neural.data import DataConfig

_SIGMA_C = (0.08, 0.4)  # the c0 widths of nsipf_torch.neural.data.sample_problems


def training_domain(dim: int, P_max: int) -> dict:
    """{axis: (lo, hi)} plus ``dim`` covered by ``train.py``'s recipe in ``dim`` dimensions with ``P_max``."""
    data = DataConfig(dim=int(dim), P_max=int(P_max), P_min=min(10_000, int(P_max)))
    d = data.dim
    return {
        "dim": d,
        "particles_per_cell": (data.P_min / data.N_max**d, data.P_max / data.N_min**d),
        "N": (data.N_min, data.N_max),
        "c0_width_over_h": (_SIGMA_C[0] * data.N_min / 2.0, _SIGMA_C[1] * data.N_max / 2.0),
    }


def domain_of(checkpoint: Mapping) -> dict:
    """{axis: (lo, hi)} plus ``dim`` from a loaded checkpoint (``nsipf_torch.io.files.load_torch``): its stored
    ``"domain"``, else the one its stored training config implies."""
    if "domain" in checkpoint:
        return dict(checkpoint["domain"])
    config = checkpoint.get("config")
    if not isinstance(config, Mapping) or "dim" not in config or "P_max" not in config:
        raise ValueError("the checkpoint stores neither a validity domain nor the training config it comes from")
    return training_domain(config["dim"], config["P_max"])


def check_run(checkpoint: Mapping, *, N: int, P: int, dim: int, L: float = 1.0, c0_width: float | None = None,
              held_out: bool = False, ic_name: str = "the initial condition") -> list[str]:
    """One message per axis on which the run (grid N^dim on [-L, L]^dim, P particles per member, c0's
    narrowest width, whether the problem is a held-out family) lies outside the checkpoint's domain;
    an empty list inside it."""
    if N < 1 or P < 1 or L <= 0:
        raise ValueError(f"need N >= 1, P >= 1, L > 0, got N={N}, P={P}, L={L}")
    dom = domain_of(checkpoint)
    out = []
    if dim != dom["dim"]:
        out.append(f"dimension {dim} differs from the checkpoint's {dom['dim']}")

    def axis(key: str, value: float, what: str) -> None:
        lo, hi = dom[key]
        if not lo <= value <= hi:
            out.append(f"{what} = {value:.3g} is outside the training range {lo:.3g}-{hi:.3g}")

    axis("particles_per_cell", P / N**dim, f"particles per cell P/N^{dim}")
    axis("N", N, "grid size N")
    if c0_width is not None:
        axis("c0_width_over_h", c0_width / (2.0 * L / N), "c0's narrowest width over h")
    if held_out:
        out.append(f"geometry: {ic_name} is a held-out family that no training trajectory resembles")
    return out
