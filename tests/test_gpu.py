"""On a real GPU (``pytest --rungpu -m gpu``; skipped without CUDA): training, compilation, and the claim that
a particle step neither synchronises with the host nor copies between host and device.

Two independent checks of "sync-free": ``torch.cuda.set_sync_debug_mode("error")`` raises on every
synchronising call (``.item()``, ``bincount``'s range read, blocking copies), and torch.profiler counts the
host-device memcpy events of each step after warm-up, which also sees the non-blocking copies the debug
mode misses. studies/gpu_check.sh runs these first.
"""
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from nsipf_torch.particles.deposit import histogram
from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.initial import get_ic
from nsipf_torch.methods import make_interp
from nsipf_torch.problems.params import Params
from nsipf_torch.run.runners import ParticleRunner

pytestmark = pytest.mark.gpu

TINY_TRAIN = ["--dim", "2", "--n-traj", "2", "--n-val-traj", "1", "--snapshots", "1", "--grids-per-traj", "1",
              "--patches-per-grid", "4", "--P-max", "3000", "--data-T", "0.02", "--data-Nr", "96", "--width", "4"]


def _memcpy_events(fn, steps: int) -> int:
    """Host<->device copies (device-side 'Memcpy HtoD/DtoH' records) while ``fn`` runs ``steps`` times."""
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.name.startswith("Memcpy") and ("HtoD" in e.name or "DtoH" in e.name))


def _runner(interp_name: str, P: int = 20_000, N: int = 32) -> ParticleRunner:
    grid = Grid(N, 3, 1.0, "cuda", torch.float32)
    interp = make_interp(interp_name, grid)
    # one tile plan, at the first step (warm-up): re-planning is a host read by design, outside the step
    return ParticleRunner(grid, get_ic("two_blobs"), Params(gamma=torch.tensor([0.01, 0.02]), chi=torch.tensor([1.0, 0.5])),
                          [0, 1], P, interp, replan_every=10**9)


@pytest.mark.parametrize("interp_name", ["trilinear", "spline", "neural"])
def test_particle_step_is_sync_free(interp_name):
    runner = _runner(interp_name)
    for _ in range(3):  # warm-up: per-device constants are copied once here, cuDNN picks its algorithms
        runner.advance(1e-3)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            runner.advance(1e-3)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert _memcpy_events(lambda: runner.advance(1e-3), 5) == 0
    rho, c = runner.fields()
    assert bool((rho >= 0).all()) and bool((c >= 0).all()) and bool(torch.isfinite(runner.X).all())


def test_fd_outer_step_syncs_once_for_its_substep_count():
    # fd_advance reads the stability rate on the host once per outer step to choose the sub-step count
    # (documented in nsipf_torch.solvers.fd); the sub-steps themselves copy nothing.
    import nsipf_torch.solvers.fd as fd
    from nsipf_torch.run.runners import FDRunner
    grid = Grid(32, 3, 1.0, "cuda", torch.float32)
    runner = FDRunner(grid, get_ic("two_blobs"), Params())
    runner.advance(1e-3)
    assert _memcpy_events(lambda: runner.advance(1e-3), 4) <= 4  # at most one copy per outer step
    rho, c = runner.fields()
    assert _memcpy_events(lambda: fd.fd_substep(rho, c, 1e-5, runner.gamma, runner.chi, grid.h), 4) == 0


@pytest.mark.parametrize("case", ["spread", "hot"])
def test_histogram_equals_bincount_on_cuda(case):
    # The deposit's fixed-size index_add_ (int32 counters, stride-0 source) against torch.bincount: exact.
    g = torch.Generator(device="cuda").manual_seed(0)
    n = 64**3
    flat = torch.randint(0, n if case == "spread" else 8, (1_000_000,), generator=g, device="cuda")
    assert torch.equal(histogram(flat, n, flat.numel()).long(), torch.bincount(flat, minlength=n))


def test_train_one_epoch_on_cuda(tmp_path):
    from nsipf_torch.commands import train
    from nsipf_torch.neural.model import load_model
    argv = TINY_TRAIN + ["--device", "cuda", "--epochs", "1", "--out", str(tmp_path / "m.pt"),
                         "--cache-dir", str(tmp_path / "cache"), "--logdir", str(tmp_path / "runs")]
    assert train.main(argv) == 0
    blob = torch.load(tmp_path / "m.pt", weights_only=True)  # no map_location: tensors come back where saved
    saved = [*blob["model"].values(), *blob["last_model"].values()]
    saved += [t for state in blob["optimizer"]["state"].values() for t in state.values() if torch.is_tensor(t)]
    assert all(t.device.type == "cpu" for t in saved)  # a checkpoint trained on a GPU loads on a CPU
    model, meta = load_model(tmp_path / "m.pt", dim=2)
    assert meta["epoch"] == 1 and meta["metrics"]["value_cnn"] > 0


def test_simulate_compiled_nsipf(tmp_path):
    import simulate
    argv = ["--method", "nsipf", "--compile", "--device", "cuda", "--N", "32", "--P", "20000", "--T", "0.01",
            "--out", str(tmp_path / "run"), "--no-progress"]
    assert simulate.main(argv) == 0
    assert any((tmp_path / "run").iterdir())
