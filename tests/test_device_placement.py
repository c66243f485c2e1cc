"""Device placement on CUDA, checked on a CPU-only machine (no GPU needed).

``FakeTensorMode`` makes CUDA tensors without CUDA (shapes, dtypes and devices, no data) and raises
``FakeTensorDeviceMismatchError`` (or, for convolutions, a ``RuntimeError`` "Expected all tensors to be on
the same device") when one op mixes a CPU and a CUDA tensor, which is the bug class these tests catch: a tensor left on the host while the model or the state lives on the GPU. (The ``meta`` device
is no substitute: ``conv3d`` of a CPU input with a meta weight silently returns a CPU tensor.)

What fake tensors cannot do, and how the tests keep it outside the checked code:
- host reads (``float(t)``, ``.item()``) of a fake tensor have no value: :func:`fake_cuda` gives them a
  stand-in (0.5, 1 or True), so host-side bookkeeping runs; values are not what these tests check;
- the autograd engine needs a real CUDA context, so ``loss.backward()`` is a no-op in the training test (the
  ``gpu`` tests in tests/test_gpu.py run the real backward pass on a GPU);
- ``torch.Generator(device="cuda")`` needs a CUDA context: generators are made on the host here;
- scipy and TensorBoard are host work and are stubbed where met.
"""
import contextlib
import importlib

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, unset_fake_temporarily

import nsipf_torch.problems.grid as grid_module
import nsipf_torch.solvers.fd as fd
from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.initial import get_ic
from nsipf_torch.methods import make_interp
from nsipf_torch.neural.model import UpsampleCNN
from nsipf_torch.problems.params import Params
from nsipf_torch.particles.sipf import initial_state, sipf_advance

CUDA = torch.device("cuda", 0)


def _stand_in(self):
    if self.dtype.is_floating_point:
        return 0.5
    return True if self.dtype == torch.bool else 1


def _cuda_device(name):
    name = str(name)
    return CUDA if name in ("auto", "cuda") else torch.device(name)


@contextlib.contextmanager
def fake_cuda(monkeypatch):
    """Fake-tensor mode in which "cuda" is a valid device and generators are made on the host (module
    docstring): a host generator's draws are fake CPU tensors that the code must move to the device."""
    import nsipf_torch.particles.move as particles
    import nsipf_torch.run.runners as runners
    real_member, real_noise = particles.member_generator, runners.noise_generators
    monkeypatch.setattr(grid_module, "resolve_device", _cuda_device)
    monkeypatch.setattr(particles, "member_generator", lambda seed, device="cpu": real_member(seed))
    monkeypatch.setattr(runners, "noise_generators", lambda seeds, rank=0, device="cpu": real_noise(seeds, rank))
    memo = FakeTensor.__dict__["item_memo"]  # a descriptor: restored by hand (monkeypatch cannot read it)
    FakeTensor.item_memo = property(_stand_in, lambda self, value: None)
    try:
        with FakeTensorMode(allow_non_fake_inputs=True) as mode:
            yield mode
    finally:
        FakeTensor.item_memo = memo


def _on_cuda(*tensors):
    return all(isinstance(t, FakeTensor) and t.device == CUDA for t in tensors)


def test_fake_mode_catches_a_tensor_left_on_the_host(monkeypatch):
    # The premise of this file: mixing devices in one op is an error here, as it is on a GPU.
    from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError
    with fake_cuda(monkeypatch):
        with unset_fake_temporarily():
            model = UpsampleCNN(dim=2, width=2, depth=1)
        model = model.to(CUDA)
        with pytest.raises(RuntimeError, match="same device"):  # conv's own device check
            model(torch.rand(1, 6, 6))
        with pytest.raises(FakeTensorDeviceMismatchError, match="at least two devices"):
            torch.rand(3) + torch.rand(3, device=CUDA)
        assert _on_cuda(model(torch.rand(1, 6, 6, device=CUDA)))


# --- the training script -----------------------------------------------------------------------------------
class _Writer:
    """TensorBoard stand-in that checks what it is given reached the host."""

    def __init__(self, *args, **kwargs):
        self.images = []

    def add_scalar(self, tag, value, step):
        assert isinstance(value, float), tag

    def add_image(self, tag, image, step):
        assert image.device.type == "cpu", tag
        self.images.append(tag)

    def close(self):
        pass


def _patches(dcfg, cache_dir, progress=False, device="cpu"):
    """A tiny dataset of the right shapes, made on the host (data.py has its own tests)."""
    d, k, s, n = dcfg.dim, dcfg.halo, dcfg.scale, 4
    with unset_fake_temporarily():
        def split(count):
            return {"rough": torch.rand(count, *(n + 2 * k,) * d) + 0.1,
                    "smooth": torch.rand(count, *(n + 2 * k,) * d) + 0.1,
                    "target": torch.rand(count, *(s * n,) * d) + 0.1}
        return {"train": split(6), "val": split(3)}


def test_train_main_on_cuda(monkeypatch, tmp_path):
    # train.py --device cuda end to end: every op of the training step, the validation pass, the images and
    # the final evaluation (the cubic-spline column too) runs on the model's device, and what leaves it
    # (checkpoint, TensorBoard) is on the host.
    from nsipf_torch.commands import train
    saved = []

    def save_checkpoint(path, model, **kw):
        tensors = [v for part in (kw["weights"], kw["extra"]["last_model"]) for v in part.values()]
        tensors += [v for state in kw["optimizer_state"]["state"].values() for v in state.values()]
        assert all(t.device.type == "cpu" for t in tensors)
        saved.append(kw["epoch"])

    def spline_upsample(inp, scale, halo, dim):
        assert inp.device.type == "cuda"  # the package's own spline, on the model's device
        n = inp.shape[-1] - 2 * halo
        return torch.zeros(inp.shape[0], *(scale * n,) * dim, device=inp.device)

    import nsipf_torch.neural.training as training
    real_parse, real_cnn = train.parse_args, training.UpsampleCNN

    def parse_args(argv):  # CUDA "is available" while the flags are checked
        with monkeypatch.context() as m:
            m.setattr(torch.cuda, "is_available", lambda: True)
            return real_parse(argv)

    def cnn(*args, **kw):  # parameters made on the host, then moved by train.py (as on a GPU)
        with unset_fake_temporarily():
            return real_cnn(*args, **kw)

    monkeypatch.setattr(train, "parse_args", parse_args)
    monkeypatch.setattr(training, "UpsampleCNN", cnn)
    monkeypatch.setattr(training, "make_dataset", _patches)
    monkeypatch.setattr(training, "save_checkpoint", save_checkpoint)
    monkeypatch.setattr(training, "spline_upsample", spline_upsample)
    monkeypatch.setattr(torch.Tensor, "backward", lambda self, *a, **k: None)
    monkeypatch.setattr(importlib.import_module("torch.utils.tensorboard"), "SummaryWriter", _Writer)
    argv = ["--device", "cuda", "--dim", "2", "--epochs", "2", "--width", "4", "--depth", "2",
            "--out", str(tmp_path / "m.pt"), "--logdir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path)]
    with fake_cuda(monkeypatch):
        assert train.main(argv) == 0
    assert saved == [1, 2]


# --- one step of every method ------------------------------------------------------------------------------
def _grid():
    return Grid(16, 3, 1.0, "cuda:0", torch.float32)


def test_fd_substep_on_cuda(monkeypatch):
    from nsipf_torch.run.runners import FDRunner
    params = Params(gamma=torch.tensor([0.01, 0.02]))  # checked at the API's entry, on the host
    with fake_cuda(monkeypatch):
        grid = _grid()
        runner = FDRunner(grid, get_ic("two_blobs"), params, B=2)
        rho, c = fd.fd_substep(runner.rho, runner.c, 1e-4, runner.gamma, runner.chi, grid.h)
        assert _on_cuda(runner.rho, runner.c, rho, c)


def _shipped_model():
    from nsipf_torch.neural.model import load_model
    from nsipf_torch.io.resources import default_checkpoint
    return load_model(default_checkpoint(3), dim=3)[0]


@pytest.mark.parametrize("method", ["trilinear", "spline", "neural", "neural-tiled"])
def test_particle_step_on_cuda(monkeypatch, method):
    model = _shipped_model() if method.startswith("neural") else None
    with fake_cuda(monkeypatch):
        grid = _grid()
        state = initial_state(get_ic("two_blobs"), grid, 500, seeds=[0, 1])
        if model is None:
            interp = make_interp(method, grid)
        else:
            from nsipf_torch.neural.interp import NeuralInterp
            interp = NeuralInterp(model, grid, capacity=3 if method == "neural-tiled" else None)
            assert interp.tile is not None
        noise = torch.randn(state.X.shape, device=CUDA)
        gamma = torch.full((2,), 0.01, device=CUDA)
        X, c = sipf_advance(state.X, state.c, noise, grid=grid, dt=1e-3, gamma=gamma, chi=1.0, M0=1.0,
                            interp=interp)
        assert _on_cuda(state.X, state.c, X, c)


def test_benchmark_row_on_cuda(monkeypatch):
    # A particle row of the benchmark: the runner made by the method registry, driven two steps by the one
    # time loop (run_loop; the benchmark adds only host-side callbacks), re-planned on the way.
    from nsipf_torch.api import Setup, SimConfig
    from nsipf_torch.run.loop import run_loop
    from nsipf_torch.methods import METHODS
    from nsipf_torch.run.callbacks import LoopState
    with fake_cuda(monkeypatch):
        grid = _grid()
        for name in ("sipf-trilinear", "nsipf"):
            runner = METHODS[name].runner(grid, get_ic("two_blobs"), Params(T=0.002), P=400)
            setup = Setup(SimConfig(T=0.002, dt=1e-3, diag_every=10**6), Params(T=0.002), grid, get_ic("two_blobs"),
                          [{"gamma": 0.01, "chi": 1.0, "seed": 0}], n_steps=2)
            state = run_loop(runner, setup, [], LoopState(runner, 0, 0.0, 2))
            assert state.step == 2 and state.substeps == 2 and _on_cuda(runner.X, runner.c)
