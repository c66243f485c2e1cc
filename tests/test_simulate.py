"""simulate.py end to end: output layout, configuration beside it, and bad input refused cleanly."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import simulate

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--N", "8", "--T", "0.004", "--dt", "0.002", "--snapshots", "2", "--no-progress"]


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
