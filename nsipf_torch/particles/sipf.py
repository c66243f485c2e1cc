"""The SIPF time step as one pure, batched, sync-free function (docs/MODEL.md §2, paper eqs. 32–34).

One step, for B independent members at once::

    rho^n     = deposit(X^n)                                    (paper eq. 32, histogram)
    c^{n+1}   = update_c(c^n, rho^n, dt)                        (paper eq. 33; exp by default)
    X^{n+1}   = reflect(X^n + chi grad c~^{n+1}(X^n) dt + sqrt(2 gamma dt) xi^n)    (paper eq. 34)

``sipf_step`` holds no host synchronisation (no item calls) and no data-dependent Python branch, so it can be compiled or
captured. The Brownian increments xi^n are drawn outside it by :func:`draw_noise`, one generator per
member (``randn(generator=...)`` does not trace), and passed in. Diagnostics (the runners' ``diagnostics()``)
are separate and run every k steps.

Usage::

    state, gens = initial_state(ic, grid, P, seeds), noise_generators(seeds)
    interp = make_interp("trilinear", grid)
    for n in range(nsteps):
        noise = draw_noise(gens, B, P, grid.dim, grid.dtype, grid.device)
        state = sipf_step(state, noise, grid=grid, dt=dt, gamma=gamma, chi=chi, M0=M0, interp=interp)
    rho = deposit(state.X, grid, M0)
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch

from nsipf_torch.particles.deposit import deposit
from nsipf_torch.solvers.c_equation import CEquation, update_c
from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.initial import InitialCondition
from nsipf_torch.problems.params import check_positive, check_schemes
from nsipf_torch.particles.move import em_move, initial_particles


class SIPFState(NamedTuple):
    """X: positions (B, P, d); c: field at cell centres (B, *grid.shape); step: steps taken (host int)."""

    X: torch.Tensor
    c: torch.Tensor
    step: int = 0


def initial_state(ic: InitialCondition, grid: Grid, P: int, seeds: Sequence[int],
                  share: slice | None = None) -> SIPFState:
    """Step-0 state of B = len(seeds) members: exact particle samples (particles ``share`` of each member's
    P, default all: :func:`~nsipf_torch.particles.move.initial_particles`) and c0 at the cell centres."""
    X = initial_particles(ic, grid, P, seeds, share)
    c = ic.c0(grid).to(device=grid.device, dtype=grid.dtype).expand(len(seeds), *grid.shape).clone()
    return SIPFState(X, c, 0)


def field_update(X: torch.Tensor, c: torch.Tensor, *, grid: Grid, dt: float, M0: float, c_update: str = "exp",
                 deposit_method: str = "ngp", deposit_fn=None, ceq: CEquation | None = None) -> torch.Tensor:
    """Deposit (paper eq. 32) and the c-update (paper eq. 33): (X^n, c^n) -> c^{n+1}.

    ``deposit_fn(X) -> rho`` replaces the local deposit, e.g. by the sharded one of
    :func:`nsipf_torch.particles.distributed.sharded_deposit` (local counts, then an all-reduce). ``ceq``
    another c-equation of the Keller-Segel family: its step with rho^n frozen (the spectral field solve).
    """
    rho = deposit(X, grid, M0, deposit_method) if deposit_fn is None else deposit_fn(X)
    if ceq is not None and not ceq.is_paper:
        return ceq.step(c, rho, dt, grid.h, grid.dim, c_update)
    return update_c(c, rho, dt, c_update)


def particle_move(X: torch.Tensor, c: torch.Tensor, noise: torch.Tensor, *, grid: Grid, dt: float, gamma, chi,
                  interp, ceq: CEquation | None = None) -> torch.Tensor:
    """The gradient of the interpolated c at the particles and the reflected Euler-Maruyama move (eq. 34);
    with ``ceq``, of its Phi(c) (the interpolators see the field on the grid and nothing else)."""
    field = c if ceq is None else ceq.phi(c)
    return em_move(X, interp.grad_c(field, X), noise, dt, gamma, chi, L=grid.L)


def make_advance(field_fn=field_update, move_fn=particle_move):
    """Compose the two halves of a step; pass ``torch.compile``d halves for the fast path.

    Deposit and gather stay in separate compiled regions on purpose: PyTorch issue 191571 reports Inductor
    silently returning stale values when it fuses a ``scatter_add_`` with a gather (CUDA, B = 1).
    """
    def advance(X, c, noise, *, grid, dt, gamma, chi, M0, interp, c_update="exp", deposit_method="ngp",
                deposit_fn=None, ceq=None):
        ks = {} if ceq is None or ceq.is_paper else {"ceq": ceq}  # the paper's system: the original calls
        c = field_fn(X, c, grid=grid, dt=dt, M0=M0, c_update=c_update, deposit_method=deposit_method,
                     deposit_fn=deposit_fn, **ks)
        return move_fn(X, c, noise, grid=grid, dt=dt, gamma=gamma, chi=chi, interp=interp, **ks), c
    return advance


sipf_advance = make_advance()
sipf_advance.__doc__ = """The tensor kernel of one step: (X^n, c^n, xi^n) -> (X^{n+1}, c^{n+1}). Pure, no host syncs.

Keywords: grid, dt, gamma, chi, M0, interp, c_update="exp", deposit_method="ngp", deposit_fn=None, ceq=None.
"""


def compiled_advance(**compile_kwargs):
    """``sipf_advance`` with each half compiled by ``torch.compile`` (default ``dynamic=False``).

    With ``mode="reduce-overhead"`` (CUDA graphs) each half's outputs are cloned: a graph overwrites its
    outputs on the next replay, and the time loop keeps X and c from one step to the next.
    """
    compile_kwargs.setdefault("dynamic", False)
    field_fn = torch.compile(field_update, **compile_kwargs)
    move_fn = torch.compile(particle_move, **compile_kwargs)
    if compile_kwargs.get("mode") in ("reduce-overhead", "max-autotune"):
        field_fn, move_fn = _cloning(field_fn), _cloning(move_fn)
    return make_advance(field_fn, move_fn)


def _cloning(fn):
    def run(*args, **kwargs):
        return fn(*args, **kwargs).clone()
    return run


def sipf_step(state: SIPFState, noise: torch.Tensor, *, grid: Grid, dt: float, gamma, chi, M0: float, interp,
              c_update: str = "exp", deposit_method: str = "ngp", deposit_fn=None) -> SIPFState:
    """One SIPF step (paper eqs. 32–34); gamma, chi are floats or per-member (B,) tensors."""
    X, c = sipf_advance(state.X, state.c, noise, grid=grid, dt=dt, gamma=gamma, chi=chi, M0=M0, interp=interp,
                        c_update=c_update, deposit_method=deposit_method, deposit_fn=deposit_fn)
    return SIPFState(X, c, state.step + 1)


def sipf_run(state: SIPFState, generators: Sequence[torch.Generator], nsteps: int, *, grid: Grid, dt: float, gamma,
             chi, M0: float, interp, c_update: str = "exp", deposit_method: str = "ngp", callback=None,
             step_fn=None, deposit_fn=None, check: bool = True, ceq: CEquation | None = None) -> SIPFState:
    """Take ``nsteps`` steps: draw the noise on the host side, then the pure step; the one SIPF loop.

    ``callback(state)`` runs after every step (diagnostics every k steps, snapshots, checkpoints);
    ``step_fn`` replaces :func:`sipf_advance` (e.g. its ``torch.compile``d version). The values are checked
    once here (a ``ValueError`` names a bad one); ``check=False`` skips that for callers that checked them
    at their own entry and call this every step (the particle runner). ``ceq``: another c-equation of the
    Keller-Segel family (issue 20).
    """
    if check:
        B = state.X.shape[0]
        check_positive("dt", dt)
        check_positive("M0", M0)
        check_positive("gamma", gamma, allow_zero=True, batch=B)
        check_positive("chi", chi, allow_zero=True, batch=B)
        check_schemes(c_update=c_update)
        if isinstance(nsteps, bool) or int(nsteps) != nsteps or nsteps < 0:
            raise ValueError(f"nsteps must be an integer >= 0, got {nsteps!r}")
    advance = sipf_advance if step_fn is None else step_fn
    B, P, d = state.X.shape
    for _ in range(int(nsteps)):
        noise = draw_noise(generators, B, P, d, state.X.dtype, state.X.device)
        X, c = advance(state.X, state.c, noise, grid=grid, dt=dt, gamma=gamma, chi=chi, M0=M0, interp=interp,
                       c_update=c_update, deposit_method=deposit_method, deposit_fn=deposit_fn,
                       **({} if ceq is None else {"ceq": ceq}))
        state = SIPFState(X, c, state.step + 1)
        if callback is not None:
            callback(state)
    return state


def noise_seed(seed: int, rank: int = 0) -> int:
    """The seed of the Brownian stream of (member seed, rank): distinct from the initial-sample stream."""
    return int(np.random.SeedSequence([int(seed), int(rank), 0x5EED]).generate_state(1, dtype=np.uint64)[0] >> 1)


def noise_generators(seeds: Sequence[int], rank: int = 0, device="cpu") -> list[torch.Generator]:
    """One Brownian-increment generator per member, seeded from (seed, rank)."""
    return [torch.Generator(device=device).manual_seed(noise_seed(s, rank)) for s in seeds]


def draw_noise(generators: Sequence[torch.Generator], B: int, P: int, d: int, dtype=torch.float64,
               device="cpu") -> torch.Tensor:
    """Standard normal increments (B, P, d); member b's come from generators[b] alone.

    Each member's draw depends only on its own stream, so a batched run reproduces single runs exactly.
    Drawn on the generator's device, then moved: CPU generators give the same numbers whatever the device;
    CUDA generators (what :class:`~nsipf_torch.run.runners.ParticleRunner` uses on a GPU) draw another,
    equally valid stream without a host-to-device copy.
    """
    if len(generators) != B:
        raise ValueError(f"need one generator per member: got {len(generators)} for B={B}")
    out = [torch.randn(P, d, generator=g, dtype=dtype, device=g.device) for g in generators]
    return (out[0].unsqueeze(0) if B == 1 else torch.stack(out)).to(device)
