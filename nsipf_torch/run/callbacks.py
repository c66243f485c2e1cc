"""Trackers in py-pde's sense: objects that the one time loop (:func:`nsipf_torch.run.loop.run_loop`) calls.

A callback sees a :class:`LoopState` after every step and decides for itself whether to act (every k
steps, at snapshot steps, at the end). The loop, not the callbacks, advances the solver, so every method
(FD, SIPF, NSIPF) is driven the same way. Everything a callback does happens between steps, outside the
pure step functions: a check that syncs with the host runs only at its own cadence.

    Diagnostics(every)      per-member mass, min/max rho, min c, mean |x|^2 ... into ``state.log`` rows
    StopOnNonFinite(every)  raises :class:`~nsipf_torch.run.diagnostics.NonFiniteError` naming step and quantity
    Snapshots(steps)        rho, c (and particles) at chosen steps: what ``Result`` holds
    ProgressBar()           a tqdm bar (FD runs show their sub-step count)
    TensorBoard(logdir)     the diagnostics as scalars while the run goes
    Checkpoint(path, every) an atomic ``state.pt`` from which ``simulate(..., resume=...)`` continues
    Timer(device)           wall seconds of the steps, the device synchronised at both ends (benchmarks)
    StopAt(step)            ends the run after a given step (a shorter run with the same schedule)

A user's own callback subclasses :class:`Callback` and overrides any of ``on_start``, ``on_step``,
``on_end``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from nsipf_torch.problems.grid import synchronize
from nsipf_torch.run.diagnostics import check_finite


@dataclass
class LoopState:
    """What a callback may read: the runner, the step just taken and its time, the run's length, the FD
    sub-steps so far, whether diagnostics are due at this step, and the rows recorded so far."""

    runner: Any
    step: int
    t: float
    n_steps: int
    substeps: int = 0
    diag_due: bool = True
    log: list[dict] = field(default_factory=list)
    members: list[dict] = field(default_factory=list)
    snapshots: "Snapshots | None" = None


class Callback:
    def on_start(self, state: LoopState) -> None:
        """Before the first step (also after a resume, at the resumed step)."""

    def on_step(self, state: LoopState) -> None:
        """After every step."""

    def on_end(self, state: LoopState) -> None:
        """After the last step, or when the run stops early."""


class StopOnNonFinite(Callback):
    """Stop the run at the first NaN or Inf in the runner's checked tensors (at every diagnostics step)."""

    def on_step(self, state: LoopState) -> None:
        if state.diag_due:
            check_finite(state.step, state.t, **state.runner.checked())


class Diagnostics(Callback):
    """Record the runner's per-member diagnostics at step 0 and at every diagnostics step, as rows
    ``{step, t, member, gamma, chi, seed, mass, min_rho, ...}`` in ``state.log``."""

    def on_start(self, state: LoopState) -> None:
        if state.step == 0 and not state.log:
            self._record(state)

    def on_step(self, state: LoopState) -> None:
        if state.diag_due:
            self._record(state)

    @staticmethod
    def _record(state: LoopState) -> None:
        values = {k: v.detach().double().cpu().tolist() for k, v in state.runner.diagnostics().items()}
        for b, member in enumerate(state.members):
            state.log.append({"step": state.step, "t": state.t, "member": b, **member,
                              **{k: values[k][b] for k in values}})


class Snapshots(Callback):
    """rho and c (and the first ``particles`` positions of each member) at the given steps, kept on the
    CPU as lists of (B, ...) tensors: ``times``, ``steps``, ``rho``, ``c``, ``X``."""

    def __init__(self, steps: Sequence[int], particles: int = 0):
        self.at = sorted(set(int(s) for s in steps))
        self.particles = particles
        self.times: list[float] = []
        self.steps: list[int] = []
        self.rho: list[torch.Tensor] = []
        self.c: list[torch.Tensor] = []
        self.X: list[torch.Tensor] = []

    @classmethod
    def evenly(cls, n_steps: int, count: int, particles: int = 0) -> "Snapshots":
        """``count`` equal intervals of the run: snapshots at steps round(k n / count), k = 0..count."""
        return cls([round(k * n_steps / count) for k in range(count + 1)], particles)

    @classmethod
    def every(cls, k: int, n_steps: int, particles: int = 0) -> "Snapshots":
        """Every k steps, and the last step."""
        return cls([*range(0, n_steps + 1, k), n_steps], particles)

    def wants(self, step: int) -> bool:
        return step in self.at

    def on_start(self, state: LoopState) -> None:
        if state.step == 0 and not self.steps and self.wants(0):
            self.take(state)

    def on_step(self, state: LoopState) -> None:
        if self.wants(state.step):
            self.take(state)

    def take(self, state: LoopState) -> None:
        rho, c = state.runner.fields()  # a collective with several ranks
        self.times.append(state.t)
        self.steps.append(state.step)
        self.rho.append(rho.detach().cpu())
        self.c.append(c.detach().cpu())
        if self.particles and hasattr(state.runner, "particles"):
            self.X.append(state.runner.particles(self.particles).detach().cpu())

    def state_dict(self) -> dict:
        return {"at": self.at, "particles": self.particles, "times": self.times, "steps": self.steps,
                "rho": self.rho, "c": self.c, "X": self.X}

    def load_state_dict(self, sd: dict) -> None:
        for key in ("at", "particles", "times", "steps", "rho", "c", "X"):
            setattr(self, key, list(sd[key]) if isinstance(sd[key], list) else sd[key])


class ProgressBar(Callback):
    """A tqdm progress bar over the outer steps; FD runs show the sub-steps taken so far."""

    def __init__(self, desc: str = "", disable: bool = False):
        self.desc, self.disable, self.bar = desc, disable, None

    def on_start(self, state: LoopState) -> None:
        from tqdm import tqdm
        self.bar = tqdm(total=state.n_steps, initial=state.step, desc=self.desc, unit="step", disable=self.disable)

    def on_step(self, state: LoopState) -> None:
        self.bar.update(1)
        if state.substeps > state.step:
            self.bar.set_postfix(substeps=state.substeps, refresh=False)

    def on_end(self, state: LoopState) -> None:
        if self.bar is not None:
            self.bar.close()


class TensorBoard(Callback):
    """Diagnostics rows as TensorBoard scalars ``<quantity>/member<b>`` while the run goes."""

    def __init__(self, logdir: str | Path):
        self.logdir, self.writer, self.written = Path(logdir), None, 0

    def on_start(self, state: LoopState) -> None:
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(log_dir=str(self.logdir))
        self.written = len(state.log) if state.step > 0 else 0
        self.on_step(state)

    def on_step(self, state: LoopState) -> None:
        write_scalars(self.writer, state.log[self.written:])
        self.written = len(state.log)

    def on_end(self, state: LoopState) -> None:
        if self.writer is not None:
            self.on_step(state)
            self.writer.close()


def write_scalars(writer, rows: Sequence[dict]) -> None:
    """Add every numeric diagnostic of ``rows`` as ``<quantity>/member<b>`` at its step."""
    skip = {"step", "t", "member", "gamma", "chi", "seed"}
    for row in rows:
        for key, value in row.items():
            if key not in skip and isinstance(value, (int, float)) and math.isfinite(value):
                writer.add_scalar(f"{key}/member{row['member']}", value, row["step"])


class Checkpoint(Callback):
    """Write ``path`` (a state.pt: tensors and plain values only, atomic) every ``every`` steps and at the
    end; ``nsipf_torch.simulate(..., resume=load_torch(path))`` continues the run bitwise (CPU)."""

    def __init__(self, path: str | Path, every: int, config: dict):
        self.path, self.every, self.config = Path(path), int(every), config

    def on_step(self, state: LoopState) -> None:
        if state.step % self.every == 0 or state.step == state.n_steps:
            self.save(state)

    def save(self, state: LoopState) -> None:
        from nsipf_torch.io.files import save_torch
        save_torch(self.path, {"config": self.config, "runner": state.runner.state_dict(), "step": state.step,
                               "substeps": state.substeps, "log": state.log,
                               "snapshots": state.snapshots.state_dict() if state.snapshots else None})


class Timer(Callback):
    """Wall seconds from the start of the loop (after the step-0 diagnostics and snapshot) to its end (after
    the last step's): ``seconds`` and ``steps``. The device is synchronised at both ends, so a GPU's queued
    work is counted; put the Timer last among the callbacks, so that it sees the others' start-up done."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.seconds, self.steps, self._start, self._first = 0.0, 0, 0.0, 0

    def on_start(self, state: LoopState) -> None:
        synchronize(self.device)
        self._start, self._first = time.perf_counter(), state.step

    def on_end(self, state: LoopState) -> None:
        synchronize(self.device)
        self.seconds, self.steps = time.perf_counter() - self._start, state.step - self._first


class StopAt(Callback):
    """End the run after step ``step`` (the loop's :class:`StopRun`): the steps so far are exactly those
    of the full run, the same sizes and times."""

    def __init__(self, step: int):
        self.step = int(step)

    def on_step(self, state: LoopState) -> None:
        if state.step >= self.step:
            raise StopRun(state.step)


class StopRun(Exception):
    """Raised by a callback to end the run after the current step; the result holds the steps so far."""
