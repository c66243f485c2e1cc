"""The docs cannot drift: every measured table equals what studies.render_docs renders from its committed
results file, each results file names the command and the commit that produced it, every citation of
docs/MODEL.md resolves to one of its sections, and the README's headline figures equal the results files.
Pure text: no computation is run."""
import re
from pathlib import Path

import pytest

from studies import render_docs

ROOT = Path(__file__).resolve().parents[1]


def test_every_table_equals_its_rendering():
    assert render_docs.check() == []


def test_a_changed_cell_is_caught(monkeypatch):
    # negative control: a doc whose table differs from its JSON by one digit is reported
    original = (ROOT / "docs/VALIDATION.md").read_text()
    changed = original.replace("| 2 | 2.66e-2 |", "| 2 | 2.67e-2 |", 1)
    assert changed != original
    assert render_docs.render_doc(changed)[0] == original


def test_accuracy_json_of_either_vocabulary_renders_alike(monkeypatch):
    # studies.accuracy_table keys each method by the method table's label ("FDM"); files written before
    # nsipf_torch/methods.py keyed FD's entries "FD" (render_docs.LEGACY): both give the same table
    committed = render_docs.load(render_docs.ACCURACY)
    assert all("FDM" in row for row in committed), "the committed file is not a rerun's"
    older = [{("FD" if k == "FDM" else k): v for k, v in row.items()} for row in committed]
    expected = render_docs.accuracy_rows()
    assert "| problem | N | P | FDM | SIPF-trilinear | SIPF-spline | NSIPF |" in expected
    monkeypatch.setattr(render_docs, "load", lambda path: older if path == render_docs.ACCURACY else committed)
    assert render_docs.accuracy_rows() == expected
    assert render_docs.accuracy_lines(committed, render_docs.METHODS) == expected  # studies.accuracy_table's call


@pytest.mark.parametrize("name", sorted(render_docs.TABLES))
def test_each_table_names_its_command_and_commit(name):
    source, command, commit = render_docs.provenance(name)
    assert (ROOT / source).is_file()
    assert command, f"{name}: {source} names no command"
    assert commit is None or re.fullmatch(r"[0-9a-f]{7,40}(\+dirty)?", commit), commit
    if "tables" in render_docs.load(source) or source == render_docs.ACCURACY:
        assert commit, f"{name}: no commit"


def _sources():
    paths = [*ROOT.glob("nsipf_torch/**/*.py"), *ROOT.glob("studies/*.py"), *ROOT.glob("tests/*.py"),
             *ROOT.glob("*.py"), *ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("examples/*.py")]
    return [p for p in paths if p.name not in ("MODEL.md", "test_docs.py")]


def test_model_citations_resolve():
    sections = set(re.findall(r"^## §(\d+)\.", (ROOT / "docs/MODEL.md").read_text(), flags=re.M))
    cited = {}
    for path in _sources():
        text = path.read_text()
        assert "shared/paper" not in text, f"{path.name} points outside the repository"
        for number in re.findall(r"MODEL\.md`? §(\d+)", text):
            cited.setdefault(number, path.name)
        # every citation is of docs/MODEL.md, the file in the repository
        for match in re.finditer(r"([\w./]*)MODEL\.md`? §", text):
            assert match.group(1) == "docs/", f"{path.name}: {match.group(0)}"
    assert cited, "no citation found: the pattern is wrong"
    missing = {n: where for n, where in cited.items() if n not in sections}
    assert not missing, f"cited sections absent from docs/MODEL.md: {missing}"


def test_readme_headline_figures_equal_the_results_files():
    readme = (ROOT / "README.md").read_text()
    rows = {(r["problem"], r["N"], r["P"]): r for r in render_docs.accuracy_json()}
    for P, methods in ((200_000, ("NSIPF", "SIPF-spline", "FDM")), (20_000, ("NSIPF", "SIPF-spline"))):
        two_blobs = rows[("two_blobs", 64, P)]
        for method in methods:
            figure = f"{two_blobs[method]['rho_half']:.3f} / {two_blobs[method]['rho_T']:.3f}"
            assert figure in readme, f"README lacks {method}'s {figure} at P = {P} (docs/accuracy_table.json)"
    points = {(p["method"], p["N"], p["P"]): p for p in render_docs.load(render_docs.WORK_PRECISION)["points"]
              if p["problem"] == "two_blobs"}
    fd, nsipf = points[("FDM", 64, 0)], points[("NSIPF", 64, 1_000_000)]
    assert f"FDM 64³: {fd['error']:.3f} in {fd['wall_s']:.0f} s" in readme
    assert f"({nsipf['error']:.3f} in {nsipf['wall_s']:.0f} s)" in readme
    compiled = {r["mode"]: r for r in render_docs.load(render_docs.GPU)["fast_path"]["compile"]
                if r["method"] == "SIPF-trilinear"}
    speedup = compiled["eager"]["s_per_step"] / compiled["default"]["s_per_step"]
    assert f"SIPF-trilinear {speedup:.1f}× faster" in readme


def test_validation_hard_bar_ratios_equal_the_results_file():
    validation = (ROOT / "docs/VALIDATION.md").read_text()
    rows = {(r["problem"], r["N"], r["P"]): r for r in render_docs.accuracy_json()}
    row = rows[("two_blobs", 64, 200_000)]
    half, end = (row["NSIPF"][k] / row["SIPF-spline"][k] for k in ("rho_half", "rho_T"))
    assert f"{half:.2f}× at t = 0.1 and {end:.2f}× at t = 0.2" in validation


def test_heldout_bar_figures_equal_the_results_file():
    """The ratios the issue-19 bar paragraphs of docs/VALIDATION.md and README quote, from
    docs/results/heldout_affine.json (NSIPF with the CNN forced over SIPF-spline, by table and case)."""
    tables = render_docs.load(render_docs.HELDOUT)["tables"]

    def ratio(key: str, case: str) -> str:
        row = next(r for r in tables[key]["study"]["rows"] if r["case"] == case)
        return f"{row['NSIPF']['rho_T'] / row['SIPF-spline']['rho_T']:.2f}×"

    validation = " ".join((ROOT / "docs/VALIDATION.md").read_text().split())  # line breaks as spaces
    readme = " ".join((ROOT / "README.md").read_text().split())
    quoted = [
        f"at 128² ({ratio('2d128', 'planar@chi=3')}, {ratio('2d128', 'planar_c30')})",
        f"`two_blobs@chi=3` at 64² ({ratio('2d64', 'two_blobs@chi=3')})",
        f"`mixture:101` at 128² ({ratio('2d128', 'mixture:101')})",
        f"3D front at 64³ ({ratio('3d64', 'planar@chi=3')}",
        f"fronts at 64² ({ratio('2d64', 'planar@chi=3')})",
        f"`mixture:102` at 128² ({ratio('2d128', 'mixture:102')})",
        f"`two_blobs` at 128² ({ratio('2d128', 'two_blobs@chi=3')}, {ratio('2d128', 'two_blobs@gamma=0.003')})",
        f"`two_blobs@gamma=0.003` at 64² ({ratio('2d64', 'two_blobs@gamma=0.003')})",
        f"**`mixture:101` {ratio('3d32', 'mixture:101')}",
        f"(`mixture:101` {ratio('3d32-central', 'mixture:101')}, the fronts {ratio('3d32-central', 'planar@chi=3')})",
        f"the 3D 64³ front from {ratio('3d64', 'planar@chi=3')} into {ratio('3d64-central', 'planar@chi=3')}",
        f"inside the domain ({ratio('2d64-2e5-central', 'planar@chi=3')}, {ratio('2d64-2e5-central', 'planar_c30')})",
        f"shipped drift wins ({ratio('2d64-2e5-slope', 'planar@chi=3')}, {ratio('2d64-2e5-slope', 'planar_c30')})",
        f"`mixture:101` at 64³ went to {ratio('3d64-central', 'mixture:101')}",
        f"**`two_blobs@chi=3` is at {ratio('2d64-2e5', 'two_blobs@chi=3')}**",
        f"**the fronts at {ratio('2d128-2e5', 'planar@chi=3')} and {ratio('2d128-2e5', 'planar_c30')}**",
        f"**`mixture:101` at {ratio('2d128-2e5', 'mixture:101')}**",
    ]
    for phrase in quoted:
        assert phrase in validation, f"docs/VALIDATION.md lacks {phrase!r} (docs/results/heldout_affine.json)"
    for phrase in (f"with 10⁶ particles ({ratio('3d64', 'planar@chi=3')})",
                   f"`mixture:101` at 3D 32³ ({ratio('3d32', 'mixture:101')})",
                   f"`two_blobs@chi=3` at 64² ({ratio('2d64-2e5', 'two_blobs@chi=3')})",
                   f"at 128² ({ratio('2d128-2e5', 'planar@chi=3')}, {ratio('2d128-2e5', 'planar_c30')})",
                   f"`mixture:101` at 128² ({ratio('2d128-2e5', 'mixture:101')})",
                   f"2D fronts at 64² ({ratio('2d64-2e5', 'planar@chi=3')})"):
        assert phrase in readme, f"README lacks {phrase!r} (docs/results/heldout_affine.json)"
