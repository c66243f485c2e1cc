"""NSIPF's neural interpolator (nsipf_torch/neural.py)."""
import pytest
import torch

from nsipf_torch.grid import Grid
from nsipf_torch.interp import TrilinearInterp
from nsipf_torch.model import UpsampleCNN, save_checkpoint
from nsipf_torch.neural import NeuralInterp


def _model(dim, seed=0):
    torch.manual_seed(seed)
    model = UpsampleCNN(dim=dim, width=4, depth=3)
    with torch.no_grad():
        for conv in model.convs:
            conv.weight.normal_(0.0, 0.3)
    return model


def _field_and_particles(grid, B=2, P=300, seed=1):
    g = torch.Generator().manual_seed(seed)
    c = torch.rand(B, *grid.shape, generator=g, dtype=torch.float64) + 0.5
    # Particles clustered in one corner region, so most tiles are empty; a few sit exactly on walls.
    X = -1.0 + 0.6 * torch.rand(B, P, grid.dim, generator=g, dtype=torch.float64)
    X[:, 0] = -1.0
    X[:, 1, 0] = 1.0
    return c, X


@pytest.mark.parametrize("dim,N,tile", [(2, 16, 4), (3, 16, 4)])
def test_tiled_equals_full_grid(dim, N, tile):
    # Tiles cut from the once-padded grid with a halo = receptive radius and run without padding give the
    # full-grid CNN output exactly up to round-off (float64: 1e-12), also with a capacity that only fits the
    # occupied tiles (the rest keep the fallback, where no particle samples).
    grid = Grid(N, dim=dim)
    c, X = _field_and_particles(grid)
    full = NeuralInterp(_model(dim), grid, tile=None)
    tiled_all = NeuralInterp(_model(dim), grid, tile=tile)
    occupied = int((tiled_all._tile_load(X) > 0).sum())
    assert occupied < tiled_all.n_tiles * c.shape[0]  # the test does exercise locality
    tiled = NeuralInterp(_model(dim), grid, tile=tile, capacity=occupied)
    torch.testing.assert_close(tiled.grad_c(c, X), full.grad_c(c, X), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tiled.value(c, X), full.value(c, X), rtol=1e-12, atol=1e-12)
    assert int(tiled.last_overflow) == 0
    # No capacity: the whole grid at once (every tile), the same field.
    torch.testing.assert_close(tiled_all.fine_field(c, X), full.fine_field(c), rtol=1e-12, atol=1e-12)


def test_overflow_is_counted_and_falls_back():
    # A capacity of 1 tile per batch cannot hold the occupied tiles: the overflow is reported, and the
    # result is still finite (linear-upsampling fallback).
    grid = Grid(16, dim=3)
    c, X = _field_and_particles(grid)
    interp = NeuralInterp(_model(3), grid, tile=4, capacity=1)
    g = interp.grad_c(c, X)
    assert int(interp.last_overflow) > 0 and torch.isfinite(g).all()
    # Re-planning outside the step sizes the capacity to the occupancy: no overflow, same as full grid.
    interp.plan_capacity(X, margin=1.0)
    full = NeuralInterp(_model(3), grid, tile=None)
    torch.testing.assert_close(interp.grad_c(c, X), full.grad_c(c, X), rtol=1e-12, atol=1e-12)
    assert int(interp.last_overflow) == 0


@pytest.mark.parametrize("dim", [2, 3])
def test_gradient_is_that_of_the_multilinear_sampling(dim):
    # Independent oracle: the analytic gradient of the multilinear interpolant (TrilinearInterp) of the same
    # fine field. Catches a transposed grid_sample (x, y, z) order: the field is asymmetric. Round-off only.
    grid = Grid(8, dim=dim)
    c, X = _field_and_particles(grid, P=200)
    X = torch.rand(X.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 1.98 - 0.99
    interp = NeuralInterp(_model(dim), grid, tile=None)
    fine = interp.fine_field(c)
    ref = TrilinearInterp(interp.fine_grid)
    torch.testing.assert_close(interp.grad_c(c, X), ref.grad_c(fine, X), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(interp.value(c, X), ref.value(fine, X), rtol=1e-12, atol=1e-12)


def test_grad_c_works_under_no_grad():
    grid = Grid(8, dim=3)
    c, X = _field_and_particles(grid, P=50)
    interp = NeuralInterp(_model(3), grid, tile=4)
    with torch.no_grad():
        g = interp.grad_c(c, X)
    assert g.shape == X.shape and not g.requires_grad


def test_checkpoint_dimension_mismatch(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, _model(2), config={})
    with pytest.raises(ValueError, match="2-D model"):
        NeuralInterp.from_checkpoint(path, Grid(8, dim=3))
    with pytest.raises(ValueError, match="2-D"):
        NeuralInterp(_model(2), Grid(8, dim=3))
    with pytest.raises(ValueError, match="tile"):
        NeuralInterp(_model(3), Grid(8, dim=3), tile=3)
    assert NeuralInterp(_model(3), Grid(12, dim=3)).tile == 4  # "auto": 8 if it divides N, else 4, else none
    assert NeuralInterp(_model(3), Grid(10, dim=3)).tile is None


def test_nsipf_step_conserves_mass_and_signs():
    # Plugged into the SIPF stepper: deposit + exponential update keep the mass exact (round-off) and
    # rho, c >= 0, whatever the interpolator returns.
    from nsipf_torch.deposit import deposit
    from nsipf_torch.initial import get_ic
    from nsipf_torch.sipf import draw_noise, initial_state, noise_generators, sipf_step

    grid = Grid(16, dim=3)
    ic = get_ic("two_blobs")
    state = initial_state(ic, grid, 2000, [1, 2])
    gens = noise_generators([1, 2])
    interp = NeuralInterp(_model(3), grid, tile=8)
    for _ in range(5):
        noise = draw_noise(gens, 2, 2000, 3, grid.dtype, grid.device)
        state = sipf_step(state, noise, grid=grid, dt=1e-3, gamma=0.01, chi=1.0, M0=1.0, interp=interp)
    rho = deposit(state.X, grid, 1.0)
    torch.testing.assert_close(grid.integrate(rho), torch.ones(2, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert (rho >= 0).all() and (state.c >= 0).all() and torch.isfinite(state.X).all()
