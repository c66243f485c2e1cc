"""Method runners: one object per solver with the same small interface, so that the API
(:func:`nsipf_torch.run.loop.run_loop`) has one time loop for every method.

    runner.advance(dt) -> int        one step of size dt (returns the FD sub-step count, 1 for particles)
    runner.fields()    -> (rho, c)   grid fields (B, N, ..., N) for output
    runner.diagnostics() -> dict     per-member scalars (mass, min/max rho, min c, mean |x|^2, c < 0 cells)
    runner.checked()   -> dict       the tensors a NaN/Inf check looks at
    runner.state_dict() / load_state_dict(sd)   tensors and plain values only (resumable runs)

The particle runner drives the one SIPF loop (:func:`~nsipf_torch.particles.sipf.sipf_run`); the interpolator
decides between classical SIPF and NSIPF. Both take their physical parameters as one
:class:`~nsipf_torch.problems.params.Params` whose gamma and chi are floats or (B,) tensors, and their
geometry from the :class:`~nsipf_torch.problems.grid.Grid`. :mod:`nsipf_torch.methods` makes them by
method name.
"""
from __future__ import annotations

from typing import Sequence

import torch

import nsipf_torch.solvers.fd as fd
from nsipf_torch.particles.deposit import deposit
from nsipf_torch.run.collapse import StopOnCollapse
from nsipf_torch.run.diagnostics import field_diagnostics
from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.params import Params
from nsipf_torch.solvers.c_equation import CEquation, free_energy
from nsipf_torch.particles.distributed import World, sharded_deposit
from nsipf_torch.particles.sipf import compiled_advance, initial_state, noise_generators, sipf_run


class Freezable:
    """Members that stop advancing while the others run on (a collapsed member of a batch,
    :class:`~nsipf_torch.run.collapse.StopOnCollapse`): their gamma and chi count as 0 in the step, so they
    neither move nor set the FD sub-step count, and their state is held bit for bit. Outside the pure step
    functions; with nothing frozen the step is the unfrozen one, unchanged. ``frozen_at`` keeps, per member,
    the record of why it was frozen (plain values), so that a resumed run still knows its collapses."""

    frozen: torch.Tensor | None = None  # (B,) bool on the grid's device
    frozen_at: list | None = None  # (B,) None or a plain dict per member

    def freeze(self, records: dict[int, dict]) -> None:
        """Freeze the members that are the keys of ``records``, keeping each member's record."""
        if self.frozen is None:
            B = self.gamma.shape[0]
            self.frozen = torch.zeros(B, dtype=torch.bool, device=self.gamma.device)
            self.frozen_at = [None] * B
        for member, record in records.items():
            self.frozen[member] = True
            self.frozen_at[member] = record

    def _moving(self, value: torch.Tensor) -> torch.Tensor:
        return value if self.frozen is None else torch.where(self.frozen, torch.zeros_like(value), value)

    def _hold(self, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        if self.frozen is None:
            return new
        return torch.where(self.frozen.reshape(-1, *[1] * (new.ndim - 1)), old, new)

    def _frozen_state(self) -> dict:
        return {} if self.frozen is None else {"frozen": self.frozen, "frozen_at": list(self.frozen_at)}

    def _load_frozen(self, sd: dict) -> None:
        self.frozen = sd["frozen"].to(self.grid.device) if "frozen" in sd else None
        self.frozen_at = list(sd["frozen_at"]) if "frozen_at" in sd else None


class FDRunner(Freezable):
    """The finite-volume reference solver (:mod:`nsipf_torch.solvers.fd`)."""

    #: the collapse check (:class:`~nsipf_torch.run.collapse.StopOnCollapse`) after every outer step: the
    #: next step's sub-step count grows with the drift it watches
    check_every_step = True

    def __init__(self, grid: Grid, ic, params: Params, B: int = 1, limiter: str = "minmod",
                 c_update: str = "exp", compile: bool = False, ceq: CEquation | None = None):
        self.grid, self.limiter, self.c_update, self.compile = grid, limiter, c_update, compile
        self.ceq = CEquation() if ceq is None else ceq
        self.gamma = _member_tensor(params, "gamma", B, grid)
        self.chi = _member_tensor(params, "chi", B, grid)
        self.rho = _initial_rho(ic, grid, params.M0, B)
        self.c = self.ceq.initial(ic.c0(grid).expand(B, *grid.shape).clone(), self.rho, grid.h, grid.dim)

    def substep_count(self, dt: float) -> int:
        """Sub-steps the next outer step of size dt takes (one host sync)."""
        return fd.fd_substep_count(self.c, dt, self._moving(self.gamma), self._moving(self.chi), self.grid.h, self.grid.dim, rho=self.rho,
                                   c_update=self.c_update, ceq=self.ceq)

    @torch.inference_mode()
    def advance(self, dt: float) -> int:
        rho, c, n_sub = fd.fd_advance(self.rho, self.c, dt, self._moving(self.gamma), self._moving(self.chi),
                                      self.grid, limiter=self.limiter, c_update=self.c_update, compile=self.compile,
                                      ceq=self.ceq)
        self.rho, self.c = self._hold(self.rho, rho), self._hold(self.c, c)
        return n_sub

    def fields(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rho, self.c

    def diagnostics(self) -> dict[str, torch.Tensor]:
        return _keller_segel_diagnostics(field_diagnostics(self.rho, self.c, self.grid), self.rho, self)

    def checked(self) -> dict[str, torch.Tensor]:
        """The tensors that must stay finite."""
        return {"rho": self.rho, "c": self.c}

    def state_dict(self) -> dict:
        return {"rho": self.rho, "c": self.c, **self._frozen_state()}

    def load_state_dict(self, sd: dict) -> None:
        self.rho = sd["rho"].to(self.grid.device, self.grid.dtype)
        self.c = sd["c"].to(self.grid.device, self.grid.dtype)
        self._load_frozen(sd)


class ParticleRunner(Freezable):
    """SIPF / NSIPF: P particles per member carry rho, c lives on the grid (paper eqs. 32-34)."""

    check_every_step = False  # the collapse check at diagnostics steps: the step itself stays free of syncs

    def __init__(self, grid: Grid, ic, params: Params, seeds: Sequence[int], P: int, interp,
                 c_update: str = "exp", deposit_method: str = "ngp", world: World = World(),
                 compile: bool | str = False, replan_every: int = 10, ceq: CEquation | None = None):
        B = len(seeds)
        self.ceq = CEquation() if ceq is None else ceq
        self.grid, self.P, self.interp, self.world = grid, P, interp, world
        # a sweep over mass: the particle mass M0/P per member, kept where the particles live
        self.M0 = params.M0.to(grid.device) if isinstance(params.M0, torch.Tensor) else params.M0
        self.c_update, self.deposit_method, self.replan_every, self.steps = c_update, deposit_method, replan_every, 0
        self.gamma = _member_tensor(params, "gamma", B, grid)
        self.chi = _member_tensor(params, "chi", B, grid)
        # each rank draws only its particles of every member's global sample: the start is world-size independent
        self.state = initial_state(ic, grid, P, seeds, share=world.shard(P))
        if compile and hasattr(interp, "pow2_capacity"):  # a compiled step specialises on NSIPF's tile capacity
            interp.pow2_capacity = True
        # drawn where the particles live: a CPU stream copied to the GPU would cost more than the step
        self.generators = noise_generators(seeds, rank=world.rank, device=grid.device)
        self.deposit_fn = None if world.size == 1 else sharded_deposit(world, grid, self.M0, P, deposit_method)
        if self.ceq.elliptic:  # c is the solve for the deposited rho0, not the problem's c0
            self.state = self.state._replace(c=self.ceq.initial(self.c, self.fields()[0], grid.h, grid.dim))
        # compile: True (torch.compile's default mode) or a mode name, e.g. "reduce-overhead" (CUDA graphs)
        self.step_fn = compiled_step(compile if isinstance(compile, str) else "default") if compile else None

    def replan(self) -> None:
        """Size the neural interpolator's tile list from the particles now (a host sync: outside the step).

        The runner does this every ``replan_every`` steps on its own (the one place of this policy), so
        every caller of :meth:`advance` gets the same tile coverage.
        """
        if hasattr(self.interp, "plan_capacity"):
            self.interp.plan_capacity(self.X)

    @property
    def X(self) -> torch.Tensor:
        return self.state.X

    @property
    def c(self) -> torch.Tensor:
        return self.state.c

    @torch.no_grad()
    def advance(self, dt: float) -> int:
        if self.steps % self.replan_every == 0:
            self.replan()
        self.steps += 1
        old = self.state
        self.state = sipf_run(old, self.generators, 1, grid=self.grid, dt=dt, gamma=self._moving(self.gamma),
                              chi=self._moving(self.chi),
                              M0=self.M0, interp=self.interp, c_update=self.c_update,
                              deposit_method=self.deposit_method, step_fn=self.step_fn, deposit_fn=self.deposit_fn,
                              check=False, **({} if self.ceq.is_paper else {"ceq": self.ceq}))  # checked at entry
        if self.frozen is not None:
            self.state = self.state._replace(X=self._hold(old.X, self.state.X), c=self._hold(old.c, self.state.c))
        return 1

    def fields(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(rho, c) on the grid; with several ranks a collective: every rank must call it."""
        if self.deposit_fn is not None:
            return self.deposit_fn(self.X), self.c
        return deposit(self.X, self.grid, self.M0, self.deposit_method), self.c

    def diagnostics(self) -> dict[str, torch.Tensor]:
        rho, c = self.fields()
        r2_sum = self.world.all_reduce_((self.X * self.X).sum(dim=-1).sum(dim=-1))
        diag = field_diagnostics(rho, c, self.grid, mean_r2=r2_sum / self.P)  # exact particle second moment
        if hasattr(self.interp, "last_overflow"):  # occupied tiles the CNN skipped last step (linear upsampling)
            overflow = self.interp.last_overflow
            diag["tile_overflow"] = torch.zeros(rho.shape[0], dtype=torch.long) + (0 if overflow is None else overflow.cpu())
        return _keller_segel_diagnostics(diag, rho, self)

    def checked(self) -> dict[str, torch.Tensor]:
        """The tensors that must stay finite; with several ranks, a bad particle anywhere shows on every rank."""
        bad = self.world.all_reduce_((~torch.isfinite(self.X)).sum(dim=(-2, -1)))
        return {"X (particle positions)": torch.where(bad > 0, torch.nan, 0.0), "c": self.c}

    def particles(self, M: int) -> torch.Tensor:
        """The first M particles of every member (a uniform subsample: the sample order is random)."""
        return self.X[:, :M]

    def state_dict(self) -> dict:
        """Everything the next step reads: particles, c, the step count (it times the re-plans), the Brownian
        streams and the interpolator's own state (NSIPF's tile plan, made at the last re-plan step)."""
        return {"X": self.X, "c": self.c, "steps": self.steps, "generators": [g.get_state() for g in self.generators],
                "interp": self.interp.state_dict() if hasattr(self.interp, "state_dict") else {}, **self._frozen_state()}

    def load_state_dict(self, sd: dict) -> None:
        self.state = self.state._replace(X=sd["X"].to(self.grid.device, self.grid.dtype),
                                         c=sd["c"].to(self.grid.device, self.grid.dtype))
        self.steps = int(sd["steps"])
        self._load_frozen(sd)
        if "interp" in sd and hasattr(self.interp, "load_state_dict"):
            self.interp.load_state_dict(sd["interp"])
        else:  # a state without the interpolator's: plan from its particles (a resume, not bitwise for NSIPF)
            self.replan()
        for g, s in zip(self.generators, sd["generators"]):
            g.set_state(s)


_COMPILED: dict = {}


def compiled_step(mode: str = "default"):
    """The particle step compiled in ``mode``, one per process: every runner that compiles shares it, so
    its code is compiled once (a fresh ``torch.compile`` wrapper per runner would compile again)."""
    if mode not in _COMPILED:
        _COMPILED[mode] = compiled_advance(**({} if mode == "default" else {"mode": mode}))
    return _COMPILED[mode]


def _keller_segel_diagnostics(diag: dict, rho: torch.Tensor, runner) -> dict:
    """Add the Keller-Segel free energy (:func:`~nsipf_torch.solvers.c_equation.free_energy`) where it is a
    Lyapunov functional: the parabolic and elliptic c-equations with the linear sensitivity, and the cell
    Peclet number of the collapse check (:mod:`nsipf_torch.run.collapse`) where a collapse can happen. A mean-free c
    is negative somewhere by construction: its cells do not count as the euler update's negative c."""
    ceq = runner.ceq
    if ceq.mean_free:
        diag["n_negative_c"] = torch.zeros_like(diag["n_negative_c"])
    if ceq.can_collapse:
        diag["peclet"] = StopOnCollapse.peclet(runner)
    if ceq.can_collapse and ceq.sensitivity == "linear":
        diag["free_energy"] = free_energy(rho, runner.c, ceq, runner.gamma, runner.chi, runner.grid.h,
                                          runner.grid.dim)
    return diag


def _initial_rho(ic, grid: Grid, M0, B: int) -> torch.Tensor:
    """rho0 of every member (B, *grid.shape): one mass, or one per member (a sweep over M0)."""
    if isinstance(M0, torch.Tensor):
        return torch.stack([ic.rho0(grid, m) for m in M0.tolist()])
    return ic.rho0(grid, M0).expand(B, *grid.shape).clone()


def _member_tensor(params: Params, name: str, B: int, grid: Grid) -> torch.Tensor:
    """gamma or chi of every member as a (B,) tensor in the grid's dtype (gradients kept)."""
    return params.member_values(name, B).to(device=grid.device, dtype=grid.dtype)

