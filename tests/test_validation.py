"""Analytic references and order fits (nsipf_torch/problems/exact.py): the Neumann heat kernel by images
against an independent cosine series, its mass and no-flux walls, and the order estimators on synthetic
sequences of known order."""
import math

import numpy as np
import pytest
import torch

from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.initial import get_ic
from nsipf_torch.problems.exact import (mean_r2, neumann_gaussian_1d, neumann_gaussian_cells, neumann_gaussian_cells_1d,
                                    neumann_gaussian_density, observed_orders, richardson_order, ring_fraction)


# ------------------------------------------------------------------------------------------ Neumann heat kernel

def test_neumann_kernel_matches_cosine_series():
    # Independent solution: the Neumann eigenfunction (cosine) series of the heat equation on [-L, L], with
    # the initial data G(x; x0, sigma) + G(x; 2L - x0, sigma) (its images beyond are < 1e-30 here) projected
    # by 400-node Gauss-Legendre quadrature. Measured agreement 1e-13; assert 1e-10.
    L, gamma, t, x0, sigma = 1.0, 0.1, 0.2, 0.7, 0.2
    nodes, weights = np.polynomial.legendre.leggauss(400)
    g = lambda x, y: np.exp(-((x - y) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    f0 = g(nodes, x0) + g(nodes, 2 * L - x0)
    xs = np.linspace(-1, 1, 7)
    series = np.zeros_like(xs)
    for k in range(80):
        kk = k * math.pi / (2 * L)
        a = (weights * f0 * np.cos(kk * (nodes + L))).sum() / (2 * L if k == 0 else L)
        series += a * math.exp(-gamma * kk**2 * t) * np.cos(kk * (xs + L))
    images = neumann_gaussian_1d(torch.from_numpy(xs), x0, sigma, t, gamma, L).numpy()
    print(f"\nimage sum vs cosine series: max diff {np.abs(series - images).max():.2e}")
    assert np.abs(series - images).max() < 1e-10


def test_neumann_kernel_is_normalised_and_matches_point_values():
    # Exact identity (round-off): the cell masses sum to 1. The cell average of a smooth field equals its
    # midpoint value to O(h^2): measured 1.25e-3 of the peak at h = 1/32; assert 2e-3 (margin).
    faces = torch.linspace(-1, 1, 513, dtype=torch.float64)
    mass = neumann_gaussian_cells_1d(faces, 0.7, 0.2, 0.3, 0.1)
    assert abs(mass.sum().item() - 1.0) < 1e-14
    grid = Grid(64, dim=2)
    cells = neumann_gaussian_cells(grid, (0.6, -0.5), 0.15, 0.2, 0.1)
    x = torch.stack(grid.mesh(), dim=-1)
    points = neumann_gaussian_density(x, (0.6, -0.5), 0.15, 0.2, 0.1)
    assert (cells - points).abs().max() / points.max() < 2e-3


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("x0,sigma,t,gamma", [(0.9, 0.1, 0.0, 0.0), (-0.7, 0.2, 0.3, 0.5), (0.2, 0.5, 4.0, 1.0)])
def test_images_integrate_to_the_mass(dim, x0, sigma, t, gamma):
    # Theory: the even 4L-periodic extension keeps all of the Gaussian's mass in the box, and the cell masses
    # are erf differences that telescope, so the grid integral is M0 to round-off (assert 1e-13) - also for
    # a kernel three times wider than the box (s = 3 > L: many images; their count must cover the tail).
    grid = Grid(8, dim=dim, L=1.0)
    rho = neumann_gaussian_cells(grid, (x0, -x0, 0.5 * x0)[:dim], sigma, t, gamma, M0=0.6)
    assert rho.shape == grid.shape
    assert abs(grid.integrate(rho[None]).item() - 0.6) < 1e-13
    faces = torch.linspace(-2.0, 2.0, 5, dtype=torch.float64)
    assert abs(neumann_gaussian_cells_1d(faces, x0, sigma, t, gamma, L=2.0).sum().item() - 1) < 1e-14


@pytest.mark.parametrize("x0,sigma,t", [(0.8, 0.1, 0.05), (-0.7, 0.3, 0.5), (0.0, 1.0, 2.0)])
def test_no_flux_at_the_walls(x0, sigma, t):
    # Theory: the image sum is even about x = +-L, so d rho/dx = 0 on both walls (the Neumann condition);
    # autograd through the image sum gives round-off, measured <= 2.2e-16 of max rho / L (assert 1e-14).
    # The density is also even about the wall: rho(L + e) = rho(L - e).
    L = 1.0
    x = torch.tensor([-L, L], dtype=torch.float64, requires_grad=True)
    rho = neumann_gaussian_1d(x, x0, sigma, t, 0.5, L)
    (slope,) = torch.autograd.grad(rho.sum(), x)
    peak = neumann_gaussian_1d(torch.linspace(-L, L, 401, dtype=torch.float64), x0, sigma, t, 0.5, L).max()
    assert slope.abs().max() < 1e-14 * peak / L
    e = torch.tensor([0.05, 0.2, 0.6], dtype=torch.float64)
    for wall in (-L, L):
        inside, outside = (neumann_gaussian_1d(wall + s * e, x0, sigma, t, 0.5, L) for s in (-1, 1))
        assert torch.allclose(inside, outside, rtol=1e-13, atol=0)


def test_density_is_the_product_of_one_dimensional_kernels():
    # Definition: d-D solution = M0 x product over the axes (separable Neumann heat kernel); round-off.
    x = torch.tensor([[0.1, -0.9, 0.4], [0.95, 0.0, -0.3]], dtype=torch.float64)
    centre, args = (0.6, -0.5, 0.2), (0.15, 0.2, 0.1)
    want = 2.5 * math.prod(neumann_gaussian_1d(x[:, a], centre[a], *args) for a in range(3))
    assert torch.allclose(neumann_gaussian_density(x, centre, *args, M0=2.5), want, rtol=1e-15, atol=0)



@pytest.mark.parametrize("dim", [2, 3])
def test_image_sum_equals_the_canonical_blob(dim):
    # The module docstring: for sigma << L the image-sum data and the truncated Gaussian of
    # nsipf_torch.problems.initial (blob: centre 0, sigma = 0.1, M0 = 1) agree; the images beyond the walls weigh
    # exp(-50) ~ 2e-22 of the peak, so round-off only (measured 1.4e-15 of the peak at N = 32; assert 1e-14).
    grid = Grid(32, dim=dim)
    blob = get_ic("blob").rho0(grid)
    images = neumann_gaussian_cells(grid, (0.0,) * dim, 0.1, 0.0, 0.0)
    assert ((blob - images).abs().max() / blob.max()).item() < 1e-14

# ------------------------------------------------------------------------------------------ order fits

@pytest.mark.parametrize("hs", [(4.0, 2.0, 1.0), (1 / 32, 1 / 64, 1 / 96), (1.0, 0.7, 0.3)])
@pytest.mark.parametrize("p", [0.5, 1.3, 2.0, 4.0, 7.5])
def test_richardson_order_recovers_a_known_order(hs, p):
    # Synthetic u_h = u + C h^p (u = 0: only the differences enter): they fix p, and 100 bisections pin it
    # to round-off (measured <= 2.6e-15; assert 1e-12), for ratio-2 and uneven spacings.
    u = [3.7 * h**p for h in hs]
    assert abs(richardson_order(u[0] - u[1], u[1] - u[2], hs) - p) < 1e-12
    if hs == (4.0, 2.0, 1.0):  # ratio 2: log2 of the ratio of the differences (the docstring's special case)
        assert abs(richardson_order(u[0] - u[1], u[1] - u[2]) - math.log2((u[0] - u[1]) / (u[1] - u[2]))) < 1e-12


def test_richardson_order_clamps_and_refuses_bad_spacings():
    assert richardson_order(1.0, 1e-9) == 8.0 and richardson_order(1.0, 1.5) == 0.05  # outside [0.05, 8]
    with pytest.raises(ValueError, match="grid spacings must decrease"):
        richardson_order(1.0, 0.5, (1.0, 2.0, 4.0))


def test_observed_orders_recover_a_known_slope():
    # errors = C h^1.7 exactly: the least-squares slope and every pairwise order are 1.7 to round-off.
    hs = [0.1, 0.05, 0.025, 0.0125]
    slope, pairs = observed_orders(hs, [2.0 * h**1.7 for h in hs])
    assert abs(slope - 1.7) < 1e-12 and len(pairs) == 3 and max(abs(q - 1.7) for q in pairs) < 1e-12
    with pytest.raises(ValueError, match="at least two grids"):
        observed_orders([0.1], [0.2])


# ------------------------------------------------------------------------------------------ behaviour figures

@pytest.mark.parametrize("dim", [2, 3])
def test_mean_r2_of_a_centred_gaussian(dim):
    # Theory: with exact cell averages, sum m_i x_i^2 = int rho x^2 + h^2/12 per axis + O(h^4) (expand
    # rho x^2 about the centre; int 2 x rho' = -2 int rho), so mean |x|^2 = d (s^2 + h^2/12) + O(h^4).
    # Measured at s = 0.2: 2.6e-6 relative at N = 32; assert 1e-5, and the O(h^2) term is really there.
    grid = Grid(32, dim=dim)
    s = 0.2
    rho = neumann_gaussian_cells(grid, (0.0,) * dim, s, 0.0, 0.0)[None]
    got = mean_r2(rho, grid).item()
    assert abs(got / (dim * (s**2 + grid.h**2 / 12)) - 1) < 1e-5
    assert abs(got / (dim * s**2) - 1) > 5e-3


def test_ring_fraction():
    # All the mass in the cell whose centre is (0.375, -0.025[, -0.025]): within 0.12 of the ring R = 0.35,
    # fraction 1; in the centre cell, 0. A uniform density in 2D: the annulus' area share 4 pi R w / (2L)^2
    # = 0.1319, up to the O(h) lattice count of its cells: measured 0.27% off at N = 128, assert 1%.
    for dim in (2, 3):
        grid = Grid(40, dim=dim)
        rho = torch.zeros(2, *grid.shape, dtype=torch.float64)
        rho[0][(27,) + (19,) * (dim - 1)] = 1.0
        rho[1][(19,) * dim] = 1.0
        assert ring_fraction(rho, grid).tolist() == [1.0, 0.0]
    grid = Grid(128, dim=2)
    uniform = torch.ones(1, *grid.shape, dtype=torch.float64)
    assert abs(ring_fraction(uniform, grid).item() / (4 * math.pi * 0.35 * 0.12 / 4) - 1) < 0.01
