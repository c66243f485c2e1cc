"""Levenberg-Marquardt estimation of (chi, log gamma) with its uncertainty (nsipf_torch/inference/fit.py
has the method: optimiser, Broyden updates, the sandwich covariance)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from nsipf_torch.inference.forward import PARAMETERS, Evaluation, ForwardModel, RejectedTrial

MAX_BROYDEN_STEPS = 5  # consecutive steps on an updated Jacobian before an exact one is computed
Z95 = 1.959963984540054  # two-sided 95% normal quantile


def to_theta(params: dict[str, float], fit: tuple[str, ...]) -> np.ndarray:
    """Fit coordinates: chi itself (bounded below by 0), log gamma."""
    return np.array([float(params[k]) if k == "chi" else math.log(float(params[k])) for k in fit])


def from_theta(theta: np.ndarray, fit: tuple[str, ...], fixed: dict[str, float]) -> dict[str, float]:
    params = dict(fixed)
    for k, value in zip(fit, theta):
        params[k] = float(value) if k == "chi" else math.exp(float(value))
    return params


@dataclass
class FitResult:
    """Estimates at one model resolution, with Gauss-Newton standard errors and 95% intervals."""

    model_N: int
    fit: tuple[str, ...]
    params: dict[str, float]
    covariance: np.ndarray  # s^2 (J^T J)^-1 of theta = (chi, log gamma) restricted to ``fit``
    cost: float
    sigma: float  # noise level estimated from the residuals (in residual units)
    relative_misfit: float  # |rho_model - rho_obs| / |rho_obs| over all observed cells
    iterations: int
    jacobian_evaluations: int
    cost_evaluations: int
    converged: bool
    at_bound: bool  # chi-hat = 0: its interval is one-sided
    wall_time_s: float
    substeps: int  # FD sub-steps of one forward run at the estimate
    history: list[dict] = field(default_factory=list)
    prediction: torch.Tensor | None = None
    jacobian: torch.Tensor | None = None  # exact, at the estimate, in fit coordinates
    covariance_robust: np.ndarray | None = None  # the sandwich A^-1 J^T diag(r^2) J A^-1 (heteroscedastic noise)

    def standard_errors(self, robust: bool = True) -> dict[str, float]:
        se = np.sqrt(np.clip(np.diag(self.covariance_robust if robust else self.covariance), 0.0, None))
        out = {}
        for k, s in zip(self.fit, se):
            if k == "chi":
                out["chi"] = float(s)
            else:
                out["log_gamma"] = float(s)
                out["gamma"] = float(s) * self.params["gamma"]  # delta method
        return out

    def intervals(self, robust: bool = True) -> dict[str, list[float]]:
        se = self.standard_errors(robust)
        out = {}
        if "chi" in self.fit:
            chi = self.params["chi"]
            out["chi"] = [max(0.0, chi - Z95 * se["chi"]), chi + Z95 * se["chi"]]
        if "gamma" in self.fit:
            g = self.params["gamma"]
            out["gamma"] = [g * math.exp(-Z95 * se["log_gamma"]), g * math.exp(Z95 * se["log_gamma"])]
        return out

    def to_dict(self) -> dict:
        return {"model_N": self.model_N, "fit": list(self.fit), "estimates": dict(self.params),
                "standard_errors": self.standard_errors(), "ci95": self.intervals(),
                "standard_errors_homoscedastic": self.standard_errors(False),
                "ci95_homoscedastic": self.intervals(False),
                "theta": ["chi" if k == "chi" else "log_gamma" for k in self.fit],
                "covariance_theta": self.covariance.tolist(),
                "covariance_theta_robust": self.covariance_robust.tolist(),
                "cost": self.cost, "sigma_residual": self.sigma, "relative_misfit": self.relative_misfit,
                "iterations": self.iterations, "jacobian_evaluations": self.jacobian_evaluations,
                "cost_evaluations": self.cost_evaluations, "converged": self.converged, "chi_at_bound": self.at_bound,
                "wall_time_s": self.wall_time_s, "substeps": self.substeps, "history": self.history}


def _cap_step(step: np.ndarray, theta: np.ndarray, fit: tuple[str, ...]) -> np.ndarray:
    """Scale the step so that no parameter more than doubles or halves in one move (chi: at most
    max(chi, 1/4) up): a long trial step would cost a simulation with a huge sub-step count."""
    ratios = [abs(s) / (max(abs(th), 0.25) if k == "chi" else math.log(2.0)) for k, s, th in zip(fit, step, theta)]
    worst = max(ratios)
    return step / worst if worst > 1.0 else step


def _gauss_newton(J: torch.Tensor, r: torch.Tensor, cost: float, M: int, theta: np.ndarray, chi_index):
    """The Gauss-Newton system at one point: A = J^T J, g = J^T r, which coordinates are free (chi at its
    bound 0 with the cost rising in chi is held), and on the free ones the Gauss-Newton step and the
    homoscedastic standard errors (s^2 = 2 cost / (M - p))."""
    p = J.shape[1]
    A = (J.T @ J).cpu().numpy()
    g = (J.T @ r).cpu().numpy()
    sigma2 = 2.0 * cost / (M - p)
    free = np.ones(p, dtype=bool)
    if chi_index is not None and theta[chi_index] <= 0.0 and g[chi_index] > 0.0:
        free[chi_index] = False
    Af, gf = A[np.ix_(free, free)], g[free]
    try:
        gn_step = np.linalg.solve(Af, -gf)
        se = np.sqrt(sigma2 * np.diag(np.linalg.inv(Af)))
    except np.linalg.LinAlgError:
        gn_step, se = np.full(free.sum(), np.inf), np.zeros(free.sum())
    return A, g, free, gn_step, se


def _covariances(J: torch.Tensor, r: torch.Tensor, cost: float, M: int):
    """(s^2, the homoscedastic covariance s^2 A^-1, the sandwich A^-1 J^T diag(r^2) J A^-1 M / (M - p))."""
    p = J.shape[1]
    A = (J.T @ J).cpu().numpy()
    sigma2 = 2.0 * cost / (M - p)
    meat = ((J * r[:, None]).T @ (J * r[:, None])).cpu().numpy() * (M / (M - p))
    try:
        A_inv = np.linalg.inv(A)
        return sigma2, sigma2 * A_inv, A_inv @ meat @ A_inv
    except np.linalg.LinAlgError:
        return sigma2, np.full((p, p), np.inf), np.full((p, p), np.inf)


def fit_parameters(model: ForwardModel, start: dict[str, float], fit: tuple[str, ...] = PARAMETERS,
                   max_iter: int = 40, step_tol: float = 0.5, progress: bool = False, callback=None,
                   jacobian: torch.Tensor | None = None) -> FitResult:
    """Levenberg-Marquardt on theta = (chi, log gamma) with chi >= 0 (projection and an active set).

    The Jacobian comes from forward mode (:meth:`ForwardModel.evaluate`, about 4x a plain run compiled);
    between exact Jacobians it is carried by Broyden's rank-one update from each accepted step, and trial
    points are plain runs. The exact Jacobian is recomputed when a trial fails with an updated one, when a
    step gains less than a quarter of the decrease the linear model promised, after MAX_BROYDEN_STEPS
    updated steps, and before convergence is declared: converged means the Gauss-Newton step from an exact
    Jacobian is below ``step_tol`` standard errors (homoscedastic, the smaller kind) in every fitted
    coordinate, or that such a step below 2 ``step_tol`` has just been taken. ``jacobian``: a starting
    approximation (e.g. the exact Jacobian of a fit at a coarser model grid: the residuals live on the same
    data grid), used in place of the first exact one. ``callback(it, record)`` sees every iteration.
    """
    t0 = time.perf_counter()
    lm = _Marquardt(model, start, tuple(fit), step_tol, jacobian)
    converged, iteration = False, 0
    bar = tqdm(total=max_iter, desc=f"fit at model N={model.grid.N}", disable=not progress, leave=False)
    for iteration in range(1, max_iter + 1):
        outcome = lm.iterate(iteration)
        if outcome in ("converged", "stalled"):
            converged = outcome == "converged"
            break
        if outcome == "refreshed":
            continue
        record, done = outcome
        if callback is not None:
            callback(iteration, record)
        bar.update(1)
        bar.set_postfix(cost=f"{lm.cost:.4g}", **{k: f"{v:.5g}" for k, v in lm.params().items()})
        if done:
            converged = True  # GN converges linearly from here: the next step is well below step_tol se
            break
    bar.close()
    return lm.result(iteration, converged, time.perf_counter() - t0)


class _Marquardt:
    """The state of one Levenberg-Marquardt fit (:func:`fit_parameters`): the point, its residuals and
    (exact or Broyden-updated) Jacobian, the damping, and the held sub-step schedule."""

    def __init__(self, model: ForwardModel, start: dict[str, float], fit: tuple[str, ...], step_tol: float,
                 jacobian: torch.Tensor | None):
        self.model, self.start, self.fit, self.step_tol = model, start, fit, step_tol
        self.p = len(fit)
        self.theta = to_theta(start, fit)
        self.chi_index = fit.index("chi") if "chi" in fit else None
        self.M = model.observed.numel()
        if self.M <= self.p:
            raise ValueError(f"{self.M} observed values cannot determine {self.p} parameters")
        self.n_jac = self.n_cost = 0
        self.floor = None  # sub-step counts held between evaluations (see run)
        if jacobian is None:
            self.ev, self.J = self.exact(self.theta)
            self.fresh = True
        else:
            self.n_cost += 1
            self.ev, self.J, self.fresh = self.run(self.theta, False), jacobian.double(), False
        self.r, self.cost, self.lam, self.broyden_steps = self.ev.residuals.double(), self.ev.cost, 1e-3, 0
        self.history = [{"iteration": 0, "cost": self.cost, **self.params(), "lambda": self.lam,
                         "exact_jacobian": self.fresh}]

    def params(self, theta: np.ndarray | None = None) -> dict[str, float]:
        return from_theta(self.theta if theta is None else theta, self.fit, self.start)

    def run(self, theta: np.ndarray, jacobian: bool) -> Evaluation:
        """One evaluation on the held sub-step schedule. The counts are held at 1.1x those of the first
        evaluation and raised (again with 10% room) only where the positivity bound needs more: a count that
        flips by one between nearby trial points makes the cost jump by more than a step of a tenth of a
        standard error gains (measured on the 2D N = 64 case), and LM then crawls."""
        model, params = self.model, self.params(theta)
        if self.floor is None:  # the first schedule, from a plain run (a tenth of the cost of one with tangents)
            self.n_cost += 1
            self.floor = [math.ceil(1.1 * u) for u in model.evaluate(params, self.fit, False).counts]
        ev = model.evaluate(params, self.fit, jacobian=jacobian, min_counts=self.floor)
        if any(u > f for u, f in zip(ev.counts, self.floor)):
            self.floor = [max(math.ceil(1.1 * u), f) for u, f in zip(ev.counts, self.floor)]
            ev = model.evaluate(params, self.fit, jacobian=jacobian, min_counts=self.floor)
        return ev

    def exact(self, theta: np.ndarray) -> tuple[Evaluation, torch.Tensor]:
        self.n_jac += 1
        ev = self.run(theta, True)
        return ev, ev.jacobian.double()

    def refresh(self) -> None:
        """An exact Jacobian at the current point."""
        self.ev, self.J = self.exact(self.theta)
        self.r, self.cost, self.fresh = self.ev.residuals.double(), self.ev.cost, True

    def iterate(self, iteration: int):
        """One iteration: "converged", "stalled" (damping ran away), "refreshed" (an exact Jacobian taken,
        no step), or (its history record, whether the fit ends converged with it)."""
        A, g, free, gn_step, se = _gauss_newton(self.J, self.r, self.cost, self.M, self.theta, self.chi_index)
        Af, gf = A[np.ix_(free, free)], g[free]
        if np.all(np.abs(gn_step) <= self.step_tol * se):
            if self.fresh:
                return "converged"
            self.refresh()
            return "refreshed"
        step = np.zeros(self.p)
        step[free] = np.linalg.solve(Af + self.lam * np.diag(np.diag(Af)), -gf)
        step = _cap_step(step, self.theta, self.fit)
        final_step = self.fresh and np.all(np.abs(gn_step) <= 2.0 * self.step_tol * se)  # one more exact step ends it
        trial_theta = self.theta + step
        if self.chi_index is not None:
            trial_theta[self.chi_index] = max(trial_theta[self.chi_index], 0.0)
        try:
            self.n_cost += 1
            trial = self.run(trial_theta, False)
        except RejectedTrial:  # the step limit, or a collapse on the model grid: a failed step
            trial = None
        accepted = trial is not None and trial.cost < self.cost
        gain = None
        if accepted:
            gain = self.accept(trial_theta, trial, A, g)
        elif not self.fresh:
            self.refresh()
        else:
            self.lam *= 4.0
            if self.lam > 1e10:
                return "stalled"
        record = {"iteration": iteration, "cost": self.cost, **self.params(), "lambda": self.lam,
                  "exact_jacobian": self.fresh, "step_in_se": float(np.max(np.abs(gn_step) / np.maximum(se, 1e-300))),
                  "accepted": bool(accepted), "gain": float(gain) if accepted else None}
        self.history.append(record)
        return record, bool(final_step and accepted)

    def accept(self, trial_theta: np.ndarray, trial: Evaluation, A: np.ndarray, g: np.ndarray) -> float:
        """Move to the trial point; carry the Jacobian by Broyden's update or take an exact one; adapt the
        damping. Returns the gain: the decrease achieved over the one the linear model promised."""
        taken = trial_theta - self.theta
        predicted = -(g @ taken + 0.5 * taken @ A @ taken)
        gain = (self.cost - trial.cost) / predicted if predicted > 0 else 0.0
        s = torch.as_tensor(taken, dtype=self.J.dtype, device=self.J.device)
        r_old, r_new = self.r, trial.residuals.double()
        self.theta, self.r, self.cost, self.ev = trial_theta, r_new, trial.cost, trial
        self.broyden_steps = 0 if self.fresh else self.broyden_steps + 1
        if not self.fresh and (gain < 0.25 or self.broyden_steps >= MAX_BROYDEN_STEPS):  # drifted: take the exact one
            self.refresh()
        else:
            self.J = self.J + torch.outer(r_new - r_old - self.J @ s, s) / (s @ s)  # Broyden: J s matches the change
            self.fresh = False
            lam = self.lam
            self.lam = max(lam / 3.0, 1e-9) if gain > 0.75 else lam if gain > 0.25 else 2.0 * lam
        return gain

    def result(self, iterations: int, converged: bool, wall: float) -> FitResult:
        """The estimate with its covariances, from an exact Jacobian at the final point."""
        if not self.fresh:
            self.refresh()
        sigma2, covariance, robust = _covariances(self.J, self.r, self.cost, self.M)
        model, ev = self.model, self.ev
        misfit = float(torch.linalg.vector_norm(ev.prediction - model.observed) / torch.linalg.vector_norm(model.observed))
        at_bound = self.chi_index is not None and self.theta[self.chi_index] <= 0.0
        return FitResult(model.grid.N, self.fit, self.params(), covariance, self.cost, math.sqrt(sigma2), misfit,
                         iterations, self.n_jac, self.n_cost, converged, at_bound, wall, sum(ev.counts),
                         self.history, ev.prediction, self.J, robust)
