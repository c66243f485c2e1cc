"""Interpolators: the gradient of a differentiable proxy of c at the particles (docs/MODEL.md §2 step 3).

The classical interpolators, made by the one factory of the method table
(:func:`nsipf_torch.methods.make_interp`, which also makes NSIPF's "neural" one)::

    interp = make_interp(name, grid, **options)     # "trilinear", "spline", "neural" (NSIPF), or registered
    interp.grad_c(c, X) -> (B, P, d)    c (B, N, ..., N) at cell centres, X (B, P, d) in [-L, L]
    interp.value(c, X)  -> (B, P)       the proxy itself (tests, diagnostics)

NSIPF is the particle method with the interpolator "neural" (:mod:`nsipf_torch.neural.interp`; options
``model`` = a checkpoint path, default the shipped one for the grid's dimension, ``precision``, ``tile``,
``capacity``). A new interpolator is added with :func:`nsipf_torch.methods.register_interp`.

Both classical proxies use the index coordinate s = (x + L)/h - 1/2 along each axis, which puts cell
centre i at s = i, and Neumann walls on the cell faces s = -1/2 and s = N - 1/2: the field is continued by
reflection about the wall (scipy.ndimage ``mode='reflect'``, half-sample symmetric).

- ``trilinear``: the (multi)linear interpolant of the reflected field. Between a wall and the outermost
  centre the reflected field is constant along that axis, so there the proxy is the clamped one and that
  gradient component is 0. The gradient is the exact piecewise derivative: 2^d gathers of the corner
  values per particle, the d edge differences at the corners, then (d-1)-linear interpolation (lerps).
  It is checked against autograd through ``F.grid_sample`` on an asymmetric field in the tests.
- ``spline``: the classical SIPF proxy, a tensor-product cubic B-spline that interpolates c at the cell
  centres, reflected at the walls (C^2, zero normal derivative on the walls). Coefficients: one banded
  (tridiagonal) solve per axis; evaluation: a 4^d-point window per particle; gradient: analytic from the
  B-spline basis derivatives.

Why written here rather than taken from a library: scipy's ``map_coordinates``/``interpn`` are CPU-only,
float64 numpy, not batched and slow (docs/MODEL.md §6: about 3 s per step at 20k particles), and torch has no
cubic B-spline with reflecting boundaries (``grid_sample`` 'bicubic' is a 2-D Keys/Catmull-Rom kernel, not
an interpolating B-spline, and has no 3-D mode). The kernels below are a tridiagonal solve and a gather,
and the tests check them against ``scipy.ndimage.map_coordinates(order=3, mode='reflect')`` to 1e-10.
"""
from __future__ import annotations

import itertools

import torch

from nsipf_torch.problems.grid import Grid


def _index_coords(X: torch.Tensor, grid: Grid) -> torch.Tensor:
    """s = (x + L)/h - 1/2: cell centre i at s = i, walls at s = -1/2 and N - 1/2."""
    return (X + grid.L) * (1.0 / grid.h) - 0.5


def _check(c: torch.Tensor, X: torch.Tensor, grid: Grid) -> None:
    d, N = grid.dim, grid.N
    if c.ndim != d + 1 or tuple(c.shape[1:]) != grid.shape:
        raise ValueError(f"c must have shape (B, {', '.join(['N'] * d)}) with N={N}, got {tuple(c.shape)}")
    if X.ndim != 3 or X.shape[0] != c.shape[0] or X.shape[-1] != d:
        raise ValueError(f"X must have shape ({c.shape[0]}, P, {d}), got {tuple(X.shape)}")


class _OnDevice:
    """A constant index tensor built once on the host and copied once per device, never inside a step."""

    def __init__(self, tensor: torch.Tensor):
        self._copies = {tensor.device: tensor}
        self._source = tensor

    def on(self, device: torch.device) -> torch.Tensor:
        """The copy on ``device`` (a tensor's device, which always carries its index)."""
        if device not in self._copies:
            self._copies[device] = self._source.to(device)
        return self._copies[device]


def _chunk(grid: Grid, chunk: int | None, cpu_default: int) -> int:
    """Particles per chunk: small on a CPU (temporaries stay in cache), 2^21 on a GPU (few launches)."""
    if chunk is None:
        return cpu_default if grid.device.type == "cpu" else 1 << 21
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer or None, got {chunk!r}")
    return chunk


class TrilinearInterp:
    """Gradient of the (bi/tri)linear interpolant of the cell-centre values, Neumann walls (see module doc)."""

    name = "trilinear"

    def __init__(self, grid: Grid, chunk: int | None = None):
        self.grid, self.chunk = grid, _chunk(grid, chunk, 1 << 16)
        d, N = grid.dim, grid.N
        self._strides = [N ** (d - 1 - a) for a in range(d)]
        # corners of a cell as bit tuples (first axis most significant) and their flat offsets in c
        self._corners = list(itertools.product((0, 1), repeat=d))
        self._offsets = [sum(bit * st for bit, st in zip(bits, self._strides)) for bits in self._corners]

    def _corner_values(self, c: torch.Tensor, X: torch.Tensor):
        """Values of c at the 2^d centres around each particle, fractions t, and the open-interior mask.

        Index i0 is the lower corner in [0, N-2] and t in [0, 1]; beyond the outermost centres s is clamped,
        which is the reflected (Neumann) field's linear interpolant there. Each corner is one gather from
        the flat c (small enough to stay in cache), offset by a view rather than by adding to the indices.
        """
        N, d = self.grid.N, self.grid.dim
        s = _index_coords(X, self.grid)
        inside = (s > 0) & (s < N - 1)
        s = s.clamp_(0, N - 1)
        i0 = torch.floor(s).clamp_(max=N - 2)
        t = s - i0
        i0 = i0.long()
        flat = i0[..., 0] * self._strides[0]
        for a in range(1, d):
            flat = flat + i0[..., a] * self._strides[a]
        flat = flat + (torch.arange(X.shape[0], device=X.device) * N**d).reshape(-1, 1)
        flat = flat.reshape(-1)
        cf = c.reshape(-1)
        values = {bits: cf.narrow(0, off, cf.numel() - off).index_select(0, flat).reshape(X.shape[:2])
                  for bits, off in zip(self._corners, self._offsets)}
        return values, t, inside

    @staticmethod
    def _multilinear(values: list, ts: list) -> torch.Tensor:
        """Interpolate 2^k values (first axis most significant) with fractions ts, one lerp level per axis."""
        for t in reversed(ts):
            values = [torch.lerp(values[2 * i], values[2 * i + 1], t) for i in range(len(values) // 2)]
        return values[0]

    def grad_c(self, c: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        _check(c, X, self.grid)
        # static chunks over the particles keep the ~30 temporaries cache-resident on a CPU;
        # the loop does not depend on the data, and each particle's result does not depend on the chunking
        step = max(1, self.chunk // X.shape[0])
        if X.shape[1] <= step:
            return self._grad_c(c, X)
        return torch.cat([self._grad_c(c, X[:, lo:lo + step]) for lo in range(0, X.shape[1], step)], dim=1)

    def _grad_c(self, c: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        d, inv_h = self.grid.dim, 1.0 / self.grid.h
        v, t, inside = self._corner_values(c, X)
        ts = list(t.unbind(-1))
        comps = []
        for a in range(d):
            # the edge differences along a at the 2^(d-1) corners of the other axes, then (d-1)-linear
            others = itertools.product((0, 1), repeat=d - 1)
            diffs = [v[o[:a] + (1,) + o[a:]] - v[o[:a] + (0,) + o[a:]] for o in others]
            comps.append(self._multilinear(diffs, ts[:a] + ts[a + 1:]))
        # the gradient component is 0 where that coordinate is clamped (constant reflected proxy)
        return torch.stack(comps, dim=-1).mul_(inside).mul_(inv_h)

    def value(self, c: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        _check(c, X, self.grid)
        v, t, _ = self._corner_values(c, X)
        return self._multilinear([v[bits] for bits in self._corners], list(t.unbind(-1)))


def _bspline_weights(t: torch.Tensor):
    """Cubic B-spline weights of the 4 coefficients i0-1..i0+2 at fraction t in [0, 1], and their t-derivatives."""
    u = 1.0 - t
    t2, t3 = t * t, t * t * t
    w = torch.stack((u * u * u / 6.0,
                     (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0,
                     (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0,
                     t3 / 6.0), dim=-1)
    dw = torch.stack((-0.5 * u * u,
                      1.5 * t2 - 2.0 * t,
                      -1.5 * t2 + t + 0.5,
                      0.5 * t2), dim=-1)
    return w, dw


class SplineInterp:
    """Interpolating tensor-product cubic B-spline with reflecting (Neumann) walls on the cell faces.

    Interpolation at the centres, s_i = (b_{i-1} + 4 b_i + b_{i+1}) / 6 with b_{-1} = b_0 and b_N = b_{N-1}
    (the half-sample symmetric continuation), is a constant tridiagonal system per axis. Its inverse is
    computed once in float64 and applied along each axis as one matrix product per member: d products of
    fixed shape, so each member's result is bitwise independent of the batch size, and a handful of
    kernels where Thomas sweeps would launch 2N tiny ones per axis. The system is
    strictly diagonally dominant (eigenvalues of the /6 matrix in [1/3, 1], inverse entries decaying like
    (2 - sqrt 3)^|i-j|), so the product is accurate to round-off.
    """

    name = "spline"

    def __init__(self, grid: Grid, chunk: int | None = None):
        self.grid, self.chunk = grid, _chunk(grid, chunk, 1 << 14)
        N = grid.N
        system = (torch.diag(torch.full((N,), 4.0, dtype=torch.float64)) + torch.diag(torch.ones(N - 1, dtype=torch.float64), 1)
                  + torch.diag(torch.ones(N - 1, dtype=torch.float64), -1))
        system[0, 0] = system[-1, -1] = 5.0  # b_{-1} = b_0 and b_N = b_{N-1}
        self._inverse64 = torch.linalg.inv(system / 6.0)
        self._inverse = {}  # per dtype, then per device
        # coefficient index -2..N+1 -> half-sample symmetric source index
        self._pad_index = _OnDevice(torch.tensor([1, 0] + list(range(N)) + [N - 1, N - 2], dtype=torch.long))
        # row offsets of the 4^(d-1) lines of a window in the (N+4, ..., N+4, N+1) line-table layout
        offs = torch.zeros((), dtype=torch.long)
        for a in range(grid.dim - 1):
            step = (N + 4) ** (grid.dim - 2 - a) * (N + 1)
            offs = (offs.unsqueeze(-1) + torch.arange(4) * step).reshape(-1)
        self._line_offsets = _OnDevice(offs)

    def coefficients(self, c: torch.Tensor) -> torch.Tensor:
        """B-spline coefficients (B, N, ..., N) whose spline interpolates c at the cell centres."""
        if c.dtype not in self._inverse:
            self._inverse[c.dtype] = _OnDevice(self._inverse64.to(c.dtype))
        inverse = self._inverse[c.dtype].on(c.device)
        members = []
        for b in c.unbind(0):  # fixed-shape products per member: bitwise independent of the batch
            for a in range(self.grid.dim):
                b = torch.tensordot(inverse, b, dims=([1], [a])).movedim(0, a)
            members.append(b)
        return torch.stack(members)

    def _padded(self, c: torch.Tensor) -> torch.Tensor:
        """Coefficients continued by reflection to indices -2..N+1: (B, N+4, ..., N+4)."""
        b = self.coefficients(c)
        idx = self._pad_index.on(c.device)
        for a in range(self.grid.dim):
            b = b.index_select(a + 1, idx)
        return b

    def line_table(self, c: torch.Tensor) -> torch.Tensor:
        """(B * (N+4)^(d-1) * (N+1), 4): for each padded line and start k in 0..N, the 4 coefficients k..k+3 along the last axis."""
        b = self._padded(c)
        N = self.grid.N
        return torch.stack([b.narrow(-1, o, N + 1) for o in range(4)], dim=-1).reshape(-1, 4)

    def _rows(self, X: torch.Tensor):
        """Rows of the line table for each particle's 4^(d-1) lines, (B*P, 4^(d-1)), and the fractions t."""
        N, d = self.grid.N, self.grid.dim
        s = _index_coords(X, self.grid)
        i0 = torch.floor(s).clamp_(-1, N - 1)
        t = s - i0
        # the window of i0 starts at coefficient i0 - 1, padded index i0 + 1 in [0, N]
        k = (i0 + 1).long().reshape(-1, d)
        member = torch.arange(X.shape[0], device=X.device).unsqueeze(1).expand(X.shape[:2]).reshape(-1)
        row = member
        for a in range(d - 1):
            row = row * (N + 4) + k[:, a]
        row = row * (N + 1) + k[:, d - 1]
        return row.unsqueeze(-1) + self._line_offsets.on(X.device), t

    @staticmethod
    def _contract_first(V: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """sum_k V[:, k, ...] w[:, k]: contract the leading window axis with contiguous slices (no inner reductions)."""
        shape = (w.shape[0],) + (1,) * (V.ndim - 2)
        out = V[:, 0] * w[:, 0].reshape(shape)
        for k in range(1, 4):
            out = out + V[:, k] * w[:, k].reshape(shape)
        return out

    def _evaluate(self, c: torch.Tensor, X: torch.Tensor, gradient: bool) -> torch.Tensor:
        _check(c, X, self.grid)
        B, P, d = X.shape
        table = self.line_table(c)
        rows, t = self._rows(X)
        t = t.reshape(-1, d)
        inv_h = 1.0 / self.grid.h
        out = []
        # static chunks over particles bound the (n, 4^d) window buffer; the loop is data-independent
        for lo in range(0, B * P, self.chunk):
            sel = rows[lo:lo + self.chunk]
            V = table.index_select(0, sel.reshape(-1)).reshape(sel.shape[0], *(4,) * d)
            w, dw = _bspline_weights(t[lo:lo + self.chunk])
            # prefix[a]: V contracted with the value weights of axes < a; gradient a continues from it with dw
            prefix = [V]
            for a in range(d - 1 if gradient else d):
                prefix.append(self._contract_first(prefix[-1], w[:, a]))
            if not gradient:
                out.append(prefix[d])
                continue
            comps = []
            for a in range(d):
                g = self._contract_first(prefix[a], dw[:, a])
                for b in range(a + 1, d):
                    g = self._contract_first(g, w[:, b])
                comps.append(g * inv_h)
            out.append(torch.stack(comps, dim=-1))
        res = torch.cat(out, dim=0)
        return res.reshape(B, P, d) if gradient else res.reshape(B, P)

    def grad_c(self, c: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        return self._evaluate(c, X, gradient=True)

    def value(self, c: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        return self._evaluate(c, X, gradient=False)
