"""The c-update of paper eq. 33 (nsipf_torch/solvers/c_equation.py): c_t = -c rho over one step with rho frozen."""
import math

import pytest
import torch

from nsipf_torch.solvers.c_equation import C_UPDATES, update_c


def _fields():
    """A small (B = 2, 4, 4) pair with rho spanning four decades, c > 0."""
    g = torch.Generator().manual_seed(3)
    rho = 10.0 ** (4 * torch.rand(2, 4, 4, generator=g, dtype=torch.float64) - 2)  # 1e-2 .. 1e2
    c = 0.1 + torch.rand(2, 4, 4, generator=g, dtype=torch.float64)
    return rho, c


def test_exp_is_the_exact_solution_and_composes():
    # Theory: c0 exp(-rho t) solves c_t = -c rho exactly, so one step of T equals math.exp computed per cell,
    # and n steps of T/n compose to it; round-off only (measured <= 3.1e-15 relative for 100 steps on
    # rho T <= 1.4; assert 1e-14).
    rho, c0 = _fields()
    rho = rho.clamp(max=7.0)
    T = 0.2
    exact = torch.tensor([ci * math.exp(-ri * T) for ci, ri in zip(c0.flatten().tolist(), rho.flatten().tolist())],
                         dtype=torch.float64).reshape(c0.shape)
    assert ((update_c(c0, rho, T) - exact).abs() / exact).max() < 1e-15
    for n in (7, 100):
        c = c0
        for _ in range(n):
            c = update_c(c, rho, T / n, "exp")
        assert ((c - exact).abs() / exact).max() < 1e-14, n


@pytest.mark.parametrize("dt", [1e-3, 1.0, 1e3, 1e6])
def test_exp_stays_nonnegative_for_any_dt_and_euler_does_not(dt):
    # Theory (docs/MODEL.md §6): exp(-dt rho) is in (0, 1], so c >= 0 and never grows, whatever dt; Euler's
    # factor 1 - dt rho is negative exactly where dt * rho > 1.
    rho, c = _fields()
    c_exp = update_c(c, rho, dt, "exp")
    assert c_exp.min() >= 0 and bool((c_exp <= c).all())
    c_euler = update_c(c, rho, dt, "euler")
    assert torch.equal(c_euler < 0, dt * rho > 1)


def test_euler_is_first_order_against_exp():
    # Theory: (1 - rho T/n)^n - exp(-rho T) = O(1/n), so halving dt halves the error. Measured ratios
    # 2.006..2.047 at n = 10 -> 20 for rho T up to 1.4; assert within 5% of 2 at each halving n = 10 .. 80.
    rho = torch.tensor([0.5, 2.0, 7.0], dtype=torch.float64)
    c0 = torch.tensor([1.0, 0.3, 2.0], dtype=torch.float64)
    T = 0.2
    exact = update_c(c0, rho, T, "exp")
    errors = []
    for n in (10, 20, 40, 80):
        c = c0
        for _ in range(n):
            c = update_c(c, rho, T / n, "euler")
        errors.append((c - exact).abs())
    for coarse, fine in zip(errors, errors[1:]):
        assert ((coarse / fine - 2).abs() < 0.1).all(), coarse / fine


@pytest.mark.parametrize("mode", C_UPDATES)
def test_per_member_tensor_dt_equals_scalar_runs_bitwise(mode):
    # The docstring allows a dt tensor broadcastable to c: a (B, 1, 1) dt applies member b's value to member
    # b with the same elementwise ops as the float, hence the same bits (theory).
    rho, c = _fields()
    dts = [1e-3, 0.25]
    batched = update_c(c, rho, torch.tensor(dts, dtype=torch.float64).reshape(2, 1, 1), mode)
    for b, dt in enumerate(dts):
        assert torch.equal(batched[b], update_c(c[b], rho[b], dt, mode)), b


def test_unknown_mode_is_value_error_naming_it():
    rho, c = _fields()
    with pytest.raises(ValueError, match="'rk4'"):
        update_c(c, rho, 1e-3, "rk4")
