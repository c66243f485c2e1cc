"""train.py: tiny training runs, checkpoints, --resume, bad input, DDP (slow)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nsipf_torch.neural.training as training
from nsipf_torch.commands import train
from nsipf_torch.neural.model import load_model

ROOT = Path(__file__).resolve().parent.parent
# Tiny 2D run: a few patches from short radial trajectories; seconds, not minutes.
TINY = ["--dim", "2", "--n-traj", "2", "--n-val-traj", "1", "--snapshots", "1", "--grids-per-traj", "1",
        "--patches-per-grid", "4", "--P-max", "3000", "--data-T", "0.02", "--data-Nr", "96", "--width", "4"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def _run(tmp, cache, *extra, out="ck.pt"):
    argv = TINY + ["--out", str(tmp / out), "--cache-dir", cache, "--logdir", str(tmp / "runs"), *extra]
    return train.main(argv)


def test_checkpoint_contents_and_loading(tmp_path, cache, capsys):
    assert _run(tmp_path, cache, "--epochs", "1") == 0
    blob = torch.load(tmp_path / "ck.pt", weights_only=True)  # only tensors and plain values
    assert set(blob) >= {"arch", "model_args", "model", "last_model", "config", "optimizer", "epoch", "metrics"}
    assert blob["epoch"] == 1 and blob["config"]["dim"] == 2 and blob["model_args"]["width"] == 4
    model, meta = load_model(tmp_path / "ck.pt", dim=2)
    assert model.dim == 2 and meta["epoch"] == 1
    with pytest.raises(ValueError, match="2-D model"):
        load_model(tmp_path / "ck.pt", dim=3)
    assert any((tmp_path / "runs").iterdir())  # TensorBoard events
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]  # atomic write left no temporary file
    # --evaluate prints the validation table of a checkpoint and trains nothing.
    capsys.readouterr()
    assert _run(tmp_path, cache, "--evaluate", str(tmp_path / "ck.pt"), "--roughness", "off") == 0
    assert "| values |" in capsys.readouterr().out


def test_resume_equals_uninterrupted_run(tmp_path, cache):
    # Epoch permutations are seeded by epoch and the optimizer state is restored, so 1 + 1 epochs with
    # --resume give the same weights as 2 epochs straight (bitwise; single thread, same data cache).
    assert _run(tmp_path, cache, "--epochs", "2", out="straight.pt") == 0
    assert _run(tmp_path, cache, "--epochs", "1", out="resumed.pt") == 0
    assert _run(tmp_path, cache, "--epochs", "2", "--resume", out="resumed.pt") == 0
    a = torch.load(tmp_path / "straight.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert b["epoch"] == 2
    for part in ("model", "last_model"):  # the best epoch's weights and the latest ones
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)


@pytest.mark.parametrize("argv,match", [
    (["--dim", "4"], "--dim"),
    (["--epochs", "0"], "--epochs"),
    (["--no-such-flag"], "unrecognized"),
    (["--roughness", "maybe"], "--roughness"),
    (["--lr", "nan"], "--lr"),
    (["--resume", "--out", "missing.pt"], "does not exist"),
])
def test_bad_input_exits_2_without_writing(tmp_path, capsys, monkeypatch, argv, match):
    monkeypatch.chdir(tmp_path)
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_unwritable_outputs_are_refused_before_any_data(tmp_path, capsys, monkeypatch):
    # Every output path is checked before the (minutes-long) data generation: one line, exit 2, nothing
    # written. A path below a regular file cannot be created, whoever runs the test (root included).
    import time
    blocker = tmp_path / "file"
    blocker.write_text("")
    import nsipf_torch.neural.training as training
    monkeypatch.setattr(training, "make_dataset", lambda *a, **k: pytest.fail("data generated before the check"))
    for flag in ("--out", "--logdir", "--cache-dir"):
        target = str(blocker / "sub" / ("model.pt" if flag == "--out" else "dir"))
        start = time.perf_counter()
        assert train.main(TINY + [flag, target]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and flag in err and time.perf_counter() - start < 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot load"):
        load_model(bad)
    torch.save({"arch": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="architecture"):
        load_model(tmp_path / "other.pt")


@pytest.mark.slow
def test_torchrun_ddp_two_processes_gloo(tmp_path, cache):
    # DistributedDataParallel on the CPU: gloo, 2 processes, 1 thread each. The run completes and writes
    # one checkpoint (rank 0) that loads.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "train.py"), *TINY, "--epochs", "1", "--threads", "1", "--out", str(tmp_path / "ddp.pt"),
           "--cache-dir", cache, "--logdir", str(tmp_path / "runs")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    model, meta = load_model(tmp_path / "ddp.pt", dim=2)
    assert meta["epoch"] == 1


@pytest.mark.parametrize("dim", [2, 3])
def test_shipped_checkpoints(dim):
    # The shipped models load for their dimension only, and their recorded held-out validation errors
    # (best epoch) are below those of linear upsampling of the same input, for values and gradients.
    path = ROOT / "checkpoints" / f"nsipf_{dim}d.pt"
    model, meta = load_model(path, dim=dim)
    with pytest.raises(ValueError, match=f"{dim}-D model"):
        load_model(path, dim=5 - dim)
    m = meta["metrics"]
    assert m["value_cnn"] < m["value_linear"] and m["grad_cnn"] < m["grad_linear"]
    assert meta["config"]["roughness"] == "keep" and meta["config"]["dim"] == dim


def test_keep_target_is_the_smooth_residual_plus_linear_roughness():
    # --roughness keep: rough input; the target minus the linear upsampling of the input is the smooth
    # field's residual (target - up(smooth)), so the CNN must neither fill nor amplify the roughness.
    from nsipf_torch.neural.model import upsample_linear
    g = torch.Generator().manual_seed(0)
    n, k, s, dim = 6, 2, 2, 2
    smooth = 1 + torch.rand(n, n + 2 * k, n + 2 * k, generator=g)
    rough = smooth * torch.exp(-0.3 * torch.rand(smooth.shape, generator=g))
    target = 1 + torch.rand(n, s * n, s * n, generator=g)
    split = {"rough": rough, "smooth": smooth, "target": target}
    crop = (slice(None),) + (slice(s * k, -s * k),) * dim
    inp, tgt = training.normalised(split, "keep", dim, k, s)
    scale = rough.flatten(1).amax(1).reshape(-1, 1, 1)
    assert torch.allclose(inp * scale, rough)
    resid = tgt * scale - upsample_linear(rough, s, dim)[crop]
    assert torch.allclose(resid, target - upsample_linear(smooth, s, dim)[crop], atol=1e-5)
    with pytest.raises(ValueError, match="halo"):
        training.normalised(split, "keep", dim)
