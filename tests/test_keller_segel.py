"""The Keller-Segel family (issue 20): the c-equation as a choice, linear instability rates, the 2D
critical mass, collapse as a result, and bad input."""
import json
import math

import numpy as np
import pytest
import torch

import nsipf_torch as nt
import simulate
from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.keller_segel import InstabilityIC, blowup_time_box, critical_mass, discrete_k2
from nsipf_torch.problems.params import Params
from nsipf_torch.run.runners import FDRunner
from nsipf_torch.solvers.c_equation import CEquation
from studies.keller_segel import INSTABILITY_CASES, fd_growth_rate, second_moment_slope

PKS = dict(dim=2, gamma=0.01, c_equation="elliptic", dtype="float64", device="cpu")


@pytest.mark.parametrize("kwargs,flag", [
    (dict(equation="parabolic", eps=0.0, D=1.0), "--eps"),
    (dict(equation="parabolic", eps=-1.0, D=1.0), "--eps"),
    (dict(equation="parabolic", D=0.0), "--Dc"),
    (dict(equation="elliptic", D=-1.0), "--Dc"),
    (dict(equation="consumption", D=-0.1), "--Dc"),
    (dict(equation="elliptic", D=1.0, alpha=-1.0), "--alpha"),
    (dict(equation="elliptic", D=1.0, beta=0.0), "--beta"),
    (dict(equation="elliptic", D=1.0, alpha=1.0, sensitivity="log", kappa=0.0), "--kappa"),
    (dict(equation="parabolic", D=1.0, sensitivity="receptor", kappa=-2.0), "--kappa"),
    (dict(equation="elliptic", D=1.0, sensitivity="log"), "mean-free"),
    (dict(equation="elliptic", D=1.0, sensitivity="receptor"), "mean-free"),
    (dict(equation="elliptic", D=math.nan), "--Dc"),
    (dict(equation="diffusion"), "--c-equation"),
])
def test_bad_c_equation_is_refused_naming_the_value(kwargs, flag):
    with pytest.raises(ValueError, match=flag):
        CEquation(**kwargs)


@pytest.mark.parametrize("argv,needle", [
    (["--c-equation", "elliptic", "--method", "nsipf"], "--method sipf"),
    (["--c-equation", "parabolic", "--eps", "0", "--method", "fdm"], "--eps"),
    (["--c-equation", "elliptic", "--sensitivity", "log", "--method", "fdm"], "mean-free"),
])
def test_cli_refuses_bad_c_equation_with_one_line(argv, needle, tmp_path, capsys):
    out = tmp_path / "out"
    code = simulate.main([*argv, "--dim", "2", "--N", "8", "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0] and not out.exists()


@pytest.mark.parametrize("index", [0, 5, 7, 9])
def test_fd_growth_rate_matches_the_discrete_dispersion_relation(index):
    """Started on the eigenvector, the FD mode grows at the larger root of
    (sigma + gamma k^2)(eps sigma + D k^2 + alpha) = chi Phi'(c_bar) beta rho_bar k^2 with the grid's k^2:
    the issue's tolerance, 1 % where |sigma| >= 0.05, else 5e-4 (measured errors are 10-100x smaller; the
    full table is studies/keller_segel.py)."""
    label, kw, gamma, chi, m = INSTABILITY_CASES[index]
    measured, sigma = fd_growth_rate(CEquation(**kw), gamma, chi, m, N=16)
    tol = 0.01 * abs(sigma) if abs(sigma) >= 0.05 else 5e-4
    assert abs(measured - sigma) <= tol, (label, measured, sigma)


def test_fd_second_moment_slope_follows_the_law():
    """pks_blob, 2D elliptic, alpha = 0, M0 = 0.06 (0.24 M_c): the mean slope of M2 over [0, 0.05] against
    dM2/dt = 4 gamma M - chi beta M^2 / (2 pi D) + chi beta M M2 / (D |Omega|) at the measured M2, within the
    issue's 2 %. Measured at 64^2: 1.24 % (a margin of 1.6x; 0.32 % at 128^2, the error O(h^2));
    docs/VALIDATION.md's table has every mass and grid."""
    measured, theory = second_moment_slope("fdm", 0.06, 64)
    assert abs(measured[0] - theory[0]) <= 0.02 * abs(theory[0]), (measured, theory)


def test_diffusing_nutrient_decays_a_mode_at_the_exact_rate():
    """Consumption with D > 0 and a uniform, motionless rho (gamma = chi = 0): c_t = D Delta_h c - rho_bar c
    is linear and its split steps commute, so the mean of c decays as exp(-rho_bar t) and a cosine mode as
    exp(-(D k_h^2 + rho_bar) t), to round-off."""
    grid = Grid(16, 2, 1.0, "cpu", torch.float64)
    D, T = 0.2, 0.5
    ic = InstabilityIC("flat", 1, amp=0.0, c_mean=1.0, c_amp=0.5)
    runner = FDRunner(grid, ic, Params(gamma=0.0, chi=0.0, M0=1.0), ceq=CEquation(D=D))
    for _ in range(10):
        runner.advance(T / 10)
    rho_bar = 0.25
    mode = (ic.c0(grid) - 1.0) / 0.5
    expected = math.exp(-rho_bar * T) + 0.5 * math.exp(-(D * discrete_k2(1, 16, 1.0) + rho_bar) * T) * mode
    assert float((runner.c[0] - expected).abs().max()) < 1e-13


def test_critical_mass_spreads_below_and_collapses_above_fd():
    """pks_blob, M_c = 8 pi gamma D / (chi beta) ~ 0.251: M0 = 0.12 spreads to T = 0.5 (no collapse, the
    second moment grows, the free energy does not increase), M0 = 0.5 reports a collapse near the centre
    before T*_box; mass conserved to round-off and rho >= 0 in both."""
    assert critical_mass(0.01, 1.0) == pytest.approx(0.2513, abs=1e-4)
    below = nt.simulate("pks_blob", "fdm", N=64, M0=0.12, T=0.5, diag_every=25, **PKS)
    assert below.complete and below.collapse is None and below.t_end == pytest.approx(0.5)
    _, r2 = below.series("mean_r2")
    assert float(r2[-1, 0]) > 1.3 * float(r2[0, 0])
    _, F = below.series("free_energy")
    assert float(torch.diff(F[:, 0]).max()) <= 1e-12
    above = nt.simulate("pks_blob", "fdm", N=64, M0=0.5, T=0.6, diag_every=25, **PKS)
    _, r2 = above.series("mean_r2")
    t_star = blowup_time_box(0.5, 0.5 * float(r2[0, 0]), 0.01, 1.0, 1.0)
    assert 0.5 < t_star < 0.53
    assert not above.complete and above.error is None and above.collapse["t"] < t_star
    assert max(abs(x) for x in above.collapse["x"]) < 0.05
    for result in (below, above):
        _, mass = result.series("mass")
        assert float((mass - mass[0]).abs().max()) < 1e-12
        assert float(result.rho.min()) >= 0.0


def test_sipf_collapse_is_a_result_on_the_command_line(tmp_path, capsys):
    """SIPF on the elliptic system: exit 0 with snapshots and summary.json naming the collapse. No --T:
    pks_blob's own final time (0.6, past T*_box = 0.523) is the run's and config.json's."""
    out = tmp_path / "run"
    code = simulate.main(["--method", "sipf", "--interp", "trilinear", "--ic", "pks_blob", "--dim", "2", "--N", "64",
                          "--P", "20000", "--M0", "0.5", "--c-equation", "elliptic", "--no-progress",
                          "--out", str(out)])
    assert code == 0 and "COLLAPSE" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["config"]["T"] == 0.6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and summary["collapse"]["t"] < 0.523
    assert summary["t_end"] == pytest.approx(summary["collapse"]["t"])
    last = np.load(sorted(out.glob("snap_*.npz"))[-1])
    assert float(last["t"]) == pytest.approx(summary["t_end"]) and np.isfinite(last["rho"]).all()


@pytest.mark.parametrize("sensitivity,ceq", [("linear", "parabolic"), ("log", "parabolic"), ("receptor", "elliptic")])
def test_every_method_runs_every_c_equation(sensitivity, ceq):
    """FD and both SIPF interpolators on a c-equation: mass kept, rho and c >= 0, c fed by the cells."""
    for method, interp in (("fdm", "spline"), ("sipf", "trilinear"), ("sipf", "spline")):
        r = nt.simulate("pks_ring", method, interp=interp, N=16, P=2000, T=0.02, dim=2, c_equation=ceq, alpha=1.0,
                        gamma=0.05,
                        sensitivity=sensitivity, kappa=0.5, dtype="float64", device="cpu")
        _, mass = r.series("mass")
        assert r.complete and float((mass - 1.0).abs().max()) < 1e-12
        assert float(r.rho.min()) >= 0.0 and float(r.c.min()) >= 0.0 and float(r.c[:, -1].max()) > 0.0


def test_under_resolved_start_collapses_when_it_concentrates_not_at_the_first_step():
    """At the default 32^2 the supercritical blob starts beyond the grid (Pe_h(0) = 2.08 > 2): the limit
    becomes 1.5 Pe_h(0) (nsipf_torch.run.collapse), so the stop is a concentration that developed, after
    t = 0.2 (measured 0.30) and before T*_box ~ 0.52, with a warning about the start; the subcritical
    M0 = 0.12 at the same grid runs to the end."""
    kw = dict(PKS, N=32, T=0.6, dtype="float32")
    with pytest.warns(UserWarning, match="beyond the grid"):
        above = nt.simulate("pks_blob", "fdm", M0=0.5, **kw)
    assert above.collapse is not None and 0.2 < above.collapse["t"] < 0.52
    assert above.collapse["peclet_start"] > 2.0 and above.collapse["peclet"] > 1.5 * above.collapse["peclet_start"]
    below = nt.simulate("pks_blob", "fdm", M0=0.12, **kw)
    assert below.complete and below.collapse is None


def test_mass_sweep_freezes_a_collapsed_member_while_the_other_runs_on():
    """--sweep M0=0.12,0.5 at 32^2 in one tensor: the supercritical member collapses at the time its single
    run does (it sets the batch's FD sub-steps until then) and is held bit for bit from there on; the
    subcritical one runs to T; each member keeps its own mass to round-off."""
    kw = dict(PKS, N=32, T=0.6, dtype="float64", snapshots=6)
    with pytest.warns(UserWarning, match="beyond the grid"):
        single = nt.simulate("pks_blob", "fdm", M0=0.5, **kw)
        batch = nt.simulate("pks_blob", "fdm", sweep="M0=0.12,0.5", **kw)
    assert batch.t_end == pytest.approx(0.6) and not batch.complete and batch.collapses[0] is None
    hit = batch.collapses[1]
    assert batch.collapse == hit and hit["t"] == pytest.approx(single.collapse["t"])
    after = [k for k, t in enumerate(batch.times) if t >= hit["t"]]
    assert len(after) >= 2 and all(torch.equal(batch.rho[1, k], batch.rho[1, after[0]]) for k in after)
    _, mass = batch.series("mass")
    assert float((mass - torch.tensor([0.12, 0.5], dtype=torch.float64)).abs().max()) < 1e-12


def test_mass_sweep_gives_each_particle_member_its_mass():
    """SIPF with --sweep M0: particle mass M0/P per member, so the deposit integrates to each M0 to round-off."""
    r = nt.simulate("pks_blob", "sipf", N=16, P=2000, T=0.01, sweep="M0=0.1,0.2", **{**PKS, "dtype": "float64"})
    _, mass = r.series("mass")
    assert float((mass - torch.tensor([0.1, 0.2], dtype=torch.float64)).abs().max()) < 1e-12
    assert [m["M0"] for m in r.members] == [0.1, 0.2]


def test_resumed_mass_sweep_keeps_its_collapse_record_and_limits(tmp_path):
    """A batch checkpointed after one member froze and resumed: the same collapse records (time and place
    from the checkpoint, not re-detected at the resume) and bitwise the same final fields as the run that
    went through (Checkpoint's promise, extended to frozen members and the start-dependent limits)."""
    from nsipf_torch.io.files import load_torch
    from nsipf_torch.run.callbacks import Checkpoint, StopAt
    kw = dict(PKS, N=32, T=0.6, dtype="float64", sweep="M0=0.12,0.5")
    with pytest.warns(UserWarning, match="beyond the grid"):
        whole = nt.simulate("pks_blob", "fdm", **kw)
        path = tmp_path / "state.pt"
        nt.simulate("pks_blob", "fdm", callbacks=[Checkpoint(path, 400, {}), StopAt(400)], **kw)
        resumed = nt.simulate("pks_blob", "fdm", resume=load_torch(path), **kw)
    assert whole.collapses[1] is not None and whole.collapses[1]["t"] < 0.4
    assert resumed.collapses == whole.collapses
    assert torch.equal(resumed.rho[:, -1], whole.rho[:, -1]) and torch.equal(resumed.c[:, -1], whole.c[:, -1])
