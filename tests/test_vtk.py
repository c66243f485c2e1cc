"""VTK output decodes back to the arrays that were written, and every file is well-formed XML."""
import base64
import xml.etree.ElementTree as ET

import numpy as np

from nsipf_torch.io.vtk import write_pvd, write_vti, write_vtu_points


def decode(array_el) -> np.ndarray:
    """Independent decoder of an inline binary DataArray: base64(UInt64 byte count) + base64(payload)."""
    text = array_el.text.strip()
    head = 12  # 8 bytes of header encode to 12 base64 characters
    nbytes = int(np.frombuffer(base64.b64decode(text[:head]), dtype="<u8")[0])
    payload = base64.b64decode(text[head:])
    assert len(payload) == nbytes
    dtype = {"Float64": "<f8", "Float32": "<f4", "Int64": "<i8", "UInt8": "u1"}[array_el.get("type")]
    return np.frombuffer(payload, dtype=dtype)


def test_vti_roundtrip_3d_and_2d(tmp_path):
    rng = np.random.default_rng(0)
    for dim in (3, 2):
        rho = rng.random((6,) * dim)
        c = rng.random((6,) * dim).astype(np.float32)
        path = write_vti(tmp_path / f"f{dim}.vti", {"rho": rho, "c": c}, L=1.5, time=0.25)
        root = ET.parse(path).getroot()
        image = root.find("ImageData")
        assert image.get("Origin").split()[0] == "-1.5" and float(image.get("Spacing").split()[0]) == 0.5
        arrays = {a.get("Name"): a for a in image.iter("DataArray")}
        # VTK cell order is x fastest: reshape in Fortran order to get [i_x, i_y, i_z] back
        assert np.array_equal(decode(arrays["rho"]).reshape(rho.shape, order="F"), rho)
        assert np.array_equal(decode(arrays["c"]).reshape(c.shape, order="F"), c)
        assert decode(arrays["TimeValue"])[0] == 0.25
        n_cells = np.prod([int(b) - int(a) or 1 for a, b in zip(*[iter(image.get("WholeExtent").split())] * 2)])
        assert n_cells == rho.size


def test_vtu_points_and_pvd(tmp_path):
    X = np.random.default_rng(1).uniform(-1, 1, (50, 3))
    path = write_vtu_points(tmp_path / "p.vtu", X)
    root = ET.parse(path).getroot()
    arrays = {a.get("Name"): a for a in root.iter("DataArray")}
    assert np.array_equal(decode(arrays["Points"]).reshape(-1, 3), X)
    assert np.array_equal(decode(arrays["types"]), np.ones(50, dtype=np.uint8))  # VTK_VERTEX
    pvd = write_pvd(tmp_path / "s.pvd", [(0.0, "a.vti"), (0.1, "b.vti")])
    sets = ET.parse(pvd).getroot().find("Collection").findall("DataSet")
    assert [s.get("file") for s in sets] == ["a.vti", "b.vti"] and float(sets[1].get("timestep")) == 0.1
