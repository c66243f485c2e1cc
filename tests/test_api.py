"""The Python API (nsipf_torch.api): simulate -> Result, members from sweeps and seeds, bad values refused at
entry, user problems as functions, a NaN stop, and nothing written unless asked."""
import os
import warnings

import numpy as np
import pytest
import torch

import nsipf_torch as nt
from nsipf_torch.run.callbacks import Callback

SMALL = dict(N=8, T=0.004, dt=0.002, snapshots=2, device="cpu", dtype="float64")


def test_simulate_returns_members_first_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = nt.simulate("blob", method="sipf", interp="trilinear", P=500, **SMALL)
    assert r.rho.shape == (1, 3, 8, 8, 8) and r.c.shape == r.rho.shape and r.times == [0.0, 0.002, 0.004]
    assert r.complete and r.n_steps == 2 and os.listdir(tmp_path) == []
    # mass M0 in every snapshot to round-off: exact particle counts (float64 deposit)
    assert torch.allclose(r.rho.sum(dim=(-3, -2, -1)) * (2 / 8) ** 3, torch.ones(1, 3, dtype=torch.float64),
                          rtol=1e-14, atol=0)
    assert r.config["config"]["method"] == "sipf" and r.config["params"]["M0"] == 1.0


def test_sweep_members_equal_single_runs():
    # Members are independent: the chi = 2 member of a sweep is bitwise the single run with the same seed.
    sweep = nt.simulate("two_blobs", method="sipf", interp="spline", P=400, chi=[0.5, 2.0], seeds=[7], **SMALL)
    single = nt.simulate("two_blobs", method="sipf", interp="spline", P=400, chi=2.0, seeds=[7], **SMALL)
    assert [m["chi"] for m in sweep.members] == [0.5, 2.0] and [m["seed"] for m in sweep.members] == [7, 7]
    assert torch.equal(sweep.rho[1], single.rho[0]) and torch.equal(sweep.c[1], single.c[0])


def test_seed_base_gives_distinct_member_seeds():
    r = nt.simulate("blob", method="sipf", interp="trilinear", P=300, gamma=[0.01, 0.02], batch=2, seeds=5, **SMALL)
    assert [(m["gamma"], m["seed"]) for m in r.members] == [(0.01, 5), (0.01, 6), (0.02, 7), (0.02, 8)]


@pytest.mark.parametrize("kwargs,word", [
    ({"gamma": -1.0}, "gamma"), ({"chi": float("nan")}, "chi"), ({"dt": -1e-3}, "dt"), ({"dt": float("nan")}, "dt"),
    ({"N": 3}, "N"), ({"T": -1.0}, "T"), ({"P": 0}, "P"), ({"interp": "quintic"}, "interp"),
    ({"method": "spectral"}, "method"), ({"bogus": 1}, "bogus"), ({"L": 0.0}, "L"), ({"M0": -1.0}, "M0"),
    ({"gamma": [0.01, -0.01]}, "gamma"), ({"seeds": [1, 1]}, "seeds"), ({"dim": 1}, "dim"),
    ({"dt": 1e-300}, "steps"), ({"N": 100000}, "GiB"),
])
def test_bad_values_raise_value_error_naming_them(kwargs, word):
    args = {"method": "sipf", "interp": "trilinear", "P": 100, **SMALL, **kwargs}
    with pytest.raises(ValueError, match=word):
        nt.simulate("blob", **args)


def test_bad_problem_is_refused():
    with pytest.raises(ValueError, match="problem"):
        nt.simulate(42, method="fdm", **SMALL)
    with pytest.raises(ValueError, match="unknown initial condition"):
        nt.simulate("three_blobs", method="fdm", **SMALL)
    with pytest.raises(ValueError, match="rho0"):  # a function returning negative values
        nt.simulate((lambda x: -torch.ones(x.shape[:-1]), lambda x: torch.ones(x.shape[:-1])), method="fdm", **SMALL)


def test_function_problem_equals_the_same_gridded_problem():
    # A pair of callables is sampled at the cell centres; the same arrays as a GriddedIC give the same run.
    def rho0(x):
        return torch.exp(-(x**2).sum(-1) / 0.05)

    def c0(x):
        return 5 * torch.exp(-((x - 0.3) ** 2).sum(-1) / 0.1)

    fn = nt.simulate((rho0, c0), method="fdm", dim=2, **SMALL)
    grid = nt.Grid(8, dim=2)
    x = torch.stack(grid.mesh(), dim=-1)
    gridded = nt.simulate(nt.GriddedIC("arrays", rho0(x).numpy(), c0(x).numpy()), method="fdm", **SMALL)
    assert torch.allclose(fn.rho, gridded.rho, rtol=1e-14, atol=0) and torch.allclose(fn.c, gridded.c, rtol=1e-14, atol=0)


def test_nan_mid_run_returns_the_result_so_far():
    class Poison(Callback):
        def on_step(self, state):
            if state.step == 3:
                state.runner.rho = state.runner.rho.clone().fill_(float("nan"))

    r = nt.simulate("blob", method="fdm", N=8, T=0.008, dt=0.001, snapshots=4, diag_every=1, callbacks=[Poison()])
    # the next step's FD sub-step count meets the NaN first (step 4), before any snapshot of that step
    assert not r.complete and "NaN or Inf in rho or c at step 4" in r.error
    assert r.steps == [0, 2] and np.isfinite(r.rho.numpy()).all()


def test_user_snapshot_schedule_replaces_the_default():
    r = nt.simulate("blob", method="fdm", N=8, T=0.01, dt=0.001, callbacks=[nt.Snapshots.every(5, 10)])
    assert r.steps == [0, 5, 10] and r.rho.shape[1] == 3


def test_euler_update_warns_when_c_goes_negative():
    # dt * rho > 1 in crowded cells makes the explicit update negative (docs/MODEL.md §6); the API warns once.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nt.simulate("blob", method="sipf", interp="trilinear", P=2000, N=16, T=0.1, dt=0.05, c_update="euler",
                    device="cpu")
    assert any("negative" in str(w.message) for w in caught)
