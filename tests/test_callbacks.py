"""The trackers (nsipf_torch.run.callbacks) as the time loop drives them."""
from pathlib import Path

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
    resumed = nt.simulate("blob", resume=state, **SMALL)
    assert resumed.steps == r.steps and (resumed.rho == r.rho).all()
    assert isinstance(Diagnostics(), Callback) and Path(tmp_path / "state.pt").stat().st_size > 0
