"""Classical interpolators: cubic B-spline (classical SIPF) and trilinear, with Neumann walls on the faces."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import map_coordinates

from nsipf_torch.problems.grid import Grid
from nsipf_torch.particles.interp import SplineInterp, TrilinearInterp
from nsipf_torch.methods import INTERPS, make_interp


def _random_points(B, P, dim, seed, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    X = (torch.rand(B, P, dim, generator=gen, dtype=torch.float64) * 2 - 1) * scale
    if scale == 1.0:  # include walls and a corner
        X[0, 0] = 1.0
        X[0, 1] = -1.0
        X[0, 2, 0] = 1.0
    return X


@pytest.mark.parametrize("dim", [2, 3])
def test_spline_matches_scipy_map_coordinates_reflect(dim):
    # N >= 16: scipy's own prefilter is exact there (at N = 8 it deviates from its data by ~3e-10)
    grid = Grid(16, dim=dim)
    gen = torch.Generator().manual_seed(0)
    c = torch.rand(2, *grid.shape, generator=gen, dtype=torch.float64)
    X = _random_points(2, 400, dim, seed=1)
    got = SplineInterp(grid, chunk=128).value(c, X)
    for b in range(2):
        coords = ((X[b] + grid.L) / grid.h - 0.5).numpy().T  # cell centre i at index coordinate i
        ref = map_coordinates(c[b].numpy(), coords, order=3, mode="reflect")
        np.testing.assert_allclose(got[b].numpy(), ref, rtol=0, atol=1e-10)


def test_spline_interpolates_and_gradient_matches_finite_differences():
    grid = Grid(16, dim=3)
    gen = torch.Generator().manual_seed(2)
    c = torch.rand(1, *grid.shape, generator=gen, dtype=torch.float64)
    sp = SplineInterp(grid)
    centres = torch.stack([m.reshape(-1) for m in grid.mesh()], -1)[None]
    torch.testing.assert_close(sp.value(c, centres), c.reshape(1, -1), rtol=0, atol=1e-13)
    X = _random_points(1, 300, 3, seed=3, scale=0.97)
    g = sp.grad_c(c, X)
    eps = 1e-5
    for a in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[a] = eps
        fd = (sp.value(c, X + e) - sp.value(c, X - e)) / (2 * eps)
        # central difference error ~ eps^2 |c'''| / 6 with |c'''| <~ 1/h^3 ~ 500, plus round-off 1e-16/eps
        torch.testing.assert_close(g[..., a], fd, rtol=0, atol=1e-7)
    # Neumann walls: zero normal derivative on the faces
    Xw = torch.tensor([[[1.0, 0.1, -0.3], [-1.0, 0.4, 0.2]]], dtype=torch.float64)
    assert float(sp.grad_c(c, Xw)[0, :, 0].abs().max()) < 1e-12


def _neumann_field(X):
    """Smooth, non-separable, with all odd derivatives zero on the walls: its reflection is smooth."""
    x, y, z = X.unbind(-1)
    pi = math.pi
    return torch.cos(pi * x) * torch.cos(2 * pi * y) * torch.cos(pi * z) + 0.3 * torch.cos(2 * pi * x) * torch.cos(pi * z)


def test_spline_value_converges_at_fourth_order():
    X = _random_points(1, 2000, 3, seed=4, scale=0.5)  # interior
    errs = []
    Ns = [16, 32, 64]
    for N in Ns:
        grid = Grid(N, dim=3)
        c = _neumann_field(torch.stack(grid.mesh(), -1))[None]
        errs.append(float((SplineInterp(grid).value(c, X) - _neumann_field(X)).abs().max()))
    slopes = [math.log2(errs[i] / errs[i + 1]) for i in range(len(Ns) - 1)]
    # cubic interpolation: O(h^4); measured slopes 4.10, 4.13 (pre-asymptotic 4.6 from N = 8)
    assert all(3.7 < s < 4.3 for s in slopes), (errs, slopes)


def test_trilinear_exact_for_linear_fields_away_from_walls():
    grid = Grid(16, dim=3)
    a = torch.tensor([0.3, -1.2, 0.7], dtype=torch.float64)
    c = (torch.stack(grid.mesh(), -1) @ a + 0.5)[None]
    # between the outermost cell centres the interpolant is the linear field itself
    X = _random_points(1, 500, 3, seed=5, scale=1 - grid.h / 2 - 1e-9)
    tl = TrilinearInterp(grid)
    torch.testing.assert_close(tl.value(c, X), (X @ a + 0.5), rtol=0, atol=1e-13)
    torch.testing.assert_close(tl.grad_c(c, X), a.expand(1, 500, 3), rtol=0, atol=1e-12)
    # beyond the outermost centres (Neumann, reflected field) that component of the gradient is 0
    Xw = torch.tensor([[[0.99, 0.0, 0.0], [0.0, -0.99, 0.0]]], dtype=torch.float64)
    g = tl.grad_c(c, Xw)
    assert g[0, 0, 0] == 0 and g[0, 1, 1] == 0 and g[0, 0, 1] == pytest.approx(-1.2, abs=1e-12)


@pytest.mark.parametrize("dim", [2, 3])
def test_trilinear_matches_autograd_through_grid_sample_on_asymmetric_field(dim):
    """Independent check: grid_sample wants (x, y, z) = (W, H, D), i.e. the reversed [i_x, i_y, i_z] order."""
    grid = Grid(12, dim=dim)
    gen = torch.Generator().manual_seed(6)
    mesh = grid.mesh()
    # asymmetric: different slopes and curvature per axis, plus noise, so a transposed gradient fails
    c = (sum((k + 1) * m + 0.3 * (k + 1) * m**2 for k, m in enumerate(mesh))
         + 0.2 * torch.rand(grid.shape, generator=gen, dtype=torch.float64))[None]
    X = _random_points(1, 600, dim, seed=7, scale=0.999)
    Xg = X.clone().requires_grad_(True)
    s = (Xg + grid.L) / grid.h - 0.5
    u = 2 * s / (grid.N - 1) - 1  # align_corners=True: -1 and 1 at the outermost centres
    loc = u.flip(-1).reshape(1, *(1,) * (dim - 1), -1, dim)
    val = F.grid_sample(c[:, None], loc, mode="bilinear", padding_mode="border", align_corners=True).reshape(1, -1)
    (g_ref,) = torch.autograd.grad(val.sum(), Xg)
    tl = TrilinearInterp(grid)
    torch.testing.assert_close(tl.value(c, X), val.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(tl.grad_c(c, X), g_ref, rtol=0, atol=1e-10)
    # the permuted-axes gradient really differs on this field (the test has teeth)
    assert float((tl.grad_c(c, X) - g_ref.flip(-1)).abs().max()) > 0.1


def test_registry_and_batch_independence():
    assert set(INTERPS) >= {"trilinear", "spline"}
    with pytest.raises(ValueError, match="nope"):
        make_interp("nope", Grid(8))
    grid = Grid(16, dim=3)
    gen = torch.Generator().manual_seed(8)
    c = torch.rand(3, *grid.shape, generator=gen, dtype=torch.float64)
    X = _random_points(3, 200, 3, seed=9)
    for name in ("trilinear", "spline"):
        it = make_interp(name, grid)
        g = it.grad_c(c, X)
        for b in range(3):
            assert torch.equal(it.grad_c(c[b:b + 1], X[b:b + 1])[0], g[b]), name


def test_one_factory_makes_every_interpolator():
    # The classical ones, NSIPF's neural one (the shipped checkpoint, options passed through) and a
    # registered newcomer all come from make_interp; a bad name or option is a ValueError naming it.
    from nsipf_torch.methods import INTERPS, make_interp, register_interp
    from nsipf_torch.neural.interp import NeuralInterp
    grid = Grid(16, dim=3, dtype=torch.float32)
    assert isinstance(make_interp("spline", grid, chunk=128), SplineInterp)
    neural = make_interp("neural", grid, precision="bf16", tile=4)
    assert isinstance(neural, NeuralInterp) and neural.precision == "bf16" and neural.tile == 4
    register_interp("trilinear-twin", TrilinearInterp)
    try:
        assert isinstance(make_interp("trilinear-twin", grid), TrilinearInterp)
    finally:
        del INTERPS["trilinear-twin"]
    with pytest.raises(ValueError, match="'cubic'"):
        make_interp("cubic", grid)
    with pytest.raises(ValueError, match="spline"):
        make_interp("spline", grid, order=3)
