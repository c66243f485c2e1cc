"""Reflection at the walls, the Euler-Maruyama move (paper eq. 34) and the initial particle states."""
import math

import numpy as np
import pytest
import torch

from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.initial import get_ic, member_generator
from nsipf_torch.particles.move import em_move, initial_particles, reflect


def _reflect_by_bouncing(x: np.ndarray, L: float) -> np.ndarray:
    """Independent reference: bounce off the walls one reflection at a time until inside."""
    x = x.copy()
    for _ in range(1000):
        hi, lo = x > L, x < -L
        if not (hi.any() or lo.any()):
            return x
        x[hi] = 2 * L - x[hi]
        x[lo] = -2 * L - x[lo]
    raise AssertionError("bouncing did not terminate")


@pytest.mark.parametrize("L", [1.0, 0.7])
def test_reflect_long_steps_match_bouncing(L):
    gen = torch.Generator().manual_seed(3)
    # displacements up to 25 box widths: many reflections per step
    X = (torch.rand(4000, 3, generator=gen, dtype=torch.float64) - 0.5) * 100 * L
    got = reflect(X, L).numpy()
    ref = _reflect_by_bouncing(X.numpy(), L)
    # tolerance: the fold and the bounce round differently; a few ulps of 25 L
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * 100 * L)
    assert np.all(np.abs(got) <= L)


def test_reflect_walls_and_corners_exact():
    L = 1.0
    X = torch.tensor([[1.0, -1.0, 1.0], [-1.0, -1.0, -1.0], [1.5, -1.25, 3.0], [5.0, -5.0, 0.25], [-3.0, 4.0, 9.0]],
                     dtype=torch.float64)
    # exact by hand: on a wall stays; 1.5 -> 0.5, -1.25 -> -0.75, 3 -> -1 (reflect at 1 then -1), 5 -> 1, -5 -> -1,
    # -3 -> 1, 4 -> 0, 9 -> 1
    expect = torch.tensor([[1.0, -1.0, 1.0], [-1.0, -1.0, -1.0], [0.5, -0.75, -1.0], [1.0, -1.0, 0.25],
                           [1.0, 0.0, 1.0]], dtype=torch.float64)
    assert torch.equal(reflect(X, L), expect)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reflect_stays_inside_after_roundoff(dtype):
    gen = torch.Generator().manual_seed(5)
    X = (torch.randn(200_000, 3, generator=gen, dtype=torch.float64) * 3).to(dtype)
    # include values a few ulps either side of the walls
    wall = torch.tensor([1.0, -1.0], dtype=dtype)
    near = torch.cat([torch.nextafter(wall, wall * 2), torch.nextafter(wall, wall * 0), wall])
    X[: near.numel(), 0] = near
    Y = reflect(X, 1.0)
    assert Y.dtype == dtype and bool((Y.abs() <= 1.0).all())


def test_em_move_per_member_parameters_match_scalars():
    gen = torch.Generator().manual_seed(7)
    B, P, d = 3, 50, 3
    X = torch.rand(B, P, d, generator=gen, dtype=torch.float64) * 1.8 - 0.9
    g = torch.randn(B, P, d, generator=gen, dtype=torch.float64)
    xi = torch.randn(B, P, d, generator=gen, dtype=torch.float64)
    gamma = torch.tensor([0.01, 0.02, 0.0], dtype=torch.float64)
    chi = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    Y = em_move(X, g, xi, 1e-3, gamma, chi)
    for b in range(B):
        Yb = em_move(X[b:b + 1], g[b:b + 1], xi[b:b + 1], 1e-3, float(gamma[b]), float(chi[b]))
        torch.testing.assert_close(Y[b:b + 1], Yb, rtol=0, atol=1e-15)  # same formula, round-off only
    # paper eq. 34 by hand for an interior particle of member 1 (no reflection involved at these sizes)
    x = X[1, 0] + 0.5 * g[1, 0] * 1e-3 + math.sqrt(2 * 0.02 * 1e-3) * xi[1, 0]
    if bool((x.abs() < 1).all()):
        torch.testing.assert_close(Y[1, 0], x, rtol=0, atol=1e-15)


def test_em_move_rejects_wrong_parameter_shape():
    X = torch.zeros(2, 4, 3)
    with pytest.raises(ValueError, match="per-member"):
        em_move(X, X, X, 1e-3, torch.ones(3), 1.0)


def test_initial_particles_one_stream_per_member():
    grid = Grid(16, dtype=torch.float32)
    ic = get_ic("two_blobs")
    X = initial_particles(ic, grid, 1000, [11, 12])
    assert X.shape == (2, 1000, 3) and X.dtype == torch.float32
    assert bool((X.abs() <= 1).all())
    for b, seed in enumerate([11, 12]):
        ref = ic.sample(1000, member_generator(seed), grid.to(dtype=torch.float64))
        assert torch.equal(X[b], ref.to(torch.float32))
    # a member's sample depends only on its seed, not on its batch companions
    assert torch.equal(initial_particles(ic, grid, 1000, [12])[0], X[1])
