"""The scripts under studies/ parse their flags with nsipf_torch.commands.cli: --help lists every flag, bad input is
exit 2 with one line on stderr and nothing written; make_reference_data runs for real at a seconds-long size."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from nsipf_torch.commands.cli import flag_name
from nsipf_torch.metrics import rel_l2
from nsipf_torch.problems.grid import Grid
from studies import (accuracy_table, convergence, heldout_table, interp_exactness, make_reference_data,
                     paper_figures, profile_step, render_docs, scipy_baseline, time_fd, time_radial, time_sipf,
                     time_tangent, work_precision)

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
    (interp_exactness, ["--what", "foods", "--problem", "planar"], "--problem"),  # foods measures mixtures
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
    """2D blob at N = 32 and 64, each against the next coarser N: the saved fields (16^2 block averages)
    conserve the mass; the coarse-fine differences the convergence figures report shrink as N doubles (the
    FD scheme converges: measured 4.4x and 2.8x for rho at T/2 and T, 6.2x and 3.5x for c; asserted >= 2x),
    and the reported 64-vs-32 figure is the one the two saved files give (float32 storage: 1e-4)."""
    infos, saved = [], []
    for N in (32, 64):
        ref, summary = tmp_path / f"ref{N}", tmp_path / f"summary{N}.json"
        argv = ["--dim", "2", "--N", str(N), "--coarse-N", str(N // 2), "--problems", "blob", "--dt", "2e-3",
                "--out", str(ref), "--summary", str(summary)]
        assert make_reference_data.main(argv) == 0
        data = np.load(ref / "fd_blob_2d.npz")
        assert int(data["N"]) == N and float(data["dt"]) == 2e-3 and str(data["limiter"]) == "minmod"
        grid = Grid(16, dim=2, dtype=torch.float64)
        for key in ("rho_half", "rho_T"):
            assert data[key].shape == (16, 16) and data[key].min() >= 0
            # the FD scheme conserves mass to round-off: float32 run and file, measured 1.5e-7 off M0 = 1
            assert abs(float(grid.integrate(torch.from_numpy(data[key]).double()[None])[0]) - 1.0) < 2e-6
        info = json.loads(summary.read_text())["blob_2d"]
        assert info["fine"]["mass_drift"] < 2e-6  # the largest drift over the run, measured 1.8e-7
        infos.append(info["rel_l2_coarse_vs_fine"])
        saved.append(torch.from_numpy(data["rho_T"]).double())
    for when in ("half", "T"):
        for field in ("rho", "c"):
            assert infos[0][when][field] > 2 * infos[1][when][field] > 0, (when, field, infos)
    from_files = float(rel_l2(saved[0][None], saved[1][None], 16, 2)[0])
    assert from_files == pytest.approx(infos[1]["T"]["rho"], rel=1e-4)
    assert "blob 2D: N=64" in capsys.readouterr().out


def test_accuracy_table_reproduces_the_committed_fd_row_and_saves_its_config(tmp_path):
    """FD is deterministic: a rerun of one row gives docs/accuracy_table.json's figures (to the last bit here
    with one and with two threads; 1e-6 relative leaves room for another float32 summation order), and the
    run's configuration and commit are saved beside its output."""
    out = tmp_path / "acc.md"
    argv = ["--problems", "blob", "--N", "32", "--P", "1000", "--methods", "FDM", "--seeds", "0", "--out", str(out)]
    assert accuracy_table.main(argv) == 0
    (row,) = json.loads(out.with_suffix(".json").read_text())
    committed = next(r for r in render_docs.accuracy_json() if (r["problem"], r["N"]) == ("blob", 32))
    for key in ("rho_half", "rho_T", "c_half", "c_T"):
        assert row["FDM"][key] == pytest.approx(committed["FDM"][key], rel=1e-6), key
    saved = json.loads(accuracy_table.config_path(out).read_text())
    assert saved["config"]["problems"] == ["blob"] and saved["config"]["N"] == [32]
    assert saved["command"] == "python -m studies.accuracy_table " + " ".join(argv)
    assert saved["commit"] and saved["torch"] == torch.__version__
