"""Resume is bitwise for every method: a run killed by SIGKILL between two checkpoints and resumed with
--resume writes the same snapshots, final state and diagnostics as an uninterrupted run (CPU).

The killed process sends itself SIGKILL in the middle of a chosen step (after a checkpoint and, for NSIPF,
a re-plan of its tiles), so the kill lands between checkpoints on every machine, however fast.
tests/test_simulate.py kills a run from outside at an unplanned instant (the atomic writes).
"""
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import simulate
from nsipf_torch.io.files import load_torch, save_torch
from nsipf_torch.io.resources import default_checkpoint
from nsipf_torch.neural.interp import NeuralInterp
from nsipf_torch.problems.grid import Grid

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--ic", "two_blobs", "--N", "8", "--T", "0.025", "--dt", "0.001"]
CASES = {  # 25 steps each: checkpoints at 7, 14, 21 and 25, snapshots at 0 and 25
    "fdm": ["--method", "fdm", *SMALL],
    "sipf-trilinear": ["--method", "sipf", "--interp", "trilinear", "--P", "2000", *SMALL],
    "sipf-spline": ["--method", "sipf", "--interp", "spline", "--P", "2000", *SMALL],
    # N = 64 in 2-D: 64 tiles of 8^2 cells, of which the plan keeps fewer than all (the tiled path). The
    # blob spreads (gamma = 0.1, dt = 0.01) faster than the plan made at step 10 allows for: steps 19 and 20
    # leave occupied tiles on the linear fallback, which a plan made at the checkpoint (step 14) would not;
    # 0.98 particles per cell is below the training's at N = 64 (2.44): --no-fallback keeps the CNN
    "nsipf": ["--method", "nsipf", "--ic", "blob", "--dim", "2", "--N", "64", "--P", "4000", "--gamma", "0.1",
              "--T", "0.25", "--dt", "0.01", "--no-fallback"],
}
RESUMABLE = ["--snapshots", "1", "--checkpoint-every", "7", "--no-progress"]
KILL_IN_STEP = 17  # after the checkpoint at 14, made between NSIPF's re-plans at 10 and 20

CHILD = """
import os, signal, sys
import nsipf_torch.commands.simulate as command

made = command.make_runner

def make_runner(*args, **kwargs):
    runner = made(*args, **kwargs)
    advance, calls = runner.advance, [0]

    def advance_then_die(dt):
        calls[0] += 1
        if calls[0] == int(sys.argv[1]):
            os.kill(os.getpid(), signal.SIGKILL)
        return advance(dt)

    runner.advance = advance_then_die
    return runner

command.make_runner = make_runner
sys.exit(command.main(sys.argv[2:]))
"""
FILES = ("snap_0000.npz", "snap_0001.npz", "final.npz")


@pytest.mark.parametrize("method", list(CASES))
def test_sigkill_between_checkpoints_then_resume_is_bitwise(tmp_path, method):
    argv = [*CASES[method], *RESUMABLE]
    killed = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(KILL_IN_STEP), *argv, "--out", str(killed)], cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not (killed / "final.npz").exists()
    if method == "nsipf":
        replanned = tmp_path / "replanned"  # the same state, but with the plan a re-plan at step 14 makes
        shutil.copytree(killed, replanned)
        saved = load_torch(killed / "state.pt")
        capacity = saved["runner"]["interp"]["capacity"]
        fresh = NeuralInterp.from_checkpoint(default_checkpoint(2), Grid(64, 2)).plan_capacity(saved["runner"]["X"])
        assert saved["step"] == 14 and capacity < 64 and fresh != capacity  # the tiled path, between two plans
        saved["runner"]["interp"]["capacity"] = fresh
        save_torch(replanned / "state.pt", saved)
    assert simulate.main(["--resume", str(killed), "--no-progress"]) == 0
    full = tmp_path / "full"
    assert simulate.main([*argv, "--out", str(full)]) == 0
    assert all(np.array_equal(np.load(full / f)[k], np.load(killed / f)[k]) for f in FILES for k in ("rho", "c"))
    assert (killed / "diagnostics.csv").read_text() == (full / "diagnostics.csv").read_text()
    a, b = (load_torch(d / "state.pt")["runner"] for d in (full, killed))  # the final states: X, c
    assert all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))
    if method == "nsipf":  # negative control: the plan is part of the state, a re-plan on resume changes the run
        assert simulate.main(["--resume", str(replanned), "--no-progress"]) == 0
        # (a few particles' drift differs: their positions, not necessarily their cells' counts)
        assert not torch.equal(a["X"], load_torch(replanned / "state.pt")["runner"]["X"])
