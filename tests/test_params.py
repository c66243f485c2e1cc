"""Physical parameters and the entry checks (nsipf_torch/problems/params.py)."""
import json
import math

import pytest
import torch

from nsipf_torch.solvers.c_equation import C_UPDATES
from nsipf_torch.problems.params import Params, check_fields, check_finite, check_positive, check_schemes, per_member
from nsipf_torch.solvers.stencils import LIMITERS


# ------------------------------------------------------------------------------------------ checks

@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "abc", None, [1.0]])
def test_check_finite_names_the_value(value):
    with pytest.raises(ValueError, match="dt must be"):
        check_finite("dt", value)


def test_check_finite_returns_a_float():
    assert check_finite("dt", torch.tensor(0.25)) == 0.25 and type(check_finite("dt", 1)) is float


@pytest.mark.parametrize("value,allow_zero,match", [
    (0.0, False, "gamma must be > 0"), (-1e-9, True, "gamma must be >= 0"), (math.nan, True, "gamma"),
    (torch.tensor([0.1, 0.0]), False, "gamma must be > 0"), (torch.tensor([0.1, -0.1]), True, "gamma must be >= 0"),
    (torch.tensor([0.1, math.inf]), True, "gamma must be finite"), (torch.ones(2, 2), True, r"gamma .*\(2, 2\)"),
])
def test_check_positive_refuses(value, allow_zero, match):
    with pytest.raises(ValueError, match=match):
        check_positive("gamma", value, allow_zero=allow_zero)


def test_check_positive_passes_tensors_through_and_checks_the_batch():
    t = torch.tensor([0.0, 0.5], requires_grad=True)
    assert check_positive("chi", t, allow_zero=True, batch=2) is t  # unchanged, graph kept
    assert check_positive("chi", torch.tensor([0.5]), batch=3).numel() == 1  # a single value always fits
    assert check_positive("chi", 0.0, allow_zero=True) == 0.0
    with pytest.raises(ValueError, match="chi has 2 members, the batch has 3"):
        check_positive("chi", t, allow_zero=True, batch=3)


def test_check_schemes():
    for limiter in LIMITERS:
        for c_update in C_UPDATES:
            check_schemes(limiter, c_update)
    with pytest.raises(ValueError, match="limiter 'superbee'"):
        check_schemes(limiter="superbee")
    with pytest.raises(ValueError, match="c-update 'rk4'"):
        check_schemes(c_update="rk4")


def test_check_fields():
    rho = torch.ones(3, 4, 4, dtype=torch.float64)
    assert check_fields(rho, rho.clone(), (4, 4)) == 3
    bad_shape = torch.ones(3, 4, 5)
    with pytest.raises(ValueError, match=r"rho0 must have shape \(B, 4, 4\), got \(3, 4, 5\)"):
        check_fields(bad_shape, rho, (4, 4), names=("rho0", "c0"))
    with pytest.raises(ValueError, match="c0 has shape"):
        check_fields(rho, rho[:2], (4, 4), names=("rho0", "c0"))
    with pytest.raises(ValueError, match="rho must have shape .* got list"):
        check_fields([1.0], rho, (4, 4))
    nan = rho.clone()
    nan[1, 2, 3] = math.nan
    with pytest.raises(ValueError, match="c contains NaN"):
        check_fields(rho, nan, (4, 4))
    negative = rho.clone()
    negative[0, 0, 0] = -0.5
    with pytest.raises(ValueError, match="rho must be non-negative, min is -0.5"):
        check_fields(negative, rho, (4, 4))


# ------------------------------------------------------------------------------------------ per_member

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_per_member_float_and_one_member_tensor_give_the_same_bits(dtype):
    # The docstring's claim: the quotient is formed in float64 and rounded once to like's dtype on both
    # paths, so a product with a field is bitwise the same. 200 random (value, divisor) pairs (theory: exact).
    g = torch.Generator().manual_seed(1)
    like = torch.rand(1, 8, 8, generator=g, dtype=dtype)
    values = 5 * torch.rand(200, generator=g, dtype=torch.float64)
    divisors = 1e-3 + torch.rand(200, generator=g, dtype=torch.float64)
    for v, d in zip(values.tolist(), divisors.tolist()):
        scalar = per_member(v, like, 2, d)
        assert type(scalar) is float and scalar == v / d
        tensor = per_member(torch.tensor([v], dtype=torch.float64), like, 2, d)
        assert tensor.shape == (1, 1, 1) and tensor.dtype == dtype
        assert torch.equal(like * scalar, like * tensor), (v, d)


def test_per_member_batch_shapes():
    like = torch.zeros(3, 5, 5, 5, dtype=torch.float32)
    v = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    out = per_member(v, like, 3, divisor=2.0)
    assert out.shape == (3, 1, 1, 1) and out.dtype == torch.float32 and out.flatten().tolist() == [0.5, 1.0, 2.0]
    assert per_member(torch.tensor(3.0), like, 3).shape == ()  # a 0-d tensor stays 0-d (broadcasts to all)
    with pytest.raises(ValueError, match=r"shape \(3,\), got \(2,\)"):
        per_member(v[:2], like, 3)


def test_gradients_flow_through_per_member():
    # d/dv_b sum(q * v_b / h) = sum over member b of q / h (exact in float64 up to the sum's round-off).
    q = torch.rand(2, 6, 6, dtype=torch.float64)
    v = torch.tensor([0.3, 1.7], dtype=torch.float64, requires_grad=True)
    h = 0.125
    (q * per_member(v, q, 2, h)).sum().backward()
    assert torch.allclose(v.grad, q.sum(dim=(1, 2)) / h, rtol=1e-14, atol=0)


# ------------------------------------------------------------------------------------------ Params

@pytest.mark.parametrize("kwargs,match", [
    ({"gamma": -0.01}, "gamma"), ({"gamma": math.nan}, "gamma"), ({"gamma": [0.01, math.inf]}, "gamma"),
    ({"chi": -1.0}, "chi"), ({"chi": torch.tensor([1.0, -1.0])}, "chi"), ({"chi": "x"}, "chi"),
    ({"gamma": [0.1, 0.2], "chi": [1.0, 2.0, 3.0]}, "gamma has 2 members and chi 3"),
    ({"M0": 0.0}, "M0"), ({"M0": math.inf}, "M0"), ({"T": -0.1}, "T"), ({"T": math.nan}, "T"),
])
def test_every_bad_value_raises_value_error_naming_it(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Params(**kwargs)


def test_params_defaults_lists_and_batch():
    p = Params()
    assert (p.gamma, p.chi, p.M0, p.T) == (0.01, 1.0, 1.0, 0.2)  # docs/MODEL.md §5
    assert p.batch == 1 and p.member_values("chi", 4).tolist() == [1.0] * 4
    zero = Params(gamma=0.0, chi=0.0, T=0.0)  # zero diffusion, drift and time are allowed
    assert zero.gamma == 0.0 and zero.T == 0.0
    swept = Params(gamma=[0.01, 0.02, 0.03], chi=torch.tensor([2.0]))
    assert isinstance(swept.gamma, torch.Tensor) and swept.gamma.dtype == torch.float64
    assert swept.batch == 3
    assert swept.member_values("chi", 3).tolist() == [2.0, 2.0, 2.0]
    assert swept.member_values("gamma", 3).tolist() == [0.01, 0.02, 0.03]
    plain = swept.to_dict()
    assert json.loads(json.dumps(plain)) == {"gamma": [0.01, 0.02, 0.03], "chi": [2.0], "M0": 1.0,
                                             "T": 0.2}


def test_params_keep_the_graph_of_tensors_that_require_grad():
    # Params stores the tensor itself (no float()), so a loss built from member_values differentiates
    # back to the caller's leaf: d/dchi_b sum(b_weight * chi_b) = b_weight exactly.
    chi = torch.tensor([0.5, 1.5], dtype=torch.float64, requires_grad=True)
    p = Params(chi=chi)
    assert p.chi is chi and p.batch == 2
    (p.member_values("chi", 2) * torch.tensor([3.0, -2.0], dtype=torch.float64)).sum().backward()
    assert chi.grad.tolist() == [3.0, -2.0]
