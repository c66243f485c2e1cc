"""scripts/heldout_table.py: case parsing and bad input (exit 2, one line, nothing written)."""
import pytest

from scripts.heldout_table import main, parse_case


def test_parse_case():
    case = parse_case("planar:3@chi=3@gamma=0.003")
    assert (case.problem, case.chi, case.gamma) == ("planar:3", 3.0, 0.003)
    assert parse_case("mixture:101").chi == 1.0
    for bad, msg in [("planar@chi", "modifier"), ("planar@beta=1", "modifier"), ("planar@chi=x", "number"),
                     ("planar@gamma=-1", ">= 0"), ("rings", "unknown initial condition")]:
        with pytest.raises(ValueError, match=msg):
            parse_case(bad)


@pytest.mark.parametrize("argv", [["--cases", "rings"], ["--dim", "4"], ["--N", "40"], ["--methods", "FEM"],
                                  ["--ref-factors", "2"], ["--cases", "planar@chi=nan"]])
def test_bad_input_exits_2_and_writes_nothing(argv, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("heldout_table: ") and err.count("\n") == 1
    assert not out.exists() or not any(out.iterdir())
