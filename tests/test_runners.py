"""The method runners (nsipf_torch.run.runners): one interface, parameters as one Params, the tile re-plan policy
inside the particle runner, and state round trips."""
import torch

from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.initial import get_ic
from nsipf_torch.methods import make_interp
from nsipf_torch.problems.params import Params
from nsipf_torch.run.runners import FDRunner, ParticleRunner


def test_fd_runner_members_follow_params_and_conserve_mass():
    grid = Grid(8, dim=2)
    runner = FDRunner(grid, get_ic("two_blobs"), Params(chi=torch.tensor([0.0, 2.0])), B=2)
    for _ in range(3):
        assert runner.advance(2e-3) >= 1
    rho, c = runner.fields()
    assert torch.allclose(grid.integrate(rho), torch.ones(2, dtype=torch.float64), rtol=1e-13, atol=0)
    assert not torch.equal(rho[0], rho[1])  # chi = 0 and chi = 2 differ
    assert set(runner.diagnostics()) >= {"mass", "min_rho", "max_rho", "min_c", "mean_r2", "n_negative_c"}


class CountingInterp:
    """Trilinear interpolation that counts how often the runner re-plans (the NSIPF tile-list hook)."""

    def __init__(self, grid):
        self.inner, self.plans = make_interp("trilinear", grid), 0

    def grad_c(self, c, X):
        return self.inner.grad_c(c, X)

    def plan_capacity(self, X):
        self.plans += 1


def test_particle_runner_replans_on_its_own_every_k_steps():
    grid = Grid(8, dim=3)
    interp = CountingInterp(grid)
    runner = ParticleRunner(grid, get_ic("blob"), Params(), [0], 200, interp, replan_every=10)
    for _ in range(25):
        runner.advance(1e-3)
    assert interp.plans == 3  # before steps 1, 11 and 21


def test_particle_state_round_trip_continues_bitwise():
    grid = Grid(8, dim=2)

    def make():
        return ParticleRunner(grid, get_ic("two_blobs"), Params(), [3, 4], 300, make_interp("spline", grid))
    a = make()
    for _ in range(4):
        a.advance(1e-3)
    b = make()
    b.load_state_dict(a.state_dict())
    for _ in range(4):
        a.advance(1e-3)
        b.advance(1e-3)
    assert torch.equal(a.X, b.X) and torch.equal(a.c, b.c)
