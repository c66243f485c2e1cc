"""simulate.py end to end: output layout, configuration beside it, and bad input refused cleanly."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import simulate

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--N", "8", "--T", "0.004", "--dt", "0.002", "--snapshots", "2", "--dtype", "float64", "--no-progress"]


def test_fdm_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    assert simulate.main(["--method", "fdm", "--ic", "two_blobs", "--sweep", "chi=0,1", *TINY, "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["ic"] == "two_blobs" and len(cfg["members"]) == 2
    for name in ("snap_0000", "snap_0001", "snap_0002", "final"):
        d = np.load(out / f"{name}.npz")
        assert d["rho"].shape == (2, 8, 8, 8) and d["c"].shape == (2, 8, 8, 8) and d["x"].shape == (8,)
        assert list(d["chi"]) == [0.0, 1.0] and len(d["seed"]) == 2 and len(d["gamma"]) == 2
        # mass is conserved to round-off in every member (float64)
        assert np.allclose(d["rho"].sum(axis=(1, 2, 3)) * (2 / 8) ** 3, 1.0, rtol=1e-13, atol=0)
    assert float(np.load(out / "final.npz")["t"]) == pytest.approx(0.004)
    assert (out / "snap_0002.png").stat().st_size > 0 and (out / "diagnostics.png").exists()
    assert list(out.glob("events.out.tfevents.*"))
    header = (out / "diagnostics.csv").read_text().splitlines()[0].split(",")
    for col in ("t", "mass", "min_rho", "max_rho", "min_c", "mean_r2", "chi", "seed"):
        assert col in header
    assert "mass" in capsys.readouterr().out


BAD = [
    (["--gamma", "-1"], "gamma"),
    (["--chi", "-0.5"], "chi"),
    (["--T", "-1"], "T"),
    (["--N", "3"], "N"),
    (["--L", "0"], "L"),
    (["--dt", "0"], "dt"),
    (["--dt", "nan"], "dt"),
    (["--gamma", "nan"], "gamma"),
    (["--ic", "three_blobs"], "two_blobs"),
    (["--dim", "4"], "dim"),
    (["--method", "spectral"], "method"),
    (["--c-update", "rk4"], "c-update"),
    (["--sweep", "chi=a,b"], "sweep"),
    (["--sweep", "kappa=1"], "sweep"),
    (["--ic-file", "/nonexistent/x.npz"], "does not exist"),
]


@pytest.mark.parametrize("argv,needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, argv, needle):
    out = tmp_path / "out"
    assert simulate.main([*TINY, *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0]
    assert not out.exists()


def test_cuda_requested_without_cuda(tmp_path, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    assert simulate.main(["--device", "cuda", *TINY, "--out", str(tmp_path / "o")]) == 2
    assert "CUDA" in capsys.readouterr().err


def test_bad_input_subprocess(tmp_path):
    """The real command line: argparse-level and value-level errors both exit 2 without a traceback."""
    for argv in (["--N", "x"], ["--gamma", "-1"]):
        proc = subprocess.run([sys.executable, "simulate.py", *argv, "--out", str(tmp_path / "o")], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and "error" in proc.stderr
        assert not (tmp_path / "o").exists()


def test_sipf_batch_sweep_particles_vtk(tmp_path):
    out = tmp_path / "sipf"
    argv = ["--method", "sipf", "--interp", "trilinear", "--ic", "blob", "--P", "500", "--sweep", "chi=0.5,1",
            "--batch", "2", "--save-particles", "10", "--vtk", *TINY, "--out", str(out)]
    assert simulate.main(argv) == 0
    d = np.load(out / "final.npz")
    assert d["rho"].shape == (4, 8, 8, 8) and d["X"].shape == (4, 10, 3)
    assert list(d["chi"]) == [0.5, 0.5, 1.0, 1.0] and len(set(d["seed"])) == 4
    # every member's deposited mass is M0 to round-off, and the particles stay in the box
    assert np.allclose(d["rho"].sum(axis=(1, 2, 3)) * (2 / 8) ** 3, 1.0, rtol=1e-13, atol=0)
    assert np.abs(d["X"]).max() <= 1.0
    assert (out / "fields.pvd").exists() and (out / "particles.pvd").exists() and (out / "snap_0002.vtu").exists()


RESUMABLE = ["--method", "sipf", "--interp", "trilinear", "--ic", "two_blobs", "--N", "8", "--P", "20000",
             "--T", "0.2", "--dt", "0.001", "--snapshots", "3", "--checkpoint-every", "5", "--no-progress"]


def test_sigkill_then_resume_is_bitwise(tmp_path):
    """A run killed by SIGKILL midway and resumed writes npz arrays bitwise equal to an uninterrupted run (CPU).

    state.pt is written atomically, so whatever instant the kill lands at, the resumed run starts from a
    complete checkpoint and replays the same Brownian streams (their generator states are in the state).
    """
    import signal
    import time

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "simulate.py", *RESUMABLE, "--out", str(killed)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "state.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.1)  # let it run past the first checkpoint
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "final.npz").exists()
    assert simulate.main(["--resume", str(killed), "--no-progress"]) == 0
    full = tmp_path / "full"
    assert simulate.main([*RESUMABLE, "--out", str(full)]) == 0
    for name in ("snap_0001.npz", "snap_0002.npz", "snap_0003.npz", "final.npz"):
        a, b = np.load(full / name), np.load(killed / name)
        assert np.array_equal(a["rho"], b["rho"]) and np.array_equal(a["c"], b["c"]), name
    assert (killed / "diagnostics.csv").read_text() == (full / "diagnostics.csv").read_text()


def test_resume_errors(tmp_path, capsys):
    assert simulate.main(["--resume", str(tmp_path)]) == 2
    assert "no state.pt" in capsys.readouterr().err
    run = tmp_path / "r"
    assert simulate.main([*TINY, "--checkpoint-every", "1", "--out", str(run)]) == 0
    capsys.readouterr()
    assert simulate.main(["--resume", str(run), "--N", "16"]) == 2
    assert "conflicts" in capsys.readouterr().err


def test_nan_mid_run_stops_with_step_and_quantity(tmp_path, capsys, monkeypatch):
    """A NaN appearing at step 5 stops the run there, names rho and the step, and keeps the last good snapshot."""
    import nsipf_torch.solvers.fd as fd

    real, calls = fd.fd_advance, {"n": 0}

    def poisoned(rho, c, *args, **kwargs):
        rho, c, n_sub = real(rho, c, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 5:
            rho = rho.clone()
            rho[0, 1, 1, 1] = float("nan")
        return rho, c, n_sub

    monkeypatch.setattr(fd, "fd_advance", poisoned)
    out = tmp_path / "nan"
    argv = ["--method", "fdm", "--N", "8", "--T", "0.008", "--dt", "0.001", "--snapshots", "4", "--diag-every", "1",
            "--no-progress", "--out", str(out)]
    assert simulate.main(argv) == 1
    err = capsys.readouterr().err
    assert "NaN or Inf in rho at step 5" in err and "snap_0002.npz" in err
    assert (out / "snap_0002.npz").exists() and not (out / "snap_0003.npz").exists()
    assert not (out / "final.npz").exists()
    assert np.isfinite(np.load(out / "snap_0002.npz")["rho"]).all()


def test_outside_the_validity_domain_warns_and_strict_refuses(tmp_path, capsys):
    # --N 8 --P 100000: 195 particles per cell on a grid below every training size (nsipf_torch/neural/validity.py)
    argv = ["--method", "nsipf", "--ic", "blob", "--N", "8", "--P", "100000", "--T", "0.002", "--dt", "0.002",
            "--snapshots", "1", "--no-progress", "--no-fallback"]  # keeps the CNN; --strict wins over it
    assert simulate.main([*argv, "--out", str(tmp_path / "warned")]) == 0
    err = capsys.readouterr().err
    assert "warning: outside the CNN's validity domain: particles per cell" in err and "grid size N = 8" in err
    recorded = json.loads((tmp_path / "warned" / "config.json").read_text())["validity_warnings"]
    assert len(recorded) >= 2
    assert simulate.main([*argv, "--strict", "--out", str(tmp_path / "strict")]) == 2
    lines = [ln for ln in capsys.readouterr().err.strip().splitlines() if "error" in ln]
    assert len(lines) == 1 and "--strict refuses" in lines[0] and not (tmp_path / "strict").exists()


def test_main_job_is_inside_the_validity_domain():
    from nsipf_torch.api import SimConfig, check_config
    assert check_config(SimConfig(device="cpu")).validity == []  # the defaults are the main job
