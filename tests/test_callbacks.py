"""The trackers (nsipf_torch.run.callbacks) as the time loop drives them."""
from pathlib import Path

import torch

import nsipf_torch as nt
from nsipf_torch.run.callbacks import Callback, Checkpoint, Diagnostics, ProgressBar, Snapshots, TensorBoard
from nsipf_torch.io.files import load_torch

SMALL = dict(method="fdm", N=8, T=0.01, dt=0.001, device="cpu", dtype="float64")


def test_snapshot_schedules():
    assert Snapshots.evenly(10, 4).at == [0, 2, 5, 8, 10]  # round(k n / K), half to even
    assert Snapshots.every(4, 10).at == [0, 4, 8, 10]


def test_diagnostics_cadence_and_order():
    seen = []

    class Spy(Callback):
        def on_step(self, state):
            seen.append((state.step, state.diag_due, len(state.log)))

    r = nt.simulate("blob", diag_every=3, snapshots=2, callbacks=[Spy()], **SMALL)
    due = [s for s, d, _ in seen if d]
    assert due == [3, 5, 6, 9, 10]  # every 3rd step, the snapshot step 5, and the last step
    # Diagnostics run before user callbacks: at a due step the row of that step is already there
    assert all(n == 1 + sum(1 for s in due if s <= step) for step, d, n in seen)
    assert [row["step"] for row in r.diagnostics] == [0, *due]


def test_tensorboard_progress_and_checkpoint(tmp_path, capsys):
    cfg = {"sim": "anything plain"}
    r = nt.simulate("blob", callbacks=[ProgressBar("t"), TensorBoard(tmp_path / "tb"),
                                       Checkpoint(tmp_path / "state.pt", 4, cfg)], **SMALL)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert "10/10" in capsys.readouterr().err  # the bar reached the end
    state = load_torch(tmp_path / "state.pt")  # weights_only=True: tensors and plain values only
    assert state["step"] == 10 and state["config"] == cfg and len(state["log"]) == len(r.diagnostics)
    assert isinstance(Diagnostics(), Callback) and Path(tmp_path / "state.pt").stat().st_size > 0


def test_resume_from_mid_run_is_bitwise_the_uninterrupted_run(tmp_path):
    """A particle run (random increments) resumed from its state at step 4 of 10 runs the 6 steps left
    and ends bitwise where the uninterrupted run ends: fields, particle noise, snapshots, diagnostics."""
    small = dict(SMALL, method="sipf", P=500, diag_every=2, snapshots=5)

    class KeepStep4(Callback):  # the Checkpoint before it has just written state.pt at step 4
        def on_step(self, state):
            if state.step == 4:
                (tmp_path / "step4.pt").write_bytes((tmp_path / "state.pt").read_bytes())

    full = nt.simulate("blob", callbacks=[Checkpoint(tmp_path / "state.pt", 4, {}), KeepStep4()], **small)
    state = load_torch(tmp_path / "step4.pt")
    assert state["step"] == 4
    ran = []

    class Count(Callback):
        def on_step(self, state):
            ran.append(state.step)

    resumed = nt.simulate("blob", resume=state, callbacks=[Count()], **small)
    assert ran == [5, 6, 7, 8, 9, 10]
    assert resumed.steps == full.steps == [0, 2, 4, 6, 8, 10]
    assert torch.equal(resumed.rho, full.rho) and torch.equal(resumed.c, full.c)
    assert resumed.diagnostics == full.diagnostics
    assert not torch.equal(full.rho[:, -1], full.rho[:, 2])  # the last six steps moved the particles
