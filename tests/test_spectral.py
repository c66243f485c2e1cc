"""The spectral field solver of the Neumann box (nsipf_torch.solvers.spectral, issue 20).

Tolerances are round-off: the DCT-II diagonalises the cell-centred Neumann Laplacian exactly, so every
check below is an identity of the discrete operators, met to a small multiple of machine epsilon times
the size of the data (measured margins about 100x).
"""
import math

import numpy as np
import pytest
import scipy.fft
import torch

from nsipf_torch.problems.keller_segel import discrete_k2
from nsipf_torch.solvers import spectral
from nsipf_torch.solvers.c_equation import CEquation
from nsipf_torch.solvers.stencils import divergence, face_differences


def _random(shape, seed=0):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("N", [4, 5, 8, 9, 16])
def test_dct_matches_scipy(N):
    x = _random((3, N)) - 0.5
    assert np.abs(spectral.dct(x).numpy() - scipy.fft.dct(x.numpy(), type=2)).max() < 1e-13 * N
    assert np.abs(spectral.idct(x).numpy() - scipy.fft.idct(x.numpy(), type=2)).max() < 1e-14 * N
    assert float((spectral.idct(spectral.dct(x)) - x).abs().max()) < 1e-14


def test_dctn_matches_scipy_in_3d():
    x = _random((2, 6, 7, 8))
    ref = scipy.fft.dctn(x.numpy(), type=2, axes=(1, 2, 3))
    assert np.abs(spectral.dctn(x, 3).numpy() - ref).max() < 1e-12 * np.abs(ref).max()
    assert float((spectral.idctn(spectral.dctn(x, 3), 3) - x).abs().max()) < 1e-14


def _neumann_laplacian(c, dim, h):
    """The FV Laplacian of the solvers: face differences, zero flux at the walls."""
    return sum(divergence(face_differences(c, a) / h, a, h) for a in range(-dim, 0))


@pytest.mark.parametrize("dim,N", [(1, 12), (2, 16), (3, 8)])
def test_symbol_is_the_fv_laplacian_of_cosine_modes(dim, N):
    """Each cosine mode cos(pi m (i + 1/2) / N) is an eigenvector of the FV Laplacian with eigenvalue -k_h^2."""
    L, h = 1.0, 2.0 / N
    k2 = spectral.symbol(N, dim, h, torch.device("cpu"), torch.float64)
    i = torch.arange(N, dtype=torch.float64)
    m = (1, 2, 3)[:dim]
    mode = torch.ones((N,) * dim, dtype=torch.float64)
    for a in range(dim):
        shape = [1] * dim
        shape[a] = N
        mode = mode * torch.cos(math.pi * m[a] * (i + 0.5) / N).reshape(shape)
    lap = _neumann_laplacian(mode[None], dim, h)[0]
    expected = sum(discrete_k2(m[a], N, L) for a in range(dim))
    assert float(k2[m]) == pytest.approx(expected, rel=1e-13)
    assert float((lap + expected * mode).abs().max()) < 1e-11 * expected


@pytest.mark.parametrize("dim,N,alpha", [(2, 16, 0.0), (2, 16, 0.7), (3, 8, 0.0)])
def test_elliptic_solve_inverts_the_fv_operator(dim, N, alpha):
    """(alpha - D Delta_h) c = beta rho, and with alpha = 0 -D Delta_h c = beta (rho - mean) with mean c = 0."""
    h, D, beta = 2.0 / N, 0.3, 2.0
    rho = _random((2,) + (N,) * dim, seed=1)
    c = spectral.elliptic_solve(rho, dim, h, D, alpha, beta)
    lhs = alpha * c - D * _neumann_laplacian(c, dim, h)
    axes = tuple(range(-dim, 0))
    rhs = beta * (rho - rho.mean(dim=axes, keepdim=True)) if alpha == 0 else beta * rho
    assert float((lhs - rhs).abs().max()) < 1e-11 * float(rhs.abs().max())
    if alpha == 0:
        assert float(c.mean(dim=axes).abs().max()) < 1e-14


def test_parabolic_step_is_exact_for_a_cosine_mode_and_a_semigroup():
    """For rho frozen, one mode obeys c' = -lam c + beta rho exactly; two steps tau/2 equal one step tau; a
    long step is the elliptic solve."""
    N, dim, D, alpha, beta, tau = 16, 2, 0.5, 0.2, 1.5, 0.37
    h = 2.0 / N
    i = torch.arange(N, dtype=torch.float64)
    mode = torch.cos(math.pi * 2 * (i + 0.5) / N).reshape(-1, 1).expand(N, N)[None]
    lam = alpha + D * discrete_k2(2, N, 1.0)
    c0, rho = 0.3 * mode, 0.8 * mode
    c = spectral.parabolic_step(c0, rho, tau, dim, h, D, alpha, beta)
    expected = (0.3 * math.exp(-lam * tau) + beta * 0.8 * (1 - math.exp(-lam * tau)) / lam) * mode
    assert float((c - expected).abs().max()) < 1e-14
    rho, c0 = _random((1, N, N), 2), _random((1, N, N), 3)
    half = spectral.parabolic_step(c0, rho, tau / 2, dim, h, D, alpha, beta)
    twice = spectral.parabolic_step(half, rho, tau / 2, dim, h, D, alpha, beta)
    once = spectral.parabolic_step(c0, rho, tau, dim, h, D, alpha, beta)
    assert float((twice - once).abs().max()) < 1e-13
    far = spectral.parabolic_step(c0, rho, 1e4, dim, h, D, alpha, beta)
    assert float((far - spectral.elliptic_solve(rho, dim, h, D, alpha, beta)).abs().max()) < 1e-12


def test_parabolic_c_step_stays_nonnegative_for_any_dt():
    """The exact step keeps c >= 0 for rho >= 0 at any dt (round-off negatives clamped before Phi)."""
    ceq = CEquation("parabolic", eps=1e-3, D=1.0, alpha=0.0)
    rho = torch.zeros(1, 32, 32, dtype=torch.float32)
    rho[0, 3, 5] = 1e4  # a spike: the worst case for a non-exact step
    c = ceq.step(torch.zeros_like(rho), rho, 10.0, 2.0 / 32, 2)
    assert bool(torch.isfinite(c).all()) and float(c.min()) >= 0.0
