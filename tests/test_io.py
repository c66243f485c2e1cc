"""Atomic writes and safe loading (weights_only=True refuses pickled code)."""
import os
import pickle

import numpy as np
import pytest
import torch

from nsipf_torch.io.files import atomic_write, ensure_writable_dir, load_torch, save_npz, save_torch


class Payload:
    """Unpickling this runs os.system: the classic malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        torch.save({"model": Payload(str(marker))}, f)
    with pytest.raises(ValueError, match="refused: weights_only=True"):
        load_torch(path)
    assert not marker.exists()
    # the same file through plain pickle would have run the payload: the test's payload is real
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(Payload(str(marker))))
    pickle.loads(raw.read_bytes())
    assert marker.exists()


def test_roundtrip_and_bad_files(tmp_path):
    state = {"X": torch.arange(6.0).reshape(2, 3), "step": 7, "names": ["a", "b"], "gen": torch.Generator().get_state()}
    path = save_torch(tmp_path / "state.pt", state)
    back = load_torch(path)
    assert torch.equal(back["X"], state["X"]) and back["step"] == 7 and back["names"] == ["a", "b"]
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "trunc.pt").write_bytes(path.read_bytes()[:50])
    for name in ("empty.pt", "trunc.pt", "missing.pt"):
        with pytest.raises(ValueError, match=name):
            load_torch(tmp_path / name)


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = save_npz(tmp_path / "a.npz", x=np.arange(3))

    def fail(tmp):
        tmp.write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert np.array_equal(np.load(path)["x"], np.arange(3))  # the previous complete file survives
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]  # and no temporary file is left behind


def test_unwritable_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="cannot create"):
        ensure_writable_dir(blocker / "sub")


def test_load_npz_refuses_foreign_files_without_suggesting_pickle(tmp_path):
    import numpy as np
    import pytest

    from nsipf_torch.io.files import load_npz
    (tmp_path / "a.txt").write_text("rho0 = 1\n")
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object))
    np.savez(tmp_path / "ok.npz", x=np.arange(3.0))
    for name, msg in (("none.npz", "does not exist"), ("a.txt", "not an .npz archive"), ("obj.npz", "not a readable")):
        with pytest.raises(ValueError, match=msg) as err:
            load_npz(tmp_path / name, "--thing")
        assert "pickle" not in str(err.value) and "--thing" in str(err.value)
    assert load_npz(tmp_path / "ok.npz", "--thing")["x"].tolist() == [0.0, 1.0, 2.0]
