"""The one finite-volume core of the PHKS system, shared by the Cartesian and the radial solver.

    rho_t = div(gamma grad rho - chi rho grad c)      (paper eq. 1; eq. 35 in radial form)
    c_t   = -c rho                                     (paper eq. 2; eq. 36)

A :class:`Geometry` says how fluxes on the interior faces of each axis become a rate per cell: on a
Cartesian axis the face areas and cell volumes are 1 (``(F_{i+1/2} - F_{i-1/2}) / h``), on the radial axis
they are A_f = omega_d r_f^{d-1} and the exact shell volumes V_i (``((A F)_{i+1/2} - (A F)_{i-1/2}) / V_i``).
Walls carry zero flux (:func:`~nsipf_torch.solvers.stencils.divergence`), so the mass is conserved to round-off.

Flux through each interior face: gamma (rho_{i+1} - rho_i) / h  minus the upwinded drift v rho, with
v = chi (c_{i+1} - c_i) / h and rho reconstructed by MUSCL (:func:`~nsipf_torch.solvers.stencils.upwind_flux`).

Time: one Strang sub-step of size dt is an exact half-step of c with rho frozen (paper eq. 33 in exact
form, :func:`~nsipf_torch.solvers.c_equation.update_c`), rho transported by SSP-RK2 (Heun) with c frozen, and the second
half-step of c. :func:`substep` is pure and free of host syncs, and differentiable in rho, c, gamma and chi
(the inference code takes gradients through it); drivers decide about ``no_grad``.

Positivity (docs/MODEL.md §6): forward Euler keeps rho >= 0 when the outflow of a cell over one step is at most
rho_i. With the geometry's factors kappa_D (diffusion) and kappa_A (drift), both 1 on a Cartesian axis,
every sub-step satisfies

    dt_sub * sum_axes (2 gamma kappa_D / h^2 + kappa_A max|v| / h) <= POSITIVITY_BOUND = 0.4,

which bounds the outflow by 0.8 rho_i; SSP-RK2 is a convex combination of such Euler steps.
:func:`substep_count` picks the count from this bound (one host sync per outer step), the largest over the
members of a batch so that batched and single runs agree bitwise.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from nsipf_torch.solvers.c_equation import CEquation, update_c
from nsipf_torch.problems.params import per_member
from nsipf_torch.solvers.stencils import divergence, face_differences, upwind_flux

__all__ = ["POSITIVITY_BOUND", "Geometry", "CartesianGeometry", "RadialGeometry", "rho_rate", "substep",
           "keller_segel_substep", "stability_rate", "substep_count", "advance", "load_forward_mode", "tangent_substep", "tangent_advance",
           "compiled_substep", "compiled_tangent_substep"]

POSITIVITY_BOUND = 0.4  # the combined bound above (MUSCL's own bound is about 1/2)


class Geometry:
    """Axes of the fields (negative, counted from the end), the spacing h, the positivity factors, and
    the divergence of interior-face fluxes along one axis."""

    axes: tuple[int, ...]
    h: float
    kappa_D: float = 1.0
    kappa_A: float = 1.0

    def divergence(self, flux: torch.Tensor, axis: int) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class CartesianGeometry(Geometry):
    """d Cartesian axes of spacing h (d = 1, 2, 3): face areas and cell volumes are 1."""

    h: float
    dim: int

    @property
    def axes(self) -> tuple[int, ...]:
        return tuple(range(-self.dim, 0))

    def divergence(self, flux: torch.Tensor, axis: int) -> torch.Tensor:
        return divergence(flux, axis, self.h)


@dataclass(frozen=True, eq=False)
class RadialGeometry(Geometry):
    """The radial axis of a :class:`~nsipf_torch.solvers.radial.RadialGrid`: interior face areas (Nr - 1,) and
    inverse shell volumes (Nr,) in the field dtype, and the stencil's kappa_D, kappa_A."""

    h: float
    interior_areas: torch.Tensor
    inv_volumes: torch.Tensor
    kappa_D: float
    kappa_A: float
    axes: tuple[int, ...] = (-1,)

    def divergence(self, flux: torch.Tensor, axis: int) -> torch.Tensor:
        # The areas weight the fluxes and the volumes divide the difference: the geometry is carried by
        # A and V, so the difference itself has unit spacing.
        return divergence(self.interior_areas * flux, axis, 1.0) * self.inv_volumes


def _drift_velocities(c: torch.Tensor, chi, geom: Geometry) -> list[torch.Tensor]:
    """Face velocities v = chi (c_{i+1} - c_i) / h along every axis (the drift of paper eq. 1)."""
    chi_over_h = per_member(chi, c, len(geom.axes), geom.h)
    return [chi_over_h * face_differences(c, axis) for axis in geom.axes]


def rho_rate(rho: torch.Tensor, v: list[torch.Tensor], gamma, geom: Geometry,
             limiter: str = "minmod") -> torch.Tensor:
    """d rho / dt = div(gamma grad rho - rho v) by finite volumes, zero flux at the walls (paper eq. 1).

    ``v`` are the face velocities of c (frozen), ``gamma`` a float or a (B,) tensor.
    """
    gamma_over_h = per_member(gamma, rho, len(geom.axes), geom.h)
    out = None
    for k, axis in enumerate(geom.axes):
        flux = gamma_over_h * face_differences(rho, axis) - upwind_flux(rho, v[k], axis, limiter)
        term = geom.divergence(flux, axis)
        out = term if out is None else out + term
    return out


def substep(rho: torch.Tensor, c: torch.Tensor, dt, gamma, chi, geom: Geometry, limiter: str = "minmod",
            c_update: str = "exp", ceq: CEquation | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One Strang sub-step of size dt: c half-step, rho by SSP-RK2 with c frozen, c half-step.

    Pure and free of host syncs. rho, c: (B, *cells); gamma, chi: floats or (B,) tensors (which may require
    grad); dt a float or a 0-d tensor (a tensor keeps a compiled sub-step from recompiling when dt moves).
    The caller is responsible for dt satisfying the bound of :func:`substep_count`. ``ceq`` another
    c-equation of the Keller-Segel family (Cartesian axes only): see :func:`keller_segel_substep`.
    """
    if ceq is not None and not ceq.is_paper:
        return keller_segel_substep(rho, c, dt, gamma, chi, geom, limiter, c_update, ceq)
    c = update_c(c, rho, 0.5 * dt, c_update)
    v = _drift_velocities(c, chi, geom)
    rho1 = rho + dt * rho_rate(rho, v, gamma, geom, limiter)
    rho = 0.5 * rho + 0.5 * (rho1 + dt * rho_rate(rho1, v, gamma, geom, limiter))
    c = update_c(c, rho, 0.5 * dt, c_update)
    return rho, c


def keller_segel_substep(rho: torch.Tensor, c: torch.Tensor, dt, gamma, chi, geom: Geometry, limiter: str,
                         c_update: str, ceq: CEquation) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`substep` for the Keller-Segel family (issue 20): the same Strang split, with the c half-steps
    of ``ceq`` (:meth:`CEquation.step`: exact for frozen rho) and rho transported by grad Phi(c) frozen.

    The elliptic c is a function of rho, held consistent with it between sub-steps (the runner starts from
    the solve for rho0), so only the closing solve is taken.
    """
    h, dim = geom.h, len(geom.axes)
    if not ceq.elliptic:
        c = ceq.step(c, rho, 0.5 * dt, h, dim, c_update)
    v = _drift_velocities(ceq.phi(c), chi, geom)
    rho1 = rho + dt * rho_rate(rho, v, gamma, geom, limiter)
    rho = 0.5 * rho + 0.5 * (rho1 + dt * rho_rate(rho1, v, gamma, geom, limiter))
    return rho, ceq.step(c, rho, 0.5 * dt, h, dim, c_update)


def stability_rate(c: torch.Tensor, gamma, chi, geom: Geometry) -> torch.Tensor:
    """Per-member rate sum_axes (2 gamma kappa_D / h^2 + kappa_A max|v| / h), shape (B,), float64; no sync."""
    B = c.shape[0]
    with torch.no_grad():
        rate = torch.zeros(B, dtype=torch.float64, device=c.device)
        for v in _drift_velocities(c, chi, geom):
            rate = rate + geom.kappa_A * v.abs().reshape(B, -1).amax(dim=1).to(torch.float64) / geom.h
        if isinstance(gamma, torch.Tensor):
            gamma = gamma.detach().to(device=c.device, dtype=torch.float64).reshape(-1)
        return rate + 2.0 * len(geom.axes) * gamma * geom.kappa_D / geom.h**2


def substep_count(c: torch.Tensor, dt: float, gamma, chi, geom: Geometry, rho: torch.Tensor | None = None,
                  c_update: str = "exp", ceq: CEquation | None = None) -> int:
    """Sub-steps n so that dt / n * rate <= POSITIVITY_BOUND for every member. One host sync.

    With ``rho`` given, the rate is also evaluated on c advanced by the whole dt with rho frozen, since the
    c half-steps inside the outer step sharpen grad c where the cells eat. With a Keller-Segel ``ceq`` the
    rate is that of grad Phi(c), and the outer step's c (advanced with rho frozen) enters likewise.
    """
    with torch.no_grad():
        if ceq is not None and not ceq.is_paper:
            rate = stability_rate(ceq.phi(c), gamma, chi, geom)
            if rho is not None and not ceq.elliptic:
                ahead = ceq.step(c, rho, dt, geom.h, len(geom.axes), c_update)
                rate = torch.maximum(rate, stability_rate(ceq.phi(ahead), gamma, chi, geom))
        else:
            rate = stability_rate(c, gamma, chi, geom)
            if rho is not None:
                rate = torch.maximum(rate, stability_rate(update_c(c, rho, dt, c_update), gamma, chi, geom))
        worst = float(rate.max())
    if not math.isfinite(worst):  # NaN/Inf in c or rho: the time loop reports it as a NonFiniteError
        raise FloatingPointError(f"c (or rho) holds NaN/Inf values: the stability rate is {worst}")
    return max(1, math.ceil(dt * worst / POSITIVITY_BOUND - 1e-12))


@functools.cache
def load_forward_mode() -> None:
    """Load torch's forward-mode decompositions, which torch does on first use through a call of its own
    that raises a FutureWarning (``torch.jit.script`` is deprecated); once per process, quietly. Call it
    outside compiled code before :func:`tangent_substep`."""
    import warnings

    import torch.autograd.forward_ad as fwAD

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        with fwAD.dual_level():
            fwAD.make_dual(torch.zeros(1), torch.zeros(1))


def tangent_substep(rho: torch.Tensor, c: torch.Tensor, d_rho: torch.Tensor, d_c: torch.Tensor, dt, gamma, chi,
                    d_gamma: torch.Tensor, d_chi: torch.Tensor, geom: Geometry, limiter: str = "minmod",
                    c_update: str = "exp", ceq: CEquation | None = None):
    """:func:`substep` and its directional derivatives along P directions, in one forward-mode pass.

    rho, c: the state (B, *cells); gamma, chi: (B,) tensors; d_rho, d_c (P, B, *cells), d_gamma, d_chi
    (P, B): the tangents of each along the P directions. Returns (rho, c, d_rho, d_c) one sub-step later.
    ``torch.func.jvp`` vmapped over the directions computes the primal once and the P tangents as one
    batch (forward-mode dual tensors with one batch member per direction would repeat the primal P times).
    Pure and free of host syncs, like :func:`substep`. With a Keller-Segel ``ceq`` the tangent of its c
    step is that step's own linear solve applied to the tangents (the DCT solve is linear in c and rho),
    and the drift's carries Phi'(c) d_c.
    """
    def along(d_rho, d_c, d_gamma, d_chi):
        return torch.func.jvp(lambda r, q, g, x: substep(r, q, dt, g, x, geom, limiter, c_update, ceq),
                              (rho, c, gamma, chi), (d_rho, d_c, d_gamma, d_chi))

    (rho_new, c_new), (d_rho, d_c) = torch.func.vmap(along)(d_rho, d_c, d_gamma, d_chi)
    return rho_new[0], c_new[0], d_rho, d_c  # vmap returns the unbatched primal expanded over the directions


_COMPILED: dict[str, object] = {}


def _compiled(function):
    if function.__name__ not in _COMPILED:
        _COMPILED[function.__name__] = torch.compile(function, dynamic=False)
    return _COMPILED[function.__name__]


def compiled_substep():
    """:func:`substep` fused by ``torch.compile`` (compiled once per process and shape; pass dt as a 0-d
    tensor so that a new sub-step size does not recompile)."""
    return _compiled(substep)


def compiled_tangent_substep():
    """:func:`tangent_substep` fused by ``torch.compile`` (primal and tangents in a few loops; as for
    :func:`compiled_substep`, pass dt as a 0-d tensor)."""
    return _compiled(tangent_substep)


def _repeat(step, state: tuple, dt: float, n_sub: int, rest: tuple, compile: bool) -> tuple:
    """``state = step(*state, dt / n_sub, *rest)`` n_sub times; with ``compile`` the sub-step size is a 0-d
    tensor, so that a new size does not recompile (one small host-to-device copy)."""
    dt_sub = dt / n_sub
    if compile:
        dt_sub = torch.tensor(dt_sub, dtype=state[0].dtype, device=state[0].device)
    for _ in range(n_sub):
        state = step(*state, dt_sub, *rest)
    return state


def advance(rho: torch.Tensor, c: torch.Tensor, dt: float, gamma, chi, geom: Geometry, limiter: str = "minmod",
            c_update: str = "exp", n_sub: int | None = None, compile: bool = False, ceq: CEquation | None = None):
    """One outer step of size dt as ``n_sub`` equal Strang sub-steps; returns (rho, c, n_sub).

    ``n_sub=None`` picks the count from the positivity bound (:func:`substep_count`, one host sync: the
    only one of an outer step, and with ``compile`` one small host-to-device copy of the sub-step size); an
    explicit count is used as given (e.g. to compare batched with single runs bitwise). Inputs are checked
    once by the callers' entry points, not here, so the loop stays free of per-step checks.
    """
    if n_sub is None:
        n_sub = substep_count(c, dt, gamma, chi, geom, rho=rho, c_update=c_update, ceq=ceq)
    elif isinstance(n_sub, bool) or not isinstance(n_sub, int) or n_sub < 1:
        raise ValueError(f"n_sub must be a positive integer, got {n_sub!r}")
    step = compiled_substep() if compile else substep
    rest = (gamma, chi, geom, limiter, c_update) + ((ceq,) if ceq is not None and not ceq.is_paper else ())
    rho, c = _repeat(step, (rho, c), dt, n_sub, rest, compile)
    return rho, c, n_sub


def tangent_advance(rho: torch.Tensor, c: torch.Tensor, d_rho: torch.Tensor, d_c: torch.Tensor, dt: float, gamma,
                    chi, d_gamma: torch.Tensor, d_chi: torch.Tensor, geom: Geometry, limiter: str, c_update: str,
                    n_sub: int, compile: bool = False, ceq: CEquation | None = None):
    """:func:`advance` with the tangents of :func:`tangent_substep` (an explicit count ``n_sub``, taken by
    the caller from the primal state); returns (rho, c, d_rho, d_c)."""
    load_forward_mode()
    step = compiled_tangent_substep() if compile else tangent_substep
    rest = (gamma, chi, d_gamma, d_chi, geom, limiter, c_update)
    rest += (ceq,) if ceq is not None and not ceq.is_paper else ()
    return _repeat(step, (rho, c, d_rho, d_c), dt, n_sub, rest, compile)
