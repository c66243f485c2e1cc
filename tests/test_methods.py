"""The one method table (nsipf_torch.methods) and the drivers' hooks into the one loop (Setup.step_at, the
StopAt and Timer callbacks)."""
import pytest
import torch

import nsipf_torch as nt
from nsipf_torch.api import prepare
from nsipf_torch.methods import METHODS, from_config, get_method, parse_methods
from nsipf_torch.particles.interp import TrilinearInterp
from nsipf_torch.methods import INTERPS
from nsipf_torch.run.callbacks import Snapshots, StopAt, Timer

SMALL = dict(N=8, dim=2, P=300, T=0.006, dt=0.002, snapshots=1, device="cpu")


def test_a_table_label_names_its_method():
    # One vocabulary: the label a table prints is the name in another case, and the API's method/interp
    # pair maps onto the same entries.
    for name, m in METHODS.items():
        assert get_method(m.label) is m and m.label.lower() == name
        assert from_config(m.family, m.interp or "spline") is m
    assert parse_methods(["FDM", "nsipf"]) == ["fdm", "nsipf"]
    with pytest.raises(ValueError, match="--methods: unknown method 'FEM'"):
        parse_methods(["FEM"])


def test_a_registry_name_runs_the_same_run_as_the_api_pair():
    # "sipf-spline" must reach the runner that method="sipf", interp="spline" builds, with the same options
    # and seeds: the two results agree bitwise (same seed, same step sequence).
    a = nt.simulate("two_blobs", "sipf-spline", **SMALL)
    b = nt.simulate("two_blobs", "sipf", interp="spline", **SMALL)
    assert torch.equal(a.rho, b.rho) and torch.equal(a.c, b.c)
    with pytest.raises(ValueError, match="uses interp 'spline', not 'trilinear'"):
        nt.simulate("two_blobs", "sipf-spline", interp="trilinear", **SMALL)


def test_options_a_method_does_not_take_are_refused():
    setup = prepare("blob", "fdm", **SMALL)
    with pytest.raises(ValueError, match="method fdm takes no option deposit"):
        METHODS["fdm"].runner(setup.grid, setup.ic, setup.params, deposit="cic")


def test_a_registered_interpolator_is_a_method(monkeypatch):
    monkeypatch.setitem(INTERPS, "linear2", TrilinearInterp)
    m = get_method("sipf-linear2")
    assert (m.family, m.interp, m.label) == ("sipf", "linear2", "SIPF-linear2")
    assert from_config("sipf", "linear2").name == "sipf-linear2"


def test_step_at_names_the_steps_of_simulates_rule():
    # T = 0.005, dt = 0.002: ceil(T/dt) = 3 steps at t = 0.002, 0.004 and (shortened) 0.005.
    setup = prepare("blob", "fdm", **{**SMALL, "T": 0.005})
    assert setup.n_steps == 3 and [setup.step_at(t) for t in (0.0, 0.004, 0.005)] == [0, 2, 3]
    with pytest.raises(ValueError, match="no step of the run lands on t = 0.003"):
        setup.step_at(0.003)


def test_stop_at_keeps_the_steps_of_the_full_run():
    # A run stopped after step 2 by a callback took exactly the full run's first two steps: its snapshot at
    # step 2 is bitwise the full run's (same seeds, same step sizes), and nothing came after.
    full = nt.simulate("two_blobs", "sipf-trilinear", callbacks=[Snapshots([2, 3])], **SMALL)
    timer = Timer("cpu")
    cut = nt.simulate("two_blobs", "sipf-trilinear", callbacks=[Snapshots([2, 3]), StopAt(2), timer], **SMALL)
    assert cut.steps == [2] and torch.equal(cut.rho[:, 0], full.rho[:, 0]) and cut.complete
    assert timer.steps == 2 and timer.seconds > 0
