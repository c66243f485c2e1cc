"""NSIPF's tile plan (nsipf_torch/neural/interp.py): its capacity under torch.compile, and as state."""
import math

import pytest
import torch
from torch._dynamo.utils import counters

from nsipf_torch.api import SimConfig, check_config, make_runner
from nsipf_torch.neural.interp import NeuralInterp
from nsipf_torch.io.resources import default_checkpoint
from nsipf_torch.particles.move import initial_particles
from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.initial import get_ic


def test_compiled_plans_are_powers_of_two_that_cover_the_margin():
    grid = Grid(64, 2)
    X = initial_particles(get_ic("two_blobs"), grid, 4000, [0])
    interp = NeuralInterp.from_checkpoint(default_checkpoint(2), grid)
    exact = interp.plan_capacity(X)  # 1.5 x the occupied tiles
    interp.pow2_capacity = True
    rounded = interp.plan_capacity(X)
    assert rounded == 2 ** math.ceil(math.log2(exact)) and exact <= rounded < 2 * exact and rounded <= 64


def test_plan_state_round_trip_and_bad_values():
    grid = Grid(64, 2)
    interp = NeuralInterp.from_checkpoint(default_checkpoint(2), grid)
    interp.plan_capacity(initial_particles(get_ic("blob"), grid, 1000, [0]))
    other = NeuralInterp.from_checkpoint(default_checkpoint(2), grid)
    other.load_state_dict(interp.state_dict())
    assert other.capacity == interp.capacity < 64
    for bad in (0, 2.5, True, "8"):
        with pytest.raises(ValueError, match="tile capacity"):
            other.load_state_dict({"capacity": bad})


def test_a_member_runs_the_same_alone_and_in_a_batch_under_the_tile_plan():
    """The tile plan's capacity is shared by a batch's members (top tiles by load over all of them), so a
    member's CNN tiles could depend on its batch-mates. With the 1.5x margin no occupied tile is left out
    here (overflow 0), and seed 0 alone and seed 0 among three ends bitwise equal: 2D, N = 64 (64 tiles
    per member), P = 3000 blob particles occupying few of them, 30 steps re-planned every 10; the CNN kept
    (``fallback=False``) below the training's particles per cell at N = 64 (2.44)."""
    import nsipf_torch as nt
    from nsipf_torch.api import prepare
    kw = dict(N=64, dim=2, P=3000, T=0.03, device="cpu", fallback=False)
    runner = make_runner(prepare("blob", "nsipf", seeds=[0, 1, 2], **kw))
    runner.replan()
    assert runner.interp.capacity < 3 * runner.interp.n_tiles  # the tiled path, not the whole grid (59 of 192)
    with pytest.warns(UserWarning, match="particles per cell P/N.2 = 0.732 is outside"):
        alone = nt.simulate("blob", "nsipf", seeds=[0], save_particles=3000, snapshots=1, **kw)
        batch = nt.simulate("blob", "nsipf", seeds=[0, 1, 2], save_particles=3000, snapshots=1, **kw)
    assert alone.config["config"]["method"] == "nsipf"  # the CNN ran
    plan = [int(row["tile_overflow"]) for row in batch.diagnostics if "tile_overflow" in row]
    assert plan and max(plan) == 0
    assert torch.equal(alone.X[0, -1], batch.X[0, -1]) and not torch.equal(batch.X[0, -1], batch.X[1, -1])


@pytest.mark.slow
def test_compiled_nsipf_recompiles_at_most_once_in_100_steps():
    """Compiled NSIPF at N = 64 in 3-D (512 tiles, the plan keeps 64-128: the tiled path) over 100 steps,
    re-planned every 10. The capacity is a Python int inside the compiled region, so each new value
    recompiles; planned as a power of two it takes at most two values here. Measured: one recompilation
    (frames compiled: 2 at warm-up, 3 after 100 steps); planned exactly (1.5 x the occupied tiles) it took
    9 values and 8 recompilations. About 100 s on one CPU thread, most of it compiling (25 s with
    Inductor's on-disk cache warm)."""
    cfg = SimConfig(device="cpu", method="nsipf", ic="two_blobs", N=64, dim=3, P=20000, compile=True)
    runner = make_runner(check_config(cfg))
    runner.advance(cfg.dt)  # warm-up: the deposit's and the move's regions compile
    warm = counters["frames"]["ok"]
    capacities = {runner.interp.capacity}
    for _ in range(99):
        runner.advance(cfg.dt)
        capacities.add(runner.interp.capacity)
    assert max(capacities) < 512
    assert counters["frames"]["ok"] - warm <= 1, (counters["frames"], capacities)
