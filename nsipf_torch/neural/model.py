"""The neural interpolator's CNN (docs/MODEL.md §3): a coarse field c at resolution n -> a smooth field at s*n.

One dimension-generic definition serves 2D and 3D (``dim``):

    out = up(c) + shuffle(body(c))

- ``up`` is linear (bilinear/trilinear, ``align_corners=False``) upsampling by ``s``: the network only
  learns a residual on top of it.
- ``body`` is ``depth`` *valid* 3^d convolutions with leaky ReLU between them. The last one has s^d channels,
  which ``shuffle`` (sub-pixel upsampling, spelled out with einops) turns into an s-times finer field.
- Each valid convolution eats one cell per side, so the receptive radius is ``halo = depth`` coarse cells.
  :meth:`UpsampleCNN.forward_valid` maps a padded block of n + 2*halo cells to s*n fine cells using only
  real data; :meth:`UpsampleCNN.forward` pads the whole grid once by ``halo`` cells first. Tiled evaluation
  (``nsipf_torch.neural.interp``) cuts tiles with that halo out of the same padded grid, so tiled == full
  evaluation to round-off.
- Walls (Neumann, n·∇c = 0, docs/MODEL.md §1): the padding is the even reflection about the wall, which lies on
  the outer cell *faces* (c_{-1-k} = c_k, numpy's ``"symmetric"``; torch's ``"reflect"`` is about the first
  cell centre and would be wrong). The field the network sees is therefore symmetric about the wall, and so
  is its output: the normal derivative vanishes there.
- Mirror symmetry: every kernel is projected onto the kernels that commute with mirroring each axis (the
  average over the 2^d flips; for the sub-pixel layer the flip also swaps sub-pixel s_i <-> s-1-s_i). The
  network is then exactly equivariant to mirroring, so with the reflective padding its output is exactly
  even about each wall: its normal derivative vanishes there. Without this, a generic kernel would turn
  an even input into an output with a spurious wall slope.
- Amplitude: no biases and a positively homogeneous activation (leaky ReLU) make the network *exactly*
  scale-equivariant, f(a c) = a f(c) for a > 0. Every tile of a member is treated identically whatever its
  amplitude, and no per-member normalisation has to be passed around (c >= 0 in this project).
- Affine fields (``affine_exact``, every model trained since): the first layer's kernels are also projected
  to zero sum. A mirror-symmetric kernel has vanishing first moments, so a zero-sum one maps every affine
  field a + b.x to exactly 0; with no biases and leaky ReLU(0) = 0 the whole residual then vanishes, and the
  output is the linear upsampling, which reproduces an affine field exactly. NSIPF's drift (the multilinear
  gradient of the fine field) is then exact on affine c away from the walls, as every classical interpolator's
  is; the CNNs shipped before it missed affine drifts by up to 0.3 % (3D) and 1.1 % (2D)
  (``python -m studies.interp_exactness --what affine``). Checkpoints written before lack the flag and load
  with it off, i.e. as they were trained.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

ARCH = "UpsampleCNN-v1"
NEGATIVE_SLOPE = 0.1  # leaky ReLU: positively homogeneous like ReLU, but no dead units (c >= 0 inputs and no
                      # biases, plain-ReLU units die early in training)

_SHUFFLE = {
    2: "b (s1 s2) x y -> b (x s1) (y s2)",
    3: "b (s1 s2 s3) x y z -> b (x s1) (y s2) (z s3)",
}


def pad_symmetric(c: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """Even reflection about the walls on the outer cell faces of the last ``dim`` axes (Neumann).

    [c0 c1 c2 ...] -> [c1 c0 | c0 c1 c2 ... | ... c_{n-1} c_{n-2}] for width 2. Needs width <= n.
    """
    if width == 0:
        return c
    for axis in range(c.ndim - dim, c.ndim):
        n = c.shape[axis]
        if width > n:
            raise ValueError(f"padding width {width} exceeds the grid size {n}")
        lo = c.narrow(axis, 0, width).flip(axis)
        hi = c.narrow(axis, n - width, width).flip(axis)
        c = torch.cat([lo, c, hi], dim=axis)
    return c


def upsample_linear(c: torch.Tensor, scale: int, dim: int) -> torch.Tensor:
    """Bi/trilinear upsampling (B, n, ...) -> (B, s n, ...), cell-centred (align_corners=False)."""
    mode = "trilinear" if dim == 3 else "bilinear"
    return F.interpolate(c.unsqueeze(1), scale_factor=scale, mode=mode, align_corners=False).squeeze(1)


def _flip_subsets(dim: int):
    return [tuple(a for a in range(dim) if (mask >> a) & 1) for mask in range(2**dim)]


def symmetrise_kernel(w: torch.Tensor, dim: int, scale: int | None = None) -> torch.Tensor:
    """Project a conv weight (C_out, C_in, 3, ..., 3) onto the mirror-equivariant ones (group average).

    With ``scale`` the output channels are sub-pixels (s1, ..., sd) of a shuffle: mirroring axis a flips
    the kernel along a and maps s_a -> s - 1 - s_a.
    """
    kernel_axes = [2 + a for a in range(dim)]
    if scale is None:
        return sum(w.flip([kernel_axes[a] for a in A]) if A else w for A in _flip_subsets(dim)) / 2**dim
    names = " ".join(f"s{a + 1}" for a in range(dim))
    pattern = f"({names}) ci {' '.join(f'k{a + 1}' for a in range(dim))}"
    expanded = f"{names} ci {' '.join(f'k{a + 1}' for a in range(dim))}"
    sizes = {f"s{a + 1}": scale for a in range(dim)}
    v = rearrange(w, f"{pattern} -> {expanded}", **sizes)
    # In v the sub-pixel axis a is dim a, the kernel axis a is dim dim + 1 + a.
    total = sum(v.flip([x for a in A for x in (a, dim + 1 + a)]) if A else v for A in _flip_subsets(dim))
    return rearrange(total / 2**dim, f"{expanded} -> {pattern}")


def zero_sum_kernel(w: torch.Tensor, dim: int) -> torch.Tensor:
    """Project a conv weight (C_out, C_in, 3, ..., 3) onto the kernels summing to zero over their taps
    (it commutes with the mirror projection: flips keep the mean)."""
    taps = tuple(range(2, 2 + dim))
    return w - w.mean(dim=taps, keepdim=True)


class UpsampleCNN(nn.Module):
    """c (B, n, ..., n) -> (B, s n, ..., s n); see the module docstring."""

    def __init__(self, dim: int = 3, scale: int = 2, width: int = 12, depth: int = 3, affine_exact: bool = True):
        super().__init__()
        if not isinstance(affine_exact, bool):
            raise ValueError(f"affine_exact must be True or False, got {affine_exact!r}")
        for name, value, low in (("dim", dim, 2), ("scale", scale, 1), ("width", width, 1), ("depth", depth, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim!r}")
        self.dim, self.scale, self.width, self.depth = dim, scale, width, depth
        self.affine_exact = affine_exact
        self.halo = depth
        conv = nn.Conv3d if dim == 3 else nn.Conv2d
        chans = [1] + [width] * (depth - 1) + [scale**dim]
        self.convs = nn.ModuleList(conv(a, b, 3, bias=False) for a, b in zip(chans[:-1], chans[1:]))
        # Start from the plain linear upsampling: the residual branch begins at zero output.
        nn.init.zeros_(self.convs[-1].weight)

    def model_args(self) -> dict:
        return {"dim": self.dim, "scale": self.scale, "width": self.width, "depth": self.depth,
                "affine_exact": self.affine_exact}

    def symmetric_weights(self, device=None, dtype=None) -> list[torch.Tensor]:
        """The mirror-equivariant kernels the forward pass uses (a frozen model can compute them once),
        symmetrised after conversion to ``device``/``dtype`` when given; with ``affine_exact`` the first
        one also has zero sum (module docstring). Both are projections applied in the forward pass, so
        the optimiser's raw weights need no constraint and the gradient is the projected one."""
        last = len(self.convs) - 1
        out = [symmetrise_kernel(conv.weight.to(device=device, dtype=dtype), self.dim, self.scale if i == last else None)
               for i, conv in enumerate(self.convs)]
        if self.affine_exact:
            out[0] = zero_sum_kernel(out[0], self.dim)
        return out

    def forward_valid(self, c_padded: torch.Tensor, weights: list[torch.Tensor] | None = None,
                      body_dtype: torch.dtype | None = None) -> torch.Tensor:
        """(B, n + 2 halo, ...) -> (B, s n, ...) without padding: only the real neighbourhood is used.

        ``weights``: precomputed :meth:`symmetric_weights` (in ``body_dtype`` when given). ``body_dtype``
        (e.g. bfloat16) runs only the convolutional residual in that precision; the linear upsampling,
        which carries the field's amplitude, and the sum stay in the input's precision.
        """
        s, k = self.scale, self.halo
        x = c_padded.unsqueeze(1) if body_dtype is None else c_padded.unsqueeze(1).to(body_dtype)
        conv_nd = F.conv3d if self.dim == 3 else F.conv2d
        weights = self.symmetric_weights() if weights is None else weights
        last = len(weights) - 1
        for i, w in enumerate(weights):
            x = conv_nd(x, w)
            if i < last:
                x = F.leaky_relu(x, NEGATIVE_SLOPE)
        residual = rearrange(x, _SHUFFLE[self.dim], **{f"s{i + 1}": s for i in range(self.dim)})
        up = upsample_linear(c_padded, s, self.dim)
        crop = (slice(None),) + tuple(slice(s * k, m - s * k) for m in up.shape[1:])
        return up[crop] + residual.to(up.dtype)

    def forward(self, c: torch.Tensor, valid: bool = False) -> torch.Tensor:
        """Whole grid with Neumann walls: pad by the halo with the wall reflection, then run valid.

        ``valid=True`` is :meth:`forward_valid` (input already carries its halo), reachable through wrappers
        such as DistributedDataParallel that only hook ``__call__``.
        """
        if valid:
            return self.forward_valid(c)
        return self.forward_valid(pad_symmetric(c, self.halo, self.dim))


# --- Checkpoints -------------------------------------------------------------------------------------------
# A checkpoint is a dict of tensors and plain Python values only, so torch.load(weights_only=True) reads it:
#   {"arch": ARCH, "model_args": {...}, "model": state_dict, "config": {...}, "optimizer": state_dict | None,
#    "epoch": int, "metrics": {...}}


def save_checkpoint(path, model: UpsampleCNN, *, config: dict, optimizer_state=None, epoch: int = 0,
                    metrics: dict | None = None, weights: dict | None = None, extra: dict | None = None) -> None:
    """Write atomically through :func:`nsipf_torch.io.files.save_torch` (a crash leaves the old file)."""
    from pathlib import Path

    from nsipf_torch.io.files import save_torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "arch": ARCH,
        "model_args": model.model_args(),
        "model": {k: v.detach().cpu() for k, v in (weights or model.state_dict()).items()},
        "config": dict(config),
        "optimizer": optimizer_state,
        "epoch": int(epoch),
        "metrics": dict(metrics or {}),
        **(extra or {}),
    }
    save_torch(path, blob)


def read_checkpoint(path) -> dict:
    """The raw checkpoint dict; ``ValueError`` naming the file when it is missing, corrupt or not ours."""
    from nsipf_torch.io.files import load_torch  # weights_only=True; missing/corrupt/truncated files are one-line ValueErrors

    blob = load_torch(path)
    if not isinstance(blob, dict) or blob.get("arch") != ARCH or "model_args" not in blob or "model" not in blob:
        found = blob.get("arch") if isinstance(blob, dict) else type(blob).__name__
        raise ValueError(f"checkpoint {str(path)!r} has architecture {found!r}, expected {ARCH!r}")
    return blob


def load_model(path, dim: int | None = None) -> tuple[UpsampleCNN, dict]:
    """(model in eval mode, float32 on the CPU; meta = the checkpoint without the weights).

    ``dim`` given: a checkpoint of another dimension is a ``ValueError`` naming both.
    """
    blob = read_checkpoint(path)
    args = {"affine_exact": False, **blob["model_args"]}  # written before the flag: trained without it
    if dim is not None and args.get("dim") != dim:
        raise ValueError(f"checkpoint {str(path)!r} is a {args.get('dim')}-D model, the run is {dim}-D")
    try:
        model = UpsampleCNN(**args)
        model.load_state_dict(blob["model"])
    except (TypeError, RuntimeError) as err:
        raise ValueError(f"checkpoint {str(path)!r} does not match {ARCH} with args {args}: {err}") from err
    meta = {k: v for k, v in blob.items() if k not in ("model", "optimizer")}
    return model.eval(), meta
