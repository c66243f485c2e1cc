"""Smoke run of benchmark.py on tiny sizes: the tables are filled and the outputs carry their provenance;
the lab's suites (studies.scipy_baseline, studies.work_precision) at test sizes."""
import json

from nsipf_torch.benchmarks import fast_path, tables, timing
from nsipf_torch.commands import benchmark
from nsipf_torch.methods import METHODS


def test_tiny_suite_outputs(tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["--suite", "tiny", "--T", "0.004", "--dt", "0.002", "--P", "500", "--repeats", "2", "--steps2", "2",
            "--dtype", "float64", "--no-progress", "--out", str(out)]
    assert benchmark.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    for key in ("device", "torch", "commit", "config", "table1", "table2", "targets", "train"):
        assert key in res
    # the target rows of the GPU script at test sizes, and nsipf-train (tiny config, data included) exited 0
    assert [r["method"] for r in res["targets"]] == [METHODS[t[1]].label for t in benchmark.TINY_TARGETS]
    assert all("error" not in r and r["min_s"] <= r["median_s"] <= r["max_s"] for r in res["targets"])
    assert res["train"]["exit"] == 0 and (out / "train" / "model.pt").exists()
    methods = {r["method"] for r in res["table1"]}
    assert methods == {"FDM", "SIPF-spline", "NSIPF", "SIPF-trilinear"}
    for row in res["table1"]:
        # median within the min-max of the repeats; every run took all of its steps
        assert row["min_s"] <= row["median_s"] <= row["max_s"] and row["steps"] == 2
        assert (row["particle_steps_per_s"] is None) == (row["method"] == "FDM")
    fdm_16 = [r for r in res["table1"] if r["method"] == "FDM" and r["N"] == 16][0]
    # the paper's figures stand beside ours only at its (assumed) resolutions 32^3, 64^3 and 128^3
    assert fdm_16["substeps"] >= 2 and fdm_16["paper_s"] is None
    # every mapped paper resolution indexes a figure of every paper row (no row shorter than the map)
    assert all(len(row) > max(tables.PAPER_RESOLUTIONS.values()) for row in tables.PAPER_TABLE1.values())
    assert {r["case"] for r in res["table2"]} == {"spread", "hot"} and all(r["steps"] == 2 for r in res["table2"])
    md = (out / "results.md").read_text()
    assert "Table 1" in md and "Table 2" in md and res["commit"] in md
    # the fast-path tables (the gpu suite's; tiny sizes here): every row measured, none failed
    fp = res["fast_path"]
    assert [r["precision"] for r in fp["precision_speed"]] == ["fp32", "bf16"]  # tf32 needs CUDA
    assert all("error" not in r and r["s_per_step"] > 0 for r in fp["precision_speed"])
    acc = {r["precision"]: r for r in fp["precision_accuracy"]}
    assert set(acc) == {"fp32", "bf16"} and all(0 < r["rho_err_T"] < 2 for r in acc.values())
    # bf16 rounds the CNN's residual: its fine field moves by a few bf16 round-offs (2^-8), not more
    assert 0 < acc["bf16"]["fine_field_rel_diff"] < 8 * 2.0**-8
    assert {r["deposit"] for r in fp["deposit"]} == set(fast_path.deposit_candidates())
    assert {r["case"] for r in fp["deposit"]} == {"spread", "hot"} and all("error" not in r for r in fp["deposit"])
    assert "CNN precision" in md and "deposit kernels" in md
    # the DCT field solve (default table): both solves timed; the elliptic one inverts the FV operator to
    # round-off times its conditioning (eps N^2 ~ 6e-14 at 16^3 in float64; measured 3e-15)
    assert [(r["solve"], r["N"]) for r in res["spectral"]] == [("elliptic", 16), ("parabolic", 16)]
    assert all("error" not in r and r["min_s"] <= r["s_per_call"] <= r["max_s"] for r in res["spectral"])
    assert res["spectral"][0]["residual"] < 1e-12 and "DCT field solve" in md


def test_tables_subset(tmp_path):
    out = tmp_path / "bench"
    argv = ["--suite", "tiny", "--tables", "table1", "--Ns", "8", "--methods", "SIPF-trilinear", "--T", "0.004",
            "--dt", "0.002", "--P", "200", "--repeats", "1", "--no-progress", "--out", str(out)]
    assert benchmark.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert len(res["table1"]) == 1 and res["table2"] == [] and "fast_path" not in res
    assert res["table1"][0]["method"] == "SIPF-trilinear"  # a table label names its method on the command line
    md = (out / "results.md").read_text()
    assert "Table 1" in md and "Table 2" not in md


def test_histogram_forms_agree_and_are_timed(tmp_path):
    # Every histogram form is checked against torch.bincount before it is timed (an error row otherwise).
    out = tmp_path / "hist"
    argv = ["--suite", "tiny", "--tables", "histogram", "--Ps", "2000", "--N2", "8", "--repeats", "1",
            "--no-progress", "--out", str(out)]
    assert benchmark.main(argv) == 0
    rows = json.loads((out / "results.json").read_text())["histogram"]
    assert len(rows) == 2 * len(tables.histogram_candidates())
    assert all("error" not in r and r["s_per_call"] > 0 for r in rows)


def test_spectral_target_is_judged_at_its_size():
    # the issue-21 row: the elliptic solve at 256^3 against 5 ms; other sizes carry no target
    from nsipf_torch.benchmarks.render import render_spectral
    row = {"solve": "elliptic", "N": 256, "target_ms": 5.0, "s_per_call": 6e-3, "min_s": 5e-3, "max_s": 7e-3,
           "residual": 1e-6, "peak_memory_gb": 0.5}
    assert "**missed**" in "\n".join(render_spectral([row]))
    assert ": met" in "\n".join(render_spectral([{**row, "s_per_call": 4e-3}]))


def test_bad_sizes_exit_2_with_one_line(tmp_path, capsys):
    assert benchmark.main(["--Ns", "0", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--Ns" in err and not (tmp_path / "b").exists()


def test_commit_is_read_only_inside_a_git_checkout(tmp_path):
    assert timing.git_checkout(tmp_path / "x.py") is None
    (tmp_path / ".git").mkdir()
    assert timing.git_checkout(tmp_path / "pkg" / "x.py") == tmp_path.resolve()


def test_work_precision_suite_tiny(tmp_path):
    # The suite end to end at the test sizes (two_blobs and planar, T = 0.01): every method's points, the
    # figure and the tables are written. A property of the numbers: FD on two_blobs converges at second
    # order (MUSCL + SSP-RK2 on a smooth solution), so doubling N from 16 to 32 must cut its error against
    # the 64^3 reference by more than 2 (measured 0.169 -> 0.052, 3.2x; order 1 would give 2).
    from studies import work_precision
    out = tmp_path / "wp"
    argv = ["--sizes", "tiny", "--T", "0.01", "--device", "cpu", "--out", str(out)]
    assert work_precision.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert (out / "work_precision.png").stat().st_size > 0 and "cheapest run" in (out / "results.md").read_text()
    points = res["points"]
    assert {p["method"] for p in points} == {m.label for m in METHODS.values()}
    assert {p["problem"] for p in points} == {"two_blobs", "planar"}
    fd = {p["N"]: p["error"] for p in points if p["method"] == "FDM" and p["problem"] == "two_blobs"}
    print(f"\nFD errors on two_blobs at T = 0.01: {fd}")
    assert fd[16] / fd[32] > 2.0
    for problem, ref in res["references"].items():  # a reference better than every point it ranks
        assert 0 <= ref["error"] < min(p["error"] for p in points if p["problem"] == problem), problem


def test_scipy_baseline_study_tiny(tmp_path):
    # The paper's classical SIPF in scipy against our SIPF-spline step, at a seconds-long size: both timed,
    # the table written (no figure is asserted about speed: timings are not tested).
    from studies import scipy_baseline
    out = tmp_path / "baseline"
    argv = ["--N", "8", "--P", "500", "--scipy-steps", "1", "--steps", "2", "--repeats", "1", "--no-compile",
            "--device", "cpu", "--out", str(out)]
    assert scipy_baseline.main(argv) == 0
    row = json.loads((out / "results.json").read_text())["baseline"]
    assert row["scipy_s_per_step"] > 0 and row["ours_s_per_step"] > 0 and "compiled_s_per_step" not in row
    assert "speedup" in (out / "results.md").read_text()


def test_a_timed_run_takes_every_step_of_simulates_rule(tmp_path):
    # T = 0.005 with dt = 0.002: simulate()'s rule is ceil(T/dt) = 3 steps, the last one shortened to land
    # on T (round(T/dt) would have been 2 and stopped at t = 0.004).
    class Cfg:
        dt, device, dtype = 0.002, "cpu", "float64"
    setup = timing.bench_setup("sipf-trilinear", 8, 100, 0.005, Cfg)
    seconds, substeps = timing.run_timed(setup, __import__("nsipf_torch.api").api.make_runner(setup), "cpu")
    assert setup.n_steps == 3 and setup.time_at(3) == 0.005 and substeps == 3 and seconds > 0
