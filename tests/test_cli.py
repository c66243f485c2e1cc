"""nsipf_torch.commands.cli: flags from config dataclasses, one parse -> validate -> exit-2 pattern."""
from dataclasses import dataclass, field

import pytest

from nsipf_torch.commands.cli import (UsageError, add_dataclass_arguments, config_from_args, make_parser, parse_config,
                             usage_error)


@dataclass
class Config:
    dim: int = field(default=3, metadata={"help": "space dimension", "choices": (2, 3)})
    lr: float = field(default=1e-3, metadata={"help": "learning rate"})
    name: str = field(default="run", metadata={"help": "a name"})
    P_max: int = field(default=10, metadata={"help": "particles"})
    resume: bool = field(default=False, metadata={"help": "continue"})
    progress: bool = field(default=True, metadata={"help": "bars"})
    methods: list[str] = field(default_factory=lambda: ["a", "b"], metadata={"help": "rows", "choices": ("a", "b", "c")})
    Ns: list[int] = field(default_factory=list, metadata={"help": "sizes"})

    def validate(self):
        if self.lr <= 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")


def parse(argv):
    return parse_config(Config, argv, prog="x.py", description="test")


def test_defaults_and_every_kind_of_flag():
    assert parse([]) == Config()
    cfg = parse(["--dim", "2", "--lr", "0.5", "--name", "z", "--P-max", "1e6", "--resume", "--no-progress",
                 "--methods", "c,a", "--Ns", "32, 64"])
    assert cfg == Config(dim=2, lr=0.5, name="z", P_max=1_000_000, resume=True, progress=False,
                         methods=["c", "a"], Ns=[32, 64])
    assert isinstance(cfg.P_max, int)


@pytest.mark.parametrize("argv,match", [
    (["--dim", "4"], "--dim: 4 is not one of 2, 3"),
    (["--methods", "a,d"], "'d' is not one of a, b, c"),
    (["--P-max", "1.5"], "'1.5' is not a valid int"),
    (["--Ns", "8,x"], "'x' is not a valid int"),
    (["--lr", "-1"], "--lr must be > 0"),          # from validate()
    (["--unknown"], "unrecognized arguments"),
])
def test_bad_input_is_a_usage_error_never_an_exit(argv, match):
    with pytest.raises(ValueError, match=match):
        parse(argv)


def test_usage_error_prints_one_line_and_returns_2(capsys):
    try:
        parse(["--dim", "4"])
    except ValueError as err:
        assert usage_error("x.py", err) == 2
    err = capsys.readouterr().err
    assert err.startswith("x.py: error: argument --dim") and err.count("\n") == 1


def test_help_shows_help_text_choices_and_defaults():
    text = add_dataclass_arguments(make_parser("x.py"), Config).format_help()
    for piece in ("--dim {2,3}", "space dimension (default: 3)", "--no-resume", "--P-max", "(default: a,b)"):
        assert piece in " ".join(text.split()), piece


def test_exclude_and_suppressed_defaults_tell_which_flags_were_given():
    parser = add_dataclass_arguments(make_parser("x.py"), Config, exclude=("name",), suppress_defaults=True)
    with pytest.raises(UsageError):
        parser.parse_args(["--name", "z"])
    ns = parser.parse_args(["--lr", "0.1"])
    assert vars(ns) == {"lr": 0.1}
    base = Config(dim=2, name="saved")
    assert config_from_args(Config, ns, base) == Config(dim=2, name="saved", lr=0.1)
    assert "(default: 3)" in parser.format_help()


def test_a_field_without_help_is_a_programming_error():
    @dataclass
    class NoHelp:
        x: int = 1
    with pytest.raises(TypeError, match="help"):
        add_dataclass_arguments(make_parser("x.py"), NoHelp)
