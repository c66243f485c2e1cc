"""Recover chi and gamma from observed densities by differentiating through the finite-volume solver.

The method in one place; the code in four modules: :mod:`~nsipf_torch.inference.refine` (the model grid's
initial state), :mod:`~nsipf_torch.inference.forward` (the forward model and its derivatives),
:mod:`~nsipf_torch.inference.estimate` (Levenberg-Marquardt and the uncertainty) and this one (synthetic
data and :func:`infer`).

Forward model. The FD solver of :mod:`nsipf_torch.solvers.fd` (paper eqs. 1-2: rho_t = div(gamma grad rho -
chi rho grad c), c_t = -c rho), run on a model grid of M = factor * N cells per axis from the observed rho0
and c0 and observed by block-averaging rho onto the N^d data grid at the observation times
(:mod:`nsipf_torch.inference.observations`); or the FD solver of any system of the Keller-Segel family
(issue 20: a :class:`~nsipf_torch.solvers.c_equation.CEquation`, eps, D, alpha, beta, kappa known; the data's
own by default, :func:`~nsipf_torch.inference.observations.resolve_c_equation`). rho0 is refined
conservatively (a limited quartic reconstruction: cell masses kept exactly, rho0 >= 0, fifth order where smooth), c0 by the interpolating cubic spline of
:mod:`nsipf_torch.particles.interp`. gamma is weakly identified, so the refinement's error goes into gamma-hat: with
the quadratic reconstruction (3D two_blobs at N = 32: 2.4% error) gamma-hat was 13.7% high, with the
quartic (0.64%) 1.1%.
Each outer step (at most ``dt``) takes the sub-step count of :func:`nsipf_torch.solvers.fd.fd_substep_count`
(the positivity bound of docs/MODEL.md §6) at the current primal state and parameters, without gradient: the
count is data, not a parameter. A fit holds the counts at 1.1x those of its first evaluation and raises
them only where the bound asks for more, so every trial point runs within the bound and the cost does not
jump when a count would flip by one between nearby points.

Derivatives. The Jacobian's columns are the tangents of the whole simulation, by forward mode in one
pass: :func:`~nsipf_torch.solvers.finite_volume.tangent_substep` (``torch.func.jvp`` vmapped over the fitted
parameters' directions, the primal computed once), fused by ``torch.compile`` with ``compile=True``.
Reverse mode gives one combination J^T v per pass, so the K N^d x 2 Jacobian would take K N^d passes;
forward mode takes one, with no tape (memory: the state and one tangent per parameter).
:meth:`~nsipf_torch.inference.forward.ForwardModel.loss_gradient` is the reverse-mode gradient of the cost with the outer steps
checkpointed (memory: one state per outer step), for callers with many parameters; the tests check both
modes against each other and against central differences.

Least squares. r = w (rho_model - rho_obs) over the K N^d observed cells, cost = |r|^2 / 2;
``weights="relative"`` (default) takes w = 1 / max(m, floor * max m) with m the mean of the observed
values of a cell's neighbours, so multiplicative noise becomes nearly homoscedastic while the weight stays
free of the cell's own noise (a weight from the cell itself biases the fit, :func:`~nsipf_torch.inference.refine.neighbour_mean`);
``"none"`` takes w = 1. Fit coordinates theta = (chi, log gamma): gamma > 0 by construction, chi >= 0 by
projection with an active set, so chi-hat = 0 is reachable (a chemotaxis-free data set gives 0, not a log
running to -inf). Marquardt's diagonal scaling makes Levenberg-Marquardt invariant to rescaling a
coordinate, so fitting chi itself loses nothing that log chi would give except positivity.

Optimiser (:func:`~nsipf_torch.inference.estimate.fit_parameters`). Levenberg-Marquardt; exact Jacobians (about 4x a plain run when
compiled, 4-10x eager) are spent only where needed: Broyden rank-one updates carry the Jacobian between
them, and an exact one is taken when a step fails, gains less than a quarter of what the linear model promised, after 5 updated
steps, and before convergence is declared (the Gauss-Newton step from an exact Jacobian below ``step_tol``
standard errors). :func:`infer` starts the main fit with the Jacobian of the coarsest model in the
discretisation check (the residuals live on the data grid at every resolution).

Uncertainty. At the optimum, with s^2 = |r|^2 / (K N^d - p) and A = J^T J (the Gauss-Newton curvature):
the homoscedastic covariance s^2 A^-1, and the sandwich A^-1 J^T diag(r^2) J A^-1 K N^d / (K N^d - p),
which stays valid when the weighted residuals are not equally noisy (cells below the weight floor, a
neighbour mean that misses a peak). The sandwich gives the reported standard errors and 95% intervals:
chi-hat +- 1.96 se (clipped at 0), gamma-hat exp(+- 1.96 se(log gamma)); docs/INFERENCE.md compares the
coverage of both.

Identifiability. c_t = -c rho is linear in c, so (c0, chi) and (a c0, chi / a) give the same rho: chi is
identified only when c0 is known in absolute units. gamma is weakly identified: on two_blobs a 3% change
of gamma moves rho by 0.2-0.3%, so discretisation error of the forward model is absorbed into gamma first;
a model at the data's own resolution biases it (the discretisation check reports the fits at N and 2N).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from nsipf_torch.inference.estimate import FitResult, fit_parameters
from nsipf_torch.inference.forward import PARAMETERS, ForwardModel, RejectedTrial, check_model_memory
from nsipf_torch.inference.observations import Observations, resolve_c_equation
from nsipf_torch.problems.grid import Grid
from nsipf_torch.solvers.c_equation import CEquation

CHECK_STEP_TOL = 1.0  # the discretisation-check fits stop within this many standard errors


DEFAULT_TIMES = (0.05, 0.1, 0.15, 0.2)


def synthetic_observations(ic: str, dim: int, N: int, chi: float, gamma: float, times=DEFAULT_TIMES,
                           noise: float = 0.05, seed: int = 0, data_factor: int = 2, L: float = 1.0, M0: float = 1.0,
                           dt: float = 0.01, limiter: str = "minmod", c_update: str = "exp",
                           compile: bool = False, ceq: CEquation | None = None) -> Observations:
    """Observations of a canonical problem: the FD solver at data_factor * N from the exact cell averages of
    the initial condition there, block-averaged to N, times (1 + noise * e) with e ~ N(0, 1) per cell
    (seeded). rho0 and c0 are stored exactly at N (an elliptic c0: the solve for rho0 there); chi_true and
    gamma_true record the truth, ``ceq`` (None: the paper's consumption equation) the system."""
    from nsipf_torch.problems.initial import get_ic
    from nsipf_torch.inference.observations import make_observations

    problem = get_ic(ic)
    if isinstance(N, bool) or not isinstance(N, int) or N < 4:
        raise ValueError(f"N must be an integer >= 4, got {N!r}")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be >= 0, got {noise}")
    if isinstance(data_factor, bool) or not isinstance(data_factor, int) or data_factor < 1:
        raise ValueError(f"data_factor must be a positive integer, got {data_factor!r}")
    check_model_memory(N * data_factor, dim, len(times), N, torch.float64, torch.device("cpu"),
                       lower="N (--N) or data_factor (--data-factor)")
    coarse, fine = Grid(N, dim, L), Grid(N * data_factor, dim, L)
    rho0, c0 = problem.rho0(coarse, M0), problem.c0(coarse)
    if ceq is not None:
        c0 = ceq.initial(c0[None], rho0[None], coarse.h, dim)[0]
    rho0, c0 = rho0.numpy(), c0.numpy()
    skeleton = make_observations(times, np.zeros((len(times), *coarse.shape)), rho0, c0, L, M0, c_equation=ceq)
    model = ForwardModel(skeleton, model_N=fine.N, dt=dt, limiter=limiter, c_update=c_update,
                         rho0_model=problem.rho0(fine, M0), c0_model=problem.c0(fine), compile=compile, ceq=ceq)
    clean = model.evaluate({"chi": chi, "gamma": gamma}, jacobian=False).prediction
    generator = torch.Generator().manual_seed(int(seed))
    factor = 1.0 + noise * torch.randn(clean.shape, generator=generator, dtype=clean.dtype)
    noisy = (clean * factor).clamp_min(0.0)  # a draw below -100% (20 sigma at 5%) would be clipped
    return make_observations(times, noisy.numpy(), rho0, c0, L, M0, chi_true=chi, gamma_true=gamma, c_equation=ceq)


# ------------------------------------------------------------------------------------------ the API

CHI_SCAN = (0.0,) + tuple(2.0 ** (k / 2) for k in range(-4, 5))  # multiples of the guess: 0, then 1/4 to 4 by half-octaves


def scan_chi(model: ForwardModel, start: dict[str, float], fit: tuple[str, ...]) -> float:
    """The best of chi in CHI_SCAN x guess (1 when the guess is 0) at the guessed gamma, by plain runs of
    ``model`` (the coarsest): chi moves the mass, so a guess far off leaves model and data without overlap,
    where the cost is flat in chi and the optimiser would spread the model by inflating gamma instead."""
    base = start["chi"] if start["chi"] > 0 else 1.0
    costs = {}
    for factor in CHI_SCAN:
        trial = {**start, "chi": factor * base}
        try:
            costs[factor * base] = model.evaluate(trial, fit, jacobian=False).cost
        except RejectedTrial:
            continue
    return min(costs, key=costs.get) if costs else start["chi"]


@dataclass
class InferenceResult:
    """The fit at the requested model resolution and the discretisation check (fits at N and 2N)."""

    main: FitResult
    check: dict[int, FitResult]
    observations: Observations
    settings: dict

    def to_dict(self) -> dict:
        obs = self.observations
        out = {**self.main.to_dict(), "data": {"N": obs.N, "dim": obs.dim, "K": obs.K, "t": obs.t.tolist(),
                                                "L": obs.L, "M0": obs.M0},
               "discretisation_check": {str(n): {"estimates": f.params, "ci95": f.intervals(),
                                                 "standard_errors": f.standard_errors(),
                                                 "relative_misfit": f.relative_misfit, "converged": f.converged,
                                                 "wall_time_s": f.wall_time_s}
                                        for n, f in sorted(self.check.items())},
               "settings": self.settings}
        truth = {k: getattr(obs, f"{k}_true") for k in PARAMETERS if getattr(obs, f"{k}_true") is not None}
        if truth:
            out["truth"] = truth
            out["relative_error"] = {k: (self.main.params[k] - v) / v if v else self.main.params[k] - v
                                     for k, v in truth.items() if k in self.main.fit}
        return out


def parse_fit(fit) -> tuple[str, ...]:
    """'chi,gamma' / ('chi',) -> a tuple of distinct names from PARAMETERS, in that order."""
    names = [s.strip() for s in fit.split(",")] if isinstance(fit, str) else [str(s) for s in fit]
    unknown = [n for n in names if n not in PARAMETERS]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(f"fit must name distinct parameters among {', '.join(PARAMETERS)}, got {fit!r}")
    return tuple(n for n in PARAMETERS if n in names)


def check_fit_options(chi, gamma, max_iter, step_tol, flags: bool = False) -> None:
    """The starting point and the optimiser's limits; a ``ValueError`` naming the bad one (as the command's
    flag with ``flags``)."""
    from nsipf_torch.problems.params import check_finite

    name = {k: ("--" + k.replace("_", "-")) if flags else k for k in ("chi", "gamma", "max_iter", "step_tol")}
    chi, gamma = check_finite(name["chi"], chi), check_finite(name["gamma"], gamma)
    if chi < 0:
        raise ValueError(f"{name['chi']} must be >= 0, got {chi}")
    if gamma <= 0:
        raise ValueError(f"{name['gamma']} must be > 0 (it is fitted as log gamma), got {gamma}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"{name['max_iter']} must be an integer >= 1, got {max_iter!r}")
    if isinstance(step_tol, bool) or not isinstance(step_tol, (int, float)) or not math.isfinite(step_tol) \
            or step_tol <= 0:
        raise ValueError(f"{name['step_tol']} must be a finite number > 0, got {step_tol!r}")


def infer(data, fit=PARAMETERS, chi: float = 1.0, gamma: float = 0.01, model_N: int | None = None,
          check: bool = True, dt: float = 0.01, weights: str = "relative", weight_floor: float = 1e-3,
          limiter: str = "minmod", c_update: str = "exp", device: str = "cpu", dtype: str = "float64",
          max_iter: int = 40, step_tol: float = 0.5, compile: bool = True, progress: bool = False,
          callback=None, c_equation: CEquation | dict | None = None) -> InferenceResult:
    """Estimate chi and/or gamma (``fit``) from observations (an :class:`Observations` or an obs.npz path).

    ``chi``/``gamma`` are the initial guesses of fitted parameters and the values of fixed ones. The model
    runs at ``model_N`` (default 2N); with ``check`` the fit is repeated at N and 2N (the discretisation
    check; at the data's own resolution the model's discretisation error is absorbed into the parameters).
    ``compile`` fuses the FD sub-step and its tangents with ``torch.compile`` (on this project's 2-core
    CPU 8-9x faster per plain sub-step and 9-19x per sub-step with tangents, after 10-25 s of compilation
    per model grid, for the paper's system; docs/INFERENCE.md, also for the family's). ``callback(model_N, iteration, record)`` sees every iteration. Bad
    values raise ``ValueError``. ``c_equation``: the system, with eps, D, alpha, beta, kappa known (a
    :class:`CEquation` or a dict of simulate's flags, ``{"c_equation": "elliptic", "Dc": 1.0}``); by default
    the data's own (:func:`~nsipf_torch.inference.observations.resolve_c_equation`; one that contradicts the
    data's is refused), else the paper's consumption equation. A start the model cannot run (beyond the
    sub-step limit, or collapsing on the model grid) raises its ``RejectedTrial``, a ``ValueError``.
    """
    from nsipf_torch.problems.grid import resolve_device, resolve_dtype
    from nsipf_torch.inference.observations import load_observations

    if isinstance(data, Observations):
        obs = data
    elif isinstance(data, (str, os.PathLike)):
        obs = load_observations(data)
    else:
        raise ValueError(f"data must be an Observations (nsipf_torch.inference.observations.make_observations) "
                         f"or the path of an obs.npz, got {type(data).__name__}")
    fit = parse_fit(fit)
    check_fit_options(chi, gamma, max_iter, step_tol)
    ceq = resolve_c_equation(obs, c_equation)
    device, torch_dtype = resolve_device(device), resolve_dtype(dtype)
    model_N = 2 * obs.N if model_N is None else int(model_N)
    resolutions = sorted({obs.N, 2 * obs.N, model_N}) if check else [model_N]
    options = dict(dt=dt, weights=weights, weight_floor=weight_floor, limiter=limiter, c_update=c_update,
                   device=device, dtype=torch_dtype, compile=compile, ceq=ceq)
    models = {n: ForwardModel(obs, model_N=n, **options) for n in resolutions}  # validates every option first
    start = {"chi": float(chi), "gamma": float(gamma)}
    if "chi" in fit:
        start["chi"] = scan_chi(models[min(models)], start, fit)
    report = lambda n: None if callback is None else (lambda it, rec: callback(n, it, rec))
    # The first Jacobian only has to point the way: take it from the coarsest model (the residuals live on
    # the data grid at every model resolution), at a fraction of the cost of the fine one.
    coarse = models[min(models)] if min(models) < model_N else ForwardModel(obs, model_N=model_N, **options)
    first = coarse.evaluate(start, fit, jacobian=True).jacobian if min(models) < model_N else None
    fits = {model_N: fit_parameters(models[model_N], start, fit, max_iter, step_tol, progress, report(model_N), first)}
    main = fits[model_N]
    for n, model in models.items():  # the check: from the main estimate, stopped within one standard error
        if n == model_N:
            continue
        try:
            fits[n] = fit_parameters(model, main.params, fit, max_iter, max(step_tol, CHECK_STEP_TOL), progress,
                                     report(n), main.jacobian)
        except RejectedTrial as err:  # the estimate collapses on this grid (issue 20): no check there
            warnings.warn(f"the discretisation check at model N = {n} is left out: {err}", stacklevel=2)
    settings = {"fit": list(fit), "start": start, "model_N": model_N, "check": check, "dt": dt, "weights": weights,
                "weight_floor": weight_floor, "limiter": limiter, "c_update": c_update, "device": str(device),
                "dtype": dtype if isinstance(dtype, str) else str(dtype), "max_iter": max_iter, "step_tol": step_tol,
                "compile": bool(compile), "c_equation": ceq.to_dict()}
    return InferenceResult(fits[model_N], fits, obs, settings)
