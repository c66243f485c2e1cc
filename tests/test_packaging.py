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
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(out), str(src)], capture_output=True, text=True, timeout=600)
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


# scipy is only in the test extra: the installed package must run every command without it
NO_SCIPY = "import sys\nsys.modules['scipy'] = None  # `import scipy` raises ImportError\n"
TINY_TRAIN = ["--dim", "2", "--n-traj", "2", "--n-val-traj", "1", "--snapshots", "1", "--grids-per-traj", "1",
              "--patches-per-grid", "4", "--P-max", "3000", "--data-T", "0.02", "--data-Nr", "96", "--width", "4",
              "--epochs", "1"]
TINY_INFER = ["--synthetic", "two_blobs", "--dim", "2", "--N", "8", "--times", "0.05", "--chi", "1.3", "--gamma", "0.012",
              "--fit", "gamma", "--dt", "0.05", "--no-check", "--max-iter", "2", "--no-compile", "--no-progress"]


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """(site folder, environment): the wheel installed with --target, with a sitecustomize beside it that
    makes scipy unimportable, and nothing of the repository on the path."""
    target, hooks = tmp_path_factory.mktemp("site"), tmp_path_factory.mktemp("hooks")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    (hooks / "sitecustomize.py").write_text(NO_SCIPY)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(hooks)]), "OMP_NUM_THREADS": "1"}
    return target, env


def _run(installed, cwd, argv, timeout=300):
    target, env = installed
    command = [str(target / "bin" / argv[0]), *argv[1:]] if argv[0].startswith("nsipf-") else argv
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (argv, proc.stderr[-3000:])
    return proc


def test_api_runs_outside_the_repository_without_scipy(installed, tmp_path):
    code = """
import nsipf_torch as nt
try:
    import scipy
    print("scipy importable")
except ImportError:
    print("no scipy")
r = nt.simulate('blob', method='nsipf', N=16, P=1000, T=0.01, fallback=False)  # the CNN itself, outside its N
print(nt.__file__)
print(tuple(r.rho.shape))
model, table = nt.train(out='m.pt', cache_dir='cache', dim=2, n_traj=2, n_val_traj=1, snapshots=1, grids_per_traj=1,
                        patches_per_grid=4, P_max=3000, data_T=0.02, data_Nr=96, width=4, epochs=1)
print(sorted(table))
obs = nt.inference.fit.synthetic_observations('two_blobs', 2, 8, chi=1.3, gamma=0.012, times=(0.05,))
fit = nt.infer(obs, fit='gamma', chi=1.3, check=False, max_iter=2, compile=False, dt=0.05).main
print(sorted(fit.params))
"""
    proc = _run(installed, tmp_path, [sys.executable, "-c", code])
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "no scipy" and lines[1].startswith(str(installed[0]))
    assert lines[2] == "(1, 5, 16, 16, 16)" and "value_spline" in lines[3] and lines[4] == "['chi', 'gamma']"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "m.pt"]  # only what train was asked to write
    assert proc.stderr.count("\n") <= 3, proc.stderr  # no progress bars (validity warnings only)


def test_console_commands_run_without_scipy(installed, tmp_path):
    proc = _run(installed, tmp_path, ["nsipf-simulate", "--ic", "annuli", "--N", "8", "--P", "500", "--T", "0.004",
                                      "--dt", "0.002", "--snapshots", "2", "--no-progress", "--out", "run"])
    assert {"config.json", "final.npz", "diagnostics.csv"} <= {p.name for p in (tmp_path / "run").iterdir()}
    # N = 8 is outside the CNN's validity domain: the warning names the console command, not simulate.py
    assert proc.stderr.startswith("nsipf-simulate: warning: outside the CNN's validity domain"), proc.stderr
    proc = _run(installed, tmp_path, ["nsipf-train", *TINY_TRAIN, "--out", "m.pt", "--logdir", "tb",
                                      "--cache-dir", "cache"])
    assert "| values |" in proc.stdout and (tmp_path / "m.pt").stat().st_size > 0  # the table, spline column too
    _run(installed, tmp_path, ["nsipf-infer", *TINY_INFER, "--out", "inf"])  # synthetic data, then the fit
    assert {"result.json", "fit.png", "fit.npz"} <= {p.name for p in (tmp_path / "inf").iterdir()}


def test_benchmark_tiny_suite_every_table_without_scipy(installed, tmp_path):
    from nsipf_torch.commands.benchmark import TABLES
    _run(installed, tmp_path, ["nsipf-benchmark", "--suite", "tiny", "--tables", ",".join(TABLES), "--T", "0.004",
                               "--dt", "0.002", "--P", "500", "--repeats", "1", "--steps2", "2", "--no-progress",
                               "--out", "bench"], timeout=900)
    assert (tmp_path / "bench" / "results.json").exists()


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv(wheel, tmp_path):
    """pip install of the wheel alone (its declared dependencies, no requirements.txt, so no scipy) into a new
    venv; then nsipf-simulate, nsipf-train and nsipf-infer from an empty folder."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
                         capture_output=True, text=True, timeout=1800)
    assert pip.returncode == 0, pip.stderr[-3000:]
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    for argv in (["nsipf-simulate", "--method", "fdm", "--N", "8", "--T", "0.004", "--dt", "0.002", "--snapshots", "2",
                  "--no-progress", "--out", "run"],
                 ["nsipf-train", *TINY_TRAIN, "--out", "m.pt", "--logdir", "tb", "--cache-dir", "cache"],
                 ["nsipf-infer", *TINY_INFER, "--out", "inf"]):
        proc = subprocess.run([str(venv / "bin" / argv[0]), *argv[1:]], cwd=work, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, (argv, proc.stderr[-3000:])
    assert (work / "run" / "final.npz").exists() and (work / "m.pt").exists()
    assert (work / "inf" / "result.json").exists()
