"""Method runners: one object per solver with the same small interface, so that ``simulate.py`` has one
time loop for every method.

    runner.advance(dt) -> int        one step of size dt (returns the FD sub-step count, 1 for particles)
    runner.fields()    -> (rho, c)   grid fields (B, N, ..., N) for output
    runner.diagnostics() -> dict     per-member scalars (mass, min/max rho, min c, mean |x|^2, c < 0 cells)
    runner.checked()   -> dict       the tensors a NaN/Inf check looks at
    runner.state_dict() / load_state_dict(sd)   tensors and plain values only (resumable runs)

The particle runner drives the one SIPF loop (:func:`~nsipf_torch.sipf.sipf_run`); the interpolator
decides between classical SIPF and NSIPF.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from . import fd
from .deposit import deposit
from .diagnostics import field_diagnostics
from .grid import Grid
from .resources import default_checkpoint
from .distributed import World, sharded_deposit
from .sipf import compiled_advance, initial_state, noise_generators, sipf_run




def neural_interp(model_path: str | Path | None, grid: Grid, precision: str = "fp32"):
    """NSIPF's interpolator from a checkpoint (the shipped one for grid.dim when ``model_path`` is None);
    ``precision`` of its convolutions: fp32, tf32 (CUDA) or bf16 (:mod:`nsipf_torch.neural`).

    A missing, corrupt, wrong-dimension or wrong-architecture file is a ``ValueError`` naming it.
    """
    from .neural import NeuralInterp
    return NeuralInterp.from_checkpoint(model_path or default_checkpoint(grid.dim), grid, precision=precision)


class FDRunner:
    """The finite-volume reference solver (:mod:`nsipf_torch.fd`)."""

    def __init__(self, grid: Grid, ic, members: Sequence[dict], M0: float, limiter: str = "minmod",
                 c_update: str = "exp"):
        B = len(members)
        self.grid, self.limiter, self.c_update = grid, limiter, c_update
        self.gamma = torch.tensor([m["gamma"] for m in members], dtype=grid.dtype, device=grid.device)
        self.chi = torch.tensor([m["chi"] for m in members], dtype=grid.dtype, device=grid.device)
        self.rho = ic.rho0(grid, M0).expand(B, *grid.shape).clone()
        self.c = ic.c0(grid).expand(B, *grid.shape).clone()

    @torch.inference_mode()
    def advance(self, dt: float) -> int:
        self.rho, self.c, n_sub = fd.fd_advance(self.rho, self.c, dt, self.gamma, self.chi, self.grid,
                                                limiter=self.limiter, c_update=self.c_update)
        return n_sub

    def fields(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rho, self.c

    def diagnostics(self) -> dict[str, torch.Tensor]:
        return field_diagnostics(self.rho, self.c, self.grid)

    def checked(self) -> dict[str, torch.Tensor]:
        """The tensors that must stay finite."""
        return {"rho": self.rho, "c": self.c}

    def state_dict(self) -> dict:
        return {"rho": self.rho, "c": self.c}

    def load_state_dict(self, sd: dict) -> None:
        self.rho = sd["rho"].to(self.grid.device, self.grid.dtype)
        self.c = sd["c"].to(self.grid.device, self.grid.dtype)


class ParticleRunner:
    """SIPF / NSIPF: P particles per member carry rho, c lives on the grid (paper eqs. 32-34)."""

    def __init__(self, grid: Grid, ic, members: Sequence[dict], M0: float, P: int, interp,
                 c_update: str = "exp", deposit_method: str = "ngp", world: World = World(), compile: bool = False):
        seeds = [m["seed"] for m in members]
        self.grid, self.M0, self.P, self.interp, self.world = grid, M0, P, interp, world
        self.c_update, self.deposit_method = c_update, deposit_method
        self.gamma = torch.tensor([m["gamma"] for m in members], dtype=grid.dtype, device=grid.device)
        self.chi = torch.tensor([m["chi"] for m in members], dtype=grid.dtype, device=grid.device)
        state = initial_state(ic, grid, P, seeds)
        # each rank keeps its slice of the one global sample per member: the start is world-size independent
        self.state = state._replace(X=state.X[:, world.shard(P)].contiguous())
        # drawn where the particles live: a CPU stream copied to the GPU would cost more than the step
        self.generators = noise_generators(seeds, rank=world.rank, device=grid.device)
        self.deposit_fn = None if world.size == 1 else sharded_deposit(world, grid, M0, P, deposit_method)
        self.step_fn = compiled_advance() if compile else None
        self.replan()

    def replan(self) -> None:
        """Size the neural interpolator's tile list from the particles now (a host sync: outside the step)."""
        if hasattr(self.interp, "plan_capacity"):
            self.interp.plan_capacity(self.X)

    @property
    def X(self) -> torch.Tensor:
        return self.state.X

    @property
    def c(self) -> torch.Tensor:
        return self.state.c

    @torch.no_grad()  # not inference_mode: the neural interpolator takes its drift by autograd
    def advance(self, dt: float) -> int:
        self.state = sipf_run(self.state, self.generators, 1, grid=self.grid, dt=dt, gamma=self.gamma, chi=self.chi,
                              M0=self.M0, interp=self.interp, c_update=self.c_update,
                              deposit_method=self.deposit_method, step_fn=self.step_fn, deposit_fn=self.deposit_fn)
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
            self.replan()
        return diag

    def checked(self) -> dict[str, torch.Tensor]:
        """The tensors that must stay finite; with several ranks, a bad particle anywhere shows on every rank."""
        bad = self.world.all_reduce_((~torch.isfinite(self.X)).sum(dim=(-2, -1)))
        return {"X (particle positions)": torch.where(bad > 0, torch.nan, 0.0), "c": self.c}

    def particles(self, M: int) -> torch.Tensor:
        """The first M particles of every member (a uniform subsample: the sample order is random)."""
        return self.X[:, :M]

    def state_dict(self) -> dict:
        return {"X": self.X, "c": self.c, "generators": [g.get_state() for g in self.generators]}

    def load_state_dict(self, sd: dict) -> None:
        self.state = self.state._replace(X=sd["X"].to(self.grid.device, self.grid.dtype),
                                         c=sd["c"].to(self.grid.device, self.grid.dtype))
        for g, s in zip(self.generators, sd["generators"]):
            g.set_state(s)
