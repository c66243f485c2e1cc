"""Command-line parsers built from config dataclasses: the one way every script parses its flags.

A script describes its flags once, as the fields of a dataclass, with the help text (and, where the values
are a fixed set, the choices) in the field's metadata::

    @dataclass
    class TrainConfig:
        dim: int = field(default=3, metadata={"help": "space dimension", "choices": (2, 3)})
        lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
        resume: bool = field(default=False, metadata={"help": "continue the run in --out"})
        methods: list[str] = field(default_factory=lambda: ["FDM"], metadata={"help": "rows, comma separated"})

        def validate(self):                      # raises ValueError naming the bad value
            ...

    def main(argv=None) -> int:
        try:
            cfg = parse_config(TrainConfig, argv, prog="train.py", description="Train the CNN.")
        except ValueError as err:                # unknown flag, unparsable value, failed validate()
            return usage_error("train.py", err)  # prints "train.py: error: <msg>" on stderr, returns 2
        ...

Interface:

- ``add_dataclass_arguments(parser, cls, *, exclude=(), suppress_defaults=False)``: one flag per field,
  ``--field-name`` (underscores become dashes, case kept: ``--N``, ``--T``). Types from the annotations:
  ``int`` (accepts ``1e6`` when integral), ``float``, ``str``, ``bool`` (``--x`` / ``--no-x``) and
  ``list[int | float | str]`` (comma separated). ``metadata["help"]`` is required; ``metadata["choices"]``
  is enforced (per element for lists). ``suppress_defaults=True`` leaves unset flags out of the namespace
  (to tell which flags a user gave, e.g. when resuming a saved run); the help still shows the defaults.
- ``config_from_args(cls, ns, base=None)``: an instance of ``cls`` from a namespace; fields absent from
  ``ns`` keep the value of ``base`` (default: ``cls()``).
- ``parse_config(cls, argv, *, prog, description, exclude=())``: the two above plus ``cfg.validate()``
  when the class has one. Every usage problem is a ``UsageError`` (a ``ValueError``): nothing exits.
- ``make_parser(prog, description)``: an ``ArgumentParser`` that raises ``UsageError`` instead of
  exiting and shows defaults in ``--help`` (what ``parse_config`` uses; for scripts that add flags by hand
  beside the dataclass ones).
- ``check_output_file(path, flag)`` / ``check_output_dir(path, flag)`` (from :mod:`nsipf_torch.config`): a ``ValueError`` naming the flag
  when the path could not be written (checked before long work by a probe file, created and removed).
- ``prog_name(script)``: the name to report errors under (``nsipf-simulate`` when run as that console script).
- ``usage_error(prog, err)``: print ``<prog>: error: <msg>`` on stderr and return 2.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import typing
import warnings
from pathlib import Path
from typing import Any, Iterable

from nsipf_torch.config import check_field_types, check_output_dir, check_output_file, option, strip_optional

__all__ = ["UsageError", "add_dataclass_arguments", "check_field_types", "check_output_dir", "check_output_file",
           "config_from_args", "make_parser", "option", "parse_config", "prog_name", "usage_error"]


class UsageError(ValueError):
    """A command line argparse rejects (unknown flag, unparsable value)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print the usage and exit; scripts return 2 themselves
        raise UsageError(message)


class _HelpFormat(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in every flag's help; the epilog's own line breaks kept."""


def make_parser(prog: str, description: str = "", epilog: str | None = None) -> argparse.ArgumentParser:
    """An ArgumentParser that raises ``UsageError`` on bad input and shows every default in ``--help``;
    ``epilog`` (e.g. the rest of a script's docstring) is printed after the flags as written."""
    return _Parser(prog=prog, description=description, epilog=epilog, formatter_class=_HelpFormat)


def flag_name(name: str) -> str:
    """``--field-name`` for the dataclass field ``field_name``."""
    return "--" + name.replace("_", "-")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        value = float(text)  # 1e6 is a fine particle count; 1.5 is not
        if not value.is_integer():
            raise ValueError(f"not an integer: {text!r}") from None
        return int(value)


_SCALARS = {int: _int, float: float, str: str}


def _scalar_parser(kind, choices, flag: str):
    convert = _SCALARS[kind]

    def parse(text: str):
        try:
            value = convert(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        if choices is not None and value not in choices:
            raise argparse.ArgumentTypeError(
                f"{value!r} is not one of {', '.join(map(str, choices))}")
        return value
    return parse


def _list_parser(kind, choices, flag: str):
    one = _scalar_parser(kind, choices, flag)

    def parse(text: str):
        return [one(part) for part in text.split(",") if part.strip()]
    return parse


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"field {f.name!r} needs a default to become a flag")


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, *, exclude: Iterable[str] = (),
                            suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """Add one flag per field of the dataclass ``cls`` (module docstring); returns ``parser``."""
    hints = typing.get_type_hints(cls)
    skip = set(exclude)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        if "help" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} has no metadata['help']")
        flag, kind, default = flag_name(f.name), strip_optional(hints[f.name]), _default(f)
        choices = f.metadata.get("choices")
        help_text = f.metadata["help"]
        kw: dict[str, Any] = {"dest": f.name, "help": help_text}
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) in (list, tuple):
            (item,) = set(typing.get_args(kind)) - {Ellipsis}
            kw.update(type=_list_parser(item, choices, flag), metavar=f.metadata.get("metavar", "A,B,..."))
            if default is not None:
                default = ",".join(map(str, default))  # argparse runs string defaults through ``type``
        elif kind in _SCALARS:
            kw["type"] = _scalar_parser(kind, choices, flag)
            if choices is not None:
                kw["metavar"] = "{" + ",".join(map(str, choices)) + "}"
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported flag type {kind!r}")
        if suppress_defaults:
            kw["default"] = argparse.SUPPRESS
            kw["help"] = f"{help_text} (default: {default})"
        else:
            kw["default"] = default
        parser.add_argument(flag, **kw)
    return parser


def config_from_args(cls: type, ns: argparse.Namespace, base: Any = None) -> Any:
    """An instance of ``cls`` with the fields present in ``ns``; the others from ``base`` (or defaults)."""
    given = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if f.init and hasattr(ns, f.name)}
    if base is None:
        return cls(**given)
    return dataclasses.replace(base, **given)


def parse_config(cls: type, argv: list[str] | None, *, prog: str, description: str = "",
                 exclude: Iterable[str] = ()) -> Any:
    """Parse ``argv`` (default ``sys.argv[1:]``) into a validated ``cls``; ``UsageError``/``ValueError``
    on bad input."""
    parser = add_dataclass_arguments(make_parser(prog, description), cls, exclude=exclude)
    try:
        ns = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except argparse.ArgumentTypeError as err:  # raised directly by some argparse versions
        raise UsageError(str(err)) from None
    cfg = config_from_args(cls, ns)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


@contextlib.contextmanager
def one_line_warnings(prog: str):
    """Within the block, a ``warnings.warn`` prints as one line ``PROG: warning: MESSAGE`` on stderr (the
    API warns; a command reports), and torch's note that no CUDA runtime exists when it compiles for the
    CPU is silenced, as is inductor's that it leaves complex products (the DCT of the Keller-Segel c step)
    to eager code "and performance may be worse": the compiled FD step with tangents is still ~7x faster
    than the eager one there (docs/INFERENCE.md, "The Keller-Segel family")."""
    import logging

    shown, logger = warnings.showwarning, logging.getLogger("torch.utils.cpp_extension")
    level = logger.level

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Torchinductor does not support code generation for complex")
            yield
    finally:
        warnings.showwarning = shown
        logger.setLevel(level)


def prog_name(script: str) -> str:
    """The name a command reports itself under: the console script's (``nsipf-simulate``) when it was
    started as one, else ``script`` (``simulate.py``, also for in-process calls of ``main(argv)``)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name if name.startswith("nsipf-") else script


def usage_error(prog: str, err: BaseException) -> int:
    """Report a usage error the way argparse does (one line on stderr) and give the exit status 2."""
    print(f"{prog}: error: {err}", file=sys.stderr)
    return 2
