"""Problems of the Keller-Segel family (issue 20) and their analytic yardsticks.

    rho_t = div(gamma grad rho - chi rho grad Phi(c)),   eps c_t = D Delta c - alpha c + beta rho

Registered initial conditions (c0 = 0: the attractant is made by the cells; the elliptic c is the solve
for rho0 whatever c0 says):

- ``pks_blob``: a Gaussian of sigma = 0.1 at the origin, the critical-mass example: in 2D with
  gamma = 0.01, chi = D = beta = 1, M_c = 8 pi gamma D / (chi beta) ~ 0.251; ``--M0 0.12`` spreads,
  ``--M0 0.5`` collapses before :func:`blowup_time_box`;
- ``pks_blob`` in 3D: no critical mass; :func:`contraction_mass_3d` is the mass above which its second
  moment initially falls, and :func:`blowup_time_3d` bounds the collapse time where the virial inequality
  closes (docs/MODEL.md §7);
- ``pks_ring``: 16 Gaussians of sigma = 0.05 on the circle of radius 0.5 (z = 0 in 3D);
- ``instability:K``: the uniform density with a cosine perturbation of mode K along x,
  rho0 ~ 1 + 0.01 cos(K pi (x + L) / (2L)), the linear-instability problem (:func:`growth_rate`).
"""
from __future__ import annotations

import math

import torch

from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.initial import (GaussianComponent, GaussianMixtureIC, InitialCondition, register_ic,
                                          register_ic_family)
from nsipf_torch.solvers.c_equation import CEquation

__all__ = ["critical_mass", "blowup_time_box", "contraction_mass_3d", "second_moment_rate_3d", "blowup_time_3d",
           "growth_rate", "discrete_k2", "InstabilityIC"]


def _no_c(mesh):
    return torch.zeros_like(mesh[0])


def critical_mass(gamma: float, chi: float, D: float = 1.0, beta: float = 1.0) -> float:
    """The 2D critical mass 8 pi gamma D / (chi beta) of the elliptic system with alpha = 0."""
    return 8.0 * math.pi * gamma * D / (chi * beta)


def blowup_time_box(M: float, M2: float, gamma: float, chi: float, L: float, D: float = 1.0,
                    beta: float = 1.0) -> float:
    """An upper bound on the 2D collapse time in the box [-L, L]^2 (elliptic, alpha = 0), from the second
    moment M2(0) = int |x|^2 rho0: T* = -ln(1 - B M2 / A) / B with A = chi beta M^2 / (2 pi D) - 4 gamma M and
    B = chi beta M / (D |Omega|); infinite when A <= 0 (subcritical) or B M2 >= A."""
    A = chi * beta * M**2 / (2.0 * math.pi * D) - 4.0 * gamma * M
    B = chi * beta * M / (D * (2.0 * L) ** 2)
    if A <= 0 or B * M2 >= A:
        return math.inf
    return -math.log(1.0 - B * M2 / A) / B


def contraction_mass_3d(sigma: float, gamma: float, chi: float, D: float = 1.0, beta: float = 1.0,
                        L: float = math.inf) -> float:
    """The mass above which the second moment of a 3D Gaussian of width ``sigma`` at the centre falls at
    t = 0 (elliptic, alpha = 0, box [-L, L]^3): the root of :func:`second_moment_rate_3d` with M2 = 3 sigma^2 M,
    M* = 24 pi^{3/2} gamma D sigma / (chi beta (1 - 8 pi^{3/2} sigma^3 / |Omega|)) (L = inf: the whole space).
    An initial-contraction threshold, not a blow-up theorem (docs/MODEL.md §7)."""
    sink = 8.0 * math.pi**1.5 * sigma**3 / (2.0 * L) ** 3 if math.isfinite(L) else 0.0
    return 24.0 * math.pi**1.5 * gamma * D * sigma / (chi * beta * (1.0 - sink))


def second_moment_rate_3d(M: float, M2: float, sigma: float, gamma: float, chi: float, D: float = 1.0,
                          beta: float = 1.0, L: float = math.inf) -> float:
    """dM2/dt of a 3D Gaussian of width ``sigma`` and mass M at the centre, M2 = int |x|^2 rho (elliptic,
    alpha = 0): 6 gamma M - chi beta M^2 / (4 pi^{3/2} D sigma) + 2 chi beta M M2 / (3 D |Omega|), the middle
    term the Gaussian's int int rho(x) rho(y) / |x - y| = M^2 / (sigma sqrt(pi)) times chi beta / (4 pi D),
    the last the mean-free source's uniform sink (0 for L = inf)."""
    sink = 2.0 * chi * beta * M * M2 / (3.0 * D * (2.0 * L) ** 3) if math.isfinite(L) else 0.0
    return 6.0 * gamma * M - chi * beta * M**2 / (4.0 * math.pi**1.5 * D * sigma) + sink


def blowup_time_3d(M: float, M2: float, gamma: float, chi: float, D: float = 1.0, beta: float = 1.0,
                   L: float = math.inf, intervals: int = 400) -> float:
    """An upper bound on the 3D collapse time (elliptic, alpha = 0) from M2(0) = int |x|^2 rho0, inf where it
    does not close. Jensen, int int rho rho / |x - y| >= M^{5/2} / sqrt(2 M2), gives dM2/dt <= f(M2) =
    6 gamma M - chi beta M^{5/2} / (4 pi D sqrt(2 M2)) + 2 chi beta M M2 / (3 D |Omega|); f increases with M2,
    so f(M2(0)) < 0 keeps M2 falling to 0 by int_0^{M2(0)} dm / -f(m) (m = u^2: int 2 u^2 du / g(u),
    g(u) = a - 6 gamma M u - b u^3 > 0; Simpson's rule)."""
    a = chi * beta * M**2.5 / (4.0 * math.pi * D * math.sqrt(2.0))
    b = 2.0 * chi * beta * M / (3.0 * D * (2.0 * L) ** 3) if math.isfinite(L) else 0.0
    u0 = math.sqrt(M2)

    def g(u: float) -> float:
        return a - 6.0 * gamma * M * u - b * u**3

    if g(u0) <= 0:
        return math.inf
    n = intervals + intervals % 2
    h = u0 / n
    weights = [1 if k in (0, n) else (4 if k % 2 else 2) for k in range(n + 1)]
    return h / 3.0 * sum(w * 2.0 * (k * h) ** 2 / g(k * h) for k, w in enumerate(weights))


def discrete_k2(m: int, N: int, L: float, dim: int = 1) -> float:
    """The discrete symbol (4 / h^2) sin^2(k h / 2) of the cosine mode m along one axis, k = m pi / (2L)."""
    h = 2.0 * L / N
    return 4.0 / h**2 * math.sin(m * math.pi / (2 * L) * h / 2) ** 2


def growth_rate(k2: float, gamma: float, chi: float, rho_bar: float, ceq: CEquation, c_bar: float = 0.0) -> float:
    """The larger root sigma of (sigma + gamma k^2)(eps sigma + D k^2 + alpha) = chi Phi'(c_bar) beta rho_bar k^2,
    the growth rate of a cosine perturbation of the uniform state (rho_bar, c_bar) (eps = 0: elliptic)."""
    drive = chi * ceq.phi_prime(c_bar) * ceq.beta * rho_bar * k2
    lam = ceq.D * k2 + ceq.alpha
    if ceq.elliptic:
        return drive / lam - gamma * k2
    eps = ceq.eps  # eps sigma^2 + (gamma k^2 eps + lam) sigma + gamma k^2 lam - drive = 0
    b, c = gamma * k2 * eps + lam, gamma * k2 * lam - drive
    return (-b + math.sqrt(b * b - 4.0 * eps * c)) / (2.0 * eps)


class InstabilityIC(InitialCondition):
    """rho0 = M0 / |Omega| (1 + amp cos(k (x + L))), c0 = c_mean + c_amp cos(k (x + L)), k = m pi / (2L).

    The cell averages of the cosine are the sampled cosine times sin(kh/2) / (kh/2), so both fields lie on
    the discrete Laplacian's eigenvector of mode m; ``c_amp`` (relative to ``amp`` rho_bar) sets the start
    on an eigenvector of the linearised system. Particles: the generic sampler."""

    def __init__(self, name: str, m: int, amp: float = 0.01, c_mean: float = 0.0, c_amp: float = 0.0):
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"instability mode must be an integer >= 1, got {m!r}")
        if not 0 <= amp < 1:
            raise ValueError(f"instability amplitude must be in [0, 1), got {amp}")
        self.name, self.m, self.amp, self.c_mean, self.c_amp = name, m, amp, c_mean, c_amp

    def _mode(self, grid: Grid) -> torch.Tensor:
        """Cell averages of cos(k (x + L)) along x, broadcast over the grid (float64)."""
        k = self.m * math.pi / (2.0 * grid.L)
        faces = grid.faces().to(torch.float64) + grid.L
        avg = (torch.sin(k * faces[1:]) - torch.sin(k * faces[:-1])) / (k * grid.h)
        return avg.reshape(-1, *([1] * (grid.dim - 1))).expand(grid.shape)

    def rho0(self, grid: Grid, M0: float = 1.0) -> torch.Tensor:
        rho_bar = M0 / (2.0 * grid.L) ** grid.dim
        return (rho_bar * (1.0 + self.amp * self._mode(grid))).to(grid.dtype)

    def c0(self, grid: Grid) -> torch.Tensor:
        return (self.c_mean + self.c_amp * self._mode(grid)).to(grid.dtype)


def _pks_blob() -> GaussianMixtureIC:
    ic = GaussianMixtureIC("pks_blob", [GaussianComponent(1.0, (0.0, 0.0, 0.0), 0.1)], _no_c)
    ic.final_time = 0.6  # past T*_box = 0.523 of the 2D critical-mass example (M0 = 0.5): its collapse is in the run
    return ic


register_ic("pks_blob", _pks_blob)
register_ic("pks_ring", lambda: GaussianMixtureIC("pks_ring", [
    GaussianComponent(1.0 / 16, (0.5 * math.cos(2 * math.pi * j / 16), 0.5 * math.sin(2 * math.pi * j / 16), 0.0),
                      0.05) for j in range(16)], _no_c))
register_ic_family("instability", lambda m: InstabilityIC(f"instability:{m}", m))
