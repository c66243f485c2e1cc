"""The scripts under studies/ parse their flags with nsipf_torch.commands.cli: --help lists every flag, bad input is
exit 2 with one line on stderr and nothing written; make_reference_data runs for real at a seconds-long size."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from nsipf_torch.commands.cli import flag_name
from nsipf_torch.problems.grid import Grid
from studies import (accuracy_table, convergence, heldout_table, interp_exactness, make_reference_data,
                     paper_figures, profile_step, scipy_baseline, time_fd, time_radial, time_sipf, time_tangent,
                     work_precision)

CONFIGS = {accuracy_table: accuracy_table.AccuracyConfig, paper_figures: paper_figures.FiguresConfig,
           make_reference_data: make_reference_data.ReferenceConfig, time_fd: time_fd.TimeFDConfig,
           time_radial: time_radial.TimeRadialConfig, time_sipf: time_sipf.TimeSIPFConfig,
           heldout_table: heldout_table.HeldoutConfig, interp_exactness: interp_exactness.ExactnessConfig,
           time_tangent: time_tangent.TangentConfig, scipy_baseline: scipy_baseline.BaselineConfig,
           convergence: convergence.ConvergenceConfig, work_precision: work_precision.WorkPrecisionConfig,
           profile_step: profile_step.ProfileConfig}


def _name(module):
    return module.__name__.split(".")[-1]


@pytest.mark.parametrize("module", list(CONFIGS), ids=_name)
def test_help_lists_every_flag(module, capsys):
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for f in dataclasses.fields(CONFIGS[module]):
        assert flag_name(f.name) in text, f.name
        assert f.metadata["help"].split()[0] in text, f.name


# (script, argv with every output under the test's folder ({tmp}), the flag the message must name)
BAD = [
    (accuracy_table, ["--problems", "planar", "--out", "{tmp}/t.md"], "--problems"),  # planar has no FD reference
    (accuracy_table, ["--N", "32,x", "--out", "{tmp}/t.md"], "--N"),
    (accuracy_table, ["--out", "{tmp}"], "--out"),  # a directory, not a file
    (paper_figures, ["--snapshots", "0", "--runs", "{tmp}/runs", "--figures", "{tmp}/figs"], "--snapshots"),
    (paper_figures, ["--problems", "blob,nowhere", "--runs", "{tmp}/runs", "--figures", "{tmp}/figs"], "--problems"),
    (make_reference_data, ["--N", "100", "--out", "{tmp}/ref", "--summary", "{tmp}/s.json"], "--N"),  # not 16k
    (make_reference_data, ["--dim", "3,1", "--out", "{tmp}/ref", "--summary", "{tmp}/s.json"], "--dim"),
    (time_fd, ["--dtype", "float32,float16"], "--dtype"),
    (time_fd, ["--batch-steps", "0"], "--batch-steps"),
    (time_radial, ["--Nr", "3"], "--Nr"),
    (time_radial, ["--dt", "-1e-3"], "--dt"),
    (time_sipf, ["--ic", "nowhere"], "--ic"),
    (time_sipf, ["--interp", "trilinear,cubic"], "--interp"),
    (interp_exactness, ["--what", "cubic"], "--what"),
    (interp_exactness, ["--dim", "4"], "--dim"),
    (interp_exactness, ["--N", "8"], "--N"),
    (interp_exactness, ["--steps", "0"], "--steps"),
    (interp_exactness, ["--what", "planar", "--problem", "blob"], "--problem"),
    (interp_exactness, ["--problem", "rings"], "--problem"),
    (interp_exactness, ["polynomials"], "polynomials"),  # the measurement is a flag now, not a positional
    (accuracy_table, ["--methods", "FDM,magic", "--out", "{tmp}/t.md"], "--methods"),
    (scipy_baseline, ["--N", "3", "--out", "{tmp}/b"], "--N"),
    (scipy_baseline, ["--P", "1e99", "--out", "{tmp}/b"], "GiB"),  # refused by the memory estimate
    (work_precision, ["--methods", "fdm,magic", "--out", "{tmp}/wp"], "--methods"),
    (work_precision, ["--dt", "1", "--T", "0.1", "--out", "{tmp}/wp"], "--dt"),
    (convergence, ["--device", "tpu", "--out", "{tmp}/c"], "tpu"),
    (profile_step, ["--method", "magic"], "--method"),
    (profile_step, ["--N", "0"], "--N"),
    (time_tangent, ["--N", "2"], "--N"),
]


@pytest.mark.parametrize("module, argv, flag", BAD, ids=lambda v: _name(v) if hasattr(v, "main") else None)
def test_bad_input_is_exit_2_one_line_nothing_written(module, argv, flag, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # default outputs, if any were written, would land here
    assert module.main([a.format(tmp=tmp_path) for a in argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"{_name(module)}.py: error: ") and flag in err, err
    assert list(tmp_path.iterdir()) == []


def test_make_reference_data_tiny_run(tmp_path, capsys):
    """2D blob at N = 16 against itself: the saved fields conserve the mass and the two runs agree bitwise."""
    ref, summary = tmp_path / "ref", tmp_path / "summary.json"
    argv = ["--dim", "2", "--N", "16", "--coarse-N", "16", "--problems", "blob", "--dt", "2e-3",
            "--out", str(ref), "--summary", str(summary)]
    assert make_reference_data.main(argv) == 0
    data = np.load(ref / "fd_blob_2d.npz")
    assert int(data["N"]) == 16 and float(data["dt"]) == 2e-3 and str(data["limiter"]) == "minmod"
    grid = Grid(16, dim=2, dtype=torch.float64)
    for key in ("rho_half", "rho_T"):
        assert data[key].shape == (16, 16) and data[key].min() >= 0
        # the FD scheme conserves mass to round-off: float32 run and file, measured 1.4e-7 off M0 = 1
        assert abs(float(grid.integrate(torch.from_numpy(data[key]).double()[None])[0]) - 1.0) < 2e-6
    info = json.loads(summary.read_text())["blob_2d"]
    assert info["fine"]["mass_drift"] < 2e-6  # the largest drift over the run, measured 2.4e-7
    # the same deterministic solver at the same N twice: identical, so the convergence figures are exactly 0
    assert all(v == 0.0 for key in ("half", "T") for v in info["rel_l2_coarse_vs_fine"][key].values())
    assert "blob 2D: N=16" in capsys.readouterr().out
