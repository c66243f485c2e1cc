"""Particle sharding with torchrun: gloo, 2 processes x 1 thread, loopback only."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

import simulate
from nsipf_torch.metrics import rel_l2
from nsipf_torch.particles.distributed import World
from nsipf_torch.particles.move import initial_particles
from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.initial import get_ic, member_generator

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


def test_torchrun_joins_then_binds_then_checks(monkeypatch, tmp_path):
    """The process group first, then the rank's own GPU, then the checks (free memory) on that GPU: the
    configuration check sees cuda:LOCAL_RANK, not the current device 0. (CUDA is stood in for: no GPU here.)"""
    import nsipf_torch.commands.simulate as command
    seen = []
    monkeypatch.setattr(command, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(command, "init_world", lambda device: seen.append(("join", str(device))) or World(3, 4, 1))

    def check_config(cfg, ic=None, world=None):
        seen.append(("check", cfg.device))
        raise ValueError("stop before anything is allocated")

    monkeypatch.setattr(command, "check_config", check_config)
    assert command.main([*BASE, "--out", str(tmp_path / "o")]) == 2
    assert seen == [("join", "cuda"), ("check", "cuda:1")]
    assert World(0, 1).place(torch.device("cuda")) == torch.device("cuda")  # one process: as asked
    assert World(3, 4, 1).place(torch.device("cpu")) == torch.device("cpu")


def test_initial_sample_is_the_same_for_every_split():
    """The global sample is made of chunks, each from its (seed, chunk) stream: the shares of any world size
    concatenate to the one-process sample, bitwise, and a sample of one chunk is the member's own stream."""
    grid, ic = Grid(16, 3, dtype=torch.float64), get_ic("two_blobs")
    P, chunk = 6000, 1024  # five whole chunks and a part of one; shares straddle chunk boundaries
    whole = initial_particles(ic, grid, P, [3, 4], chunk=chunk)
    for size in (2, 3, 4, 5, 8):
        shares = [initial_particles(ic, grid, P, [3, 4], World(r, size).shard(P), chunk=chunk) for r in range(size)]
        assert torch.equal(torch.cat(shares, dim=1), whole), size
    assert torch.unique(whole[0], dim=0).shape[0] == P  # distinct streams: no chunk repeats another
    assert torch.equal(whole[0, :chunk], ic.sample(chunk, member_generator(3), grid))


def test_chunked_sample_matches_cell_masses():
    """Chi-square goodness of fit of a 200,000-particle sample drawn as 13 chunks against the exact cell
    masses (false-alarm rate 1e-3, seeded); negative control: a sample with chunk 0 repeated is rejected."""
    grid, ic, P = Grid(16, 3, dtype=torch.float64), get_ic("two_blobs"), 200_000
    expected = (ic.rho0(grid) * grid.cell_volume).reshape(-1).numpy() * P
    keep = expected > 5  # chi-square needs expected counts >= 5 per bin; pool the rest

    def pvalue(X):
        idx = ((X + 1) / grid.h).floor().long().clamp(0, 15)
        counts = np.bincount(((idx[:, 0] * 16 + idx[:, 1]) * 16 + idx[:, 2]).numpy(), minlength=16**3)
        obs, exp = np.append(counts[keep], counts[~keep].sum()), np.append(expected[keep], expected[~keep].sum())
        return stats.chisquare(obs, exp).pvalue

    X = initial_particles(ic, grid, P, [3], chunk=2**14)[0]
    assert pvalue(X) > 1e-3
    assert pvalue(X[: 2**14].repeat(13, 1)[:P]) < 1e-3


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
