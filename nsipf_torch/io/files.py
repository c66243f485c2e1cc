"""Atomic output: every file is written to a temporary name in the same folder, then renamed.

A run killed mid-write therefore leaves either the previous complete file or none, never a torn one.
Checkpoints and states hold only tensors and plain Python values, so they load with weights_only=True.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``; the temporary file is removed on failure."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def save_npz(path: str | Path, **arrays: Any) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **{k: _to_numpy(v) for k, v in arrays.items()})
    return atomic_write(path, write)


def save_json(path: str | Path, obj: Any) -> Path:
    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return atomic_write(path, write)


def save_torch(path: str | Path, obj: Any) -> Path:
    """torch.save of tensors and plain values only; load it back with :func:`load_torch`."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_torch(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint or state safely: ``weights_only=True`` refuses pickled code.

    Any failure (missing, empty, truncated, corrupt, or carrying a pickle payload) is a ``ValueError``
    naming the file.
    """
    path = Path(path)
    _check_is_file(path, "file")
    if path.stat().st_size == 0:
        raise ValueError(f"cannot load {str(path)!r}: the file is empty")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        text = str(err)
        if "GLOBAL" in text.upper() and "operand" not in text:  # the unpickler met a class or function to import
            why = "it holds pickled objects other than tensors and plain values (refused: weights_only=True)"
        elif "Weights only load failed" in text:
            why = "it is corrupt or not a torch checkpoint"
        else:  # zip reader errors, short reads
            why = f"it is truncated or corrupt ({type(err).__name__})"
        raise ValueError(f"cannot load {str(path)!r}: {why}") from err


def load_npz(path: str | Path, what: str) -> dict[str, np.ndarray]:
    """Every array of an .npz archive (numpy.savez), read without pickle. A missing file, anything that is
    not a zip archive, a damaged one, or one holding object arrays is a ``ValueError`` naming ``what`` and the
    file (and never suggests loading it unsafely)."""
    path = Path(path)
    _check_is_file(path, what)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":  # an .npz is a zip archive; anything else would reach numpy's pickle path
        raise ValueError(f"{what} {str(path)!r} is not an .npz archive (numpy.savez)")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except Exception as err:  # zipfile/OSError/EOFError for damaged files, ValueError for object arrays
        raise ValueError(f"{what} {str(path)!r} is not a readable .npz of numeric arrays ({type(err).__name__})") from err


def _check_is_file(path: Path, what: str) -> None:
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a directory, expected a file")
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} does not exist")


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def probe_writable(folder: str | Path) -> None:
    """Create and remove a file in the existing directory ``folder``; ``OSError`` when that fails.

    A real write, not ``os.access``: root passes every permission check, yet /proc, a read-only mount or a
    full disk still refuse the file.
    """
    fd, tmp = tempfile.mkstemp(prefix=".nsipf-probe.", dir=folder)
    os.close(fd)
    os.unlink(tmp)


def ensure_writable_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) and check by a probe file that it takes files; a ``ValueError`` names
    it otherwise."""
    if str(path) == "":  # Path("") is the current folder: an empty flag is a mistake, not a request
        raise ValueError("the output directory is empty ('')")
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create output directory {str(path)!r}: {err.strerror}") from err
    try:
        probe_writable(path)
    except OSError as err:
        raise ValueError(f"output directory {str(path)!r} is not writable: {err.strerror}") from err
    return path
