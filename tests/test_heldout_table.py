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


def test_nsipf_runs_forced_and_default_outside_the_domain(tmp_path):
    """N = 16 is below the shipped 2D CNN's trained N (32-128): the forced column runs the CNN, the default
    falls back to SIPF-spline, whose run with the same seeds is the spline column's to the last bit (the
    fallback replaces the method, nothing else); the table names what ran. A --model goes to NSIPF only (the
    spline refuses a checkpoint it would not use)."""
    import json

    from nsipf_torch.io.resources import default_checkpoint
    from studies.heldout_table import table
    out = tmp_path / "out"
    assert main(["--dim", "2", "--N", "16", "--P", "2000", "--seeds", "0,1", "--cases", "planar", "--T", "0.005",
                 "--methods", "SIPF-spline,NSIPF", "--model", str(default_checkpoint(2)), "--out", str(out)]) == 0
    doc = json.loads((out / "heldout_table.json").read_text())
    row = doc["rows"][0]
    assert row["NSIPF"]["applied"] == "NSIPF (CNN)" and row["NSIPF default"]["applied"] == "sipf-spline"
    assert row["NSIPF default"]["per_seed"] == row["SIPF-spline"]["per_seed"]
    assert row["NSIPF"]["per_seed"] != row["SIPF-spline"]["per_seed"]  # the forced CNN is another method
    assert any("N" in w for w in row["NSIPF default"]["validity_warnings"])
    columns, cells = table(doc["rows"], doc["config"]["methods"])
    assert cells[0][columns.index("NSIPF, default (what ran)")].endswith("(sipf-spline, fallback)")
    alone = tmp_path / "alone"  # --nsipf default: the default column alone, the same run
    assert main(["--dim", "2", "--N", "16", "--P", "2000", "--seeds", "0,1", "--cases", "planar", "--T", "0.005",
                 "--methods", "NSIPF", "--nsipf", "default", "--out", str(alone)]) == 0
    doc = json.loads((alone / "heldout_table.json").read_text())
    assert set(doc["rows"][0]) & {"NSIPF", "NSIPF default"} == {"NSIPF default"}
    assert doc["rows"][0]["NSIPF default"]["per_seed"] == row["SIPF-spline"]["per_seed"]
    assert table(doc["rows"], doc["config"]["methods"])[0][-1] == "NSIPF, default (what ran)"
