"""Config dataclasses, the library side: a field with its help text (``option``), the type check of
values given in Python (``check_field_types``: the API's keyword options), and output paths checked before
long work (``check_output_dir``/``check_output_file``, by a probe file). The command-line layer
(:mod:`nsipf_torch.commands.cli`) builds flags from the same fields."""
from __future__ import annotations

import dataclasses
import numbers
import os
import types
import typing
from pathlib import Path
from typing import Iterable

from nsipf_torch.io.files import probe_writable


def strip_optional(kind):
    """``X | None`` flags parse as X (their default may be None)."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return kind


def _is_kind(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, (bool, numbers.Integral)) and value in (0, 1)
    if kind is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, (str, os.PathLike))  # a path field (model, ic_file) may be a Path
    return isinstance(value, kind) if isinstance(kind, type) else True


def check_field_types(cls: type, values: dict, *, exclude: Iterable[str] = ()) -> None:
    """Values given in Python for fields of the dataclass ``cls`` (the API's keyword options): each of
    its field's type (``X | None`` also None; ints are floats too); a ``ValueError`` naming the field."""
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        if name in exclude or name not in hints:
            continue
        declared = hints[name]
        if value is None and strip_optional(declared) is not declared:
            continue
        kind = strip_optional(declared)
        if not _is_kind(value, typing.get_origin(kind) or kind):
            raise ValueError(f"{name} must be of type {getattr(kind, '__name__', kind)}, got {value!r}")


def option(default, help: str, **extra) -> dataclasses.Field:
    """A config dataclass field with its --help text (and argparse extras such as ``choices``); a list
    default is copied for every instance."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"help": help, **extra})
    return dataclasses.field(default=default, metadata={"help": help, **extra})


def _nearest_existing(path) -> Path:
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_dir(path, flag: str) -> None:
    """``ValueError`` unless ``path`` is, or could be created as, a writable directory. Checked by creating
    and removing a probe file in the nearest existing folder (os.access says yes to root everywhere, even
    in /proc); nothing is left behind."""
    if str(path) == "":  # Path("") would be the current folder
        raise ValueError(f"{flag} is empty; give a directory")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {str(path)!r} exists and is not a directory")
    _check_folder(path, flag, path)


def _check_folder(path: Path, flag: str, shown: Path) -> None:
    base = _nearest_existing(path)
    if not base.is_dir():
        raise ValueError(f"{flag} {str(shown)!r} is not writable ({str(base)!r} is not a directory)")
    try:
        probe_writable(base)
    except OSError as err:
        raise ValueError(f"{flag} {str(shown)!r} is not writable ({str(base)!r} refused a new file: "
                         f"{err.strerror})") from None


def check_output_file(path, flag: str) -> None:
    """``ValueError`` unless the file ``path`` could be written: its folder takes a probe file (see
    :func:`check_output_dir`) and an existing ``path`` is a file. Leaves nothing behind."""
    if str(path) == "":
        raise ValueError(f"{flag} is empty; give a file path")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {str(path)!r} is a directory, expected a file path")
    if path.parent.exists() and not path.parent.is_dir():
        raise ValueError(f"{flag} {str(path)!r} is not writable ({str(path.parent)!r} is not a directory)")
    _check_folder(path.parent, flag, path)
    if path.exists():
        try:
            with open(path, "ab"):  # appending nothing: the file's bytes stay as they are
                pass
        except OSError as err:
            raise ValueError(f"{flag} {str(path)!r} is not writable: {err.strerror}") from None
