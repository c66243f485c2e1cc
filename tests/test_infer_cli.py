"""infer.py end to end and its bad input: each bad case gives one line on stderr (argparse's usage line may
precede it), exit status 2, no traceback, and nothing written. Run in-process through main(argv)."""
import json

import numpy as np
import pytest

import infer
import simulate
from nsipf_torch.inference.observations import load_observations, observations_from_run

N = 8


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A valid obs.npz made by the CLI itself (2D two_blobs, N = 8, one snapshot, 5% noise)."""
    path = tmp_path_factory.mktemp("data") / "obs.npz"
    code = infer.main(["--synthetic", "two_blobs", "--dim", "2", "--N", str(N), "--times", "0.05", "--chi", "1.3",
                       "--gamma", "0.012", "--write-data", str(path), "--no-compile"])
    assert code == 0
    with np.load(path) as d:
        return {k: d[k] for k in d.files}


def run(argv, tmp_path, capsys):
    out = tmp_path / "out"
    try:
        code = infer.main([*argv, "--out", str(out), "--no-progress", "--no-compile"])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("usage:") and not ln.startswith("  ")]
    return code, lines, out


def broken(good, **changes):
    data = dict(good)
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    return data


BAD_DATA = [
    ("missing key", lambda g: broken(g, c0=None), "lacks the key(s) c0"),
    ("mismatched rho", lambda g: broken(g, rho=g["rho"][:, :-1]), "rho must have shape"),
    ("mismatched c0", lambda g: broken(g, c0=np.ones((N + 2, N + 2))), "c0 has shape"),
    ("rho vs t", lambda g: broken(g, t=np.array([0.05, 0.1])), "rho must have shape"),
    ("negative rho", lambda g: broken(g, rho=g["rho"] - 1.0), "rho has negative values"),
    ("negative rho0", lambda g: broken(g, rho0=-g["rho0"]), "rho0 has negative values"),
    ("nan rho", lambda g: broken(g, rho=np.where(g["rho"] > 0, np.nan, 0.0)), "rho holds NaN"),
    ("inf c0", lambda g: broken(g, c0=g["c0"] * np.inf), "c0 holds NaN or infinite"),
    ("times not increasing", lambda g: broken(g, t=np.array([0.1, 0.05]), rho=np.concatenate([g["rho"]] * 2)),
     "strictly increasing"),
    ("time zero", lambda g: broken(g, t=np.array([0.0])), "must be > 0"),
    ("K = 0", lambda g: broken(g, t=np.zeros(0), rho=np.zeros((0, N, N))), "t is empty"),
    ("1-D grid", lambda g: broken(g, rho0=np.ones(N), c0=np.ones(N)), "d = 2 or 3"),
    ("bad L", lambda g: broken(g, L=np.array(-1.0)), "L must be > 0"),
    ("c_equation not JSON", lambda g: broken(g, c_equation=np.array("elliptic")), "must be a JSON object"),
    ("c_equation numeric", lambda g: broken(g, c_equation=np.array(1.0)), "must be a JSON object"),
    ("c_equation invalid", lambda g: broken(g, c_equation=np.array('{"c_equation": "parabolic", "eps": 0}')),
     "--eps must be > 0"),
]


@pytest.mark.parametrize("name,make,message", BAD_DATA, ids=[c[0] for c in BAD_DATA])
def test_bad_data_exits_2_with_one_line(good, name, make, message, tmp_path, capsys):
    path = tmp_path / "bad.npz"
    np.savez(path, **make(good))
    code, lines, out = run(["--data", str(path)], tmp_path, capsys)
    assert code == 2
    assert len(lines) == 1 and message in lines[0], lines
    assert not out.exists()


BAD_FLAGS = [
    (["--fit", "chi,beta"], "fit must name"),
    (["--chi", "-1"], "--chi must be >= 0"),
    (["--gamma", "0"], "--gamma must be > 0"),
    (["--gamma", "nan"], "--gamma must be a finite number"),
    (["--model-N", "12"], "multiple of the data grid"),
    (["--weights", "poisson"], "unknown weights"),
    (["--method", "sipf"], "--method"),
    (["--dt", "0"], "--dt must be"),
    (["--device", "cuda"], "CUDA"),
    (["--dtype", "float16"], "dtype"),
]


@pytest.mark.parametrize("flags,message", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_flags_exit_2_with_one_line(good, flags, message, tmp_path, capsys):
    path = tmp_path / "obs.npz"
    np.savez(path, **good)
    code, lines, out = run(["--data", str(path), *flags], tmp_path, capsys)
    assert code == 2
    assert len(lines) == 1 and message in lines[0], lines
    assert not out.exists()


def test_missing_data_file_and_unwritable_out(good, tmp_path, capsys):
    code, lines, out = run(["--data", str(tmp_path / "none.npz")], tmp_path, capsys)
    assert code == 2 and len(lines) == 1 and "does not exist" in lines[0]
    path = tmp_path / "obs.npz"
    np.savez(path, **good)
    blocker = tmp_path / "file"
    blocker.write_text("")
    try:
        code = infer.main(["--data", str(path), "--out", str(blocker / "sub"), "--no-progress"])
    except SystemExit as exc:
        code = exc.code
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "--out" in lines[0] and "not writable" in lines[0], lines
    code, lines, _ = run(["--synthetic", "two_blobs", "--chi", "1", "--gamma", "0.01", "--write-data",
                          str(blocker / "obs.npz")], tmp_path, capsys)
    assert code == 2 and len(lines) == 1 and "--write-data" in lines[0]


def test_fit_writes_result_figure_and_tensorboard(good, tmp_path, capsys):
    # End to end on the tiny problem: chi alone with gamma fixed at the truth; only the outputs and the
    # printed estimate are checked here (the accuracy targets are the slow validation tests).
    path = tmp_path / "obs.npz"
    np.savez(path, **good)
    out = tmp_path / "out"
    code = infer.main(["--data", str(path), "--fit", "chi", "--chi", "0.65", "--gamma", "0.012", "--no-check",
                       "--out", str(out), "--no-progress", "--no-compile"])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert set(result["estimates"]) == {"chi", "gamma"} and result["fit"] == ["chi"]
    lo, hi = result["ci95"]["chi"]
    assert lo < result["estimates"]["chi"] < hi
    assert result["config"]["fit"] == "chi" and result["truth"]["chi"] == 1.3
    assert (out / "fit.png").stat().st_size > 0 and list((out / "tb").iterdir())
    assert "chi" in capsys.readouterr().out


def test_simulate_run_converts_to_observations(tmp_path):
    run_dir = tmp_path / "sim"
    code = simulate.main(["--method", "fdm", "--ic", "two_blobs", "--dim", "2", "--N", "8", "--T", "0.02",
                          "--dt", "0.01", "--snapshots", "2", "--chi", "1.3", "--gamma", "0.012", "--dtype", "float64",
                          "--out", str(run_dir), "--no-progress", "--device", "cpu"])
    assert code == 0
    obs = observations_from_run(run_dir)
    assert obs.K == 2 and obs.N == 8 and obs.dim == 2 and np.allclose(obs.t, [0.01, 0.02])
    assert obs.chi_true == 1.3 and obs.gamma_true == 0.012
    snap = np.load(run_dir / "snap_0002.npz")
    assert np.array_equal(obs.rho[1], snap["rho"][0])
    target = tmp_path / "obs.npz"
    assert infer.main(["--from-run", str(run_dir), "--write-data", str(target)]) == 0
    assert np.array_equal(load_observations(target).rho, obs.rho)


SYSTEMS = {"elliptic": ["--c-equation", "elliptic"],
           "parabolic-log": ["--c-equation", "parabolic", "--alpha", "1", "--sensitivity", "log", "--kappa", "2"],
           # crosses the collapse criterion on the 8^2 grid at t = 0.025 (Phi' = 2 at c = 0, see below)
           "collapsing": ["--c-equation", "parabolic", "--alpha", "1", "--sensitivity", "log", "--kappa", "0.5"]}


@pytest.fixture(scope="module")
def ks_runs(tmp_path_factory):
    """simulate.py's FD runs of pks_blob with the c-equations of SYSTEMS (2D, N = 8, float64, M0 = 1, below
    the elliptic M_c = 8 pi gamma D / (chi beta) = 1.26): outer steps of 0.005 with one sub-step each (the
    positivity bound asks for no more), snapshots at t = 0.05, 0.1. A function of the system's name, each
    run made once."""
    root, made = tmp_path_factory.mktemp("ks"), {}

    def make(name):
        if name not in made:
            made[name] = root / name
            code = simulate.main(["--method", "fdm", *SYSTEMS[name], "--ic", "pks_blob", "--dim", "2", "--N", "8",
                                  "--T", "0.1", "--dt", "0.005", "--snapshots", "2", "--chi", "1", "--gamma", "0.05",
                                  "--dtype", "float64", "--device", "cpu", "--out", str(made[name]), "--no-progress"])
            assert code == 0
        return made[name]
    return make


@pytest.fixture(scope="module")
def elliptic_run(ks_runs):
    return ks_runs("elliptic")


@pytest.mark.parametrize("name", ["elliptic", "parabolic-log"])
def test_ks_run_is_recovered_to_round_off(ks_runs, name, tmp_path):
    # FD data on the model's own grid (--model-N 8): the model starts from the run's rho0 itself and, with
    # outer steps of 0.01 that the held schedule (1.1x the bound's count) splits in two, takes the run's
    # sub-steps of 0.005: the truth reproduces the data to round-off, and Levenberg-Marquardt reaches it from
    # a start a factor 2 off (measured relative errors, 12 iterations: elliptic 2e-14 in chi, 3e-15 in gamma,
    # misfit 9e-17; parabolic with Phi = log(c + 2), alpha = 1: 9e-14 and 6e-15, misfit 3e-16; "converged" is
    # not declared, since at zero noise the standard errors are round-off too). Asserted 1e-10. kappa = 0.5
    # would cross the collapse criterion on this 8^2 grid by t = 0.025 (Phi' = 2 at c = 0 doubles the cell
    # Peclet number), in the run and in the model alike. The c-equation comes from the run's config.json.
    out = tmp_path / "fit"
    code = infer.main(["--from-run", str(ks_runs(name)), "--model-N", "8", "--no-check", "--chi", "0.5", "--gamma",
                       "0.02", "--weights", "none", "--dt", "0.01", "--max-iter", "12", "--no-compile", "--no-progress",
                       "--out", str(out)])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["settings"]["c_equation"]["c_equation"] == SYSTEMS[name][1]
    assert all(abs(e) < 1e-10 for e in result["relative_error"].values()), result["relative_error"]


def test_elliptic_run_keeps_its_system_and_refuses_another(elliptic_run, tmp_path, capsys):
    target = tmp_path / "obs.npz"
    assert infer.main(["--from-run", str(elliptic_run), "--write-data", str(target)]) == 0
    obs = load_observations(target)
    assert obs.c_equation.elliptic and obs.c_equation.mean_free and obs.c0.min() < 0  # the mean-free c of rho0
    for source in (["--from-run", str(elliptic_run)], ["--data", str(target)]):
        code, lines, out = run([*source, "--c-equation", "parabolic"], tmp_path, capsys)
        assert code == 2 and len(lines) == 1 and "--c-equation parabolic contradicts the data" in lines[0], lines
        assert not out.exists()


def test_a_start_that_collapses_is_one_line(elliptic_run, tmp_path, capsys):
    # chi fixed at 10 puts M0 = 1 far above M_c = 0.126: the model collapses at the start (by t = 0.03 on the
    # 16^2 model grid), so no fit can begin: one line and exit status 1, no traceback
    code, lines, _ = run(["--from-run", str(elliptic_run), "--fit", "gamma", "--chi", "10", "--gamma", "0.05"],
                         tmp_path, capsys)
    assert code == 1 and len(lines) == 1 and "cannot start" in lines[0] and "collapse" in lines[0], lines


def test_a_collapsed_run_is_data_with_a_warning(ks_runs):
    # the run stopped at its collapse (t = 0.025) and kept its snapshots: they are data, but the last one is
    # past the criterion that rejects the model's trial points, which the user is told
    with pytest.warns(UserWarning, match="collapsed at t = 0.025"):
        obs = observations_from_run(ks_runs("collapsing"))
    assert obs.K == 1 and obs.t[0] == pytest.approx(0.025) and obs.c_equation.sensitivity == "log"
