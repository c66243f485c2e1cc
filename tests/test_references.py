"""References of the held-out problems: the 1-D planar reference's convergence, lifting, and agreement
with the d-D FD solver on a planar problem."""
import math

import pytest
import torch

from nsipf_torch.solvers.fd import fd_solve
from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.initial import get_ic
from studies.references import (coarsen, lift, planar_reference, profile_difference, richardson_error,
                                    solve_planar_1d)
from nsipf_torch.problems.exact import richardson_order


def test_planar_reference_converges_at_second_order():
    """Observed order >= 1.8 between 512, 1024 and 2048 cells on the default variant (the issue's bar; the
    scheme is formally second order; measured 1.95 in 3D units), and 1024 vs 2048 within the 1e-3 the
    reference's resolution is chosen by (measured 1.5e-4). Mass is conserved to round-off."""
    ic = get_ic("planar")
    rho = {NR: solve_planar_1d(ic, NR, 3, 0.01, 1.0, 0.2)[0] for NR in (512, 1024, 2048)}
    d1, d2 = profile_difference(rho[512], rho[1024]), profile_difference(rho[1024], rho[2048])
    assert richardson_order(d1, d2) >= 1.8, (d1, d2)
    assert d2 <= 1e-3
    for NR, r in rho.items():  # 3D units: M0 over the (2L)^2 cross-section
        assert abs(float(r.sum()) * 2.0 / NR - 0.25) < 1e-13 and float(r.min()) >= 0.0


def test_lift_is_exact_cell_averaging():
    """Lifting the 1-D rho0 profile onto a d-D grid reproduces the d-D exact cell averages (round-off)."""
    ic = get_ic("planar:2")
    NR = 512
    faces = -1.0 + (2.0 / NR) * torch.arange(NR + 1, dtype=torch.float64)
    for dim in (2, 3):
        grid = Grid(32, dim)
        assert torch.allclose(lift(ic.rho0_profile(faces, dim), grid), ic.rho0(grid), rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="divisor"):
        coarsen(torch.ones(100), 16)


def test_planar_2d_fd_solution_is_the_1d_solution():
    """The 2-D FD solver on a planar problem keeps it planar and is the 1-D FD solution on the same cells:
    the y fluxes vanish exactly and at 32 cells both take one sub-step per step, so they agree to round-off
    (measured: bitwise; the space error at 32 cells is 0.05, so 1e-12 separates the two by far)."""
    ic = get_ic("planar")
    grid = Grid(32, 2)
    rho2, _, _ = fd_solve(ic.rho0(grid)[None], ic.c0(grid)[None], 0.1, 1e-3, 0.01, 1.0, grid)
    assert float((rho2[0] - rho2[0, :, :1]).abs().max()) < 1e-12  # still independent of y
    rho1, _ = solve_planar_1d(ic, 32, 2, 0.01, 1.0, 0.1)
    assert profile_difference(rho1, rho2[0, :, 0]) < 1e-12


def test_richardson_error_formula():
    """u_h = u + C h^p: the finer of h, h/2 is off by |u_h - u_{h/2}| / (2^p - 1) (exact for this model)."""
    C, p, h = 0.3, 2.0, 0.1
    u_h, u_h2 = C * h**p, C * (h / 2) ** p
    assert richardson_error(abs(u_h - u_h2), p) == pytest.approx(u_h2, rel=1e-12)
    with pytest.raises(ValueError):
        richardson_error(1.0, 0.0)


@pytest.mark.slow
def test_planar_reference_levels_and_estimate():
    """planar_reference stops at 2048 cells on the default variant and its Richardson estimate is below tol."""
    ref = planar_reference(get_ic("planar"), 3, 0.01, 1.0, 0.2)
    assert ref.NR == 2048 and ref.converged and ref.error < 1e-3 and math.isfinite(ref.order_observed)
