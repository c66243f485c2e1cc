"""The inverse problem (nsipf_torch/inference/): gradients, refinement, estimation.

Tolerances come from theory (round-off, exact conservation) or are measured margins; each test says which.
docs/INFERENCE.md records the validation table; the long studies are the ``slow`` tests at the end.
"""
import math

import numpy as np
import pytest
import torch

from nsipf_torch.problems.grid import Grid
from nsipf_torch.inference.fit import synthetic_observations
from nsipf_torch.inference.forward import ForwardModel
from nsipf_torch.inference.refine import refine_cell_averages, refine_centre_values
from nsipf_torch.problems.initial import get_ic
from nsipf_torch.particles.interp import SplineInterp
from nsipf_torch.metrics import block_average
from nsipf_torch.inference.observations import make_observations

TRUTH = {"chi": 1.3, "gamma": 0.012}


@pytest.fixture(scope="module")
def small_problem():
    """2D two_blobs at N = 8 (model 16), observed at t = 0.05, 0.1 with parameters away from the truth
    evaluated below, so that the residuals (and the gradient) are far from zero."""
    obs = synthetic_observations("two_blobs", 2, 8, chi=1.0, gamma=0.015, times=(0.05, 0.1), noise=0.0)
    return ForwardModel(obs)


# ------------------------------------------------------------------------------------------ gradients

def test_gradient_matches_central_differences_with_frozen_substeps(small_problem):
    # Reverse-mode autograd through the checkpointed FD loop against central differences of the cost in
    # theta = (chi, log gamma) with the sub-step counts frozen (the count is data, not a parameter). Theory:
    # the central difference errs by O(eps^2) ~ 1e-8 relative at eps = 1e-4 (measured agreement 3e-7 for
    # chi, 1e-9 for log gamma); the issue asks for 1%, asserted at 1e-3.
    model = small_problem
    cost, grad, counts = model.loss_gradient(TRUTH)
    eps = 1e-4
    for j, name in enumerate(("chi", "gamma")):
        def shifted(s):
            params = dict(TRUTH)
            params[name] = TRUTH[name] + s if name == "chi" else TRUTH[name] * math.exp(s)
            return model.evaluate(params, jacobian=False, counts=counts).cost
        central = (shifted(eps) - shifted(-eps)) / (2 * eps)
        print(f"\nd cost / d {name}: autograd {grad[j].item():.8e}, central difference {central:.8e}")
        assert abs(grad[j].item() - central) <= 1e-3 * abs(central)


def test_forward_mode_jacobian_matches_reverse_mode_gradient(small_problem):
    # Two independent autograd modes: J^T r from the forward-mode Jacobian equals the reverse-mode gradient
    # of |r|^2 / 2 (checkpointed) up to round-off of the ~100 sub-steps (measured 1e-15 relative; assert 1e-10).
    model = small_problem
    ev = model.evaluate(TRUTH)
    _, grad, _ = model.loss_gradient(TRUTH, counts=ev.counts)
    forward = ev.jacobian.T @ ev.residuals
    assert torch.allclose(forward, grad, rtol=1e-10, atol=0.0)
    assert ev.cost == pytest.approx(model.loss_gradient(TRUTH, counts=ev.counts)[0], rel=1e-12)


def test_compiled_model_matches_eager(small_problem):
    # torch.compile fuses the same sub-step and its tangents; it may contract or reorder float operations,
    # so prediction and Jacobian agree to round-off accumulated over the ~100 sub-steps, not bitwise
    # (measured max 4e-16 relative on one 64^3 sub-step; asserted 1e-11 after the whole run).
    eager = small_problem
    fused = ForwardModel(eager.obs, compile=True)
    for name in ("prediction", "jacobian"):
        a, b = (getattr(m.evaluate(TRUTH, counts=eager.evaluate(TRUTH, jacobian=False).counts), name)
                for m in (eager, fused))
        assert torch.allclose(a, b, rtol=1e-11, atol=1e-11 * float(a.abs().max())), name


# ------------------------------------------------------------------------------------------ model grid

def test_refinement_is_conservative_positive_and_high_order():
    # Exact identities (round-off): block-averaging the refined cell averages gives them back; values stay
    # >= 0. Accuracy against the exact cell averages of two_blobs at 2N with the quartic reconstruction
    # (order 5 asymptotically): measured max errors 0.105, 0.00534, 0.00027 of the peak at N = 16, 32, 64
    # (ratios 19.6 and 19.8, order ~4.3; the quadratic one gave 0.151, 0.0199, 0.00304, ratios 7.6 and 6.5);
    # assert ratios > 12, which the quadratic fails.
    ic = get_ic("two_blobs")
    errors = []
    for N in (16, 32, 64):
        for dim in (2, 3) if N == 16 else (2,):
            coarse = Grid(N, dim=dim)
            q = ic.rho0(coarse)
            refined = refine_cell_averages(q[None], 2, dim)[0]
            assert torch.allclose(block_average(refined, N, dim), q, rtol=0, atol=1e-13 * float(q.max()))
            assert float(refined.min()) >= 0.0
        exact = ic.rho0(Grid(2 * N, dim=2))
        refined = refine_cell_averages(ic.rho0(Grid(N, dim=2))[None], 2, 2)[0]
        errors.append(float((refined - exact).abs().max() / exact.max()))
    print(f"\nrefinement errors {errors}")
    assert errors[0] / errors[1] > 12 and errors[1] / errors[2] > 12
    # factor 4 is conservative too
    q = ic.rho0(Grid(8, dim=2))
    assert torch.allclose(block_average(refine_cell_averages(q[None], 4, 2)[0], 8, 2), q, atol=1e-13 * float(q.max()))


def test_centre_values_refined_by_the_spline():
    # The refined c0 is the project's cubic spline (reflecting walls) at the fine centres: checked against
    # SplineInterp evaluated at hand-built points; its error against the exact c0 of two_blobs at N = 64 is
    # 1.7e-3 of c0's peak 10 (measured; the wall condition dc/dn = 0 dominates), asserted < 5e-3.
    ic = get_ic("two_blobs")
    coarse = Grid(64, dim=2)
    refined = refine_centre_values(ic.c0(coarse)[None], coarse, 2)[0]
    x = Grid(128, dim=2).centres()
    points = torch.stack([x[3].expand(128), x], dim=-1)[None]  # the fine row i_x = 3
    direct = SplineInterp(coarse).value(ic.c0(coarse)[None], points)[0]
    assert torch.allclose(refined[3], direct.clamp_min(0.0), rtol=0, atol=1e-12)
    assert float((refined - ic.c0(Grid(128, dim=2))).abs().max()) < 5e-3


def test_observations_reject_bad_values_naming_them():
    good = dict(t=[0.1], rho=np.ones((1, 8, 8)), rho0=np.ones((8, 8)), c0=np.ones((8, 8)))
    obs = make_observations(**good, M0=2.0)
    assert obs.rho0.sum() * (2 / 8) ** 2 == pytest.approx(2.0, rel=1e-14)  # rho0 rescaled to carry M0
    for change, message in (({"t": [0.2, 0.1]}, "strictly increasing"), ({"M0": -1.0}, "M0 must be > 0"),
                            ({"rho0": np.ones((8, 9))}, "cubic grid"), ({"c0": -np.ones((8, 8))}, "c0 has negative")):
        with pytest.raises(ValueError, match=message):
            make_observations(**{**good, **change})


def test_infer_api_rejects_bad_arguments():
    from nsipf_torch import infer
    obs = synthetic_observations("two_blobs", 2, 8, chi=1.3, gamma=0.012, times=(0.05,), noise=0.0)
    for kwargs, message in (({"fit": "chi,beta"}, "fit must name"), ({"gamma": -1.0}, "gamma must be > 0"),
                            ({"chi": float("nan")}, "chi must be a finite number"), ({"model_N": 12}, "multiple"),
                            ({"weights": "l1"}, "unknown weights"), ({"max_iter": 0}, "max_iter")):
        with pytest.raises(ValueError, match=message):
            infer(obs, **kwargs)


# ------------------------------------------------------------------------------------------ validation (slow)
# The synthetic data of the issue: two_blobs, snapshots t = 0.05, 0.1, 0.15, 0.2, made by the FD solver at
# 2N from the exact initial cell averages, block-averaged to N, times (1 + 0.05 e) with e ~ N(0, 1) seeded.
# docs/INFERENCE.md tabulates what these tests measured.

def _meets_targets(label, obs, truth, chi_tol, gamma_tol, **kwargs):
    from nsipf_torch import infer
    result = infer(obs, **kwargs)
    errors = {k: abs(result.main.params[k] / truth[k] - 1.0) for k in ("chi", "gamma")}
    print(f"\n{label}: truth {truth}, estimates {result.main.params}, intervals {result.main.intervals()}, "
          f"errors {errors}, check {({n: f.params for n, f in result.check.items()})}, "
          f"wall {sum(f.wall_time_s for f in result.check.values()):.0f} s")
    assert result.main.converged
    assert errors["chi"] < chi_tol and errors["gamma"] < gamma_tol


@pytest.mark.slow
def test_2d_two_blobs_meets_the_targets_from_guesses_a_factor_2_off():
    # Targets of the issue: chi within 3%, gamma within 5% (N = 64, model 2N, the defaults).
    obs = synthetic_observations("two_blobs", 2, 64, **TRUTH)
    _meets_targets("2D N=64", obs, TRUTH, 0.03, 0.05, chi=TRUTH["chi"] / 2, gamma=TRUTH["gamma"] * 2)


@pytest.mark.slow
def test_2d_random_truth_meets_the_targets():
    # A second truth drawn (seeded) from chi in [0.5, 2], gamma in [0.005, 0.02]; the 2D targets again,
    # from the default start chi = 1, gamma = 0.01.
    g = np.random.default_rng(2026)
    truth = {"chi": float(g.uniform(0.5, 2.0)), "gamma": float(g.uniform(0.005, 0.02))}
    obs = synthetic_observations("two_blobs", 2, 64, **truth, seed=1)
    _meets_targets("2D random truth", obs, truth, 0.03, 0.05)


@pytest.mark.slow
def test_3d_two_blobs_meets_the_targets():
    # Targets of the issue in 3D: N = 32 (model 64), chi within 5%, gamma within 10%.
    obs = synthetic_observations("two_blobs", 3, 32, **TRUTH)
    _meets_targets("3D N=32", obs, TRUTH, 0.05, 0.10, chi=TRUTH["chi"] / 2, gamma=TRUTH["gamma"] * 2, check=False)


@pytest.mark.slow
def test_negative_control_chi_zero():
    # Data made with chi = 0 (pure diffusion): the fit, started at chi = 1, must give chi-hat <= 0.05.
    from nsipf_torch import infer
    obs = synthetic_observations("two_blobs", 2, 32, chi=0.0, gamma=TRUTH["gamma"])
    result = infer(obs, chi=1.0, gamma=0.01, check=False)
    print(f"\nchi = 0 data: {result.main.params}, intervals {result.main.intervals()}, at bound {result.main.at_bound}")
    assert result.main.params["chi"] <= 0.05


COVERAGE_SEEDS = 20
COVERAGE_N = 32  # 20 fits per study


def _coverage(data_factor):
    """Fits (model N = data N, no check) of 20 seeded noise draws; counts of intervals covering the truth
    (sandwich and homoscedastic) and the gamma estimates."""
    from nsipf_torch import infer
    hits = {"sandwich": {"chi": 0, "gamma": 0}, "homoscedastic": {"chi": 0, "gamma": 0}}
    gammas = []
    for seed in range(COVERAGE_SEEDS):
        obs = synthetic_observations("two_blobs", 2, COVERAGE_N, **TRUTH, seed=100 + seed, data_factor=data_factor)
        fit = infer(obs, chi=TRUTH["chi"], gamma=TRUTH["gamma"], model_N=COVERAGE_N, check=False).main
        for kind, robust in (("sandwich", True), ("homoscedastic", False)):
            for k, (lo, hi) in fit.intervals(robust).items():
                hits[kind][k] += lo <= TRUTH[k] <= hi
        gammas.append(fit.params["gamma"])
        print(f"seed {seed}: {fit.params} {fit.intervals()}", flush=True)
    return hits, np.array(gammas)


@pytest.mark.slow
def test_intervals_cover_the_truth_on_their_own_assumptions():
    # Data made at the model's own resolution (same grid, same initial state), so the only misfit is the
    # noise: the 95% intervals must cover the truth in >= 17 of 20 seeded draws (the criterion;
    # P(<= 16 | 0.95) = 1.6%). Measured: sandwich 18/20 (chi), 19/20 (gamma); the homoscedastic intervals
    # 4/20 and 5/20 (docs/INFERENCE.md says why), which is why the sandwich is the one reported.
    hits, _ = _coverage(data_factor=1)
    print(f"\ncoverage with data at the model's resolution: {hits} of {COVERAGE_SEEDS}")
    assert hits["sandwich"]["chi"] >= 17 and hits["sandwich"]["gamma"] >= 17


@pytest.mark.slow
def test_fits_at_n_and_2n_disagree_beyond_their_intervals():
    # The finding of the issue: on data made at 2N, a model at the data's own resolution N absorbs its
    # discretisation error into the parameters, and its intervals, which know only the noise, miss the
    # truth (measured at N = 16: coverage 0/20, gamma-hat 8.1x the truth on average). The discretisation
    # check exposes it: the 95% intervals of gamma from the fits at N and 2N are disjoint, on every draw.
    from nsipf_torch import infer
    for seed in range(3):
        obs = synthetic_observations("two_blobs", 2, COVERAGE_N, **TRUTH, seed=100 + seed, data_factor=2)
        result = infer(obs, chi=TRUTH["chi"], gamma=TRUTH["gamma"], check=True)
        (lo_n, hi_n), (lo_2n, hi_2n) = (result.check[n].intervals()["gamma"] for n in (COVERAGE_N, 2 * COVERAGE_N))
        print(f"\nseed {seed}: gamma at N [{lo_n:.5g}, {hi_n:.5g}], at 2N [{lo_2n:.5g}, {hi_2n:.5g}]")
        assert hi_2n < lo_n or hi_n < lo_2n
