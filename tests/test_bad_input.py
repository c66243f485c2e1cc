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
