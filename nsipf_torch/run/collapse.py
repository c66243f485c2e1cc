"""Blow-up as a result: stop a Keller-Segel run when the density concentrates beyond what the grid resolves.

Cells that produce their attractant (the parabolic and elliptic c-equations, issue 20) can collapse: in
2D a mass above M_c = 8 pi gamma D / (chi beta) concentrates into a Dirac mass in finite time, in 3D any
large enough concentration does. On a grid the collapse saturates at the cell size: a 2D FD run at 128^2
with a supercritical blob ends as a spike holding about a tenth of the mass in one cell, never all of it,
so no criterion of the kind "all mass in a cell" ever fires, while the drift and with it the FD sub-step
count keep growing.

The criterion: the cell Peclet number

    Pe_h = h max |chi grad Phi(c)| / gamma = h / l,      l = gamma / |chi grad Phi(c)|

(face differences of Phi on the grid). Where drift and diffusion balance, gamma grad rho = chi rho
grad Phi, rho changes by a factor e over the layer width l, so Pe_h is the number of e-folds of rho
between neighbouring cells. The classical cell-Peclet bound Pe_h <= 2 (:data:`PECLET_LIMIT`) is where a
central-difference profile stops being monotone, that is where the grid stops resolving the layer:
beyond it rho drops by more than e^2 ~ 7.4 from one cell to the next (the upwinded FV flux stays
positive there, but represents a spike, not the profile). In 2D the field of a mass m inside a radius
r has |grad c| = beta m / (2 pi D r), so at r = h

    Pe_h = chi beta m / (2 pi D gamma) = 4 m / M_c:

the limit is crossed when the mass within a cell of the peak exceeds M_c / 2. A resolved run keeps
Pe_h -> 0 under refinement, while the grid's spike of a collapse keeps it O(1) whatever h (measured,
pks_blob in 2D, gamma = 0.01: Pe_h <= 0.42 for the subcritical M0 = 0.2 up to t = 2 at 64^2; for
M0 = 0.5 it passes 2 at t ~ 0.35 at 128^2 and saturates near 4 with about 16 % of the mass in the peak
cell). Below the limit the drift adds at most d Pe_h gamma / h^2 to the positivity rate
2 d gamma / h^2, a factor 2 at most, so FD sub-stepping cannot run away. Members with gamma = 0 (no
diffusion to compare with) are not checked.

Initial data beyond the grid. Pe_h of a smooth profile is O(h): for a blob of width s it is
h max|chi grad Phi| / gamma ~ h chi beta M / (gamma D s), so a coarse grid can start above the limit
(pks_blob, M0 = 0.5, at the default 32^2: Pe_h(0) = 2.08) and a fixed limit would report a "collapse" at
the first step, a statement about the grid, not about a concentration. At fixed h, Pe_h / Pe_h(0) =
s(0) / s(t) is the factor by which the concentration length has shrunk since the start, so the limit per
member is

    max(PECLET_LIMIT, GROWTH_LIMIT Pe_h(0)),     GROWTH_LIMIT = 1.5:

a member that starts resolved (Pe_h(0) < 2 / 1.5) keeps the plain limit 2 (so the collapse times of the
resolved grids, 64^2 and finer for pks_blob, are those of the plain criterion, and converge in N), one
that starts under-resolved stops when its concentration length has shrunk by a third, a concentration that
developed. Such a start is warned about (refine the grid). 1.5 is a measured margin: at 32^2, M0 = 0.5,
FD's Pe_h grows 2.08 -> 3.12 by t ~ 0.30 (the resolved grids stop at 0.27-0.36) and SIPF's by t ~ 0.19,
while the subcritical M0 = 0.12 keeps Pe_h <= 0.45 to t = 0.6.
"""
from __future__ import annotations

import warnings

import torch

from nsipf_torch.run.callbacks import Callback, LoopState

__all__ = ["PECLET_LIMIT", "GROWTH_LIMIT", "CollapseStop", "cell_peclet", "collapse_limit", "StopOnCollapse"]

PECLET_LIMIT = 2.0
GROWTH_LIMIT = 1.5


class CollapseStop(Exception):
    """A member concentrated beyond the grid: ``info`` holds step, t, member, x (the peak cell's centre),
    the cell Peclet number, the mass in the peak cell and the Peclet number at the start."""

    def __init__(self, info: dict):
        super().__init__(f"collapse at t = {info['t']:.4g}, x = {info['x']} (member {info['member']})")
        self.info = info


def cell_peclet(phi: torch.Tensor, gamma: torch.Tensor, chi: torch.Tensor, dim: int) -> torch.Tensor:
    """Pe_h per member (B,), float64: max over faces of |chi (Phi_{i+1} - Phi_i)| / gamma (module docstring);
    0 for members with gamma = 0."""
    B = phi.shape[0]
    jump = torch.stack([torch.diff(phi, dim=a).abs().reshape(B, -1).amax(dim=1) for a in range(-dim, 0)]).amax(0)
    gamma, chi = gamma.to(phi.device, torch.float64), chi.to(phi.device, torch.float64)
    pe = chi * jump.to(torch.float64) / torch.where(gamma > 0, gamma, torch.ones_like(gamma))
    return torch.where(gamma > 0, pe, torch.zeros_like(pe))


def collapse_limit(start: torch.Tensor, limit: float = PECLET_LIMIT, growth: float = GROWTH_LIMIT) -> torch.Tensor:
    """Each member's limit on Pe_h from its start: max(limit, growth Pe_h(0)) (module docstring)."""
    return torch.clamp(growth * start, min=limit)


class StopOnCollapse(Callback):
    """Record a member whose Pe_h exceeds its limit: after every FD outer step, at diagnostics steps for the
    particle methods (whose step stays free of host syncs). In a batch the collapsed member is frozen
    (``runner.freeze``: its state is held from then on, and it no longer sets the FD sub-step count) while
    the others run on; :class:`CollapseStop` is raised when every member has collapsed. ``collapses``:
    per member, None or {step, t, member, x, peclet, peak_mass, peclet_start}.

    With the parabolic c-equation the particle methods' c accumulates the deposit's noise, which raises
    Pe_h where particles per cell are few (measured: pks_blob 3D, M0 = 2, N = 32, P = 2e4, 0.6 particles
    per cell: Pe_h = 19.7 at t = 0.01 against 3.3 for FD at t = 0.001; in 2D at 64^2 with 5 per cell
    the subcritical M0 = 0.12 runs to T = 0.5 without a stop)."""

    def __init__(self, limit: float = PECLET_LIMIT, growth: float = GROWTH_LIMIT):
        self.limit, self.growth, self.start, self.limits, self.collapses = limit, growth, None, None, []

    @staticmethod
    def peclet(runner) -> torch.Tensor:
        with torch.no_grad():
            return cell_peclet(runner.ceq.phi(runner.c), runner.gamma, runner.chi, runner.grid.dim).cpu()

    def _logged_or_now(self, state: LoopState, step: int) -> torch.Tensor:
        """Pe_h per member at ``step``: from that step's diagnostics rows when the Diagnostics tracker has
        logged them (it runs before this callback and logs ``peclet`` on the systems that can collapse), else
        computed. Step 0's rows open the log (a resumed run's too); a later step's are its last rows."""
        B = len(state.members)
        rows = state.log[:B] if step == 0 else state.log[-B:]
        logged = [row["peclet"] for row in rows if row["step"] == step and "peclet" in row]
        if len(logged) == B:
            return torch.tensor(logged, dtype=torch.float64)
        return self.peclet(state.runner)

    def on_start(self, state: LoopState) -> None:
        """Pe_h of the starting state: above the limit, the initial data themselves are beyond the grid
        (reported with the collapse as ``peclet_start``, and warned about: refine the grid); the member's
        limit is then ``growth`` times its start (module docstring). A resumed run takes the start from the
        step-0 diagnostics rows, so its limits are those of the run it continues."""
        self.start = self._logged_or_now(state, step=0)
        self.limits = collapse_limit(self.start, self.limit, self.growth)
        if len(self.collapses) != len(self.start):  # a resumed batch brings its frozen members' records
            saved = getattr(state.runner, "frozen_at", None)
            self.collapses = list(saved) if saved is not None else [None] * len(self.start)
        if bool((self.start > self.limit).any()):
            warnings.warn(f"the initial data are beyond the grid (cell Peclet number {float(self.start.max()):.3g} "
                          f"> {self.limit:g}): a collapse is detected as a growth of it by {self.growth:g}x; "
                          "a finer --N resolves the start", stacklevel=2)

    def on_step(self, state: LoopState) -> None:
        runner = state.runner
        if not (state.diag_due or getattr(runner, "check_every_step", False)):
            return
        grid = runner.grid
        pe = self._logged_or_now(state, step=state.step)
        done = torch.tensor([hit is not None for hit in self.collapses], dtype=torch.bool)
        over = (pe > (self.limits if self.limits is not None else self.limit)) & ~done
        if not bool(over.any()):
            return
        members = [int(m) for m in torch.nonzero(over).reshape(-1)]
        rho_all = runner.fields()[0]
        for member in members:
            rho = rho_all[member]
            index = torch.unravel_index(torch.argmax(rho.reshape(-1)).cpu(), rho.shape)
            x = [round(float(grid.centres()[int(i)]), 6) for i in index]
            self.collapses[member] = {
                "step": state.step, "t": state.t, "member": member, "x": x, "peclet": float(pe[member]),
                "peak_mass": float(rho.max()) * grid.cell_volume,
                "peclet_start": float(self.start[member]) if self.start is not None else None}
        if all(hit is not None for hit in self.collapses) or not hasattr(runner, "freeze"):
            raise CollapseStop(self.first())
        runner.freeze({member: self.collapses[member] for member in members})

    def first(self) -> dict | None:
        """The earliest collapse recorded (the lowest member among simultaneous ones), or None."""
        hits = [hit for hit in self.collapses if hit is not None]
        return min(hits, key=lambda hit: (hit["step"], hit["member"])) if hits else None
