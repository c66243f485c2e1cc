"""ParaView output: VTK XML ImageData (.vti) for the grid fields, UnstructuredGrid (.vtu) for particles,
and a .pvd collection that makes a time series of them.

The XML is written directly (no extra dependency): inline binary DataArrays, each a base64 UInt64 byte
count followed by the base64 little-endian payload (the layout VTK's XML readers expect with
``header_type="UInt64"``). Fields are cell data on a grid with the true origin (-L, ..., -L) and spacing
h, so ParaView shows the cells where the solver has them. VTK orders cells x-fastest, so an array
indexed [i_x, i_y, i_z] is written in Fortran order.
"""
from __future__ import annotations

import base64
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from nsipf_torch.io.files import atomic_write

_VTK_TYPES = {np.dtype("float32"): "Float32", np.dtype("float64"): "Float64", np.dtype("int64"): "Int64",
              np.dtype("uint8"): "UInt8", np.dtype("int32"): "Int32"}


def _data_array(name: str, values: np.ndarray, components: int = 1) -> str:
    values = np.ascontiguousarray(values)
    payload = values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes()
    header = np.array([len(payload)], dtype="<u8").tobytes()
    encoded = base64.b64encode(header).decode() + base64.b64encode(payload).decode()
    return (f'<DataArray type="{_VTK_TYPES[values.dtype]}" Name={quoteattr(name)} '
            f'NumberOfComponents="{components}" format="binary">{encoded}</DataArray>')


def _document(kind: str, body: str) -> str:
    return ('<?xml version="1.0"?>\n'
            f'<VTKFile type="{kind}" version="1.0" byte_order="LittleEndian" header_type="UInt64">\n'
            f'{body}\n</VTKFile>\n')


def write_vti(path: str | Path, fields: dict[str, np.ndarray], L: float, time: float | None = None) -> Path:
    """Cell fields of shape (N,)*d on [-L, L]^d as ImageData; a 2-D grid is one layer of cells thick."""
    first = np.asarray(next(iter(fields.values())))
    dim, N = first.ndim, first.shape[0]
    h = 2.0 * L / N
    extent = f"0 {N} 0 {N} 0 {N if dim == 3 else 0}"
    origin = f"{-L!r} {-L!r} {(-L if dim == 3 else 0.0)!r}"
    arrays = "\n".join(_data_array(name, np.asarray(v).ravel(order="F")) for name, v in fields.items())
    field_data = "" if time is None else f'<FieldData>{_data_array("TimeValue", np.array([time]))}</FieldData>\n'
    body = (f'<ImageData WholeExtent="{extent}" Origin="{origin}" Spacing="{h!r} {h!r} {h!r}">\n{field_data}'
            f'<Piece Extent="{extent}">\n<CellData Scalars="rho">\n{arrays}\n</CellData>\n</Piece>\n</ImageData>')
    return atomic_write(path, lambda tmp: tmp.write_text(_document("ImageData", body)))


def write_vtu_points(path: str | Path, X: np.ndarray, time: float | None = None) -> Path:
    """Particle positions (P, d) as VTK_VERTEX cells; 2-D positions get z = 0."""
    X = np.asarray(X, dtype=np.float64)
    P = X.shape[0]
    if X.shape[1] == 2:
        X = np.concatenate([X, np.zeros((P, 1))], axis=1)
    field_data = "" if time is None else f'<FieldData>{_data_array("TimeValue", np.array([time]))}</FieldData>\n'
    body = (f'<UnstructuredGrid>\n{field_data}<Piece NumberOfPoints="{P}" NumberOfCells="{P}">\n'
            f'<Points>{_data_array("Points", X.ravel(), 3)}</Points>\n<Cells>\n'
            f'{_data_array("connectivity", np.arange(P, dtype=np.int64))}\n'
            f'{_data_array("offsets", np.arange(1, P + 1, dtype=np.int64))}\n'
            f'{_data_array("types", np.ones(P, dtype=np.uint8))}\n</Cells>\n</Piece>\n</UnstructuredGrid>')
    return atomic_write(path, lambda tmp: tmp.write_text(_document("UnstructuredGrid", body)))


def write_pvd(path: str | Path, entries: list[tuple[float, str]]) -> Path:
    """A ParaView collection: (time, file name relative to the .pvd) for each frame."""
    rows = "\n".join(f'<DataSet timestep="{t!r}" group="" part="0" file={quoteattr(f)}/>' for t, f in entries)
    return atomic_write(path, lambda tmp: tmp.write_text(_document("Collection", f"<Collection>\n{rows}\n</Collection>")))
