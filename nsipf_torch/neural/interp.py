"""NSIPF's neural interpolator (docs/MODEL.md §2 step 3 and §3): the interpolator protocol through the CNN.

    interp = NeuralInterp(model, grid, tile="auto", capacity=None)
    interp.grad_c(c, X) -> (B, P, d)      interp.value(c, X) -> (B, P)      interp.fine_field(c, X)

1. The grid field c (B, N, ..., N) goes through the CNN (:class:`nsipf_torch.neural.model.UpsampleCNN`, no
   autograd) to a smooth field on the s-times finer cell-centred grid.
2. grad c~ at the particles is the exact gradient of the multilinear interpolant of that fine field:
   :class:`nsipf_torch.particles.interp.TrilinearInterp` on the fine grid, the one multilinear gradient of the
   package (analytic, no autograd). Within half a fine cell of a wall the interpolant is clamped and the
   normal component of the gradient is 0 (the Neumann condition, as in the classical interpolators).

Local evaluation (the paper's source of speed): with ``tile=T`` the grid is cut into (N/T)^d tiles and
the CNN runs only on the tiles the particles' sampling stencils touch. Each tile is cut from the grid
padded once with the wall reflection, with a halo equal to the CNN's receptive radius, and the CNN runs
without padding (``forward_valid``), so a tile's output equals the full-grid output to round-off. The
tile list has a fixed capacity K (``capacity``; default None: all tiles, which is evaluated as the whole
grid at once, the same field without the halo overhead; :meth:`plan_capacity` sizes it from the particles,
outside the step): the K tiles holding most particle stencils are chosen with ``topk``. The tile load is a
fixed-size histogram (:func:`nsipf_torch.particles.deposit.histogram`), so everything stays on the device with
static shapes: no ``nonzero()``, no ``bincount``, no host synchronisation in ``grad_c``. Occupied tiles
beyond the capacity keep the linear upsampling of c (a finite, consistent fallback); ``last_overflow`` (a
tensor, read it outside the step) counts them. The plan is part of a run's state (:meth:`state_dict`): a
resumed run keeps the one made at the last re-plan. A compiled step specialises on K, so under
``torch.compile`` (``pow2_capacity``) K is planned as a power of two: one recompilation per doubling of the
occupied tiles, not one per re-plan.

Precision (``precision``): the CNN's convolutions run in ``"fp32"`` (IEEE float32 on a GPU too: cuDNN's
TF32 default is switched off around them), ``"tf32"`` (TensorFloat-32 convolutions, CUDA only) or ``"bf16"``
(the convolutional residual in bfloat16; the linear upsampling, which carries the amplitude, and the
sampling stay in the grid's dtype). benchmark.py measures the speed and the accuracy effect of each.

Positivity and mass are the stepper's business (deposit + exponential c-update), not the interpolator's.
"""
from __future__ import annotations

import contextlib
import itertools
import math

import torch
from einops import rearrange

from nsipf_torch.particles.deposit import histogram
from nsipf_torch.problems.grid import Grid
from nsipf_torch.particles.interp import TrilinearInterp
from nsipf_torch.neural.model import UpsampleCNN, load_model, pad_symmetric, upsample_linear

_TILES = {
    2: ("b (tx ux) (ty uy) -> (b tx ty) ux uy", "(b tx ty) ux uy -> b (tx ux) (ty uy)"),
    3: ("b (tx ux) (ty uy) (tz uz) -> (b tx ty tz) ux uy uz",
        "(b tx ty tz) ux uy uz -> b (tx ux) (ty uy) (tz uz)"),
}


PRECISIONS = ("fp32", "tf32", "bf16")


@contextlib.contextmanager
def conv_precision(device: torch.device, precision: str):
    """cuDNN's float32 convolution mode for ``precision`` on a CUDA device (IEEE unless "tf32"); a no-op elsewhere."""
    if device.type != "cuda":
        yield
        return
    conv = torch.backends.cudnn.conv
    old = conv.fp32_precision
    conv.fp32_precision = "tf32" if precision == "tf32" else "ieee"  # torch >= 2.9; allow_tf32 is the legacy flag
    try:
        yield
    finally:
        conv.fp32_precision = old


class NeuralInterp:
    """The neural interpolator on ``grid`` (module docstring). ``model``'s kernels are copied to the grid's
    dtype and device."""

    name = "neural"

    def __init__(self, model: UpsampleCNN, grid: Grid, tile: int | str | None = "auto", capacity: int | None = None,
                 precision: str = "fp32"):
        if tile == "auto":  # 8 cells (halo overhead (8+6)^3/8^3 = 5.4) when it divides N, else 4, else no tiles
            tile = next((t for t in (8, 4) if grid.N % t == 0), None)
        if not isinstance(model, UpsampleCNN):
            raise ValueError(f"model must be an UpsampleCNN, got {type(model).__name__}")
        if model.dim != grid.dim:
            raise ValueError(f"model is {model.dim}-D but the grid is {grid.dim}-D")
        if tile is not None:
            if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1 or grid.N % tile:
                raise ValueError(f"tile must be a positive divisor of N={grid.N}, got {tile!r}")
        if model.halo > grid.N:
            raise ValueError(f"grid N={grid.N} is smaller than the CNN's halo {model.halo}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "tf32" and grid.device.type != "cuda":
            raise ValueError(f"precision 'tf32' needs a CUDA device, the grid is on {grid.device.type}")
        self.grid, self.precision = grid, precision
        # for its architecture (halo, scale): the forward pass only ever uses the kernels copied below
        self.model = model
        # the model is frozen: symmetrise its kernels once, in the grid's dtype on its device, then cast to
        # the precision the convolutions run in
        self.body_dtype = torch.bfloat16 if precision == "bf16" else None
        with torch.no_grad():
            self.weights = [w.to(self.body_dtype or grid.dtype)
                            for w in self.model.symmetric_weights(grid.device, grid.dtype)]
        self.scale = model.scale
        self.fine_grid = Grid(self.scale * grid.N, grid.dim, grid.L, grid.device, grid.dtype)
        self.fine_interp = TrilinearInterp(self.fine_grid)
        # a compiled step specialises on the capacity: planned as a power of two, it recompiles once per
        # doubling of the occupied tiles rather than at every re-plan (the particle runner sets it under compile)
        self.pow2_capacity = False
        self.tile = tile
        self.n_tiles = (grid.N // tile) ** grid.dim if tile else 1
        if capacity is not None and (isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1):
            raise ValueError(f"capacity must be a positive integer or None, got {capacity!r}")
        self.capacity = capacity
        self.last_overflow = None

    @classmethod
    def from_checkpoint(cls, path, grid: Grid, **kw) -> "NeuralInterp":
        """Load a checkpoint (``ValueError`` on a wrong dimension, architecture or a corrupt file)."""
        model, _ = load_model(path, dim=grid.dim)
        return cls(model, grid, **kw)

    def plan_capacity(self, X: torch.Tensor, margin: float = 1.5) -> int:
        """Set ``capacity`` to ``margin`` x the tiles X's stencils occupy now; returns it. Host sync: call
        it outside the step (at start-up and with the diagnostics every k steps), and also when
        ``last_overflow`` reports tiles left on the fallback."""
        if self.tile is None:
            return 1
        occupied = int((self._tile_load(X) > 0).sum())
        total = X.shape[0] * self.n_tiles
        wanted = max(1, math.ceil(margin * occupied))
        if self.pow2_capacity:
            wanted = 1 << (wanted - 1).bit_length()
        self.capacity = min(total, wanted)
        return self.capacity

    def state_dict(self) -> dict:
        """The tile plan (plain values): part of a run's state, since a resumed run must keep the plan the
        uninterrupted run made at its last re-plan step (the tiles beyond it take the linear fallback)."""
        return {"capacity": self.capacity}

    def load_state_dict(self, sd: dict) -> None:
        capacity = sd["capacity"]
        if capacity is not None and (isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1):
            raise ValueError(f"the saved tile capacity must be a positive integer or None, got {capacity!r}")
        self.capacity = capacity

    # -- the fine field ---------------------------------------------------------------------------------
    def _check(self, c: torch.Tensor, X: torch.Tensor | None):
        d = self.grid.dim
        if c.ndim != d + 1 or tuple(c.shape[1:]) != self.grid.shape:
            raise ValueError(f"c must have shape (B, {', '.join(['N'] * d)}) with N={self.grid.N}, got {tuple(c.shape)}")
        if X is not None and (X.ndim != 3 or X.shape[0] != c.shape[0] or X.shape[-1] != d):
            raise ValueError(f"X must have shape ({c.shape[0]}, P, {d}), got {tuple(X.shape)}")

    def _tile_load(self, X: torch.Tensor) -> torch.Tensor:
        """(B * n_tiles,) int64: how many particle sampling-stencil corners fall in each tile (static shape)."""
        B, P, d = X.shape
        s, T, N = self.scale, self.tile, self.grid.N
        nt, fine_n = N // T, s * N
        sf = (X + self.grid.L) * (1.0 / self.fine_grid.h) - 0.5  # fine index coordinate
        lo = torch.floor(sf).clamp(0, fine_n - 1).long()
        hi = (lo + 1).clamp(max=fine_n - 1)
        ends = torch.stack((lo, hi), dim=-1) // (s * T)  # (B, P, d, 2) tile index per axis
        flat = torch.zeros(B, P, 2**d, dtype=torch.long, device=X.device)
        for k, bits in enumerate(itertools.product((0, 1), repeat=d)):
            idx = torch.zeros(B, P, dtype=torch.long, device=X.device)
            for a, bit in enumerate(bits):
                idx = idx * nt + ends[..., a, bit]
            flat[..., k] = idx
        flat = flat + (torch.arange(B, device=X.device) * nt**d).reshape(B, 1, 1)
        return histogram(flat.reshape(-1), B * nt**d, P * 2**d)

    def fine_field(self, c: torch.Tensor, X: torch.Tensor | None = None) -> torch.Tensor:
        """The CNN's fine field (B, sN, ..., sN); tiled (only where X's stencils are) when ``tile`` and X given."""
        self._check(c, X)
        d, k = self.grid.dim, self.model.halo
        with torch.no_grad(), conv_precision(c.device, self.precision):
            cp = pad_symmetric(c, k, d)
            B = c.shape[0]
            total = B * self.n_tiles
            if self.tile is None or X is None or self.capacity is None or self.capacity >= total:
                # Every tile would be evaluated: the whole grid at once is the same field, cheaper (no halos).
                self.last_overflow = torch.zeros((), dtype=torch.long, device=c.device)
                return self.model.forward_valid(cp, self.weights, self.body_dtype)
            T, N = self.tile, self.grid.N
            nt = N // T
            K = self.capacity
            load = self._tile_load(X)
            chosen = torch.topk(load, K, sorted=False).indices  # (K,) flat (b, tx, ty[, tz]) indices
            self.last_overflow = ((load > 0).sum() - (load[chosen] > 0).sum())
            windows = cp
            for a in range(d):
                windows = windows.unfold(1 + a, T + 2 * k, T)  # (B, nt, .., nt, T+2k, .., T+2k), a view
            coords, rest = [], chosen
            for a in reversed(range(d)):
                coords.append(rest % nt)
                rest = rest // nt
            tiles = windows[(rest, *reversed(coords))]  # gathers only the K chosen tiles
            out = self.model.forward_valid(tiles, self.weights, self.body_dtype)
            to_tiles, from_tiles = _TILES[d]
            sizes = {f"u{ax}": self.scale * T for ax in "xyz"[:d]}
            fine = rearrange(upsample_linear(c, self.scale, d), to_tiles, **sizes).clone()
            fine.index_copy_(0, chosen, out)
            return rearrange(fine, from_tiles, b=B, **{f"t{ax}": nt for ax in "xyz"[:d]})

    # -- the protocol -----------------------------------------------------------------------------------
    def value(self, c: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        return self.fine_interp.value(self.fine_field(c, X), X)

    def grad_c(self, c: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        return self.fine_interp.grad_c(self.fine_field(c, X), X)
