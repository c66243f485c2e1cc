"""The finite-volume stencils along one axis (nsipf_torch/solvers/stencils.py), each against an independent
element-by-element NumPy version and the properties the module docstring claims."""
import numpy as np
import pytest
import torch

from nsipf_torch.solvers.stencils import LIMITERS, divergence, face_differences, limited_slopes, upwind_flux


def _random_density(shape, dtype=torch.float64, seed=0):
    """Non-negative, rough, about a third of the cells exactly zero: the hard case for positivity."""
    g = torch.Generator().manual_seed(seed)
    q = torch.rand(shape, generator=g, dtype=torch.float64) ** 4
    return (q * (torch.rand(shape, generator=g, dtype=torch.float64) > 0.3)).to(dtype)


def _reference_slopes(q: np.ndarray, limiter: str) -> np.ndarray:
    """Textbook limited slopes along the last axis, cell by cell (zero in the two wall cells)."""
    s = np.zeros_like(q)
    for idx in np.ndindex(q.shape[:-1]):
        row = q[idx]
        for i in range(1, len(row) - 1):
            a, b = row[i] - row[i - 1], row[i + 1] - row[i]
            if limiter == "minmod":
                s[idx + (i,)] = np.sign(a) * min(abs(a), abs(b)) if a * b > 0 else 0.0
            elif limiter == "vanleer":
                s[idx + (i,)] = (a * abs(b) + abs(a) * b) / (abs(a) + abs(b)) if a * b > 0 else 0.0
    return s


@pytest.mark.parametrize("limiter", LIMITERS)
@pytest.mark.parametrize("axis", [1, 2, -1])
def test_limited_slopes_match_the_textbook_limiters(limiter, axis):
    # minmod(a, b) and van Leer's harmonic form (a|b| + |a|b)/(|a| + |b|) (van Leer 1979), computed one cell
    # at a time in NumPy; round-off only (a few ulp: assert 1e-15 absolute on values <= 1).
    q = torch.rand(2, 7, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = limited_slopes(q, axis, limiter)
    want = np.moveaxis(_reference_slopes(np.moveaxis(q.numpy(), axis, -1), limiter), -1, axis)
    assert got.shape == q.shape
    assert np.abs(got.numpy() - want).max() < 1e-15


@pytest.mark.parametrize("limiter", ["minmod", "vanleer"])
def test_slopes_of_a_linear_profile_equal_its_slope(limiter):
    # Theory: on q = alpha + beta i both one-sided differences are beta, so both limiters return beta in
    # every interior cell (round-off) and 0 in the two wall cells (Neumann ghost); MUSCL then reconstructs
    # the linear profile exactly at the interior faces away from the walls.
    i = torch.arange(12, dtype=torch.float64)
    offsets = torch.tensor([1.0, 5.0, 30.0], dtype=torch.float64).reshape(3, 1, 1)
    beta = torch.tensor([0.5, -2.0, 1.25], dtype=torch.float64).reshape(3, 1, 1)
    q = (offsets + beta * i.reshape(1, 12, 1)).expand(3, 12, 4)  # varies along axis 1 only
    s = limited_slopes(q, 1, limiter)
    assert torch.allclose(s[:, 1:-1], beta.expand(3, 10, 4), rtol=1e-13, atol=0)
    assert torch.equal(s[:, [0, -1]], torch.zeros(3, 2, 4, dtype=torch.float64))
    assert torch.equal(limited_slopes(q, 1, "upwind"), torch.zeros_like(q))
    for sign in (1.0, -1.0):
        flux = upwind_flux(q, torch.full((3, 11, 4), sign, dtype=torch.float64), 1, limiter)
        exact_face = offsets + beta * (i[:-1] + 0.5).reshape(1, 11, 1)  # q at the face i + 1/2
        assert torch.allclose(flux[:, 1:-1], sign * exact_face.expand(3, 11, 4)[:, 1:-1], rtol=1e-14, atol=0)


@pytest.mark.parametrize("limiter", ["minmod", "vanleer"])
def test_slope_vanishes_at_extrema(limiter):
    # TVD (theory): at a local maximum or minimum the one-sided differences differ in sign, slope 0.
    q = torch.tensor([[0.0, 1.0, 3.0, 2.0, 2.5, 0.1, 4.0, 4.0, 1.0]], dtype=torch.float64)
    s = limited_slopes(q, -1, limiter)
    assert s[0, [2, 3, 4, 5, 6, 7]].abs().max() == 0  # maxima 2, 4, 6 (plateau 6-7), minima 3, 5
    assert s[0, 1] > 0


@pytest.mark.parametrize("dtype,ulps", [(torch.float64, 2), (torch.float32, 2)])
@pytest.mark.parametrize("limiter", ["minmod", "vanleer"])
def test_face_values_stay_within_zero_and_twice_the_cell_value(limiter, dtype, ulps):
    # The module docstring's positivity property: q_i +- s_i/2 in [0, 2 q_i] for q >= 0. Exact for minmod
    # (|s| <= min(|a|, |b|) <= q_i, no rounding past it); van Leer's quotient 2ab/(a+b) can round up by
    # under one ulp of q_i in float32 (measured 0.89 ulp on these 60 fields), so the bound is asserted to
    # 2 ulp of q_i.
    eps = torch.finfo(dtype).eps
    for seed in range(20):
        q = _random_density((4, 9, 10, 11), dtype, seed)
        for axis in (1, 2, 3):
            half = 0.5 * limited_slopes(q, axis, limiter)
            tol = ulps * eps * q
            for face in (q + half, q - half):
                assert bool((face >= -tol).all()) and bool((face <= 2 * q + tol).all()), (seed, axis)
    if limiter == "minmod":
        q = _random_density((4, 9, 10, 11), dtype, 0)
        half = 0.5 * limited_slopes(q, 2, limiter)
        assert (q - half.abs()).min() >= 0 and (q + half.abs() - 2 * q).max() <= 0


@pytest.mark.parametrize("limiter", LIMITERS)
def test_upwind_flux_takes_the_upwind_reconstruction(limiter):
    # Definition, face by face in NumPy: v > 0 carries cell i's right extrapolation q_i + s_i/2, v <= 0
    # cell i+1's left one q_{i+1} - s_{i+1}/2. Round-off only.
    g = torch.Generator().manual_seed(2)
    q = _random_density((3, 6, 13), seed=2)
    v = torch.randn(3, 6, 12, generator=g, dtype=torch.float64)
    v[0, 0, :4] = 0.0
    got = upwind_flux(q, v, -1, limiter).numpy()
    qn, vn = q.numpy(), v.numpy()
    s = _reference_slopes(qn, limiter)
    want = np.empty_like(vn)
    for idx in np.ndindex(vn.shape):
        *rest, i = idx
        left, right = qn[(*rest, i)] + 0.5 * s[(*rest, i)], qn[(*rest, i + 1)] - 0.5 * s[(*rest, i + 1)]
        want[idx] = vn[idx] * (left if vn[idx] > 0 else right)
    assert np.abs(got - want).max() < 1e-15


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_divergence_telescopes_to_zero_with_closed_walls(axis):
    # Definition: (F_{i+1/2} - F_{i-1/2})/h with F = 0 at both walls, so h * sum over the axis is exactly
    # F_N - F_0 = 0: mass is conserved to round-off (assert 1e-14 of sum |F|).
    g = torch.Generator().manual_seed(4)
    q = torch.rand(2, 8, 8, 8, generator=g, dtype=torch.float64)
    flux = torch.randn(*face_differences(q, axis).shape, generator=g, dtype=torch.float64)
    h = 0.1
    div = divergence(flux, axis, h)
    assert div.shape == q.shape
    assert ((div * h).sum(dim=axis).abs().max() / flux.abs().sum(dim=axis).max()) < 1e-14
    f = np.moveaxis(flux.numpy(), axis, -1)
    want = np.empty(f.shape[:-1] + (f.shape[-1] + 1,))
    for i in range(want.shape[-1]):
        right = f[..., i] if i < f.shape[-1] else 0.0
        left = f[..., i - 1] if i > 0 else 0.0
        want[..., i] = (right - left) / h
    assert np.abs(np.moveaxis(div.numpy(), axis, -1) - want).max() < 1e-13


def test_unknown_limiter_is_value_error_naming_it():
    with pytest.raises(ValueError, match="'superbee'"):
        limited_slopes(torch.ones(1, 8), -1, "superbee")
