"""Bad input, tried and tabulated: each case gives one clear line on stderr (argparse's usage line
may precede it), exit status 2, no traceback, and nothing written into --out. Run in-process through
main(argv); docs/RELIABILITY.md lists the messages."""
import numpy as np
import pytest
import torch

import simulate
from nsipf_torch.commands import benchmark, train
from nsipf_torch.neural.model import UpsampleCNN, save_checkpoint

TINY = ["--N", "8", "--T", "0.004", "--dt", "0.002", "--snapshots", "1", "--no-progress"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    good3 = d / "good3.pt"
    save_checkpoint(good3, UpsampleCNN(dim=3), config={})
    save_checkpoint(d / "dim2.pt", UpsampleCNN(dim=2), config={})
    (d / "empty.pt").write_bytes(b"")
    (d / "corrupt.pt").write_bytes(b"\x00garbage" * 50)
    (d / "truncated.pt").write_bytes(good3.read_bytes()[: len(good3.read_bytes()) // 2])
    torch.save({"arch": "resnet", "model": {}}, d / "arch.pt")
    (d / "ic.txt").write_text("rho0 = 1\n")
    big = np.ones((8, 8, 8))
    np.savez(d / "huge.npz", rho0=big, c0=big * 1e300)  # fine in float64, overflows float32
    return d


def run(main, argv, tmp_path, capsys):
    out = tmp_path / "out"
    try:
        code = main([*argv, "--out", str(out)])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("usage:") and not ln.startswith("  ")]
    return code, lines, err, out


SIMULATE = [
    (["--ic", "three_blobs"], "unknown initial condition"),
    (["--method", "spectral"], "--method"),
    (["--method", "sipf", "--interp", "quintic"], "--interp"),
    (["--gamma", "-0.01"], "gamma"),
    (["--chi", "-1"], "chi"),
    (["--T", "-0.2"], "T"),
    (["--N", "0"], "N"),
    (["--method", "sipf", "--P", "0"], "--P"),
    (["--dt=-1e-3"], "--dt must be a finite number > 0"),
    (["--dt", "0"], "--dt must be a finite number > 0"),
    (["--L", "0"], "L"),
    (["--chi", "nan"], "chi"),
    (["--dt", "inf"], "--dt"),
    (["--N", "x"], "is not a valid int"),
    (["--method", "fdm", "--dt", "50", "--T", "100"], "sub-steps"),
    (["--sweep", "chi=1,,2"], "--sweep"),
    (["--sweep", "chi=-1"], "--sweep"),
    (["--device", "cuda"], "CUDA"),
    (["--cnn-precision", "fp16"], "--cnn-precision"),
    (["--cnn-precision", "tf32", "--device", "cpu"], "tf32 needs a CUDA device"),
    (["--method", "nsipf", "--model", "MODELS/missing.pt"], "does not exist"),
    (["--method", "nsipf", "--model", "MODELS/empty.pt"], "is empty"),
    (["--method", "nsipf", "--model", "MODELS/corrupt.pt"], "corrupt or not a torch checkpoint"),
    (["--method", "nsipf", "--model", "MODELS/truncated.pt"], "truncated or corrupt"),
    (["--method", "nsipf", "--model", "MODELS/dim2.pt"], "2-D model"),
    (["--method", "nsipf", "--model", "MODELS/arch.pt"], "architecture"),
    (["--ic-file", "/nonexistent.npz"], "does not exist"),
    # resources are checked before they are spent: memory from the estimate, step counts from a limit
    (["--N", "100000"], "GiB available"),
    (["--dim", "2", "--N", "100000"], "GiB available"),
    (["--method", "sipf", "--P", "100000000000"], "GiB available"),
    (["--dt", "1e-300", "--T", "0.2"], "steps to reach"),
    (["--ic-file", "TEXTFILE"], "is not an .npz archive"),
    (["--ic-file", "HUGEFILE"], "beyond the largest torch.float32"),
]


@pytest.mark.parametrize("argv,needle", SIMULATE, ids=[" ".join(a) for a, _ in SIMULATE])
def test_simulate_bad_input(tmp_path, capsys, models, argv, needle):
    if needle == "CUDA" and torch.cuda.is_available():
        pytest.skip("CUDA is present")
    argv = [a.replace("MODELS", str(models)).replace("TEXTFILE", str(models / "ic.txt"))
            .replace("HUGEFILE", str(models / "huge.npz")) for a in argv]
    code, lines, err, out = run(simulate.main, [*TINY, *argv], tmp_path, capsys)
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err and not out.exists()


def test_simulate_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert simulate.main([*TINY, "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot create output directory" in err[0]


def test_resume_bad(tmp_path, capsys):
    assert simulate.main(["--resume", str(tmp_path / "nothing")]) == 2
    assert "no state.pt" in capsys.readouterr().err
    run_dir = tmp_path / "r"
    assert simulate.main([*TINY, "--checkpoint-every", "1", "--out", str(run_dir)]) == 0
    capsys.readouterr()
    before = sorted(p.name for p in run_dir.iterdir())
    assert simulate.main(["--resume", str(run_dir), "--gamma", "0.5"]) == 2
    assert "conflicts with the saved" in capsys.readouterr().err
    assert sorted(p.name for p in run_dir.iterdir()) == before


BENCH = [(["--suite", "huge"], "--suite"), (["--repeats", "0"], "--repeats"), (["--methods", "FDM,magic"], "magic"),
         (["--tables", "table1,table3"], "--tables")]


@pytest.mark.parametrize("argv,needle", BENCH, ids=[" ".join(a) for a, _ in BENCH])
def test_benchmark_bad_input(tmp_path, capsys, argv, needle):
    code, lines, err, out = run(benchmark.main, argv, tmp_path, capsys)
    assert code == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in err
    assert not out.exists()


TRAIN = [(["--dim", "1"], "--dim"), (["--epochs", "-3"], "--epochs"), (["--lr", "nan"], "--lr")]


@pytest.mark.parametrize("argv,needle", TRAIN, ids=[" ".join(a) for a, _ in TRAIN])
def test_train_bad_input(tmp_path, capsys, argv, needle):
    code, lines, err, out = run(train.main, argv, tmp_path, capsys)
    assert code == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in err
    assert not out.exists()


# --- the probes of issue 18 §10, as a new user would try them ----------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A valid 8^3 initial condition and a valid 2D obs.npz at N = 8 (one time)."""
    from nsipf_torch.inference.fit import synthetic_observations
    from nsipf_torch.inference.observations import save_observations

    d = tmp_path_factory.mktemp("files")
    x = np.linspace(-1, 1, 8)
    blob = np.exp(-8 * (x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2))
    np.savez(d / "ic8.npz", rho0=blob, c0=blob)
    obs = synthetic_observations("two_blobs", 2, 8, chi=1.0, gamma=0.01, times=(0.05,), noise=0.0)
    save_observations(d / "obs.npz", obs)
    return d


SIMULATE_MORE = [
    (["--snapshots", "1000000000"], "--snapshots"),  # was: a hang growing in memory, an empty folder left
    (["--chi", "1e308"], "--chi"),  # was: a step, NaN, config.json and a snapshot left
    (["--M0", "1e300"], "--M0"),
    (["--method", "sipf", "--P", "100", "--save-particles", "1000"], "--save-particles"),
    (["--method", "fdm", "--model", "MODELS/good3.pt"], "--model"),
    (["--seed", "-1"], "--seed"),
    (["--ic-file", "FILES/ic8.npz", "--N", "16"], "--N 16 disagrees with --ic-file"),
    (["--ic-file", "FILES/ic8.npz", "--dim", "2"], "--dim 2 disagrees with --ic-file"),
    (["--ic-file", "FILES"], "is a directory"),
    (["--method", "nsipf", "--model", "MODELS"], "is a directory"),
]


@pytest.mark.parametrize("argv,needle", SIMULATE_MORE, ids=[" ".join(a) for a, _ in SIMULATE_MORE])
def test_simulate_more_bad_input(tmp_path, capsys, models, files, argv, needle):
    argv = [a.replace("MODELS", str(models)).replace("FILES", str(files)) for a in argv]
    code, lines, err, out = run(simulate.main, [*TINY, *argv], tmp_path, capsys)
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err and not out.exists()


def test_simulate_empty_out_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Path('') is the current folder: it must not become the output
    assert simulate.main([*TINY, "--method", "fdm", "--out", ""]) == 2
    assert "empty" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_resume_refuses_another_runs_folder_and_a_second_out(tmp_path, capsys):
    run_dir = tmp_path / "r"
    base = [*TINY, "--method", "fdm", "--out", str(run_dir)]
    assert simulate.main([*base, "--checkpoint-every", "1"]) == 0
    assert simulate.main([*base, "--gamma", "0.02"]) == 0  # another run into the same folder: its config.json
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert simulate.main(["--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "belongs to another run" in err[0] and "gamma" in err[0]
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    assert simulate.main(["--resume", str(run_dir), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and not (tmp_path / "e").exists()


TRAIN_MORE = [(["--data-Nr", "2"], "--data-Nr"), (["--cache-dir", "/proc/nsipf-x"], "--cache-dir"),
              (["--logdir", "/proc/nsipf-x"], "--logdir"), (["--out", "/proc/nsipf-x/model.pt"], "--out")]


@pytest.mark.parametrize("argv,needle", TRAIN_MORE, ids=[" ".join(a) for a, _ in TRAIN_MORE])
def test_train_more_bad_input(tmp_path, capsys, argv, needle):
    # /proc takes no new file even for root, whom os.access lets write anywhere: the check makes a probe file
    code = train.main([*argv, "--out", str(tmp_path / "m.pt")] if "--out" not in argv else argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


INFER = [
    (["--data", "FILES/obs.npz", "--model-N", "100000"], "GiB available"),  # was: an 80 GB allocation
    (["--synthetic", "two_blobs", "--chi", "1", "--gamma", "0.01", "--dim", "3", "--N", "100000"], "GiB available"),
    (["--data", "FILES/obs.npz", "--max-iter", "0"], "--max-iter"),
    (["--data", "FILES/obs.npz", "--step-tol", "-1"], "--step-tol"),  # was: a TensorBoard file, then a traceback
    (["--synthetic", "two_blobs", "--chi", "1", "--gamma", "0.01", "--write-data", "/proc/obs.npz"], "--write-data"),
    (["--data", "FILES"], "is a directory"),
    # the c-equation: simulate.py's refusals (issue 20), before any data are made or anything written
    (["--data", "FILES/obs.npz", "--c-equation", "parabolic", "--eps", "0"], "--eps must be > 0"),
    (["--data", "FILES/obs.npz", "--c-equation", "parabolic", "--Dc", "0"], "--Dc must be > 0"),
    (["--data", "FILES/obs.npz", "--c-equation", "elliptic", "--Dc", "-1"], "--Dc must be > 0"),
    (["--data", "FILES/obs.npz", "--c-equation", "elliptic", "--alpha", "-1"], "--alpha must be >= 0"),
    (["--data", "FILES/obs.npz", "--c-equation", "parabolic", "--beta", "0"], "--beta must be > 0"),
    (["--data", "FILES/obs.npz", "--sensitivity", "log", "--kappa", "0"], "--kappa must be > 0"),
    (["--data", "FILES/obs.npz", "--c-equation", "elliptic", "--sensitivity", "receptor"], "mean-free"),
    (["--synthetic", "pks_blob", "--chi", "1", "--gamma", "0.05", "--c-equation", "elliptic", "--sensitivity", "log",
      "--write-data", "OUT.npz"], "mean-free"),
    (["--data", "FILES/obs.npz", "--c-equation", "diffusion"], "--c-equation"),
]


@pytest.mark.parametrize("argv,needle", INFER, ids=[" ".join(a) for a, _ in INFER])
def test_infer_bad_input(tmp_path, capsys, files, argv, needle):
    from nsipf_torch.commands import infer
    argv = [a.replace("FILES", str(files)).replace("OUT", str(tmp_path / "written")) for a in argv]
    code, lines, err, out = run(infer.main, [*argv, "--no-compile", "--no-progress"], tmp_path, capsys)
    assert code == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err
    assert not out.exists() and not (tmp_path / "written.npz").exists()


API = [
    (dict(chi="1"), "chi"),
    (dict(gamma=[]), "gamma"),
    (dict(gamma=[0.01, "x"]), "gamma"),
    (dict(seeds=[-1]), "seed"),
    (dict(callbacks=[42]), "callbacks"),
    (dict(resume={"foo": 1}), "resume"),
    (dict(N=8.5), "N"),
]


@pytest.mark.parametrize("kwargs,needle", API, ids=[repr(k) for k, _ in API])
def test_api_bad_values_name_themselves_before_anything_runs(kwargs, needle):
    import warnings

    import nsipf_torch as nt
    with warnings.catch_warnings(record=True) as seen:  # refused before the validity warnings of nsipf
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match=needle):
            nt.simulate("blob", **{**dict(method="nsipf", N=8, P=100, T=0.004, dt=0.002, snapshots=1), **kwargs})
    assert seen == []


def test_api_takes_numpy_sweeps():
    import nsipf_torch as nt
    r = nt.simulate("blob", method="fdm", N=8, T=0.004, dt=0.002, snapshots=1, gamma=np.array([0.01, 0.02]),
                    chi=np.float64(1.5))
    assert [(m["gamma"], m["chi"]) for m in r.members] == [(0.01, 1.5), (0.02, 1.5)]


def test_infer_api_bad_values(files):
    import nsipf_torch as nt
    with pytest.raises(ValueError, match="data must be an Observations"):
        nt.infer({"t": [0.1]})
    with pytest.raises(ValueError, match="model_N"):
        nt.infer(str(files / "obs.npz"), model_N=100000, compile=False)
    for system, needle in (({"c_equation": "parabolic", "eps": 0.0}, "--eps must be > 0"),
                           ({"c_equation": "elliptic", "Dc": 0.0}, "--Dc must be > 0"),
                           ({"c_equation": "parabolic", "alpha": -1.0}, "--alpha must be >= 0"),
                           ({"c_equation": "elliptic", "beta": 0.0}, "--beta must be > 0"),
                           ({"sensitivity": "receptor", "kappa": -1.0}, "--kappa must be > 0"),
                           ({"c_equation": "elliptic", "sensitivity": "log"}, "mean-free"),
                           ({"c_equation": "parabolic", "D": 1.0}, "c_equation must be a CEquation or a dict")):
        with pytest.raises(ValueError, match=needle):
            nt.infer(str(files / "obs.npz"), c_equation=system, compile=False)


# --- benchmark sizes (helper "loop"): each refused before anything runs or is written -------------------
# Every row's run is checked as simulate() checks one (grid size, step count, memory on the device) before
# the output folder exists; a size the memory estimate (nsipf_torch/run/memory.py) puts beyond any machine's
# memory is refused in well under a second, not after the allocation fails.
BENCH_SIZES = [
    (["--dt", "1", "--T", "0.004"], "--dt 1 is longer than the whole run"),  # zero steps: nothing to time
    (["--Ns", "3"], "--Ns 3"),
    (["--tables", "table2", "--N2", "3"], "--N2 3"),
    (["--tables", "table2", "--Ps", "1e99"], "--Ps"),
    (["--tables", "histogram", "--Ps", "1e99"], "--Ps"),
    (["--Ns", "100000"], "--Ns 100000"),
    (["--Ns", "1e9"], "--Ns 1000000000"),
    (["--P", "1e99", "--tables", "table1"], "--P"),
    (["--dt", "1e-12"], "--dt"),  # 2e11 steps: beyond the API's step limit
]


@pytest.mark.parametrize("argv,needle", BENCH_SIZES, ids=[" ".join(a) for a, _ in BENCH_SIZES])
def test_benchmark_sizes_refused_up_front(tmp_path, capsys, argv, needle):
    code, lines, err, out = run(benchmark.main, argv, tmp_path, capsys)
    assert code == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err
    assert not out.exists()
