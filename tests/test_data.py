"""Training data of the neural interpolator (nsipf_torch/neural/data.py)."""
import pytest
import torch

from nsipf_torch.neural.data import DataConfig, make_dataset
from nsipf_torch.neural.model import upsample_linear

# Tiny: 2D, few trajectories, a short horizon and a coarse radial grid (the properties below don't need more).
TINY = dict(dim=2, n_traj=3, n_val_traj=2, snapshots=1, grids_per_traj=2, patches_per_grid=2, P_min=2000,
            P_max=4000, T=0.02, Nr=96, tile=8, halo=3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    cfg = DataConfig(**TINY)
    return cfg, cache, make_dataset(cfg, cache)


def test_shapes_and_cache_roundtrip(tiny):
    cfg, cache, data = tiny
    m_in, m_out = cfg.tile + 2 * cfg.halo, cfg.scale * cfg.tile
    n = cfg.n_traj * (cfg.snapshots + 1) * cfg.grids_per_traj * cfg.patches_per_grid
    tr = data["train"]
    assert tr["rough"].shape == (n, m_in, m_in) and tr["smooth"].shape == (n, m_in, m_in)
    assert tr["target"].shape == (n, m_out, m_out)
    assert (tr["h"] >= 2 / cfg.N_max - 1e-7).all() and (tr["h"] <= 2 / cfg.N_min + 1e-7).all()
    assert (tr["rough"] >= 0).all() and torch.isfinite(tr["rough"]).all()
    again = make_dataset(cfg, cache)  # read back from the cache file
    for key in ("rough", "smooth", "target", "traj"):
        assert torch.equal(again["train"][key], tr[key])


def test_generation_is_seeded(tiny):
    cfg, _, data = tiny
    fresh = make_dataset(cfg, cache_dir=None)
    assert torch.equal(fresh["val"]["rough"], data["val"]["rough"])
    other = make_dataset(DataConfig(**{**TINY, "seed": 1}), cache_dir=None)
    assert not torch.equal(other["val"]["rough"], data["val"]["rough"])


def test_validation_holds_out_whole_trajectories(tiny):
    # Train and validation problems come from disjoint seed streams: no validation trajectory's parameters
    # appear among the training ones, so no snapshot of a held-out trajectory is ever trained on.
    _, _, data = tiny
    tr, va = data["train"]["problems"], data["val"]["problems"]
    assert not (tr.unsqueeze(1) == va.unsqueeze(0)).all(-1).any()


def test_patch_geometry(tiny):
    # Target (point values at fine centres) and smooth input (coarse cell averages) describe the same field
    # on aligned lattices: the linear upsampling of the input is close to the target (measured 0.5%), while
    # the same comparison shifted by one fine cell is clearly worse (negative control, measured 2.4%).
    cfg, _, data = tiny
    tr = data["train"]
    s, k = cfg.scale, cfg.halo
    up = upsample_linear(tr["smooth"].double(), s, 2)[:, s * k:-s * k, s * k:-s * k]
    t = tr["target"].double()
    err = (up - t).norm() / t.norm()
    shifted = (up[:, 1:] - t[:, :-1]).norm() / t[:, :-1].norm()
    assert err < 0.02
    assert shifted > 2 * err


def test_roughness_comes_from_particles(tiny):
    # At t = 0 nothing has been deposited: the rough input is c0 at the cell centres, within O(h^2) of the
    # cell averages (measured 0.1%). Later the SIPF field is rougher than the smooth one: its cell-to-cell
    # differences deviate from the smooth input's (measured 28% at P = 2000-4000).
    cfg, _, data = tiny
    tr = data["train"]
    t0, t1 = tr["time"] == 0, tr["time"] > 0
    r0, s0 = tr["rough"][t0].double(), tr["smooth"][t0].double()
    assert (r0 - s0).norm() / s0.norm() < 0.01
    r1, s1 = tr["rough"][t1].double(), tr["smooth"][t1].double()
    d_r, d_s = torch.diff(r1, dim=1), torch.diff(s1, dim=1)
    assert (d_r - d_s).norm() / d_s.norm() > 0.1


def test_bad_config():
    with pytest.raises(ValueError, match="dim"):
        DataConfig(dim=4)
    with pytest.raises(ValueError, match="n_traj"):
        DataConfig(n_traj=0)
