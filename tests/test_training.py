"""The training API (nsipf_torch.train / evaluate / load_model): the same loop as train.py, silent."""
import os

import pytest
import torch

import nsipf_torch as nt
from nsipf_torch.commands import train as train_command
from nsipf_torch.io.files import load_torch
from nsipf_torch.neural.model import UpsampleCNN
from nsipf_torch.neural.training import TrainConfig
from nsipf_torch.neural.validity import domain_of

TINY = dict(dim=2, n_traj=2, n_val_traj=1, snapshots=1, grids_per_traj=1, patches_per_grid=4, P_max=3000,
            data_T=0.02, data_Nr=96, width=4, epochs=2)


def test_train_api_equals_the_command_and_writes_only_its_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, table = nt.train(out="api.pt", cache_dir=str(tmp_path / "cache"), **TINY)
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err == ""  # the API prints nothing, not even a progress bar
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


def test_train_api_refuses_bad_values_before_any_data(tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        nt.train(out=str(tmp_path / "m.pt"), epochs=0)
    with pytest.raises(ValueError, match="out"):
        nt.train(dim=2)


def test_default_particle_count_covers_a_million_particles_at_64_cubed():
    """3D: P_max = 4 particles per cell at N = 32, so 10^6 at 64^3 (3.8 per cell) is inside; 2D: 256 per cell
    at N = 32, so 10^6 at 64^2 (244 per cell) is."""
    cfg3, cfg2 = TrainConfig(dim=3), TrainConfig(dim=2)
    cfg3.validate(), cfg2.validate()
    assert cfg3.P_max == 4 * 32**3 and cfg2.P_max == 256 * 32**2 > 10**6 / 64**2 * 32**2
    assert cfg3.data_config().P_max == 4 * 32**3


def _gaussian_patches(dim: int, halo: int, scale: int, width: float, n: int = 8):
    """Padded coarse patches of Gaussians of ``width`` coarse cells (values at the cell centres) and their
    exact values at the fine centres of the central n^d cells; two shifted copies."""
    def gauss(x1, shift):
        X = torch.stack(torch.meshgrid(*([x1 + shift] * dim), indexing="ij"), dim=-1)
        return torch.exp(-(X**2).sum(-1) / (2 * width**2))
    coarse = torch.arange(n + 2 * halo, dtype=torch.float64) + 0.5 - (n + 2 * halo) / 2
    fine = (torch.arange(scale * n, dtype=torch.float64) + 0.5) / scale - n / 2
    return (torch.stack([gauss(coarse, 0.3 * j) for j in range(2)]).float(),
            torch.stack([gauss(fine, 0.3 * j) for j in range(2)]).float())


@pytest.mark.parametrize("dim", [2, 3])
def test_evaluate_columns_converge_at_their_orders(dim):
    """evaluate's columns on smooth fields: widening a Gaussian from 2 to 3 coarse cells (h / width down by
    1.5) divides linear upsampling's error by 1.5^2 = 2.25 and the cubic spline's by 1.5^4 = 5.06
    (measured 2.18 and 4.7 in 2D, 2.08 and 4.6 in 3D; asserted within 20%). A fresh CNN is linear
    upsampling (its residual branch starts at zero), and its column is |pred - target| / |target|."""
    model = UpsampleCNN(dim=dim, width=4)
    errors = {}
    for width in (2.0, 3.0):
        inp, tgt = _gaussian_patches(dim, model.halo, model.scale, width)
        errors[width] = nt.evaluate(model, inp, tgt)
        with torch.no_grad():
            pred = model.forward_valid(inp)
        direct = float(torch.linalg.vector_norm(pred - tgt) / torch.linalg.vector_norm(tgt))
        assert errors[width]["value_cnn"] == pytest.approx(direct, rel=1e-5)
        assert errors[width]["value_cnn"] == pytest.approx(errors[width]["value_linear"], rel=1e-5)
    linear = errors[2.0]["value_linear"] / errors[3.0]["value_linear"]
    spline = errors[2.0]["value_spline"] / errors[3.0]["value_spline"]
    assert 0.8 * 2.25 < linear < 1.2 * 2.25 and 0.8 * 5.06 < spline < 1.2 * 5.06, (linear, spline)
    assert "value_spline" not in nt.evaluate(model, inp, tgt, with_spline=False)
