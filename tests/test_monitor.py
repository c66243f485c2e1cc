"""interp_gap: the relative difference of the NSIPF and cubic-spline drifts at a particle subsample."""
import pytest
import torch

from nsipf_torch.grid import Grid
from nsipf_torch.interp import make_interp
from nsipf_torch.monitor import InterpGap, interp_gap


def _particles(dim, B=2, P=4096, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, P, dim, generator=g, dtype=torch.float64) * 1.4 - 0.7


@pytest.mark.parametrize("dim,N", [(3, 32), (2, 64)])
def test_gap_small_on_a_linear_field_large_on_a_rough_one(dim, N):
    """A positive linear c: the spline is exact (up to the wall's mirror, 1.5e-4 here) so the gap is the
    CNN's own error, measured 0.010 (3D, N = 32) and 0.012 (2D, N = 64; bound 0.03: the CNN multiplies
    smooth positive fields by about 1.001 and errs more within 3 cells of a wall). A field rough at the
    grid scale (a Gaussian times exp(-U), U uniform per cell, as particles' holes make it): the two
    interpolators differ by design, measured 0.58 / 0.45 (bound 0.3)."""
    grid = Grid(N, dim)
    mon = InterpGap(grid, make_interp("neural", grid))
    X = _particles(dim)
    mesh = grid.mesh()
    linear = (0.7 * mesh[0] - 0.3 * mesh[1] + 2.0).expand(2, *grid.shape).contiguous()
    g = torch.Generator().manual_seed(1)
    smooth = 5.0 * torch.exp(-sum(x**2 for x in mesh) / (2 * 0.3**2))
    rough = smooth * torch.exp(-torch.rand(2, *grid.shape, generator=g, dtype=torch.float64))
    gap_linear, gap_rough = mon(linear, X), mon(rough, X)
    assert gap_linear.shape == (2,) and torch.all(gap_linear > 0) and torch.all(gap_linear < 0.03), gap_linear
    assert torch.all(gap_rough > 0.3), gap_rough
    # the gap on the linear field is the CNN's error: the spline matches the exact gradient there
    exact = torch.tensor([0.7, -0.3] + [0.0] * (dim - 2), dtype=torch.float64).expand(2, 4096, dim)
    spline_err = (mon.spline.grad_c(linear, X) - exact).norm() / exact.norm()
    assert float(spline_err) < 1e-3


def test_gap_is_zero_for_identical_interpolators_and_uses_the_first_n():
    """Negative control: the spline against itself gives 0; only the first n particles count."""
    grid = Grid(16, 3)
    spline = make_interp("spline", grid)
    c = torch.rand(1, 16, 16, 16, dtype=torch.float64) + 1.0
    X = _particles(3, B=1, P=300)
    assert float(interp_gap(c, X, spline, grid, n=100)) == 0.0
    nn = make_interp("neural", grid)
    moved = X.clone()
    moved[:, 100:] = 0.0  # particles beyond the subsample do not enter
    assert torch.equal(interp_gap(c, X, nn, grid, n=100), interp_gap(c, moved, nn, grid, n=100))
    with pytest.raises(ValueError, match="subsample"):
        InterpGap(grid, nn, n=0)


def test_step_plan_and_overflow_are_left_as_they_were():
    grid = Grid(32, 3)
    nn = make_interp("neural", grid)
    X = _particles(3, B=1, P=20_000)
    c = torch.rand(1, 32, 32, 32, dtype=torch.float64) + 1.0
    nn.plan_capacity(X, margin=1.0)
    nn.grad_c(c, X)
    before = (nn.capacity, int(nn.last_overflow))
    InterpGap(grid, nn, n=64)(c, X)
    assert (nn.capacity, int(nn.last_overflow)) == before
