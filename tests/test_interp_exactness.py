"""scripts/interp_exactness.py: --help lists every flag; bad input is exit 2 with one line naming the flag and
no measurement run (the measurements themselves take minutes: docs/VALIDATION.md)."""
import dataclasses

import pytest

from nsipf_torch.cli import flag_name
from scripts.interp_exactness import ExactnessConfig, main


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for f in dataclasses.fields(ExactnessConfig):
        assert flag_name(f.name) in text, f.name
    assert "{polynomials,planar}" in text and "(default: polynomials)" in text


@pytest.mark.parametrize("argv, flag", [(["--what", "cubic"], "--what"), (["--dim", "4"], "--dim"),
                                        (["--N", "8"], "--N"), (["--steps", "0"], "--steps"),
                                        (["--what", "planar", "--problem", "blob"], "--problem"),
                                        (["--problem", "rings"], "--problem"), (["polynomials"], "polynomials")])
def test_bad_input_exits_2_with_one_line(argv, flag, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("interp_exactness.py: error: ") and err.count("\n") == 1 and flag in err, err
