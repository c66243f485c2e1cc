"""Initial conditions: the canonical problems of docs/MODEL.md §5, a registry, and exact particle samplers.

Every initial condition gives
- ``rho0(grid, M0)``: the cell averages of rho0, shape (N,)*d, integrating to M0 over Omega exactly;
- ``c0(grid)``: c0 sampled at the cell centres, shape (N,)*d;
- ``sample(P, generator, grid)``: P particle positions (P, d), float64 on the generator's device, drawn
  from rho0/M0. The samplers have no data-dependent shapes and no host reads, so a CUDA generator draws
  10^8 particles on the GPU without a host round trip.

The canonical rho0 are Gaussian mixtures restricted to Omega = [-L, L]^d. Each component is a product of
1-D truncated normals (or, along an axis with infinite sigma, the uniform density), so its exact cell
averages are products of erf differences and its exact sampler is the inverse CDF per axis. Grid and
particle initial states therefore agree.

Held-out problems (:data:`HELD_OUT`): ``planar`` / ``planar:SEED`` (rho0 and c0 depend on x alone: cells
climbing a slope of c toward a food band; the 1-D FD solver is their reference,
:mod:`studies.references`), ``mixture:SEED`` (random Gaussian blobs of rho and of c), and the variants
``planar_c30`` and ``two_blobs_c30`` (c amplitude 30, beyond the training's 0.5-12). They exist to test the
neural interpolator on problems no training trajectory resembles, so they must never enter its training
data (``nsipf_torch/neural/data.py`` builds its problems from radial parameters alone and does not import this
module; ``tests/test_initial.py`` checks that).

A user adds an initial condition in one place with :func:`register_ic`. One with only gridded data
(:class:`GriddedIC`, also what ``--ic-file F.npz`` loads) gets the generic sampler: cells drawn by
multinomial on the cell masses, positions uniform within the cell.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from nsipf_torch.problems.grid import Grid

SQRT2 = math.sqrt(2.0)


def gaussian(r2: torch.Tensor, sigma: float) -> torch.Tensor:
    """G = exp(-r^2 / (2 sigma^2)) with peak 1 (docs/MODEL.md §5)."""
    return torch.exp(-r2 / (2.0 * sigma**2))


def _normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(z / SQRT2))


@dataclass(frozen=True)
class GaussianComponent:
    weight: float  # fraction of M0 carried by this component inside Omega
    centre: tuple[float, float, float]  # the first d entries are used
    sigma: float | tuple[float, float, float]  # one width, or one per axis; math.inf: uniform along that axis

    def axis_sigma(self, axis: int) -> float:
        return float(self.sigma[axis]) if isinstance(self.sigma, tuple) else float(self.sigma)


class InitialCondition:
    """Interface of an initial condition; subclasses provide rho0 cells, c0 and a sampler.

    ``c0_width``: the narrowest length scale of c0 (a Gaussian's sigma), or None when unknown; the validity
    domain compares it with the grid spacing (:mod:`nsipf_torch.neural.validity`). ``held_out``: a family no
    training trajectory of the neural interpolator resembles (module docstring). ``final_time``: the T a run
    of this problem takes when none is given (the paper's problems: its T = 0.2).
    """

    name: str = "?"
    c0_width: float | None = None
    held_out: bool = False
    final_time: float = 0.2

    def rho0(self, grid: Grid, M0: float = 1.0) -> torch.Tensor:
        raise NotImplementedError

    def c0(self, grid: Grid) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, P: int, generator: torch.Generator, grid: Grid) -> torch.Tensor:
        """Generic sampler from the gridded rho0: multinomial cells, uniform positions within a cell."""
        return sample_from_cells(self.rho0(grid.to(device="cpu", dtype=torch.float64)), P, generator, grid)


def sample_from_cells(rho_cells: torch.Tensor, P: int, generator: torch.Generator, grid: Grid) -> torch.Tensor:
    """P positions (P, d), float64 on the generator's device, with cells drawn in proportion to ``rho_cells``."""
    check_particle_count(P)
    weights = rho_cells.detach().to(generator.device, torch.float64).reshape(-1)
    if torch.any(weights < 0) or not torch.isfinite(weights).all() or weights.sum() <= 0:
        raise ValueError("rho0 must be finite, non-negative and of positive mass to be sampled")
    flat = torch.multinomial(weights, P, replacement=True, generator=generator)
    idx = torch.stack(torch.unravel_index(flat, grid.shape), dim=-1).to(torch.float64)
    u = torch.rand(P, grid.dim, generator=generator, dtype=torch.float64, device=generator.device)
    return -grid.L + (idx + u) * grid.h


def check_particle_count(P: int) -> None:
    if isinstance(P, bool) or not isinstance(P, int) or P < 1:
        raise ValueError(f"P (the particle count) must be a positive integer, got {P!r}")


class GaussianMixtureIC(InitialCondition):
    """rho0 = M0 * sum_k w_k N(centre_k, sigma_k^2 I) restricted to Omega and renormalised per component."""

    def __init__(self, name: str, components: Sequence[GaussianComponent],
                 c0_fn: Callable[[tuple[torch.Tensor, ...]], torch.Tensor], c0_width: float | None = None,
                 held_out: bool = False):
        total = sum(c.weight for c in components)
        if not math.isclose(total, 1.0, rel_tol=1e-12):
            raise ValueError(f"component weights of {name!r} must sum to 1, got {total}")
        self.name, self.components, self.c0_fn = name, tuple(components), c0_fn
        self.c0_width, self.held_out = c0_width, held_out

    def _axis_cdf(self, comp: GaussianComponent, x: torch.Tensor, axis: int) -> torch.Tensor:
        """A CDF of the component along ``axis`` up to an affine map (callers normalise by the walls)."""
        sigma = comp.axis_sigma(axis)
        if math.isinf(sigma):  # uniform along this axis: x itself is an (unnormalised) CDF
            return x
        return _normal_cdf((x - comp.centre[axis]) / sigma)

    def _axis_quantile(self, comp: GaussianComponent, q: torch.Tensor, axis: int) -> torch.Tensor:
        """Inverse of :meth:`_axis_cdf`."""
        sigma = comp.axis_sigma(axis)
        if math.isinf(sigma):
            return q
        return comp.centre[axis] + sigma * SQRT2 * torch.erfinv(2.0 * q - 1.0)

    def rho0(self, grid: Grid, M0: float = 1.0) -> torch.Tensor:
        faces = grid.faces().to(torch.float64)
        rho = torch.zeros(grid.shape, dtype=torch.float64, device=grid.device)
        for comp in self.components:
            mass = torch.ones((), dtype=torch.float64, device=grid.device)
            for axis in range(grid.dim):
                cdf = self._axis_cdf(comp, faces, axis)
                frac = (cdf[1:] - cdf[:-1]) / (cdf[-1] - cdf[0])  # exact fraction of this axis' mass per cell
                shape = [1] * grid.dim
                shape[axis] = grid.N
                mass = mass * frac.reshape(shape)
            rho = rho + comp.weight * mass
        return (M0 * rho / grid.cell_volume).to(grid.dtype)

    def c0(self, grid: Grid) -> torch.Tensor:
        mesh = tuple(x.to(torch.float64) for x in grid.mesh())
        return self.c0_fn(mesh).to(grid.dtype)

    def sample(self, P: int, generator: torch.Generator, grid: Grid) -> torch.Tensor:
        """Exact draw from the truncated mixture: component by multinomial, then per-axis inverse CDF.

        Every particle's inverse CDF is evaluated for every component and the drawn one is kept
        (``torch.where``): no boolean indexing, so no data-dependent shape and no host sync on a GPU;
        each value is the same elementwise arithmetic as a per-component evaluation.
        """
        check_particle_count(P)
        device = generator.device
        w = torch.tensor([c.weight for c in self.components], dtype=torch.float64, device=device)
        which = torch.multinomial(w, P, replacement=True, generator=generator)
        u = torch.rand(P, grid.dim, generator=generator, dtype=torch.float64, device=device)
        wall = torch.tensor([-grid.L, grid.L], dtype=torch.float64)
        X = torch.zeros(P, grid.dim, dtype=torch.float64, device=device)
        for k, comp in enumerate(self.components):
            lo_hi = torch.stack([self._axis_cdf(comp, wall, axis) for axis in range(grid.dim)], dim=-1)
            lo, hi = lo_hi.to(device)  # (d,) each: the truncation's CDF values at the walls
            q = lo + u * (hi - lo)
            x = torch.stack([self._axis_quantile(comp, q[:, axis], axis) for axis in range(grid.dim)], dim=-1)
            X = torch.where((which == k).unsqueeze(-1), x.clamp(-grid.L, grid.L), X)
        return X


class GriddedIC(InitialCondition):
    """A user's own gridded initial data, e.g. from ``--ic-file F.npz`` (keys ``rho0``, ``c0``).

    rho0 is taken as cell averages and renormalised to M0; the grid must match its shape.
    """

    def __init__(self, name: str, rho0: np.ndarray, c0: np.ndarray):
        rho0 = np.asarray(rho0, dtype=np.float64)
        c0 = np.asarray(c0, dtype=np.float64)
        if rho0.ndim not in (2, 3) or len(set(rho0.shape)) != 1:
            raise ValueError(f"rho0 of {name!r} must be a cubic 2-D or 3-D array, got shape {rho0.shape}")
        if c0.shape != rho0.shape:
            raise ValueError(f"c0 of {name!r} has shape {c0.shape}, rho0 has {rho0.shape}")
        for key, arr in (("rho0", rho0), ("c0", c0)):
            if not np.isfinite(arr).all():
                raise ValueError(f"{key} of {name!r} has NaN or Inf values")
            if (arr < 0).any():
                raise ValueError(f"{key} of {name!r} has negative values (min {arr.min():.3g})")
        if rho0.sum() <= 0:
            raise ValueError(f"rho0 of {name!r} has zero mass")
        self.name = name
        self._rho0, self._c0 = torch.from_numpy(rho0), torch.from_numpy(c0)
        self.dim, self.N = rho0.ndim, rho0.shape[0]

    def _check(self, grid: Grid) -> None:
        if grid.shape != tuple(self._rho0.shape):
            raise ValueError(f"initial data {self.name!r} is {tuple(self._rho0.shape)}, the grid is {grid.shape}")

    def check_grid(self, grid: Grid) -> None:
        """The data fit the grid's shape and its dtype (1e300 overflows float32): checked before a run."""
        self._check(grid)
        biggest = torch.finfo(grid.dtype).max
        rho = self._rho0 * (1.0 / (self._rho0.sum() * grid.cell_volume))
        for key, arr in (("rho0", rho), ("c0", self._c0)):
            if float(arr.max()) > biggest:
                raise ValueError(f"{key} of {self.name!r} reaches {float(arr.max()):.3g}, beyond the largest "
                                 f"{grid.dtype} ({biggest:.3g}); use dtype float64 or rescale")

    def rho0(self, grid: Grid, M0: float = 1.0) -> torch.Tensor:
        self._check(grid)
        rho = self._rho0 * (M0 / (self._rho0.sum() * grid.cell_volume))
        return rho.to(grid.device, grid.dtype)

    def c0(self, grid: Grid) -> torch.Tensor:
        self._check(grid)
        return self._c0.to(grid.device, grid.dtype)


class FunctionIC(InitialCondition):
    """A user's own problem as two Python functions of the cell centres: ``rho0(x)`` and ``c0(x)`` take
    ``x`` of shape (*cells, d) (float64, on the grid's device) and return arrays of shape (*cells).

    rho0's values at the centres are taken as its cell averages (the midpoint rule) and renormalised to
    M0; particles are drawn from those cells by the generic sampler.
    """

    def __init__(self, name: str, rho0_fn: Callable, c0_fn: Callable):
        self.name, self._rho0_fn, self._c0_fn = name, rho0_fn, c0_fn

    def _evaluate(self, fn: Callable, key: str, grid: Grid) -> torch.Tensor:
        x = torch.stack(grid.to(dtype=torch.float64).mesh(), dim=-1)
        try:
            values = torch.as_tensor(fn(x), dtype=torch.float64, device=grid.device)
        except Exception as err:
            raise ValueError(f"{key}(x) of {self.name!r} failed on the cell centres: {err}") from err
        if tuple(values.shape) != grid.shape:
            raise ValueError(f"{key}(x) of {self.name!r} must return shape {grid.shape}, got {tuple(values.shape)}")
        if not bool(torch.isfinite(values).all()) or bool((values < 0).any()):
            raise ValueError(f"{key}(x) of {self.name!r} must be finite and >= 0 at every cell centre")
        return values

    def check_grid(self, grid: Grid) -> None:
        """Evaluate both functions once, so a bad one is refused before the run allocates anything."""
        self.rho0(grid)
        self.c0(grid)

    def rho0(self, grid: Grid, M0: float = 1.0) -> torch.Tensor:
        rho = self._evaluate(self._rho0_fn, "rho0", grid)
        mass = float(rho.sum()) * grid.cell_volume
        if mass <= 0:
            raise ValueError(f"rho0(x) of {self.name!r} has zero mass on this grid")
        return (rho * (M0 / mass)).to(grid.dtype)

    def c0(self, grid: Grid) -> torch.Tensor:
        return self._evaluate(self._c0_fn, "c0", grid).to(grid.dtype)


def load_ic_file(path: str | Path) -> GriddedIC:
    """Load ``rho0`` and ``c0`` from an .npz file; every problem is a ``ValueError`` naming the file."""
    from nsipf_torch.io.files import load_npz
    path = Path(path)
    arrays = load_npz(path, "--ic-file")
    missing = {"rho0", "c0"} - set(arrays)
    if missing:
        raise ValueError(f"--ic-file {str(path)!r} lacks the key(s) {sorted(missing)}")
    rho0, c0 = arrays["rho0"], arrays["c0"]
    if not all(np.issubdtype(a.dtype, np.number) and not np.iscomplexobj(a) for a in (rho0, c0)):
        raise ValueError(f"--ic-file {str(path)!r}: rho0 and c0 must be real numeric arrays")
    return GriddedIC(path.stem, rho0, c0)


# ---------------------------------------------------------------------------------------------------
# The canonical problems (docs/MODEL.md §5) and the registry.

def _blob_c0(mesh):
    return gaussian(sum(x**2 for x in mesh), 0.2)


def _two_blobs_c0(mesh):
    return 10.0 * gaussian(sum(x**2 for x in mesh), 0.3)


def _annuli_c0(mesh, radii=(0.35, 0.7), width=0.1):
    """10 * sum_R exp(-d_R^2 / (2 * 0.1^2)), d_R the distance to the circle |(x, y)| = R in z = 0."""
    rho_xy = torch.sqrt(mesh[0] ** 2 + mesh[1] ** 2)
    z2 = mesh[2] ** 2 if len(mesh) == 3 else torch.zeros_like(rho_xy)
    return 10.0 * sum(gaussian((rho_xy - R) ** 2 + z2, width) for R in radii)


_REGISTRY: dict[str, Callable[[], InitialCondition]] = {}


def register_ic(name: str, factory: Callable[[], InitialCondition]) -> None:
    """Add an initial condition under ``name``; ``factory()`` builds it (it may read files lazily)."""
    _REGISTRY[name] = factory


def known_ics() -> list[str]:
    """The registered names, and ``NAME:SEED`` for each seeded family."""
    return sorted(_REGISTRY) + [f"{name}:SEED" for name in sorted(_FAMILIES)]


def get_ic(name: str) -> InitialCondition:
    """The initial condition ``name``, or member SEED of a seeded family for ``NAME:SEED``."""
    base, sep, seed = str(name).partition(":")
    if sep:
        if base not in _FAMILIES:
            raise ValueError(f"unknown seeded family {base!r} in {name!r}; known: {', '.join(known_ics())}")
        if not seed.isdigit():
            raise ValueError(f"the seed in {name!r} must be a non-negative integer")
        return _FAMILIES[base](int(seed))
    if name not in _REGISTRY:
        raise ValueError(f"unknown initial condition {name!r}; known: {', '.join(known_ics())}")
    return _REGISTRY[name]()


register_ic("blob", lambda: GaussianMixtureIC(
    "blob", [GaussianComponent(1.0, (0.0, 0.0, 0.0), 0.1)], _blob_c0, c0_width=0.2))
register_ic("two_blobs", lambda: GaussianMixtureIC(
    "two_blobs", [GaussianComponent(0.5, (-0.5, 0.0, 0.0), 0.1),
                  GaussianComponent(0.5, (0.5, 0.0, 0.0), 0.1)], _two_blobs_c0, c0_width=0.3))
register_ic("annuli", lambda: GaussianMixtureIC(
    "annuli", [GaussianComponent(1.0, (0.0, 0.0, 0.0), 0.15)], _annuli_c0, c0_width=0.1))


# ---------------------------------------------------------------------------------------------------
# Held-out problems (module docstring). Parameters outside the training ranges of nsipf_torch/neural/data.py
# (c amplitude 0.5-12, gamma 0.005-0.02, chi 0.5-2) are variants: the c amplitude here, gamma and chi as
# run parameters (e.g. ``simulate.py --ic planar --chi 3``).

@dataclass(frozen=True)
class PlanarSpec:
    """rho0: a truncated normal in x (centre x0, width sigma), uniform across; c0(x) = amp * (slope * (1 + x)/2
    + exp(-(x - food)^2 / (2 width^2))): a ramp rising to the right plus a Gaussian food band."""

    x0: float = -0.5
    sigma: float = 0.1
    food: float = 0.6
    width: float = 0.15
    amp: float = 10.0
    slope: float = 0.3

    def c0_profile(self, x: torch.Tensor) -> torch.Tensor:
        return self.amp * (self.slope * 0.5 * (1.0 + x) + gaussian((x - self.food) ** 2, self.width))


class PlanarIC(GaussianMixtureIC):
    """A held-out planar front: rho0 and c0 depend on x alone, so the d-D solution does too and the 1-D
    FD solver is its reference (:mod:`studies.references`)."""

    def __init__(self, name: str, spec: PlanarSpec):
        self.spec = spec
        comp = GaussianComponent(1.0, (spec.x0, 0.0, 0.0), (spec.sigma, math.inf, math.inf))
        super().__init__(name, [comp], lambda mesh: spec.c0_profile(mesh[0]), c0_width=spec.width, held_out=True)

    def rho0_profile(self, faces: torch.Tensor, dim: int, M0: float = 1.0) -> torch.Tensor:
        """The x-profile of the d-D rho0: exact cell averages on the 1-D cells with these faces (N + 1,),
        in d-D units (M0 spread uniformly over the (2L)^(d-1) cross-section, L = faces[-1])."""
        faces = faces.to(torch.float64)
        cdf = self._axis_cdf(self.components[0], faces, 0)
        L = float(faces[-1])
        return M0 * (cdf[1:] - cdf[:-1]) / (cdf[-1] - cdf[0]) / torch.diff(faces) / (2.0 * L) ** (dim - 1)

    def c0_profile(self, x: torch.Tensor) -> torch.Tensor:
        return self.spec.c0_profile(x.to(torch.float64))


def planar_spec(seed: int) -> PlanarSpec:
    """A seeded planar variant: front position, widths, food position, amplitude and slope drawn at random."""
    rng = np.random.default_rng(int(seed))
    return PlanarSpec(x0=float(rng.uniform(-0.7, -0.4)), sigma=float(rng.uniform(0.06, 0.15)),
                      food=float(rng.uniform(0.5, 0.7)), width=float(rng.uniform(0.1, 0.2)),
                      amp=float(rng.uniform(4.0, 12.0)), slope=float(rng.uniform(0.2, 0.5)))


def mixture_ic(seed: int) -> GaussianMixtureIC:
    """``mixture:SEED``: 2-4 Gaussian blobs of rho (centres in [-0.6, 0.6]^3, widths 0.06-0.3, random weights)
    and 2-4 of c, kept as ``foods``: (centre alike, width 0.06-0.3, amplitude 2-10) each."""
    rng = np.random.default_rng([int(seed), 0x6D6978])
    k_rho, k_c = (int(k) for k in rng.integers(2, 5, size=2))
    weights = rng.dirichlet(np.ones(k_rho))
    comps = [GaussianComponent(float(w), tuple(float(v) for v in rng.uniform(-0.6, 0.6, 3)),
                               float(rng.uniform(0.06, 0.3))) for w in weights]
    comps[-1] = GaussianComponent(1.0 - sum(c.weight for c in comps[:-1]), comps[-1].centre, comps[-1].sigma)
    foods = [(tuple(float(v) for v in rng.uniform(-0.6, 0.6, 3)), float(rng.uniform(0.06, 0.3)),
              float(rng.uniform(2.0, 10.0))) for _ in range(k_c)]

    def c0_fn(mesh):
        return sum(a * gaussian(sum((x - ctr[i]) ** 2 for i, x in enumerate(mesh)), w) for ctr, w, a in foods)

    ic = GaussianMixtureIC(f"mixture:{seed}", comps, c0_fn, c0_width=min(w for _, w, _ in foods), held_out=True)
    ic.foods = tuple(foods)
    return ic


_FAMILIES: dict[str, Callable[[int], InitialCondition]] = {}


def register_ic_family(name: str, factory: Callable[[int], InitialCondition]) -> None:
    """Add a seeded family, asked for as ``NAME:SEED``; ``factory(seed)`` builds one member."""
    _FAMILIES[name] = factory


register_ic("planar", lambda: PlanarIC("planar", PlanarSpec()))
register_ic("planar_c30", lambda: PlanarIC("planar_c30", PlanarSpec(amp=30.0)))
register_ic_family("planar", lambda seed: PlanarIC(f"planar:{seed}", planar_spec(seed)))
register_ic_family("mixture", mixture_ic)
register_ic("two_blobs_c30", lambda: GaussianMixtureIC(
    "two_blobs_c30", get_ic("two_blobs").components, lambda mesh: 3.0 * _two_blobs_c0(mesh), c0_width=0.3,
    held_out=True))

#: the held-out problems (never training data): names for get_ic, NAME:SEED for the seeded families
HELD_OUT = ("planar", "planar:SEED", "planar_c30", "mixture:SEED", "two_blobs_c30")


def member_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator seeded with ``seed``: a member's, or one of its initial sample's chunks'
    (:func:`nsipf_torch.particles.move.chunk_seed`).

    A CUDA generator with the same seed draws another, equally valid sample (a different stream)."""
    return torch.Generator(device=device).manual_seed(int(seed))
