"""Batched radial finite-volume solver of the radial PHKS system (docs/MODEL.md §1, paper eqs. 35-36).

    rho_t = gamma r^{1-d} (r^{d-1} rho_r)_r - chi r^{1-d} (r^{d-1} rho c_r)_r,    c_t = -c rho,
    rho_r = c_r = 0 at r = 0,  zero flux at r = R,   d = 2 or 3.

It is the training-data engine of the neural interpolator: B radial problems, each with its own profiles,
gamma and chi, advance together as a (B, Nr) tensor. The numerics are the finite-volume core
(:mod:`nsipf_torch.solvers.finite_volume`) with the radial geometry (face areas r^{d-1}, shell volumes).

Discretisation
- Nr cells of width dr = R/Nr on [0, R], cell-centred. Cell i is the shell r_i < r < r_{i+1} with the exact
  volume V_i = omega_d (r_{i+1}^d - r_i^d) / d, omega_d = 2 pi (d = 2) or 4 pi (d = 3); face f has the area
  A_f = omega_d r_f^{d-1}. rho holds shell averages, so the mass is sum_i rho_i V_i.
- The flux through each interior face is  F = -gamma (rho_{i+1} - rho_i)/dr + v rho_upwind  with
  v = chi (c_{i+1} - c_i)/dr: diffusion by central differences, drift by the shared MUSCL reconstruction
  (:func:`nsipf_torch.solvers.stencils.upwind_flux`). The face at r = 0 has zero area and the wall at r = R zero
  flux, so d/dt sum_i rho_i V_i telescopes to zero and the mass is conserved to round-off.
- Time stepping is the core's (:func:`nsipf_torch.solvers.finite_volume.advance`), as in the Cartesian solver.

Positivity bound of the radial stencil (the radial form of docs/MODEL.md §6)
    Forward Euler keeps rho_i >= 0 when the outflow of cell i over one step is at most rho_i. Diffusion
    takes at most dt gamma (A_{i-1/2} + A_{i+1/2}) / (dr V_i) rho_i; the MUSCL face values lie in
    [0, 2 rho_i] and sum to 2 rho_i, so the drift takes at most dt max|v| 2 max(A_{i-1/2}, A_{i+1/2}) / V_i
    rho_i (max|v| (A_{i-1/2} + A_{i+1/2}) / V_i rho_i in the two end cells, whose slope is zero). With
        kappa_D = max_i dr (A_{i-1/2} + A_{i+1/2}) / (2 V_i),
        kappa_A = max_i [outflow factor of cell i] dr / (2 V_i)
    (both exactly 1 for a Cartesian axis) every sub-step satisfies
        dt_sub * (2 gamma kappa_D / dr^2 + kappa_A max|v| / dr) <= 0.4,
    which bounds the outflow by 0.8 rho_i; SSP-RK2 is a convex combination of such Euler steps.
    kappa_D = 1 for d = 2 (dr (A_{i-1/2} + A_{i+1/2}) / V_i = 2 in every cell) and 3/2 for d = 3 (set by
    the centre cell); kappa_A = 4/3 (d = 2) and 12/7 (d = 3), both set by cell 1. In a batch every member takes the
    largest sub-step count, so batched and single runs stay bitwise comparable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

import nsipf_torch.solvers.finite_volume as fv
from nsipf_torch.problems.grid import resolve_device, resolve_dtype
from nsipf_torch.problems.params import check_finite, check_fields, check_positive, check_schemes

__all__ = ["RadialGrid", "solve_radial", "radial_advance", "radial_mass", "gaussian_shell_averages",
           "substeps_needed"]


def _omega(dim: int) -> float:
    """Area of the unit sphere in R^d (d = 2: circumference 2 pi; d = 3: 4 pi)."""
    return 2.0 * math.pi if dim == 2 else 4.0 * math.pi


@dataclass(frozen=True)
class RadialGrid:
    """Nr cells on [0, R] in the radial measure of R^d: ``.r`` centres (Nr,), ``.edges`` (Nr+1,),
    ``.dr``, ``.shell_volumes`` (Nr,), ``.face_areas`` (Nr+1,) (zero at r = 0), and the stencil's
    positivity factors ``.kappa_D``, ``.kappa_A`` (module docstring)."""

    Nr: int
    R: float = 1.0
    dim: int = 3
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float64

    def __post_init__(self):
        if isinstance(self.Nr, bool) or not isinstance(self.Nr, int) or self.Nr < 4:
            raise ValueError(f"Nr must be an integer >= 4, got {self.Nr!r}")
        check_finite("R", self.R)
        if self.R <= 0:
            raise ValueError(f"R must be > 0, got {self.R}")
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {self.dim!r}")
        object.__setattr__(self, "device", resolve_device(self.device))
        object.__setattr__(self, "dtype", resolve_dtype(self.dtype))
        # Geometry in float64 first, so a float32 grid carries correctly rounded volumes and areas.
        d, w = self.dim, _omega(self.dim)
        edges = torch.arange(self.Nr + 1, dtype=torch.float64) * (self.R / self.Nr)
        volumes = w * torch.diff(edges**d) / d
        areas = w * edges ** (d - 1)
        dr = self.R / self.Nr
        a_minus, a_plus = areas[:-1], areas[1:]
        kappa_D = float((dr * (a_minus + a_plus) / (2 * volumes)).max())
        outflow = 2 * torch.maximum(a_minus, a_plus)
        outflow[0], outflow[-1] = a_minus[0] + a_plus[0], a_minus[-1] + a_plus[-1]  # zero-slope end cells
        kappa_A = float((dr * outflow / (2 * volumes)).max())
        put = lambda t: t.to(device=self.device, dtype=self.dtype)  # noqa: E731
        object.__setattr__(self, "_edges", put(edges))
        object.__setattr__(self, "_r", put(edges[:-1] + 0.5 * dr))
        object.__setattr__(self, "_volumes", put(volumes))
        object.__setattr__(self, "_inv_volumes", put(1.0 / volumes))
        object.__setattr__(self, "_areas", put(areas))
        object.__setattr__(self, "_interior_areas", put(areas[1:-1]))
        object.__setattr__(self, "kappa_D", kappa_D)
        object.__setattr__(self, "kappa_A", kappa_A)

    @property
    def dr(self) -> float:
        return self.R / self.Nr

    @property
    def edges(self) -> torch.Tensor:
        return self._edges

    @property
    def r(self) -> torch.Tensor:
        return self._r

    @property
    def shell_volumes(self) -> torch.Tensor:
        return self._volumes

    @property
    def face_areas(self) -> torch.Tensor:
        return self._areas

    @property
    def geometry(self) -> fv.RadialGeometry:
        """The finite-volume core's view of this grid."""
        return fv.RadialGeometry(self.dr, self._interior_areas, self._inv_volumes, self.kappa_D, self.kappa_A)

    def to(self, device=None, dtype=None) -> "RadialGrid":
        return RadialGrid(self.Nr, self.R, self.dim, device or self.device, dtype or self.dtype)


def radial_mass(rho: torch.Tensor, rgrid: RadialGrid) -> torch.Tensor:
    """Mass sum_i rho_i V_i of shell averages rho (..., Nr) -> (...)."""
    if rho.shape[-1] != rgrid.Nr:
        raise ValueError(f"rho has {rho.shape[-1]} radial cells, the grid has Nr={rgrid.Nr}")
    return (rho * rgrid.shell_volumes.to(rho.dtype)).sum(dim=-1)


def gaussian_shell_averages(rgrid: RadialGrid, sigma, M0=1.0) -> torch.Tensor:
    """Exact shell averages (B, Nr) of the d-dimensional Gaussian exp(-r^2/(2 sigma^2)) normalised to mass
    M0 on the ball r < R (a cheap exact initial state, the radial analogue of ``initial.py``'s rho0),
    computed in float64 and returned in the grid's dtype.

    ``sigma`` and ``M0`` are floats or (B,) tensors. Mass inside radius r of the unit-mass Gaussian:
    d = 2: 1 - exp(-r^2/2s^2);  d = 3: erf(r/(sqrt2 s)) - sqrt(2/pi) (r/s) exp(-r^2/2s^2).
    """
    sigma = _member_tensor("sigma", sigma, rgrid, allow_zero=False).to(torch.float64)
    M0 = _member_tensor("M0", M0, rgrid, allow_zero=False).to(torch.float64)
    z = rgrid.edges.to(torch.float64) / sigma.to(torch.float64)  # (B, Nr+1)
    if rgrid.dim == 2:
        inside, outside = -torch.expm1(-0.5 * z**2), torch.exp(-0.5 * z**2)
    else:
        tail = math.sqrt(2.0 / math.pi) * z * torch.exp(-0.5 * z**2)
        inside = torch.erf(z / math.sqrt(2.0)) - tail
        outside = torch.erfc(z / math.sqrt(2.0)) + tail
    # Differences of the mass inside near the centre and of the mass outside in the tail, so that
    # neither loses its digits to cancellation (the tail shells keep their tiny positive masses).
    near = z[..., 1:] < 1.0
    shell_mass = torch.where(near, torch.diff(inside, dim=-1), -torch.diff(outside, dim=-1))
    shell_mass = shell_mass / shell_mass.sum(dim=-1, keepdim=True)
    return (M0.to(torch.float64) * shell_mass / rgrid.shell_volumes.to(torch.float64)).to(rgrid.dtype)


def _member_tensor(name: str, value, rgrid: RadialGrid, allow_zero: bool = True) -> torch.Tensor:
    """A float or (B,) tensor, checked, as a (B or 1, 1) tensor on the grid's device and dtype."""
    t = check_positive(name, value if isinstance(value, torch.Tensor) else float(value), allow_zero=allow_zero)
    return torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1).to(device=rgrid.device, dtype=rgrid.dtype)


def substeps_needed(rho: torch.Tensor, c: torch.Tensor, dt: float, gamma, chi, rgrid: RadialGrid,
                    c_update: str = "exp") -> int:
    """Smallest n with dt/n (2 gamma kappa_D/dr^2 + kappa_A max|v|/dr) <= 0.4 for every batch member
    (:func:`nsipf_torch.solvers.finite_volume.substep_count` on the radial geometry; one host sync)."""
    return fv.substep_count(c, dt, gamma, chi, rgrid.geometry, rho=rho, c_update=c_update)


def radial_advance(rho, c, dt, gamma, chi, rgrid: RadialGrid, limiter: str = "minmod",
                   c_update: str = "exp", n_sub: int | None = None, compile: bool = False):
    """One outer step of size dt as n_sub equal Strang sub-steps (:func:`nsipf_torch.solvers.finite_volume.advance`
    on the radial geometry). Returns (rho, c, n_sub).

    rho, c: (B, Nr); gamma, chi: floats or (B,) tensors. ``n_sub=None`` picks the sub-step count from the
    radial positivity bound (the largest over the batch); an explicit count is used as given (e.g. to
    compare batched with single runs bitwise). ``compile`` fuses the sub-step with ``torch.compile``
    (about 6x faster per sub-step on the CPU for B x Nr ~ 1e5; the first call per shape compiles for
    ~20-30 s, so it pays only for long runs).
    """
    return fv.advance(rho, c, dt, gamma, chi, rgrid.geometry, limiter, c_update, n_sub, compile)


def _check_inputs(rho0, c0, gamma, chi, rgrid, times, dt, limiter, c_update):
    if not isinstance(rgrid, RadialGrid):
        raise ValueError(f"rgrid must be a RadialGrid, got {type(rgrid).__name__}")
    B = check_fields(rho0, c0, (rgrid.Nr,), names=("rho0", "c0"))
    for name, x in (("gamma", gamma), ("chi", chi)):
        check_positive(name, x if isinstance(x, torch.Tensor) else float(x), allow_zero=True, batch=B)
    dt = check_positive("dt", dt)
    times = [check_finite("times", t) for t in times]
    if not times:
        raise ValueError("times must hold at least one snapshot time")
    if times[0] < 0:
        raise ValueError(f"times must be >= 0, got {times[0]}")
    if any(b <= a for a, b in zip(times, times[1:])):
        raise ValueError(f"times must be strictly ascending, got {times}")
    check_schemes(limiter=limiter, c_update=c_update)
    return times, dt


def solve_radial(rho0: torch.Tensor, c0: torch.Tensor, gamma, chi, rgrid: RadialGrid,
                 times: Sequence[float], dt: float, limiter: str = "minmod", c_update: str = "exp",
                 progress: bool = False, n_sub: int | None = None, return_substeps: bool = False,
                 compile: bool = False):
    """Advance B radial problems from t = 0 and return the snapshots at ``times``.

    rho0, c0: (B, Nr) shell averages / centre values; gamma, chi: floats or (B,) tensors; times: ascending
    floats >= 0 (0 gives the initial state). Each interval between snapshot times is cut into
    ceil(interval/dt) equal outer steps, so every snapshot lands exactly on its time. Returns
    (rho, c), each (B, K, Nr) in the grid's dtype and device; with ``return_substeps`` also the list of
    sub-step counts of the outer steps. ``n_sub`` forces every outer step's sub-step count (as in
    ``fd.fd_advance``; equal counts make batched and single runs bitwise equal). ``compile=True`` fuses each
    sub-step with ``torch.compile`` (see :func:`radial_advance`); use it for training-set sizes.
    """
    times, dt = _check_inputs(rho0, c0, gamma, chi, rgrid, times, dt, limiter, c_update)
    rho = rho0.to(device=rgrid.device, dtype=rgrid.dtype)
    c = c0.to(device=rgrid.device, dtype=rgrid.dtype)
    plan, t_prev = [], 0.0
    for t in times:
        n = math.ceil((t - t_prev) / dt - 1e-9) if t > t_prev else 0
        plan.append((n, (t - t_prev) / n if n else 0.0))
        t_prev = t
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=sum(n for n, _ in plan), desc="radial", unit="step")
    rhos, cs, counts = [], [], []
    for n, step in plan:
        for _ in range(n):
            rho, c, used = radial_advance(rho, c, step, gamma, chi, rgrid, limiter, c_update, n_sub, compile)
            counts.append(used)
            if bar is not None:
                bar.update(1)
        rhos.append(rho)
        cs.append(c)
    if bar is not None:
        bar.close()
    out = (torch.stack(rhos, dim=1), torch.stack(cs, dim=1))
    return (*out, counts) if return_substeps else out
