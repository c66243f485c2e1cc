"""The training API (nsipf_torch.train / evaluate / load_model): the same loop as train.py, silent."""
import os

import pytest
import torch

import nsipf_torch as nt
from nsipf_torch.commands import train as train_command
from nsipf_torch.io.files import load_torch
from nsipf_torch.neural.training import TrainConfig
from nsipf_torch.neural.validity import domain_of

TINY = dict(dim=2, n_traj=2, n_val_traj=1, snapshots=1, grids_per_traj=1, patches_per_grid=4, P_max=3000,
            data_T=0.02, data_Nr=96, width=4, epochs=2)


def test_train_api_equals_the_command_and_writes_only_its_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, table = nt.train(out="api.pt", cache_dir=str(tmp_path / "cache"), **TINY)
    assert capsys.readouterr().out == ""  # the API prints nothing
    assert sorted(os.listdir(tmp_path)) == ["api.pt", "cache"]
    assert set(table) >= {"value_cnn", "grad_cnn", "value_linear"}
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    assert train_command.main([*argv, "--out", "cli.pt", "--cache-dir", str(tmp_path / "cache"),
                               "--logdir", str(tmp_path / "runs")]) == 0
    api, _ = nt.load_model("api.pt", dim=2)
    cli, _ = nt.load_model("cli.pt", dim=2)
    for a, b in zip(api.state_dict().values(), cli.state_dict().values()):
        assert torch.equal(a, b)  # one loop, same seeds: bitwise the same weights
    # the checkpoint declares the domain its recipe covers: P_min = min(10^4, P_max) = 3000 on 32^2-128^2 grids
    domain = domain_of(load_torch("cli.pt"))
    assert domain["dim"] == 2 and domain["particles_per_cell"] == pytest.approx((3000 / 128**2, 3000 / 32**2))
    inp = torch.rand(3, 6 + 2 * api.depth, 6 + 2 * api.depth)  # padded coarse patches, fine targets 12^2
    assert nt.evaluate(api, inp, torch.rand(3, 12, 12), with_spline=False)["value_cnn"] > 0


def test_train_api_refuses_bad_values_before_any_data(tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        nt.train(out=str(tmp_path / "m.pt"), epochs=0)
    with pytest.raises(ValueError, match="out"):
        nt.train(dim=2)


def test_default_particle_count_covers_a_million_particles_at_64_cubed():
    """3D: P_max = 4 particles per cell at N = 32, so 10^6 at 64^3 (3.8 per cell) is inside; 2D keeps 3*10^4."""
    cfg3, cfg2 = TrainConfig(dim=3), TrainConfig(dim=2)
    cfg3.validate(), cfg2.validate()
    assert cfg3.P_max == 4 * 32**3 and cfg2.P_max == 30_000
    assert cfg3.data_config().P_max == 4 * 32**3
