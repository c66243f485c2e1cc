"""The installable package: pyproject pins, a built wheel with its data files, and the installed package
run from outside the repository (CI imports the in-tree package, so only this test can see a packaging gap)."""
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    return {re.split("[=<>]", ln)[0].strip().lower(): ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")}


def test_pyproject_pins_equal_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _pins(project["dependencies"])
    test_only = _pins(project["optional-dependencies"]["test"])
    assert {**runtime, **test_only} == _pins((ROOT / "requirements.txt").read_text().splitlines())


def test_no_sys_path_edits_anywhere():
    offenders = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
                 if ".venv" not in p.parts and p.name != "test_packaging.py"
                 and re.search(r"sys\.path\.(insert|append)", p.read_text())]
    assert offenders == []


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    # built from a copy: setuptools writes build/ and *.egg-info beside the sources it builds
    src = tmp_path_factory.mktemp("src") / "nsipf_torch"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "runs", "*.egg-info", "__pycache__", ".pytest_cache", ".cache"))
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = out.glob("nsipf_torch-*.whl")
    return path


def test_wheel_holds_checkpoints_references_and_commands(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("nsipf_torch/checkpoints/nsipf_3d.pt", "nsipf_torch/checkpoints/nsipf_2d.pt",
              "nsipf_torch/reference/fd_two_blobs_3d.npz", "nsipf_torch/commands/simulate.py"):
        assert f in names, f
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry).decode()
    for command in ("nsipf-simulate", "nsipf-train", "nsipf-benchmark"):
        assert command in text


def test_installed_package_runs_outside_the_repository(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"}
    code = ("import nsipf_torch as nt; r = nt.simulate('blob', method='nsipf', N=16, P=1000, T=0.01); "
            "print(nt.__file__); print(tuple(r.rho.shape))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    where, shape = proc.stdout.strip().splitlines()[-2:]
    assert where.startswith(str(target)) and shape == "(1, 5, 16, 16, 16)"
    assert list(work.iterdir()) == []  # the API writes nothing
    proc = subprocess.run([str(target / "bin" / "nsipf-simulate"), "--ic", "annuli", "--N", "8", "--P", "500",
                           "--T", "0.004", "--dt", "0.002", "--no-progress", "--out", "run"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {"config.json", "final.npz", "diagnostics.csv"} <= {p.name for p in (work / "run").iterdir()}
