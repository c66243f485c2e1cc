"""The shared error metric rel_l2 and block averaging."""
import pytest
import torch

from nsipf_torch.metrics import block_average, rel_l2


def test_block_average_preserves_mean_and_blocks():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 32, 32, 32, generator=gen, dtype=torch.float64)
    coarse = block_average(a, 16, 3)
    assert coarse.shape == (2, 16, 16, 16)
    assert torch.allclose(coarse.mean(dim=(1, 2, 3)), a.mean(dim=(1, 2, 3)), rtol=1e-14)
    # one block by hand: cells 0..1 along each axis
    assert float(coarse[1, 0, 0, 0]) == pytest.approx(float(a[1, :2, :2, :2].mean()), rel=1e-14)


def test_rel_l2_values():
    gen = torch.Generator().manual_seed(1)
    b = torch.rand(3, 32, 32, generator=gen, dtype=torch.float64) + 0.1
    assert torch.all(rel_l2(b, b, dim=2) == 0)
    assert torch.allclose(rel_l2(2 * b, b, dim=2), torch.ones(3, dtype=torch.float64), rtol=1e-14)
    # different resolutions compare through the coarse grid: a 64^2 field made of 2x2 copies of b
    fine = b.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)
    assert torch.all(rel_l2(fine, b, dim=2) < 1e-15)


def test_rel_l2_rejects_incompatible_grid():
    with pytest.raises(ValueError, match="multiple"):
        rel_l2(torch.ones(24, 24, 24), torch.ones(24, 24, 24))
    with pytest.raises(ValueError, match="dim"):
        rel_l2(torch.ones(16, 16), torch.ones(16, 16), dim=4)
