"""Recover chi and gamma from observed densities by differentiating through the finite-volume solver.

Forward model. The FD solver of :mod:`nsipf_torch.solvers.fd` (paper eqs. 1-2: rho_t = div(gamma grad rho -
chi rho grad c), c_t = -c rho), run on a model grid of M = factor * N cells per axis from the observed rho0
and c0 and observed by block-averaging rho onto the N^d data grid at the observation times
(:mod:`nsipf_torch.inference.observations`). rho0 is refined conservatively (a limited quartic reconstruction:
cell masses kept exactly, rho0 >= 0, fifth order where smooth), c0 by the interpolating cubic spline of
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
:meth:`ForwardModel.loss_gradient` is the reverse-mode gradient of the cost with the outer steps
checkpointed (memory: one state per outer step), for callers with many parameters; the tests check both
modes against each other and against central differences.

Least squares. r = w (rho_model - rho_obs) over the K N^d observed cells, cost = |r|^2 / 2;
``weights="relative"`` (default) takes w = 1 / max(m, floor * max m) with m the mean of the observed
values of a cell's neighbours, so multiplicative noise becomes nearly homoscedastic while the weight stays
free of the cell's own noise (a weight from the cell itself biases the fit, :func:`neighbour_mean`);
``"none"`` takes w = 1. Fit coordinates theta = (chi, log gamma): gamma > 0 by construction, chi >= 0 by
projection with an active set, so chi-hat = 0 is reachable (a chemotaxis-free data set gives 0, not a log
running to -inf). Marquardt's diagonal scaling makes Levenberg-Marquardt invariant to rescaling a
coordinate, so fitting chi itself loses nothing that log chi would give except positivity.

Optimiser (:func:`fit_parameters`). Levenberg-Marquardt; exact Jacobians (about 4x a plain run when
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
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from einops import rearrange
from torch.utils.checkpoint import checkpoint

import nsipf_torch.solvers.finite_volume as fv
from nsipf_torch.problems.grid import Grid
from nsipf_torch.particles.interp import SplineInterp
from nsipf_torch.metrics import block_average
from nsipf_torch.inference.observations import Observations

PARAMETERS = ("chi", "gamma")
WEIGHTS = ("none", "relative")
MAX_SUBSTEPS = 20_000  # per outer step: beyond this a trial point is rejected (the parameters ran away)
CHECK_STEP_TOL = 1.0  # the discretisation-check fits stop within this many standard errors
MAX_BROYDEN_STEPS = 5  # consecutive steps on an updated Jacobian before an exact one is computed
Z95 = 1.959963984540054  # two-sided 95% normal quantile


class StepLimitError(ValueError):
    """A trial parameter needs more than MAX_SUBSTEPS sub-steps per outer step."""


# ------------------------------------------------------------------------------------------ model grid

REFINE_DEGREE = 4  # the reconstructing polynomial's degree (even: a centred stencil of degree + 1 cells)


def _child_weights(degree: int, factor: int) -> np.ndarray:
    """(factor, degree + 1) weights: child j's average of the polynomial of ``degree`` whose averages over
    the cells k = -degree/2 .. degree/2 (unit width, cell 0 centred at x = 0) are given, as a combination of
    those cell averages. Every row sums to 1 and the rows average to the centre cell (conservation)."""
    half = degree // 2
    powers = np.arange(degree + 1)

    def monomial_means(a, b):  # averages of x^p over [a, b]
        return (b ** (powers + 1) - a ** (powers + 1)) / ((powers + 1) * (b - a))

    cells = np.stack([monomial_means(k - 0.5, k + 0.5) for k in range(-half, half + 1)])
    edges = [-0.5 + j / factor for j in range(factor + 1)]
    children = np.stack([monomial_means(a, b) for a, b in zip(edges[:-1], edges[1:])])
    return children @ np.linalg.inv(cells)


def _refine_axis(q: torch.Tensor, axis: int, factor: int, degree: int = REFINE_DEGREE) -> torch.Tensor:
    """Conservative, positivity-preserving refinement of cell averages along one axis by ``factor``.

    The polynomial of ``degree`` with the cell averages of the degree + 1 cells centred on cell i (walls:
    the Neumann mirror, q_{-1 - k} = q_k) is averaged over each of the ``factor`` children; the children's
    deviations from q_i sum to zero, and they are scaled by theta in [0, 1] per cell so that no child is
    negative (a Zhang-Shu scaling limiter). Order degree + 1 where q is smooth and positive.
    """
    half = degree // 2
    q = q.movedim(axis, -1)
    n = q.shape[-1]
    mirrored = torch.cat([q[..., :half].flip(-1), q, q[..., n - half:].flip(-1)], dim=-1)
    stencil = mirrored.unfold(-1, degree + 1, 1)  # (..., n, degree + 1): cells i - half .. i + half
    weights = torch.as_tensor(_child_weights(degree, factor), dtype=q.dtype, device=q.device)
    dev = torch.einsum("...ns,js->...nj", stencil, weights) - q[..., None]  # (..., n, factor)
    deficit = (-dev).amax(dim=-1, keepdim=True)
    theta = torch.where(deficit > q[..., None], q[..., None] / deficit.clamp_min(1e-300), torch.ones_like(deficit))
    children = (q[..., None] + theta * dev).clamp_min(0.0)  # the clamp only removes round-off below 0
    return rearrange(children, "... n child -> ... (n child)").movedim(-1, axis)


def refine_cell_averages(q: torch.Tensor, factor: int, dim: int) -> torch.Tensor:
    """Cell averages (..., N, ..., N) -> (..., fN, ..., fN): block-averaging back gives q exactly (to
    round-off), values stay >= 0, order REFINE_DEGREE + 1 where q is smooth and positive."""
    if factor == 1:
        return q
    for axis in range(-dim, 0):
        q = _refine_axis(q, axis, factor)
    return q


def refine_centre_values(c: torch.Tensor, grid: Grid, factor: int) -> torch.Tensor:
    """Values at the centres of ``grid`` (B, N, ..., N) -> at the centres of the grid refined by ``factor``,
    by the interpolating cubic spline with reflecting walls; clipped at 0 (c >= 0)."""
    if factor == 1:
        return c
    fine = Grid(grid.N * factor, grid.dim, grid.L, grid.device, grid.dtype)
    X = rearrange(torch.stack(fine.mesh(), dim=-1), "... d -> (...) d").to(c.dtype)
    values = SplineInterp(grid).value(c, X.expand(c.shape[0], -1, -1))
    return values.reshape(c.shape[0], *fine.shape).clamp_min(0.0)


def neighbour_mean(q: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of the 3^d - 1 neighbours of every cell (walls: the edge value repeated), the cell itself left out.

    The relative weights are built from it: a weight that used the cell's own noisy value would correlate
    with that cell's residual and bias the fit (by about 2 noise^2 for multiplicative noise: 0.5% at 5%).
    """
    import torch.nn.functional as F

    flat = q.reshape(-1, 1, *q.shape[-dim:])
    padded = F.pad(flat, (1, 1) * dim, mode="replicate")
    pool = F.avg_pool3d if dim == 3 else F.avg_pool2d
    block = 3**dim
    mean = (pool(padded, kernel_size=3, stride=1) * block - flat) / (block - 1)
    return mean.reshape(q.shape)


# ------------------------------------------------------------------------------------------ forward model

def _primal(x):
    """The plain value of a parameter that may require grad."""
    return x.detach() if isinstance(x, torch.Tensor) else x


@dataclass
class Evaluation:
    """The model's observations at one parameter point: prediction (K, N, ..., N), residuals and Jacobian
    (columns in fit coordinates, None without tangents), sub-step counts per outer step."""

    prediction: torch.Tensor
    residuals: torch.Tensor
    jacobian: torch.Tensor | None
    counts: list[int]

    @property
    def cost(self) -> float:
        return 0.5 * float(self.residuals.pow(2).sum())


class ForwardModel:
    """The FD solver on the model grid, observed on the data grid at the observation times.

    ``dt`` is the largest outer step; each interval between observation times is split into equal outer
    steps of at most ``dt``, and each outer step into the sub-steps the positivity bound asks for.
    """

    def __init__(self, obs: Observations, model_N: int | None = None, dt: float = 0.01, weights: str = "none",
                 weight_floor: float = 0.01, limiter: str = "minmod", c_update: str = "exp",
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float64,
                 rho0_model: torch.Tensor | None = None, c0_model: torch.Tensor | None = None, compile: bool = False):
        N, dim = obs.N, obs.dim
        model_N = 2 * N if model_N is None else int(model_N)
        if model_N < N or model_N % N:
            raise ValueError(f"model_N must be a multiple of the data grid N = {N}, got {model_N}")
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be > 0, got {dt}")
        if weights not in WEIGHTS:
            raise ValueError(f"unknown weights {weights!r}; choose one of {WEIGHTS}")
        if not (math.isfinite(weight_floor) and weight_floor > 0):
            raise ValueError(f"weight_floor must be > 0, got {weight_floor}")
        self.obs, self.factor, self.limiter, self.c_update = obs, model_N // N, limiter, c_update
        self.data_grid = Grid(N, dim, obs.L, device, dtype)
        self.grid = Grid(model_N, dim, obs.L, device, dtype)
        self.geometry, self.compile = fv.CartesianGeometry(self.grid.h, dim), bool(compile)
        as_tensor = lambda a: torch.as_tensor(a, dtype=dtype, device=self.grid.device)
        self.observed = as_tensor(obs.rho)
        if rho0_model is None:  # synthetic data may start the model from an exact finer rho0
            rho0_model = refine_cell_averages(as_tensor(obs.rho0)[None], self.factor, dim)
        if c0_model is None:
            c0_model = refine_centre_values(as_tensor(obs.c0)[None], self.data_grid, self.factor)
        self.rho0, self.c0 = rho0_model.reshape(1, *self.grid.shape), c0_model.reshape(1, *self.grid.shape)
        if weights == "relative":
            scale = neighbour_mean(self.observed, dim)
            self.sqrt_weight = 1.0 / scale.clamp_min(weight_floor * float(scale.max()))
        else:
            self.sqrt_weight = torch.ones_like(self.observed)
        self.schedule = []  # (outer dt, number of outer steps) per observation interval
        previous = 0.0
        for t in obs.t.tolist():
            n = max(1, math.ceil((t - previous) / dt - 1e-9))
            self.schedule.append(((t - previous) / n, n))
            previous = t

    @property
    def n_outer(self) -> int:
        return sum(n for _, n in self.schedule)

    def simulate(self, chi, gamma, counts: list[int] | None = None, use_checkpoint: bool = False,
                 min_counts: list[int] | None = None, directions: tuple[torch.Tensor, torch.Tensor] | None = None):
        """rho block-averaged to the data grid at every observation time, (B, K, N, ..., N); its tangents
        (P, K, N, ..., N) along ``directions`` (else None); and the sub-step counts.

        chi, gamma: (B,) tensors (plain or requiring grad) or floats. ``directions = (d_chi, d_gamma)``, each
        (P,), carries the derivatives of the observations along P directions of the parameters by forward
        mode (:func:`~nsipf_torch.solvers.finite_volume.tangent_substep`; needs B = 1). ``counts`` freezes the
        sub-step count of each outer step (finite-difference checks); otherwise each count comes from the
        positivity bound at the current state and parameters, without gradient, and is raised to
        ``min_counts`` where that is larger (more sub-steps keep the bound). ``use_checkpoint`` recomputes
        each outer step in the backward pass (reverse mode), and runs eagerly.
        """
        B = max(int(x.shape[0]) if isinstance(x, torch.Tensor) else 1 for x in (chi, gamma))
        rho = self.rho0.expand(B, *self.grid.shape)
        c = self.c0.expand(B, *self.grid.shape)
        dim, N = self.grid.dim, self.obs.N
        if directions is not None:
            if B != 1:
                raise ValueError(f"tangents need one parameter point (B = 1), got B = {B}")
            d_chi, d_gamma = (torch.as_tensor(d, dtype=rho.dtype, device=rho.device).reshape(-1, 1)
                              for d in directions)
            d_rho = torch.zeros((d_chi.shape[0], *rho.shape), dtype=rho.dtype, device=rho.device)
            d_c = torch.zeros_like(d_rho)
            gamma, chi = (torch.as_tensor(x, dtype=rho.dtype, device=rho.device).reshape(1) for x in (gamma, chi))
        used, outputs, tangents, step = [], [], [], 0
        for dt, n_steps in self.schedule:
            for _ in range(n_steps):
                if counts is not None:
                    n_sub = counts[step]
                else:
                    with torch.no_grad():
                        n_sub = fv.substep_count(c.detach(), dt, _primal(gamma), _primal(chi), self.geometry,
                                                 rho=rho.detach(), c_update=self.c_update)
                    if min_counts is not None:
                        n_sub = max(n_sub, min_counts[step])
                    if n_sub > MAX_SUBSTEPS:
                        raise StepLimitError(f"chi = {_primal(chi)}, gamma = {_primal(gamma)} need {n_sub} "
                                             f"sub-steps per outer step (limit {MAX_SUBSTEPS})")
                if directions is not None:
                    rho, c, d_rho, d_c = fv.tangent_advance(rho, c, d_rho, d_c, dt, gamma, chi, d_gamma, d_chi,
                                                            self.geometry, self.limiter, self.c_update, n_sub,
                                                            self.compile)
                else:
                    args = (rho, c, dt, gamma, chi, self.geometry, self.limiter, self.c_update, n_sub)
                    if use_checkpoint:
                        rho, c, _ = checkpoint(fv.advance, *args, use_reentrant=False)
                    else:
                        rho, c, _ = fv.advance(*args, compile=self.compile)
                used.append(n_sub)
                step += 1
            outputs.append(block_average(rho, N, dim))
            if directions is not None:
                tangents.append(block_average(rearrange(d_rho, "p 1 ... -> p ..."), N, dim))
        prediction = torch.stack(outputs, dim=1)
        return prediction, (torch.stack(tangents, dim=1) if directions is not None else None), used

    def residuals(self, prediction: torch.Tensor) -> torch.Tensor:
        """w (rho_model - rho_obs), flattened over the K N^d observed cells (prediction (K, N, ..., N))."""
        return ((prediction - self.observed) * self.sqrt_weight).reshape(-1)

    def evaluate(self, params: dict[str, float], fit: tuple[str, ...] = PARAMETERS, jacobian: bool = True,
                 counts: list[int] | None = None, min_counts: list[int] | None = None) -> Evaluation:
        """Prediction and residuals at ``params`` and, with ``jacobian``, the columns d r / d theta for the
        fitted names (theta = chi for chi, log gamma for gamma), all from one forward-mode pass."""
        dtype, device = self.grid.dtype, self.grid.device
        values = {k: torch.full((1,), float(params[k]), dtype=dtype, device=device) for k in PARAMETERS}
        directions = None
        if jacobian and fit:  # direction j moves theta_j by one: d gamma / d log gamma = gamma
            scale = {"chi": 1.0, "gamma": float(params["gamma"])}
            directions = tuple(torch.tensor([scale[name] if name == k else 0.0 for name in fit], dtype=dtype,
                                            device=device) for k in ("chi", "gamma"))
        with torch.no_grad():
            prediction, tangent, used = self.simulate(values["chi"], values["gamma"], counts, min_counts=min_counts,
                                                      directions=directions)
        primal = prediction[0]
        J = None
        if tangent is not None:
            J = torch.stack([self.residual_tangent(tangent[j]) for j in range(len(fit))], dim=1)
        return Evaluation(primal, self.residuals(primal), J, used)

    def residual_tangent(self, prediction_tangent: torch.Tensor) -> torch.Tensor:
        """The linear part of :meth:`residuals`: w d(rho_model), flattened."""
        return (prediction_tangent * self.sqrt_weight).reshape(-1)

    def loss_gradient(self, params: dict[str, float], fit: tuple[str, ...] = PARAMETERS,
                      counts: list[int] | None = None) -> tuple[float, torch.Tensor, list[int]]:
        """cost = |r|^2 / 2 and its gradient in fit coordinates by reverse-mode autograd, the outer steps
        checkpointed (the tape holds one state per outer step; each step is recomputed in the backward)."""
        dtype, device = self.grid.dtype, self.grid.device
        theta = torch.tensor([float(params[k]) if k == "chi" else math.log(float(params[k])) for k in fit],
                             dtype=dtype, device=device, requires_grad=True)
        values = {k: torch.full((1,), float(params[k]), dtype=dtype, device=device) for k in PARAMETERS}
        with torch.enable_grad():
            for j, name in enumerate(fit):
                values[name] = (theta[j] if name == "chi" else torch.exp(theta[j])).reshape(1)
            prediction, _, used = self.simulate(values["chi"], values["gamma"], counts, use_checkpoint=True)
            cost = 0.5 * self.residuals(prediction[0]).pow(2).sum()
            (grad,) = torch.autograd.grad(cost, theta)
        return cost.item(), grad.detach(), used


# ------------------------------------------------------------------------------------------ estimation

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
    from tqdm import tqdm

    t0 = time.perf_counter()
    fit = tuple(fit)
    p = len(fit)
    theta = to_theta(start, fit)
    chi_index = fit.index("chi") if "chi" in fit else None
    M = model.observed.numel()
    if M <= p:
        raise ValueError(f"{M} observed values cannot determine {p} parameters")
    n_jac = n_cost = 0

    floor = None  # sub-step counts held between evaluations (see below)

    def run(theta, jacobian):
        """One evaluation on the held sub-step schedule. The counts are held at 1.1x those of the first
        evaluation and raised (again with 10% room) only where the positivity bound needs more: a count that
        flips by one between nearby trial points makes the cost jump by more than a step of a tenth of a
        standard error gains (measured on the 2D N = 64 case), and LM then crawls."""
        nonlocal floor
        nonlocal n_cost
        if floor is None:  # the first schedule, from a plain run (a tenth of the cost of one with tangents)
            n_cost += 1
            floor = [math.ceil(1.1 * u) for u in model.evaluate(from_theta(theta, fit, start), fit, False).counts]
        ev = model.evaluate(from_theta(theta, fit, start), fit, jacobian=jacobian, min_counts=floor)
        if any(u > f for u, f in zip(ev.counts, floor)):
            floor = [max(math.ceil(1.1 * u), f) for u, f in zip(ev.counts, floor)]
            ev = model.evaluate(from_theta(theta, fit, start), fit, jacobian=jacobian, min_counts=floor)
        return ev

    def exact(theta):
        nonlocal n_jac
        n_jac += 1
        ev = run(theta, True)
        return ev, ev.jacobian.double()

    if jacobian is None:
        ev, J = exact(theta)
        fresh = True
    else:
        n_cost += 1
        ev, J, fresh = run(theta, False), jacobian.double(), False
    r, cost, lam, broyden_steps = ev.residuals.double(), ev.cost, 1e-3, 0
    history = [{"iteration": 0, "cost": cost, **from_theta(theta, fit, start), "lambda": lam, "exact_jacobian": fresh}]
    converged, iteration = False, 0
    bar = tqdm(total=max_iter, desc=f"fit at model N={model.grid.N}", disable=not progress, leave=False)
    for iteration in range(1, max_iter + 1):
        A, g, free, gn_step, se = _gauss_newton(J, r, cost, M, theta, chi_index)
        Af, gf = A[np.ix_(free, free)], g[free]
        if np.all(np.abs(gn_step) <= step_tol * se):
            if fresh:
                converged = True
                break
            ev, J = exact(theta)
            r, cost, fresh = ev.residuals.double(), ev.cost, True
            continue
        step = np.zeros(p)
        step[free] = np.linalg.solve(Af + lam * np.diag(np.diag(Af)), -gf)
        step = _cap_step(step, theta, fit)
        final_step = fresh and np.all(np.abs(gn_step) <= 2.0 * step_tol * se)  # one more exact step ends it
        trial_theta, r_old = theta + step, r
        if chi_index is not None:
            trial_theta[chi_index] = max(trial_theta[chi_index], 0.0)
        try:
            n_cost += 1
            trial = run(trial_theta, False)
        except StepLimitError:
            trial = None
        accepted = trial is not None and trial.cost < cost
        if accepted:
            taken = trial_theta - theta
            predicted = -(g @ taken + 0.5 * taken @ A @ taken)  # the decrease the linear model promised
            gain = (cost - trial.cost) / predicted if predicted > 0 else 0.0
            s = torch.as_tensor(taken, dtype=J.dtype, device=J.device)
            r_new = trial.residuals.double()
            theta, r, cost, ev = trial_theta, r_new, trial.cost, trial
            broyden_steps = 0 if fresh else broyden_steps + 1
            if not fresh and (gain < 0.25 or broyden_steps >= MAX_BROYDEN_STEPS):  # drifted: take the exact one
                ev, J = exact(theta)
                r, cost, fresh = ev.residuals.double(), ev.cost, True
            else:
                J = J + torch.outer(r_new - r_old - J @ s, s) / (s @ s)  # Broyden: J s matches the change
                fresh = False
                lam = max(lam / 3.0, 1e-9) if gain > 0.75 else lam if gain > 0.25 else 2.0 * lam
        elif not fresh:
            ev, J = exact(theta)
            r, cost, fresh = ev.residuals.double(), ev.cost, True
        else:
            lam *= 4.0
            if lam > 1e10:
                break
        record = {"iteration": iteration, "cost": cost, **from_theta(theta, fit, start), "lambda": lam,
                  "exact_jacobian": fresh, "step_in_se": float(np.max(np.abs(gn_step) / np.maximum(se, 1e-300))),
                  "accepted": bool(accepted), "gain": float(gain) if accepted else None}
        history.append(record)
        if callback is not None:
            callback(iteration, record)
        bar.update(1)
        bar.set_postfix(cost=f"{cost:.4g}", **{k: f"{v:.5g}" for k, v in from_theta(theta, fit, start).items()})
        if final_step and accepted:
            converged = True  # GN converges linearly from here: the next step is well below step_tol se
            break
    bar.close()
    if not fresh:
        ev, J = exact(theta)
        r, cost = ev.residuals.double(), ev.cost
    sigma2, covariance, robust = _covariances(J, r, cost, M)
    params = from_theta(theta, fit, start)
    misfit = float(torch.linalg.vector_norm(ev.prediction - model.observed) / torch.linalg.vector_norm(model.observed))
    return FitResult(model.grid.N, fit, params, covariance, cost, math.sqrt(sigma2), misfit, iteration, n_jac, n_cost,
                     converged, chi_index is not None and theta[chi_index] <= 0.0, time.perf_counter() - t0,
                     sum(ev.counts), history, ev.prediction, J, robust)


# ------------------------------------------------------------------------------------------ synthetic data

DEFAULT_TIMES = (0.05, 0.1, 0.15, 0.2)


def synthetic_observations(ic: str, dim: int, N: int, chi: float, gamma: float, times=DEFAULT_TIMES,
                           noise: float = 0.05, seed: int = 0, data_factor: int = 2, L: float = 1.0, M0: float = 1.0,
                           dt: float = 0.01, limiter: str = "minmod", c_update: str = "exp",
                           compile: bool = False) -> Observations:
    """Observations of a canonical problem: the FD solver at data_factor * N from the exact cell averages of
    the initial condition there, block-averaged to N, times (1 + noise * e) with e ~ N(0, 1) per cell
    (seeded). rho0 and c0 are stored exactly at N; chi_true and gamma_true record the truth."""
    from nsipf_torch.problems.initial import get_ic
    from nsipf_torch.inference.observations import make_observations

    problem = get_ic(ic)
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be >= 0, got {noise}")
    if isinstance(data_factor, bool) or not isinstance(data_factor, int) or data_factor < 1:
        raise ValueError(f"data_factor must be a positive integer, got {data_factor!r}")
    coarse, fine = Grid(N, dim, L), Grid(N * data_factor, dim, L)
    rho0, c0 = problem.rho0(coarse, M0).numpy(), problem.c0(coarse).numpy()
    skeleton = make_observations(times, np.zeros((len(times), *coarse.shape)), rho0, c0, L, M0)
    model = ForwardModel(skeleton, model_N=fine.N, dt=dt, limiter=limiter, c_update=c_update,
                         rho0_model=problem.rho0(fine, M0), c0_model=problem.c0(fine), compile=compile)
    clean = model.evaluate({"chi": chi, "gamma": gamma}, jacobian=False).prediction
    generator = torch.Generator().manual_seed(int(seed))
    factor = 1.0 + noise * torch.randn(clean.shape, generator=generator, dtype=clean.dtype)
    noisy = (clean * factor).clamp_min(0.0)  # a draw below -100% (20 sigma at 5%) would be clipped
    return make_observations(times, noisy.numpy(), rho0, c0, L, M0, chi_true=chi, gamma_true=gamma)


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
        except StepLimitError:
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


def infer(data, fit=PARAMETERS, chi: float = 1.0, gamma: float = 0.01, model_N: int | None = None,
          check: bool = True, dt: float = 0.01, weights: str = "relative", weight_floor: float = 1e-3,
          limiter: str = "minmod", c_update: str = "exp", device: str = "cpu", dtype: str = "float64",
          max_iter: int = 40, step_tol: float = 0.5, compile: bool = True, progress: bool = False,
          callback=None) -> InferenceResult:
    """Estimate chi and/or gamma (``fit``) from observations (an :class:`Observations` or an obs.npz path).

    ``chi``/``gamma`` are the initial guesses of fitted parameters and the values of fixed ones. The model
    runs at ``model_N`` (default 2N); with ``check`` the fit is repeated at N and 2N (the discretisation
    check; at the data's own resolution the model's discretisation error is absorbed into the parameters).
    ``compile`` fuses the FD sub-step and its tangents with ``torch.compile`` (on this project's 2-core
    CPU 8-9x faster per plain sub-step and 9-19x per sub-step with tangents, after 10-25 s of compilation
    per model grid; docs/INFERENCE.md). ``callback(model_N, iteration, record)`` sees every iteration. Bad
    values raise ``ValueError``.
    """
    from nsipf_torch.problems.grid import resolve_device, resolve_dtype
    from nsipf_torch.inference.observations import load_observations

    obs = data if isinstance(data, Observations) else load_observations(data)
    fit = parse_fit(fit)
    for name, value in (("chi", chi), ("gamma", gamma)):
        if not math.isfinite(float(value)):
            raise ValueError(f"{name} must be finite, got {value}")
    if chi < 0:
        raise ValueError(f"chi must be >= 0, got {chi}")
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0 (it is fitted as log gamma), got {gamma}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if not (math.isfinite(step_tol) and step_tol > 0):
        raise ValueError(f"step_tol must be > 0, got {step_tol}")
    device, torch_dtype = resolve_device(device), resolve_dtype(dtype)
    model_N = 2 * obs.N if model_N is None else int(model_N)
    resolutions = sorted({obs.N, 2 * obs.N, model_N}) if check else [model_N]
    options = dict(dt=dt, weights=weights, weight_floor=weight_floor, limiter=limiter, c_update=c_update,
                   device=device, dtype=torch_dtype, compile=compile)
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
        if n != model_N:
            fits[n] = fit_parameters(model, main.params, fit, max_iter, max(step_tol, CHECK_STEP_TOL), progress,
                                     report(n), main.jacobian)
    settings = {"fit": list(fit), "start": start, "model_N": model_N, "check": check, "dt": dt, "weights": weights,
                "weight_floor": weight_floor, "limiter": limiter, "c_update": c_update, "device": str(device),
                "dtype": dtype if isinstance(dtype, str) else str(dtype), "max_iter": max_iter, "step_tol": step_tol,
                "compile": bool(compile)}
    return InferenceResult(fits[model_N], fits, obs, settings)
