"""The one time loop of every method (:func:`run_loop`), the default trackers around it (:func:`run`) and
what a run returns (:class:`Result`). :func:`nsipf_torch.api.simulate` checks a run into a
:class:`~nsipf_torch.api.Setup` and calls :func:`run`; a driver that times or watches the loop itself does
the same with its own callbacks (``run(setup, make_runner(setup), [Timer(device)])``).

The end-time rule is the setup's: ``n_steps`` = ceil(T/dt) steps of dt, the last one shortened to land on
T exactly (``setup.time_at``); a callback may end the run earlier by raising ``StopRun`` (``StopAt``).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch

from nsipf_torch.problems.grid import Grid
from nsipf_torch.run.callbacks import Callback, Diagnostics, LoopState, Snapshots, StopOnNonFinite, StopRun
from nsipf_torch.run.collapse import CollapseStop, StopOnCollapse
from nsipf_torch.run.diagnostics import NonFiniteError


def run_loop(runner, setup, callbacks: Sequence[Callback], state: LoopState) -> LoopState:
    """The one time loop of every method: advance, then let each callback look (in order); ``state`` is
    updated in place (step, time, sub-steps, diagnostics rows). There are ``setup.n_steps`` steps of dt,
    the last shortened to land on T (:meth:`nsipf_torch.api.Setup.time_at`), unless a callback raises ``StopRun``.

    Raises :class:`~nsipf_torch.run.diagnostics.NonFiniteError` from a ``StopOnNonFinite`` callback; the
    callbacks' ``on_end`` runs either way.
    """
    cfg, snaps = setup.cfg, state.snapshots
    state.diag_due = True
    try:
        for cb in callbacks:
            cb.on_start(state)
        while state.step < setup.n_steps:
            try:
                state.substeps += runner.advance(setup.time_at(state.step + 1) - setup.time_at(state.step))
            except FloatingPointError:  # the FD sub-step count met a NaN/Inf before a diagnostics step did
                raise NonFiniteError(state.step + 1, setup.time_at(state.step + 1), "rho or c") from None
            state.step += 1
            state.t = setup.time_at(state.step)
            state.diag_due = (state.step % cfg.diag_every == 0 or state.step == setup.n_steps
                              or (snaps is not None and snaps.wants(state.step)))
            for cb in callbacks:
                cb.on_step(state)
    except StopRun:  # a callback ended the run after this step (e.g. StopAt): the steps so far stand
        pass
    finally:
        for cb in callbacks:
            cb.on_end(state)
    return state


@dataclass
class Result:
    """A finished (or stopped) run. ``rho``, ``c``: (B, K, *cells) on the CPU, members first, snapshot
    times ``times`` (K,); ``X`` (B, K, M, d) particle positions when asked for; ``diagnostics``: one row
    per member and diagnostics step; ``config``: the run's configuration, members, device and torch
    version; ``complete`` is False when a NaN/Inf stopped the run (``error`` says where) or a collapse did
    (``collapse``: the earliest, {step, t, member, x, peclet, peak_mass, peclet_start},
    :mod:`nsipf_torch.run.collapse`; ``collapses``: one such dict or None per member, a collapsed member of
    a batch frozen from its collapse on while the others ran on);
    a run a callback ended early (``StopAt``) is complete up to its last snapshot step, ``n_steps`` being the
    planned count; ``t_end``: the time reached."""

    times: list[float]
    steps: list[int]
    rho: torch.Tensor
    c: torch.Tensor
    X: torch.Tensor | None
    diagnostics: list[dict]
    config: dict
    members: list[dict]
    grid: Grid
    n_steps: int
    substeps: int
    wall_time: float
    complete: bool = True
    error: str | None = None
    collapse: dict | None = None
    t_end: float | None = None
    collapses: list | None = None

    def save(self, out: str | Path, figures: bool = True, vtk: bool = False, tensorboard: bool = True) -> Path:
        """Write the run into ``out`` (created): config.json, snap_KKKK.npz, final.npz (complete runs),
        diagnostics.csv, TensorBoard scalars, and with ``figures`` snap_KKKK.png and diagnostics.png;
        ``vtk`` adds ParaView files. Returns the directory."""
        from nsipf_torch.io.output import save_result
        return save_result(self, Path(out), figures=figures, vtk=vtk, tensorboard=tensorboard)

    def series(self, key: str) -> tuple[list[float], torch.Tensor]:
        """(times, values (T, B)) of one diagnostic, for plots."""
        B = len(self.members)
        rows = self.diagnostics
        return [r["t"] for r in rows[::B]], torch.tensor([r[key] for r in rows], dtype=torch.float64).reshape(-1, B)


def run(setup, runner, callbacks: Sequence[Callback] = (), resume: dict | None = None) -> Result:
    """Drive a runner through the checked run ``setup`` with the default trackers (NaN/Inf stop,
    diagnostics, snapshots) before the given ``callbacks``; continue from ``resume`` (a state.pt)."""
    cfg = setup.cfg
    user = list(callbacks)
    snaps = next((cb for cb in user if isinstance(cb, Snapshots)), None)
    if snaps is None:
        snaps = Snapshots.evenly(setup.n_steps, cfg.snapshots, particles=cfg.save_particles)
    else:
        user.remove(snaps)
    state = LoopState(runner, 0, 0.0, setup.n_steps, members=setup.members, snapshots=snaps)
    if resume is not None:
        runner.load_state_dict(resume["runner"])
        snaps.load_state_dict(resume["snapshots"])
        state.step, state.substeps, state.log = resume["step"], resume["substeps"], list(resume["log"])
        state.t = setup.time_at(state.step)
    start, error, collapse = time.perf_counter(), None, None
    ceq = getattr(setup, "ceq", None)
    stopper = StopOnCollapse() if ceq and ceq.can_collapse else None
    trackers = [StopOnNonFinite(), Diagnostics(), snaps] + ([stopper] if stopper else [])
    try:
        run_loop(runner, setup, [*trackers, *user], state)
    except NonFiniteError as err:
        error = str(err)
    except CollapseStop as stop:  # a result, not a failure: the concentration's last state is recorded
        collapse, state.diag_due = stop.info, True
        if not state.log or state.log[-1]["step"] != state.step:
            Diagnostics().on_step(state)
        if not snaps.steps or snaps.steps[-1] != state.step:
            snaps.take(state)
    if stopper is not None:  # members frozen at their collapse while the batch ran on to T
        collapse = collapse or stopper.first()
    result = _result(setup, snaps, state, time.perf_counter() - start, error, collapse,
                     stopper.collapses if stopper is not None else None)
    _warn(result)
    return result


def _result(setup, snaps: Snapshots, state: LoopState, wall: float, error: str | None,
            collapse: dict | None = None, collapses: list | None = None) -> Result:
    def stack(frames):
        return torch.stack(frames, dim=1) if frames else torch.empty(0)
    config = {"config": asdict(setup.cfg), "params": setup.params.to_dict(), "members": setup.members,
              "device": str(setup.grid.device), "torch": torch.__version__, "validity_warnings": setup.validity,
              **({"c_equation": setup.ceq.to_dict()} if hasattr(setup, "ceq") else {})}
    return Result(times=list(snaps.times), steps=list(snaps.steps), rho=stack(snaps.rho), c=stack(snaps.c),
                  X=stack(snaps.X) if snaps.X else None, diagnostics=state.log, config=config,
                  members=setup.members, grid=setup.grid, n_steps=setup.n_steps, substeps=state.substeps,
                  wall_time=wall, complete=error is None and collapse is None, error=error, collapse=collapse,
                  t_end=state.t, collapses=collapses)


def _warn(result: Result) -> None:
    cfg = result.config.get("config", {})
    negative = max((r.get("n_negative_c", 0) for r in result.diagnostics), default=0)
    # only the consumption equation keeps c >= 0; a produced c may start, or be, negative by the user's choice
    if negative > 0 and cfg.get("c_update") == "euler" and cfg.get("c_equation", "consumption") == "consumption":
        warnings.warn(f"the euler c-update drove c negative in up to {int(negative)} cells; "
                      "c_update='exp' keeps c >= 0", stacklevel=3)
    overflow = max((r.get("tile_overflow", 0) for r in result.diagnostics), default=0)
    if overflow > 0:
        warnings.warn(f"the CNN skipped up to {int(overflow)} occupied tiles in a step (they kept linear "
                      "upsampling); a smaller diag_every re-plans the tile list more often", stacklevel=3)
