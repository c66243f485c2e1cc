"""Deposition (paper eq. 32 histogrammed): exact counts and mass, clamping at the walls, CIC folding."""
import itertools

import numpy as np
import pytest
import torch

from nsipf_torch.particles.deposit import cell_index, deposit, deposit_counts
from nsipf_torch.problems.grid import Grid


def _particles_with_walls(B, P, dim, dtype, seed=0):
    """Random particles plus, in member 0, particles exactly on the walls and in the corners."""
    gen = torch.Generator().manual_seed(seed)
    X = (torch.rand(B, P, dim, generator=gen, dtype=torch.float64) * 2 - 1).to(dtype)
    corners = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=dim)), dtype=dtype)
    X[0, : len(corners)] = corners
    X[0, len(corners), :] = 1.0  # +L on every axis
    X[0, len(corners) + 1, 0] = -1.0
    X[-1, -1, :] = torch.nextafter(torch.tensor(1.0, dtype=dtype), torch.tensor(2.0, dtype=dtype))  # beyond +L
    return X


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dim", [2, 3])
def test_counts_and_mass_exact_with_wall_particles(dtype, dim):
    grid = Grid(8, dim=dim, dtype=dtype)
    B, P, M0 = 2, 501, 0.7
    X = _particles_with_walls(B, P, dim, dtype)
    counts = deposit_counts(X, grid)
    assert counts.shape == (B, *grid.shape) and counts.dtype == torch.int64
    # every member keeps exactly its own P particles: nothing leaks into the other member's rows
    assert counts.flatten(1).sum(-1).tolist() == [P, P]
    for b in range(B):
        assert torch.equal(deposit_counts(X[b:b + 1], grid)[0], counts[b])
    # +L lands in the last cell, -L in the first (clamped index)
    top = (grid.N - 1,) * dim
    assert counts[0][top] >= 2
    rho = deposit(X, grid, M0)
    assert rho.dtype == dtype and bool((rho >= 0).all())
    # mass = sum(count) * M0 / P to round-off of the grid dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(grid.integrate(rho).double(), torch.full((B,), M0, dtype=torch.float64), rtol=tol, atol=0)


def test_ngp_matches_numpy_histogramdd():
    grid = Grid(16, dim=3)
    gen = torch.Generator().manual_seed(1)
    X = torch.rand(1, 20_000, 3, generator=gen, dtype=torch.float64) * 2 - 1
    ref, _ = np.histogramdd(X[0].numpy(), bins=[grid.faces().numpy()] * 3)
    assert np.array_equal(deposit_counts(X, grid)[0].numpy(), ref.astype(np.int64))


def test_cell_index_float32_rounding_to_plus_L_is_clamped():
    grid = Grid(64, dtype=torch.float32)
    # float32 positions just below +L round (X + L)/h up to N: must stay in cell N-1
    x = torch.nextafter(torch.tensor(1.0), torch.tensor(0.0))
    X = torch.stack([x, x, x]).reshape(1, 1, 3)
    assert int(cell_index(X, grid)) == grid.N**3 - 1


def _cic_reference(X: np.ndarray, N: int, L: float) -> np.ndarray:
    """Independent CIC: loop over particles and corners, folding outside weights into the wall cells."""
    h = 2 * L / N
    rho = np.zeros((N,) * X.shape[1])
    for x in X:
        s = (x + L) / h - 0.5
        i0 = np.floor(s).astype(int)
        t = s - i0
        for bits in itertools.product((0, 1), repeat=X.shape[1]):
            idx = tuple(min(max(i0[a] + bits[a], 0), N - 1) for a in range(X.shape[1]))
            rho[idx] += np.prod([t[a] if bits[a] else 1 - t[a] for a in range(X.shape[1])])
    return rho


@pytest.mark.parametrize("dim", [2, 3])
def test_cic_matches_reference_and_conserves_mass(dim):
    grid = Grid(8, dim=dim)
    B, P, M0 = 2, 300, 1.0
    X = _particles_with_walls(B, P, dim, torch.float64, seed=2).clamp(-1, 1)
    rho = deposit(X, grid, M0, method="cic")
    for b in range(B):
        ref = _cic_reference(X[b].numpy(), grid.N, grid.L) * M0 / (P * grid.cell_volume)
        np.testing.assert_allclose(rho[b].numpy(), ref, rtol=0, atol=1e-12 * ref.max())  # summation order only
    torch.testing.assert_close(grid.integrate(rho), torch.full((B,), M0, dtype=torch.float64), rtol=1e-13, atol=0)
    assert bool((rho >= 0).all())


def test_cic_particle_at_cell_centre_stays_in_its_cell():
    grid = Grid(8, dim=3)
    X = grid.centres()[[2, 5, 7]].reshape(1, 1, 3)
    rho = deposit(X, grid, 1.0, method="cic")
    assert rho[0, 2, 5, 7] == pytest.approx(1.0 / grid.cell_volume, rel=1e-14) and int((rho > 0).sum()) == 1


def test_unknown_method_is_value_error():
    with pytest.raises(ValueError, match="bogus"):
        deposit(torch.zeros(1, 2, 3), Grid(8), 1.0, method="bogus")
    with pytest.raises(ValueError, match="shape"):
        deposit(torch.zeros(2, 3), Grid(8), 1.0)
