"""The inverse problem on the Keller-Segel family (issue 20): chi and gamma fitted with the c-equation
(parabolic, elliptic) and the sensitivity Phi known. The forward model's tangents and gradient, and the
rejection of a trial point that collapses on the model grid; the end-to-end recovery from a simulate.py run
is in tests/test_infer_cli.py. Tolerances are from theory or measured margins; each test says which."""
import math

import numpy as np
import pytest
import torch

from nsipf_torch.inference.forward import CollapseError, ForwardModel, RejectedTrial
from nsipf_torch.inference.observations import make_observations, resolve_c_equation
from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.initial import get_ic
from nsipf_torch.solvers.c_equation import CEquation

POINT = {"chi": 1.0, "gamma": 0.05}  # pks_blob in 2D, M0 = 1: below M_c = 8 pi gamma D / (chi beta) = 1.26


def _model(ceq: CEquation, N: int = 8) -> ForwardModel:
    """pks_blob (c0 = 0) in 2D at N, model grid 2N, observed at t = 0.05, 0.1 (the observed values are
    zero, so the residuals are the prediction itself: far from zero, as a gradient check wants)."""
    grid, ic = Grid(N, 2), get_ic("pks_blob")
    obs = make_observations((0.05, 0.1), np.zeros((2, N, N)), ic.rho0(grid).numpy(), ic.c0(grid).numpy())
    return ForwardModel(obs, ceq=ceq)


SYSTEMS = {
    "elliptic": CEquation.from_options("elliptic"),
    "parabolic": CEquation.from_options("parabolic", alpha=0.5),
    "parabolic-log": CEquation.from_options("parabolic", alpha=1.0, sensitivity="log", kappa=0.5),
}


@pytest.mark.parametrize("name", SYSTEMS)
def test_tangents_and_gradient_match_central_differences(name):
    # The forward-mode Jacobian (the DCT solve applied to the tangents, Phi'(c) in the drift) against
    # central differences of the residuals in theta = (chi, log gamma), sub-step counts frozen. Theory: the
    # central difference errs by C eps^2; measured |J - D_eps| / |D_eps| = 1.5e-9-7e-8 at eps = 1e-3 and
    # 2e-11-7e-10 at eps = 1e-4 (the factor 100 of eps^2; C <= 0.07), round-off ~1e-16 / eps ~ 1e-12 below
    # that. Asserted 1e-8 at eps = 1e-4: ten times C eps^2. The reverse-mode gradient (checkpointed) equals
    # J^T r to round-off of the ~40 sub-steps (measured 5e-15 absolute on |g| ~ 10; asserted 1e-10 relative).
    model, eps = _model(SYSTEMS[name]), 1e-4
    ev = model.evaluate(POINT)
    for j, param in enumerate(("chi", "gamma")):
        def shifted(s):
            trial = dict(POINT)
            trial[param] = POINT[param] + s if param == "chi" else POINT[param] * math.exp(s)
            return model.evaluate(trial, jacobian=False, counts=ev.counts).residuals
        central = (shifted(eps) - shifted(-eps)) / (2 * eps)
        error = float((ev.jacobian[:, j] - central).norm() / central.norm())
        print(f"\n{name} d r / d {param}: |J - central| / |central| = {error:.2e}")
        assert error < 1e-8
    _, grad, _ = model.loss_gradient(POINT, counts=ev.counts)
    assert torch.allclose(ev.jacobian.T @ ev.residuals, grad, rtol=1e-10, atol=0.0)


def test_a_collapsing_trial_point_is_rejected():
    # chi = 10 puts M0 = 1 far above M_c = 0.126 (elliptic, gamma = 0.05): the model grid's cell Peclet
    # number crosses the collapse criterion of nsipf_torch/run/collapse.py before t = 0.1 (measured: by
    # t = 0.03, Pe_h 19.3 against its limit 1.5 Pe_h(0) = 19.2), and the point is a RejectedTrial, as the step limit's are, which the fit takes as a
    # failed step. The subcritical POINT runs to the end (its Pe_h stays below the limit 2).
    model = _model(SYSTEMS["elliptic"])
    with pytest.raises(CollapseError, match="collapse by t") as caught:
        model.evaluate({"chi": 10.0, "gamma": 0.05}, jacobian=False)
    assert isinstance(caught.value, RejectedTrial) and isinstance(caught.value, ValueError)
    assert model.evaluate(POINT, jacobian=False).cost > 0


def test_the_data_decide_the_system_and_a_contradiction_is_refused():
    grid, ic = Grid(8, 2), get_ic("pks_blob")
    rho0 = ic.rho0(grid).numpy()
    ceq = SYSTEMS["parabolic"]
    obs = make_observations((0.1,), rho0[None], rho0, np.zeros_like(rho0), c_equation=ceq)
    assert resolve_c_equation(obs) == ceq and resolve_c_equation(obs, {"c_equation": "parabolic", "alpha": 0.5}) == ceq
    with pytest.raises(ValueError, match="--c-equation elliptic contradicts the data"):
        resolve_c_equation(obs, {"c_equation": "elliptic"})
    with pytest.raises(ValueError, match="--alpha 0.0 contradicts"):
        resolve_c_equation(obs, CEquation.from_options("parabolic"))
    plain = make_observations((0.1,), rho0[None], rho0, np.zeros_like(rho0))  # data that do not say
    assert resolve_c_equation(plain) == CEquation() and resolve_c_equation(plain, {"c_equation": "elliptic"}).elliptic
    # a mean-free c0 (elliptic, alpha = 0) has negative values and is data; elsewhere c0 >= 0 is checked
    signed = rho0 - rho0.mean()
    make_observations((0.1,), rho0[None], rho0, signed, c_equation=SYSTEMS["elliptic"])
    with pytest.raises(ValueError, match="c0 has negative values"):
        make_observations((0.1,), rho0[None], rho0, signed, c_equation=ceq)
