"""The one finite-volume core (nsipf_torch.solvers.finite_volume): Cartesian d = 1, 2, 3 and radial geometry."""
import math

import pytest
import torch

import nsipf_torch.solvers.finite_volume as fv
from nsipf_torch.solvers.radial import RadialGrid, gaussian_shell_averages


def _planar(N: int, B: int = 2):
    """Fields that depend on x alone: a band of cells left of a slope of c."""
    h = 2.0 / N
    x = -1.0 + (torch.arange(N, dtype=torch.float64) + 0.5) * h
    rho = torch.exp(-((x + 0.4) / 0.15) ** 2).expand(B, N).clone()
    rho = rho / (rho.sum(dim=-1, keepdim=True) * h)
    c = (5.0 * torch.exp(-((x - 0.5) / 0.3) ** 2)).expand(B, N).clone()
    return rho, c, h


def test_one_dimension_conserves_mass_and_stays_positive():
    rho, c, h = _planar(128)
    geom = fv.CartesianGeometry(h, 1)
    gamma, chi = torch.tensor([0.01, 0.003]), torch.tensor([1.0, 3.0])
    mass0 = rho.sum(dim=-1) * h
    for _ in range(40):
        rho, c, _ = fv.advance(rho, c, 2e-3, gamma, chi, geom)
    # zero-flux finite volumes: the mass changes only by round-off (float64, 40 outer steps: << 1e-13)
    assert torch.allclose(rho.sum(dim=-1) * h, mass0, rtol=1e-13, atol=0)
    assert rho.min() >= 0 and c.min() >= 0  # the positivity bound of docs/MODEL.md §6


def test_planar_data_in_two_dimensions_equal_the_one_dimensional_solve():
    # A 2D field constant in y has zero y-fluxes, so each row follows the 1D solve; with the sub-step
    # count fixed (the 2D diffusion bound differs) the two agree to round-off.
    rho1, c1, h = _planar(32)
    rho2 = rho1[:, :, None].expand(2, 32, 32).clone()
    c2 = c1[:, :, None].expand(2, 32, 32).clone()
    for _ in range(10):
        rho1, c1, _ = fv.advance(rho1, c1, 1e-3, 0.01, 1.0, fv.CartesianGeometry(h, 1), n_sub=4)
        rho2, c2, _ = fv.advance(rho2, c2, 1e-3, 0.01, 1.0, fv.CartesianGeometry(h, 2), n_sub=4)
    assert torch.allclose(rho2, rho1[:, :, None].expand_as(rho2), rtol=0, atol=1e-13)
    assert torch.allclose(c2, c1[:, :, None].expand_as(c2), rtol=0, atol=1e-13)


def test_substep_count_meets_the_bound():
    rho, c, h = _planar(64)
    geom = fv.CartesianGeometry(h, 1)
    n = fv.substep_count(c, 1e-2, 0.01, 2.0, geom, rho=rho)
    rate = fv.stability_rate(c, 0.01, 2.0, geom).max().item()
    assert 1e-2 / n * rate <= fv.POSITIVITY_BOUND + 1e-12
    assert 1e-2 / max(n - 1, 1) * rate > fv.POSITIVITY_BOUND or n == 1  # and is the smallest such count


def test_gradient_flows_to_the_coefficients():
    # The core is differentiable in gamma and chi (inference differentiates through it): the autograd
    # derivative of a smooth functional matches a central difference to 1e-6 relative (float64; the
    # difference's own error is O(eps^2) ~ 1e-10 at eps = 1e-5).
    rho0, c0, h = _planar(32, B=1)
    geom = fv.CartesianGeometry(h, 1)
    x = -1.0 + (torch.arange(32, dtype=torch.float64) + 0.5) * h

    def second_moment(chi):
        rho, c = rho0, c0
        for _ in range(5):
            rho, c = fv.substep(rho, c, 2e-3, 0.01, chi, geom)
        return (rho * x**2).sum() * h

    chi = torch.tensor([1.3], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(second_moment(chi), chi)
    eps = 1e-5
    fd_grad = (second_moment(chi.detach() + eps) - second_moment(chi.detach() - eps)) / (2 * eps)
    assert grad.item() == pytest.approx(fd_grad.item(), rel=1e-6)


def test_radial_geometry_conserves_the_shell_mass():
    rg = RadialGrid(64, 1.5, 3)
    rho = gaussian_shell_averages(rg, torch.tensor([0.1, 0.2]))
    c = (10 * torch.exp(-rg.r**2 / 0.1)).expand(2, -1).clone()
    mass0 = (rho * rg.shell_volumes).sum(dim=-1)
    for _ in range(20):
        rho, c, _ = fv.advance(rho, c, 1e-3, 0.01, 1.0, rg.geometry)
    assert torch.allclose((rho * rg.shell_volumes).sum(dim=-1), mass0, rtol=1e-13, atol=0)
    assert rho.min() >= 0
    assert rg.geometry.kappa_D == pytest.approx(1.5) and rg.geometry.kappa_A == pytest.approx(12 / 7)
    assert math.isclose(fv.CartesianGeometry(0.1, 3).kappa_A, 1.0)
