"""Figures (nsipf_torch/io/plotting.py): the slices they show, and that each writes a real PNG atomically."""
import struct

import matplotlib.image
import numpy as np
import pytest

from nsipf_torch.io.plotting import centre_line, mid_plane, plot_cross_section, plot_diagnostics, plot_line_profiles

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _indexed(N: int, dim: int) -> np.ndarray:
    """f[i, j, k] = 100 i + 10 j + k (f[i, j] = 100 i + 10 j in 2D): every slice is identifiable."""
    axes = np.meshgrid(*[np.arange(N, dtype=float)] * dim, indexing="ij")
    return sum(w * a for w, a in zip((100.0, 10.0, 1.0), axes))


@pytest.mark.parametrize("N", [5, 6])
def test_mid_plane_and_centre_line_pick_the_central_slices(N):
    # The plane z = 0 and the line y = z = 0 of the cell-centred grid: the central index for odd N, the mean
    # of the two cells either side for even N (centre index (N - 1) / 2 either way). Exact arithmetic.
    mid = (N - 1) / 2
    f3 = _indexed(N, 3)
    i, j = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    assert np.array_equal(mid_plane(f3, 3), 100.0 * i + 10.0 * j + mid)
    assert np.array_equal(centre_line(f3, 3), 100.0 * np.arange(N) + 11.0 * mid)
    f2 = _indexed(N, 2)
    assert mid_plane(f2, 2) is f2
    assert np.array_equal(centre_line(f2, 2), 100.0 * np.arange(N) + 10.0 * mid)
    assert np.array_equal(centre_line(f2[:, 0], 1), f2[:, 0])  # 1-D: the field itself
    batch = np.stack([f3, 2 * f3])  # leading axes are kept: (B, N, N, N) -> (B, N) along x
    assert np.array_equal(centre_line(batch, 3), np.stack([centre_line(f3, 3), 2 * centre_line(f3, 3)]))


def _check_png(path):
    """A complete PNG: the signature, an IHDR chunk with a non-zero size, and pixels that are not all alike."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR" and data[-8:-4] == b"IEND"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (height, width) and pixels.std() > 0.01
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # atomic write left no temp file


def test_cross_section_is_a_png(tmp_path):
    field = _indexed(6, 3)
    path = tmp_path / "snap.png"
    plot_cross_section(path, 0.05, field, field.max() - field, 1.0, 3, field.max(), field.max(), title="blob")
    _check_png(path)


def test_diagnostics_and_line_profiles_are_pngs(tmp_path):
    t = np.linspace(0, 0.2, 11)
    series = {"mass": np.ones((11, 3)), "min_rho": np.outer(t, [1.0, 2.0, 3.0]), "one member": t[:, None] ** 2}
    plot_diagnostics(tmp_path / "diagnostics.png", t, series, title="sweep")
    _check_png(tmp_path / "diagnostics.png")
    x = np.linspace(-1, 1, 16)
    curves = {"FD": np.exp(-x**2), "SIPF": np.stack([0.9 * np.exp(-x**2), 1.1 * np.exp(-x**2)])}  # (N,), (B, N)
    plot_line_profiles(tmp_path / "profiles.png", x, curves, ylabel="rho")
    _check_png(tmp_path / "profiles.png")
