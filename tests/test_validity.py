"""The declared validity domain of the shipped checkpoints and the run check."""
import pytest
import torch

from nsipf_torch.neural.data import sample_problems
from nsipf_torch.problems.initial import get_ic
from nsipf_torch.io.files import load_torch
from nsipf_torch.io.resources import default_checkpoint
from nsipf_torch.neural.validity import check_run, decide, domain_of


@pytest.fixture(scope="module")
def ckpt3():
    return load_torch(default_checkpoint(3))


def test_domain_of_shipped_checkpoints():
    """The stored ranges are the training recipe's: 10^4-131072 particles (3D; 2D 10^4-262144) on N = 32-128."""
    d3, d2 = domain_of(load_torch(default_checkpoint(3))), domain_of(load_torch(default_checkpoint(2)))
    assert d3["dim"] == 3 and d2["dim"] == 2
    assert d3["particles_per_cell"] == pytest.approx((1e4 / 128**3, 4.0))
    assert d2["particles_per_cell"] == pytest.approx((1e4 / 128**2, 256.0))
    assert d3["N"] == (32, 128) and d3["c0_width_over_h"] == pytest.approx((1.28, 25.6))


def test_c0_width_bounds_are_the_data_recipe():
    """The c0 widths the domain assumes are those data.py draws: 10^4 draws reach within 1e-3 of both ends."""
    p = sample_problems(10_000, torch.Generator().manual_seed(0), canonical=False)
    assert 0.08 <= float(p["sigma_c"].min()) < 0.081 and 0.399 < float(p["sigma_c"].max()) <= 0.4


def test_main_job_and_canonical_runs_are_inside(ckpt3):
    """The main job and blob at 2*10^4 are inside on every axis; the paper's sizes (P = 2*10^5, 10^6) have more
    particles per cell than any training trajectory on their grid (the recipe's P_max = 131072 particles
    gives at most 0.5 per cell at 64^3, 0.0625 at 128^3): the spline runs, with one line."""
    for name, N, P in [("annuli", 32, 20_000), ("blob", 64, 20_000)]:
        ic = get_ic(name)
        assert check_run(ckpt3, N=N, P=P, dim=3, c0_width=ic.c0_width, held_out=ic.held_out) == [], (name, N, P)
    for N, P, seen in [(64, 200_000, "0.0381-0.5"), (128, 1_000_000, "0.00477-0.0625"), (64, 1_000_000, "0.0381-0.5")]:
        verdict = decide(ckpt3, N=N, P=P, dim=3, c0_width=get_ic("two_blobs").c0_width)
        assert verdict.fallback_axes == ("particles_per_cell",) and len(verdict.messages) == 1, (N, P)
        assert f"training range {seen} at N = {N}" in verdict.messages[0] and "cubic spline" in verdict.messages[0]


def test_the_particle_range_is_taken_at_the_run_s_grid():
    """The recipe draws N and P independently (nsipf_torch/neural/data.py), so at N = 128 the 2D CNN saw at
    most 262144 / 128^2 = 16 particles per cell although the range over all N reaches 256 (at N = 32):
    P = 10^6 at 64^2 and 128^2 (244 and 61 per cell) falls back; 10^4 at 32^2 and 64^2 is inside; 3000 at
    32^2 (2.9 per cell, the training's fewest there 9.8) falls back too."""
    ckpt2 = load_torch(default_checkpoint(2))
    assert domain_of(ckpt2)["P"] == (10_000, 262_144)  # derived from the stored config (train.py's P_min)
    for N, seen in [(64, "2.44-64"), (128, "0.61-16")]:
        verdict = decide(ckpt2, N=N, P=10**6, dim=2, c0_width=get_ic("two_blobs").c0_width)
        assert verdict.fallback_axes == ("particles_per_cell",), N
        assert verdict.messages[0].startswith(f"particles per cell P/N^2 = {10**6 / N**2:.3g} is outside the "
                                              f"training range {seen} at N = {N} (P = 1e+06 per member"), N
    assert check_run(ckpt2, N=32, P=10_000, dim=2) == check_run(ckpt2, N=64, P=10_000, dim=2) == []
    assert decide(ckpt2, N=32, P=3_000, dim=2).fallback_axes == ("particles_per_cell",)


def test_far_outside_warns_once_per_axis(ckpt3):
    """--N 8 --P 100000 on annuli: 195 particles per cell (no trajectory had N = 8: the range over all N),
    N below 32, c0's rings 0.4 cells wide."""
    msgs = check_run(ckpt3, N=8, P=100_000, dim=3, c0_width=0.1)
    assert len(msgs) == 3
    assert "195" in msgs[0] and "grid size N = 8" in msgs[1] and "width" in msgs[2]
    # 32^3 with 2*10^5 particles: 6.1 per cell, outside the 3-D training (0.0048-4)
    assert check_run(ckpt3, N=32, P=200_000, dim=3) == [
        "particles per cell P/N^3 = 6.1 is outside the training range 0.305-4 at N = 32 (P = 2e+05 per member; "
        "the training drew 1e+04-1.31e+05)"]
    ic = get_ic("planar")
    assert any("held-out" in m for m in check_run(ckpt3, N=64, P=100_000, dim=3, held_out=ic.held_out,
                                                   ic_name=ic.name))
    assert check_run(ckpt3, N=64, P=200_000, dim=2)[0].startswith("dimension 2")


def test_stored_domain_wins_and_missing_config_is_an_error():
    stored = {"domain": {"dim": 3, "particles_per_cell": (1.0, 10.0), "N": (16, 256), "c0_width_over_h": (1, 50)}}
    assert check_run(stored, N=64, P=10**6, dim=3) == []
    with pytest.raises(ValueError, match="neither"):
        domain_of({"model": {}})
    with pytest.raises(ValueError, match="N >= 1"):
        check_run(stored, N=0, P=1, dim=3)


def test_decide_falls_back_on_numeric_axes_only(ckpt3):
    """Numeric axes outside: one line naming each, the spline runs; --no-fallback keeps the CNN with a line per
    axis; --strict refuses and wins over --no-fallback; the geometry axis alone only warns."""
    run = dict(N=8, P=100_000, dim=3, c0_width=0.1)
    verdict = decide(ckpt3, **run)
    assert verdict.fallback_axes == ("particles_per_cell", "N", "c0_width_over_h") and len(verdict.messages) == 1
    assert all(word in verdict.messages[0] for word in ("particles per cell", "grid size N", "width", "cubic spline"))
    kept = decide(ckpt3, fallback=False, **run)
    assert kept.fallback_axes == () and list(kept.messages) == check_run(ckpt3, **run)
    for fallback in (True, False):
        with pytest.raises(ValueError, match="--strict refuses"):
            decide(ckpt3, strict=True, fallback=fallback, **run)
    planar = get_ic("planar")
    geometry = decide(ckpt3, N=64, P=100_000, dim=3, held_out=planar.held_out, ic_name=planar.name)
    assert geometry.fallback_axes == () and "held-out" in geometry.messages[0]
    assert decide(ckpt3, N=32, P=20_000, dim=3) == decide(ckpt3, strict=True, N=32, P=20_000, dim=3)  # inside
    assert decide(ckpt3, N=32, P=20_000, dim=3).messages == ()


def test_another_c_equation_is_refused_not_replaced(ckpt3):
    """A c-equation the CNN never saw is refused even where the numeric axes would send the run to the
    spline; a diffusion D > 0 of its own equation only warns, like the geometry axis."""
    from nsipf_torch.api import SimConfig, check_config
    with pytest.raises(ValueError, match="consumption"):
        check_config(SimConfig(method="nsipf", c_equation="parabolic", N=8, P=100_000, device="cpu"))
    verdict = decide(ckpt3, N=32, P=20_000, dim=3, Dc=0.1)
    assert verdict.fallback_axes == () and "--Dc 0.1" in verdict.messages[0]


def test_api_runs_the_spline_outside_and_records_it():
    """simulate(method="nsipf") at N = 16 (below the CNN's 32-128): SIPF with the cubic spline runs, the
    Result's config says so and carries the one warning line; fallback=False keeps the CNN."""
    import warnings

    import nsipf_torch as nt
    from nsipf_torch.api import SimConfig, check_config
    small = dict(N=16, P=2_000, T=0.002, dt=0.002, snapshots=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = nt.simulate("blob", method="nsipf", device="cpu", **small)
    ran = result.config["config"]
    assert (ran["method"], ran["interp"]) == ("sipf", "spline")
    lines = result.config["validity_warnings"]
    assert len(lines) == 1 and "grid size N = 16" in lines[0] and "cubic spline" in lines[0]
    assert [str(w.message) for w in caught if "validity" in str(w.message)] == [
        f"outside the CNN's validity domain: {lines[0]}"]
    kept = check_config(SimConfig(ic="blob", method="nsipf", device="cpu", fallback=False, **small))
    assert kept.cfg.interpolator == "neural" and any("grid size N = 16" in line for line in kept.validity)
