"""The CNN of the neural interpolator (nsipf_torch/neural/model.py)."""
import numpy as np
import pytest
import torch

from nsipf_torch.neural.model import UpsampleCNN, pad_symmetric, upsample_linear


def _random_model(dim, seed=0, **kw):
    torch.manual_seed(seed)
    model = UpsampleCNN(dim=dim, **kw).double()
    # Non-zero residual branch, so the properties below are tested on a non-trivial network.
    with torch.no_grad():
        for conv in model.convs:
            conv.weight.normal_(0.0, 0.3)
    return model


@pytest.mark.parametrize("dim,scale", [(2, 2), (3, 2), (2, 3)])
def test_shapes(dim, scale):
    model = _random_model(dim, scale=scale)
    c = torch.rand(2, *(10,) * dim, dtype=torch.float64)
    out = model(c)
    assert out.shape == (2, *(10 * scale,) * dim)
    # forward_valid consumes exactly `halo` cells per side.
    out_v = model.forward_valid(torch.rand(3, *(7 + 2 * model.halo,) * dim, dtype=torch.float64))
    assert out_v.shape == (3, *(7 * scale,) * dim)


def test_pad_symmetric_matches_numpy():
    # Independent oracle: numpy's "symmetric" pad is the reflection about the outer cell faces.
    c = torch.rand(2, 5, 6, 7, dtype=torch.float64)
    ours = pad_symmetric(c, 3, dim=3).numpy()
    ref = np.pad(c.numpy(), ((0, 0), (3, 3), (3, 3), (3, 3)), mode="symmetric")
    np.testing.assert_array_equal(ours, ref)


def test_untrained_model_is_linear_upsampling():
    # The residual's last layer starts at zero: the initial model is exactly bi/trilinear upsampling.
    model = UpsampleCNN(dim=3).double()
    c = torch.rand(1, 8, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(model(c), upsample_linear(c, 2, 3), rtol=0, atol=0)


@pytest.mark.parametrize("dim", [2, 3])
def test_shift_equivariance_away_from_walls(dim):
    # Shifting the input by whole cells shifts the output by s cells wherever neither field sees a wall:
    # a valid convolution stack is exactly translation-equivariant (round-off only, float64).
    model = _random_model(dim)
    n, shift, s, k = 16, 3, model.scale, model.halo
    c = torch.rand(1, *(n,) * dim, dtype=torch.float64)
    c_shift = torch.roll(c, shifts=(shift,) * dim, dims=tuple(range(1, dim + 1)))
    out, out_shift = model(c), model(c_shift)
    lo, hi = s * (shift + k + 1), s * (n - k - 1)  # away from both walls and the roll's seam
    a = out_shift[(0,) + (slice(lo, hi),) * dim]
    b = out[(0,) + (slice(lo - s * shift, hi - s * shift),) * dim]
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dim", [2, 3])
def test_wall_condition(dim):
    # Neumann walls: the model commutes with mirroring the grid about its centre plane (the reflection
    # about the wall used for padding is even), and evaluated on the field mirrored across the wall the
    # output is the mirror image, i.e. the normal derivative of the output vanishes at the wall.
    model = _random_model(dim)
    n = 8
    c = torch.rand(1, *(n,) * dim, dtype=torch.float64)
    out = model(c)
    # Mirror equivariance of the network itself (symmetrised kernels), about every axis.
    for axis in range(1, dim + 1):
        torch.testing.assert_close(model(c.flip(axis)), out.flip(axis), rtol=1e-12, atol=1e-12)
    # The field reflected about its x-wall, on 2n cells: the wall is now an interior plane.
    big = model(torch.cat([c.flip(1), c], dim=1))
    s = model.scale
    torch.testing.assert_close(big[:, s * n:], out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(big[:, : s * n], out.flip(1), rtol=1e-12, atol=1e-12)
    # So the output is even about the wall: the difference across it (its normal derivative) is zero.
    across = big[:, s * n - 1] - big[:, s * n]
    torch.testing.assert_close(across, torch.zeros_like(across), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dim", [2, 3])
def test_scale_equivariance(dim):
    # No biases + leaky ReLU: f(a c) = a f(c) for a > 0 (exact up to round-off).
    model = _random_model(dim)
    c = torch.rand(2, *(8,) * dim, dtype=torch.float64)
    torch.testing.assert_close(model(37.5 * c), 37.5 * model(c), rtol=1e-12, atol=1e-12)


def test_bad_args():
    with pytest.raises(ValueError, match="dim"):
        UpsampleCNN(dim=4)
    with pytest.raises(ValueError, match="width"):
        UpsampleCNN(width=0)
