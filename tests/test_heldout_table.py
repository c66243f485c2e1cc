"""studies/heldout_table.py: case parsing, --help, and bad input (exit 2, one line naming the flag, nothing written)."""
import pytest

from studies.heldout_table import main, parse_case


def test_parse_case():
    case = parse_case("planar:3@chi=3@gamma=0.003")
    assert (case.problem, case.chi, case.gamma) == ("planar:3", 3.0, 0.003)
    assert parse_case("mixture:101").chi == 1.0
    for bad, msg in [("planar@chi", "modifier"), ("planar@beta=1", "modifier"), ("planar@chi=x", "number"),
                     ("planar@gamma=-1", ">= 0"), ("rings", "unknown initial condition")]:
        with pytest.raises(ValueError, match=msg):
            parse_case(bad)


def test_help_keeps_the_case_syntax(capsys):
    # every flag's presence is checked with the other scripts in tests/test_scripts.py; here the epilog
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "PROBLEM[@chi=X][@gamma=Y]" in text


@pytest.mark.parametrize("argv, flag", [(["--cases", "rings"], "--cases"), (["--dim", "4"], "--dim"),
                                        (["--N", "40"], "--N"), (["--methods", "FEM"], "--methods"),
                                        (["--ref-factors", "2"], "--ref-factors"),
                                        (["--cases", "planar@chi=nan"], "--cases"), (["--seeds", "0,x"], "--seeds"),
                                        (["--ref-max", "1024"], "--ref-max")])
def test_bad_input_exits_2_and_writes_nothing(argv, flag, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("heldout_table.py: error: ") and err.count("\n") == 1 and flag in err, err
    assert not out.exists()
