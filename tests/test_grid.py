"""The cell-centred grid on [-L, L]^d (nsipf_torch/problems/grid.py): geometry, the midpoint rule, checks."""
import math

import pytest
import torch

from nsipf_torch.problems.grid import Grid, resolve_device, resolve_dtype


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("N,L", [(4, 1.0), (7, 0.5), (32, 2.5)])
def test_faces_and_centres(dim, N, L):
    # Definition (docs/MODEL.md §2): N + 1 faces from -L to L spaced h = 2L/N, each centre the midpoint of its
    # two faces; round-off only (a few ulp of L).
    grid = Grid(N, dim=dim, L=L)
    faces, centres = grid.faces(), grid.centres()
    assert faces.shape == (N + 1,) and centres.shape == (N,) and grid.shape == (N,) * dim
    assert faces[0].item() == -L and abs(faces[-1].item() - L) < 4e-16 * L
    assert torch.allclose(torch.diff(faces), torch.full((N,), 2 * L / N, dtype=torch.float64), rtol=0, atol=1e-15 * L)
    assert torch.allclose(centres, 0.5 * (faces[1:] + faces[:-1]), rtol=0, atol=1e-15 * L)
    assert grid.h == 2 * L / N and grid.cell_volume == pytest.approx((2 * L / N) ** dim, rel=1e-15)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_mesh_is_ij_indexed_and_r2_is_its_square_norm(dim):
    # Definition: mesh()[a][i_1, ..., i_d] is the centre x_{i_a} (indexing="ij"); r2 = sum of squares.
    grid = Grid(5, dim=dim, L=1.5)
    x = grid.centres()
    mesh = grid.mesh()
    assert len(mesh) == dim
    index = (4, 1, 2)[:dim]
    for a in range(dim):
        assert mesh[a][index].item() == x[index[a]].item()
    assert grid.r2()[index].item() == pytest.approx(sum(x[i].item() ** 2 for i in index), rel=1e-15)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_integrate_is_the_midpoint_rule(dim):
    # Theory: the midpoint rule is exact for affine integrands, and for x_a^2 its error is exactly
    # -(b - a) h^2 / 12 per axis (f'' is constant): int x^2 over [-L, L] is 2L^3/3, the rule gives
    # 2L^3/3 - 2L h^2/12. Round-off only; batched (B, N, ..., N) -> (B,).
    L, N = 1.3, 10
    grid = Grid(N, dim=dim, L=L)
    mesh = grid.mesh()
    box = (2 * L) ** dim
    affine = 2.0 + 3.0 * mesh[0] - 0.5 * mesh[-1]
    square = mesh[0] ** 2
    got = grid.integrate(torch.stack([affine, square, torch.ones(grid.shape, dtype=torch.float64)]))
    assert got.shape == (3,)
    exact_square = (2 * L**3 / 3 - 2 * L * grid.h**2 / 12) * (2 * L) ** (dim - 1)
    assert got[0].item() == pytest.approx(2.0 * box, rel=1e-14)
    assert got[1].item() == pytest.approx(exact_square, rel=1e-14)
    assert got[2].item() == pytest.approx(box, rel=1e-14)


def test_to_changes_only_device_or_dtype():
    grid = Grid(8, dim=2, L=0.5)
    single = grid.to(dtype=torch.float32)
    assert (single.N, single.dim, single.L, single.device, single.dtype) == (8, 2, 0.5, grid.device, torch.float32)
    assert single.centres().dtype == torch.float32
    assert grid.to().dtype == torch.float64


def test_names_resolve():
    assert Grid(4, dtype="float32").dtype == torch.float32
    assert resolve_dtype(torch.float64) == torch.float64
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("kwargs,word", [
    ({"N": 3}, "N"), ({"N": 16.0}, "N"), ({"N": True}, "N"), ({"N": "16"}, "N"),
    ({"dim": 0}, "dim"), ({"dim": 4}, "dim"), ({"dim": True}, "dim"), ({"dim": 2.0}, "dim"),
    ({"L": 0.0}, "L"), ({"L": -1.0}, "L"), ({"L": math.nan}, "L"), ({"L": math.inf}, "L"), ({"L": "one"}, "L"),
    ({"dtype": "float16"}, "float16"), ({"dtype": torch.float16}, "float16"), ({"device": "tpu"}, "tpu"),
])
def test_bad_values_raise_value_error_naming_them(kwargs, word):
    args = dict(N=8, dim=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=word):
        Grid(**args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when CUDA is absent")
def test_cuda_without_cuda_is_value_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        Grid(8, device="cuda")
