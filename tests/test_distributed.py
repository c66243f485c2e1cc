"""Particle sharding with torchrun: gloo, 2 processes x 1 thread, loopback only."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import simulate
from nsipf_torch.particles.distributed import World
from nsipf_torch.metrics import rel_l2

ROOT = Path(__file__).resolve().parents[1]
BASE = ["--method", "sipf", "--interp", "trilinear", "--ic", "two_blobs", "--N", "16", "--P", "20000",
        "--T", "0.03", "--dt", "0.001", "--snapshots", "1", "--dtype", "float64", "--no-progress"]


def torchrun(argv, out):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "simulate.py",
           *argv, "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_world_shards_evenly():
    assert [World(r, 4).shard(8) for r in range(4)] == [slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8)]
    with pytest.raises(ValueError, match="P=10"):
        World(0, 4).shard(10)


def test_two_ranks_equal_one_rank(tmp_path):
    """gamma = 0 (no noise): sharding changes nothing, bitwise. With noise: the mass is exact and the
    density agrees with the single-process run within the Monte Carlo spread of two independent runs."""
    torchrun([*BASE, "--sweep", "gamma=0,0.01", "--seed", "0"], tmp_path / "two")
    assert simulate.main([*BASE, "--sweep", "gamma=0,0.01", "--seed", "0", "--out", str(tmp_path / "one")]) == 0
    assert simulate.main([*BASE, "--sweep", "gamma=0,0.01", "--seed", "10", "--out", str(tmp_path / "other")]) == 0
    two, one, other = (np.load(tmp_path / d / "final.npz") for d in ("two", "one", "other"))
    assert np.array_equal(two["rho"][0], one["rho"][0]) and np.array_equal(two["c"][0], one["c"][0])
    # every rank's integer counts are all-reduced: the mass is M0 exactly, to round-off
    assert np.allclose(two["rho"].sum(axis=(1, 2, 3)) * (2 / 16) ** 3, 1.0, rtol=1e-13, atol=0)
    rho = {k: torch.from_numpy(v["rho"][1]) for k, v in (("two", two), ("one", one), ("other", other))}
    spread = float(rel_l2(rho["other"], rho["one"]))  # two independent single-process runs
    assert float(rel_l2(rho["two"], rho["one"])) < 2 * spread, spread


def test_uneven_split_is_refused(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "simulate.py",
           *BASE, "--P", "20001", "--out", str(tmp_path / "o")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    # each worker prints our one line and exits 2; the torchrun launcher then adds its own failure report
    assert proc.returncode != 0 and "simulate.py: error: P=20001 particles cannot be split evenly" in proc.stderr
    assert "exitcode  : 2" in proc.stderr
    assert not (tmp_path / "o").exists()
