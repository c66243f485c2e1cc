"""A runtime monitor of the neural interpolator: how far its drift is from the cubic spline's.

Every diagnostics step, the drift grad c~ (paper eq. 34, the chi grad c term) of NSIPF and of the
classical cubic B-spline (SIPF, :class:`~nsipf_torch.particles.interp.SplineInterp`) are evaluated on the same c at a
fixed subsample of particles (the first ``n`` of each member: the sample order is random, so they are a
uniform subsample), and

    interp_gap = ||grad_nsipf - grad_spline||_2 / ||grad_spline||_2      per member, (B,)

(norms over the subsample's particles and components). On a smooth field both interpolators are close to
the exact gradient and the gap is the CNN's own error; where the CNN is outside what it learned (or the
field is rough at the grid scale, where the two differ by design) it grows. The gap is a symptom to be
calibrated against end-to-end errors (docs/VALIDATION.md), not an error estimate.
"""
from __future__ import annotations

import torch

from nsipf_torch.problems.grid import Grid
from nsipf_torch.particles.interp import make_interp

DEFAULT_SUBSAMPLE = 4096
GAP_WARNING = 1.0
"""``interp_gap`` above which a run warns, once. Read from the calibration (docs/VALIDATION.md,
``studies/gap_calibration.py`` and the held-out scatter): the gap rises as cells aggregate and dig holes in
c, to 0.37-0.91 on the canonical runs (the main job: 0.91 at t = 0.05) and 0.01-0.83 on the held-out rows,
whether NSIPF's error there was 0.29x or 4.8x the spline's; runs far outside the validity domain reached
0.64-1.20. So the gap does not tell a run where NSIPF loses from one where it wins, and the threshold marks
only what no validated run reached: above 1 the two drifts differ by more than the spline's drift itself."""


class InterpGap:
    """``InterpGap(grid, neural)(c, X) -> (B,)``: the gap of the module docstring on the first ``n`` particles.

    ``neural`` is a :class:`~nsipf_torch.neural.interp.NeuralInterp` (or any object with ``grad_c``). When it holds
    the fine field its last call made from this very c (``keep_last``, which the particle runner sets: the
    step's c^{n+1}), the NSIPF drift is read from that field, the step's own, with no CNN evaluation: 2.5 %
    of a step at the default cadence at the main job's size, 0.6 % at 64^3 with P = 2e5 (BENCHMARKS.md).
    Otherwise the CNN runs on the tiles the subsample occupies (its tile list planned for the subsample
    alone; the step's plan ``capacity`` and its ``last_overflow`` counter are restored).
    """

    def __init__(self, grid: Grid, neural, n: int = DEFAULT_SUBSAMPLE):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"the subsample size n must be a positive integer, got {n!r}")
        self.grid, self.neural, self.n = grid, neural, n
        self.spline = make_interp("spline", grid)

    @torch.no_grad()
    def __call__(self, c: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        Xs = X[:, : self.n]
        held = getattr(self.neural, "last_fine_field", lambda c: None)(c)
        if held is not None:  # the step's own fine field of this c: its drift, read at the subsample
            g_nn = self.neural.fine_interp.grad_c(held, Xs)
        else:
            g_nn = self._fresh_drift(c, Xs)
        g_sp = self.spline.grad_c(c, Xs)
        num = torch.linalg.vector_norm((g_nn - g_sp).to(torch.float64), dim=(-2, -1))
        den = torch.linalg.vector_norm(g_sp.to(torch.float64), dim=(-2, -1))
        return torch.where(den > 0, num / den.clamp(min=torch.finfo(torch.float64).tiny), num)

    def _fresh_drift(self, c: torch.Tensor, Xs: torch.Tensor) -> torch.Tensor:
        overflow = getattr(self.neural, "last_overflow", None)
        capacity = getattr(self.neural, "capacity", None)
        if capacity is not None:  # the CNN runs only on the tiles the subsample occupies (a host sync, as
            self.neural.plan_capacity(Xs, margin=1.0)  # the diagnostics' own re-planning is)
        g_nn = self.neural.grad_c(c, Xs)
        if capacity is not None:
            self.neural.capacity = capacity
        if overflow is not None:
            self.neural.last_overflow = overflow
        return g_nn


def gap_warning(rows: list[dict], threshold: float = GAP_WARNING) -> str | None:
    """The one warning of a run whose diagnostics ``rows`` (dicts with ``t`` and ``interp_gap``) exceed
    ``threshold``, naming the largest gap and when; None otherwise (and for runs without the monitor)."""
    gaps = [(float(r["interp_gap"]), float(r["t"])) for r in rows if "interp_gap" in r]
    if not gaps:
        return None
    worst, t = max(gaps)
    if worst <= threshold:
        return None
    return (f"interp_gap reached {worst:.2f} at t = {t:.4g} (threshold {threshold:g}): the CNN's drift and the "
            "cubic spline's differ more than in any run whose accuracy was validated; compare with "
            "--method sipf --interp spline (docs/VALIDATION.md)")


def interp_gap(c: torch.Tensor, X: torch.Tensor, neural, grid: Grid, n: int = DEFAULT_SUBSAMPLE) -> torch.Tensor:
    """One-off form of :class:`InterpGap` (builds the spline each call; a run keeps an ``InterpGap``)."""
    return InterpGap(grid, neural, n)(c, X)
