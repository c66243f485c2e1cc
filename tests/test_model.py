"""The CNN of the neural interpolator (nsipf_torch/neural/model.py)."""
import numpy as np
import pytest
import torch

from nsipf_torch.neural.model import (UpsampleCNN, load_model, pad_symmetric, save_checkpoint, symmetrise_kernel,
                                      upsample_linear, zero_sum_kernel)


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


def _affine(dim, n, seed):
    """A random affine field a + b.x on n^dim cells (cell units), b of norm ~1, and a random constant."""
    g = torch.Generator().manual_seed(seed)
    a, b = 1.0 + torch.rand((), generator=g, dtype=torch.float64), torch.randn(dim, generator=g, dtype=torch.float64)
    x = torch.meshgrid(*([torch.arange(n, dtype=torch.float64)] * dim), indexing="ij")
    return (a + sum(b[i] * x[i] for i in range(dim))).unsqueeze(0)


@pytest.mark.parametrize("dim", [2, 3])
def test_residual_vanishes_on_affine_fields(dim):
    # Zero-sum, mirror-symmetric first kernels annihilate a + b.x (zero sum and zero first moments), no
    # biases and leaky ReLU(0) = 0 carry the zero through: the output is the linear upsampling, which is
    # exact on an affine field. Float64 round-off of a 3-layer stack of O(1) weights: 1e-12.
    model, s, k = _random_model(dim), 2, 3
    for seed in range(3):
        c = _affine(dim, 7 + 2 * k, seed)
        ref = upsample_linear(c, s, dim)[(slice(None),) + (slice(s * k, -s * k),) * dim]
        torch.testing.assert_close(model.forward_valid(c), ref, rtol=0, atol=1e-12)
    # The same random weights without the projection do add a residual to the same field.
    off = _random_model(dim, affine_exact=False)
    assert float((off.forward_valid(c) - ref).detach().abs().max()) > 1e-3


def test_zero_sum_projection_keeps_the_mirror_symmetry():
    # Both are orthogonal projections that commute (a flip keeps a kernel's mean): applying them again
    # changes nothing, in either order.
    w = torch.randn(5, 1, 3, 3, 3, dtype=torch.float64)
    p = zero_sum_kernel(symmetrise_kernel(w, 3), 3)
    torch.testing.assert_close(symmetrise_kernel(p, 3), p, rtol=0, atol=1e-15)
    torch.testing.assert_close(zero_sum_kernel(p, 3), p, rtol=0, atol=1e-15)
    torch.testing.assert_close(p.sum(dim=(2, 3, 4)), torch.zeros(5, 1, dtype=torch.float64), rtol=0, atol=1e-14)


def test_checkpoint_records_the_projection_and_old_ones_load_without_it(tmp_path):
    model = _random_model(2).float()
    save_checkpoint(tmp_path / "new.pt", model, config={})
    assert load_model(tmp_path / "new.pt")[0].affine_exact is True
    # A checkpoint written before the flag existed (model_args without it) keeps the CNN it was trained as.
    blob = torch.load(tmp_path / "new.pt", weights_only=True)
    del blob["model_args"]["affine_exact"]
    torch.save(blob, tmp_path / "old.pt")
    old, _ = load_model(tmp_path / "old.pt")
    assert old.affine_exact is False
    c = torch.rand(1, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(old(c), _random_model(2, affine_exact=False).float()(c))


def test_bad_args():
    with pytest.raises(ValueError, match="dim"):
        UpsampleCNN(dim=4)
    with pytest.raises(ValueError, match="width"):
        UpsampleCNN(width=0)
    with pytest.raises(ValueError, match="affine_exact"):
        UpsampleCNN(affine_exact=1)
