"""Per-member diagnostics and the finiteness check (nsipf_torch/run/diagnostics.py)."""
import math

import pytest
import torch

from nsipf_torch.run.diagnostics import NonFiniteError, check_finite, field_diagnostics
from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.exact import neumann_gaussian_cells


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_field_diagnostics_per_member(dim):
    # Member 0: exact Neumann-Gaussian cell averages of mass 0.7, so the grid integral is 0.7 to round-off
    # (the cell masses are erf differences that telescope to M0). Member 1: uniform rho = 1/(2L)^d, whose
    # discrete mean |x|^2 is d (L^2/3 - h^2/12) exactly (midpoint rule of x^2, f'' constant). Planted
    # extremes and negative cells of c are found per member.
    grid = Grid(8, dim=dim, L=1.5)
    blob = neumann_gaussian_cells(grid, (0.4, -0.9, 0.2)[:dim], 0.3, 0.05, 0.2, M0=0.7)
    uniform = torch.full(grid.shape, 1 / (2 * grid.L) ** dim, dtype=torch.float64)
    rho = torch.stack([blob, uniform])
    c = torch.ones_like(rho)
    c[0][(1,) * dim], c[0][(2,) * dim], c[1][(5,) * dim] = -0.25, -0.5, 3.0
    d = field_diagnostics(rho, c, grid)
    assert set(d) == {"mass", "min_rho", "max_rho", "min_c", "mean_r2", "n_negative_c"}
    assert all(v.shape == (2,) for v in d.values())
    assert d["mass"][0].item() == pytest.approx(0.7, rel=1e-14) and d["mass"][1].item() == pytest.approx(1, rel=1e-14)
    assert torch.equal(d["mass"], grid.integrate(rho))
    assert d["mean_r2"][1].item() == pytest.approx(dim * (grid.L**2 / 3 - grid.h**2 / 12), rel=1e-14)
    assert d["min_rho"].tolist() == [blob.min().item(), uniform.min().item()]
    assert d["max_rho"].tolist() == [blob.max().item(), uniform.max().item()]
    assert d["min_c"].tolist() == [-0.5, 1.0] and d["n_negative_c"].tolist() == [2, 0]
    given = torch.tensor([0.1, 0.2], dtype=torch.float64)
    assert field_diagnostics(rho, c, grid, mean_r2=given)["mean_r2"] is given  # the particle average is kept


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_check_finite_names_the_first_bad_quantity_and_the_step(bad):
    rho, c = torch.ones(2, 4, 4), torch.ones(2, 4, 4)
    check_finite(3, 0.1, rho=rho, c=c)  # all finite: nothing raised
    c[1, 2, 2] = bad
    with pytest.raises(NonFiniteError, match=r"NaN or Inf in c at step 17 \(t = 0.034\)") as info:
        check_finite(17, 0.034, rho=rho, c=c)
    assert (info.value.step, info.value.t, info.value.quantity) == (17, 0.034, "c")
    assert isinstance(info.value, RuntimeError)
    rho[0, 0, 0] = bad
    with pytest.raises(NonFiniteError, match="in X at step 2"):  # fields are checked in the order given
        check_finite(2, 0.0, X=rho, c=c)
