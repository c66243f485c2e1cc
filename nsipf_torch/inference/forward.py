"""The forward model of the inverse problem and its derivatives (nsipf_torch/inference/fit.py has the method).

The FD solver of :mod:`nsipf_torch.solvers.fd` (paper eqs. 1-2) on a model grid of M = factor * N cells per
axis, started from the refined rho0 and c0 (:mod:`nsipf_torch.inference.refine`), observed by
block-averaging rho onto the N^d data grid at the observation times. Each outer step takes the sub-step
count of the positivity bound (docs/MODEL.md §6) at the current primal state, without gradient. The
Jacobian's columns are the tangents of the whole simulation by forward mode in one pass
(:func:`~nsipf_torch.solvers.finite_volume.tangent_advance`); :meth:`ForwardModel.loss_gradient` is the
reverse-mode gradient with the outer steps checkpointed.

With a :class:`~nsipf_torch.solvers.c_equation.CEquation` of the Keller-Segel family (issue 20) the
sub-step is the family's (the c step through the DCT solve, the drift chi grad Phi(c)), and so are its
tangents; a parabolic or elliptic model is checked after every outer step against the collapse criterion
of :mod:`nsipf_torch.run.collapse`, and a trial point that crosses it is a :class:`CollapseError`, rejected
by the fit as one beyond the sub-step limit is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch.utils.checkpoint import checkpoint

import nsipf_torch.solvers.finite_volume as fv
from nsipf_torch.inference.observations import Observations
from nsipf_torch.inference.refine import neighbour_mean, refine_cell_averages, refine_centre_values
from nsipf_torch.metrics import block_average
from nsipf_torch.problems.grid import Grid, resolve_device
from nsipf_torch.run.collapse import cell_peclet, collapse_limit
from nsipf_torch.run.memory import available_bytes, estimate_bytes
from nsipf_torch.solvers.c_equation import CEquation

PARAMETERS = ("chi", "gamma")
WEIGHTS = ("none", "relative")
MAX_SUBSTEPS = 20_000  # per outer step: beyond this a trial point is rejected (the parameters ran away)


class RejectedTrial(ValueError):
    """A trial parameter point the forward model cannot run to the last observation time: the fit treats it
    as a failed step (and the chi scan skips it)."""


class StepLimitError(RejectedTrial):
    """A trial parameter needs more than MAX_SUBSTEPS sub-steps per outer step."""


class CollapseError(RejectedTrial):
    """A trial parameter concentrates rho beyond the model grid: the cell Peclet number crosses the collapse
    criterion of :mod:`nsipf_torch.run.collapse` (cells that produce their attractant; issue 20)."""


def check_model_memory(model_N: int, dim: int, K: int, N: int, dtype: torch.dtype, device: torch.device,
                       lower: str = "model_N (--model-N) or the data's N") -> int:
    """Refuse a model grid whose memory exceeds what ``device`` has free (``ValueError`` naming model_N);
    returns the estimate. The FD run holds its state and one tangent per parameter, each costing what a
    simulation member does (:mod:`nsipf_torch.run.memory`), beside the observations, their weights and the
    prediction (K N^d values each). ``lower`` says what to lower."""
    itemsize = torch.finfo(dtype).bits // 8
    need = estimate_bytes("fdm", N=model_N, dim=dim, P=0, B=1 + len(PARAMETERS), dtype=dtype)
    need += 3 * K * float(N) ** dim * itemsize
    have = available_bytes(device)
    if need > have:
        raise ValueError(f"an FD grid of {model_N} cells per axis (d = {dim}) needs about {need / 2**30:.3g} GiB "
                         f"but {device} has {have / 2**30:.3g} GiB available; lower {lower}")
    return int(need)


def _primal(x):
    """The plain value of a parameter that may require grad."""
    return x.detach() if isinstance(x, torch.Tensor) else x


def _shown(x) -> str:
    """A parameter (a float or a (B,) tensor) for a message."""
    values = _primal(x).reshape(-1).tolist() if isinstance(x, torch.Tensor) else [x]
    return ", ".join(f"{float(v):.6g}" for v in values)


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
                 rho0_model: torch.Tensor | None = None, c0_model: torch.Tensor | None = None, compile: bool = False,
                 ceq: CEquation | None = None):
        N, dim = obs.N, obs.dim
        model_N = 2 * N if model_N is None else int(model_N)
        if model_N < N or model_N % N:
            raise ValueError(f"model_N must be a multiple of the data grid N = {N}, got {model_N}")
        check_model_memory(model_N, dim, obs.K, N, dtype, resolve_device(device))
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
        # the paper's system keeps ceq None: its code path is the original one, bit for bit
        self.ceq = None if ceq is None or ceq.is_paper else ceq
        if self.ceq is not None:  # the elliptic c is the solve for the model's rho0, not the observed c0
            self.c0 = self.ceq.initial(self.c0, self.rho0, self.grid.h, dim)
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
        limit = self._collapse_limit(c, gamma, chi)
        used, outputs, tangents, t = [], [], [], 0.0
        for dt, n_steps in self.schedule:
            for _ in range(n_steps):
                step = len(used)
                n_sub = counts[step] if counts is not None else self._substeps(
                    rho, c, dt, gamma, chi, None if min_counts is None else min_counts[step])
                if directions is not None:
                    rho, c, d_rho, d_c = fv.tangent_advance(rho, c, d_rho, d_c, dt, gamma, chi, d_gamma, d_chi,
                                                            self.geometry, self.limiter, self.c_update, n_sub,
                                                            self.compile, self.ceq)
                else:
                    args = (rho, c, dt, gamma, chi, self.geometry, self.limiter, self.c_update, n_sub)
                    if use_checkpoint:
                        rho, c, _ = checkpoint(fv.advance, *args, ceq=self.ceq, use_reentrant=False)
                    else:
                        rho, c, _ = fv.advance(*args, compile=self.compile, ceq=self.ceq)
                used.append(n_sub)
                t += dt
                self._check_collapse(c, gamma, chi, limit, t)
            outputs.append(block_average(rho, N, dim))
            if directions is not None:
                tangents.append(block_average(rearrange(d_rho, "p 1 ... -> p ..."), N, dim))
        prediction = torch.stack(outputs, dim=1)
        return prediction, (torch.stack(tangents, dim=1) if directions is not None else None), used

    def _substeps(self, rho, c, dt: float, gamma, chi, floor: int | None) -> int:
        """The positivity bound's sub-step count at the current primal state (without gradient), raised to
        ``floor``; beyond MAX_SUBSTEPS the trial point is rejected."""
        with torch.no_grad():
            n_sub = fv.substep_count(c.detach(), dt, _primal(gamma), _primal(chi), self.geometry, rho=rho.detach(),
                                     c_update=self.c_update, ceq=self.ceq)
        n_sub = n_sub if floor is None else max(n_sub, floor)
        if n_sub > MAX_SUBSTEPS:
            raise StepLimitError(f"chi = {_primal(chi)}, gamma = {_primal(gamma)} need {n_sub} "
                                 f"sub-steps per outer step (limit {MAX_SUBSTEPS})")
        return n_sub

    def _peclet(self, c, gamma, chi) -> torch.Tensor:
        as_member = lambda x: torch.as_tensor(_primal(x), dtype=torch.float64).reshape(-1).cpu()
        with torch.no_grad():
            return cell_peclet(self.ceq.phi(c.detach()), as_member(gamma), as_member(chi), self.grid.dim).cpu()

    def _collapse_limit(self, c, gamma, chi) -> torch.Tensor | None:
        """Pe_h's limit per member from the starting state (as a simulate run's), None where no collapse can
        happen (the consumption equation)."""
        if self.ceq is None or not self.ceq.can_collapse:
            return None
        return collapse_limit(self._peclet(c, gamma, chi))

    def _check_collapse(self, c, gamma, chi, limit: torch.Tensor | None, t: float) -> None:
        """Reject the trial point once Pe_h crosses its limit (one host sync per outer step)."""
        if limit is None:
            return
        pe = self._peclet(c, gamma, chi)
        if bool((pe > limit).any()):
            raise CollapseError(f"chi = {_shown(chi)}, gamma = {_shown(gamma)} collapse by t = {t:.4g} on the model "
                                f"grid (cell Peclet number {float(pe.max()):.3g} > {float(limit.max()):.3g})")

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
