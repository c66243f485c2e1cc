"""Physical parameters of the PHKS system (docs/MODEL.md §1, paper eqs. 1–2), and the checks made once at entry.

    rho_t = div(gamma grad rho - chi rho grad c),   c_t = -c rho   on [-L, L]^d, no-flux walls
    (the box is the Grid's).

:class:`Params` is the one parameter object that the API, the runners and the solvers pass. ``gamma`` and
``chi`` are floats or (B,) tensors (one value per batch member), and such tensors may require grad: the
numerics never call ``float()`` on them, so inference can differentiate through a solve. The defaults are
this project's canonical values (docs/MODEL.md §5).

Checks happen once, where a value enters (the API, a solver's public ``solve``); the step functions do not
repeat them, so they stay free of host synchronisation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nsipf_torch.solvers.c_equation import C_UPDATES
from nsipf_torch.solvers.stencils import LIMITERS


def check_finite(name: str, value: float) -> float:
    """Return ``float(value)`` or raise ``ValueError`` naming the value when it is NaN or infinite."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def check_positive(name: str, value, allow_zero: bool = False, batch: int | None = None):
    """A finite number > 0 (>= 0 with ``allow_zero``), or a 0-d/(B,) tensor of such numbers.

    Returns floats as float and tensors unchanged (one host sync for a tensor); ``batch`` is the number of
    members a (B,) tensor must have (a single value always fits).
    """
    if isinstance(value, torch.Tensor):
        if value.ndim > 1:
            raise ValueError(f"{name} must be a number or a (B,) tensor, got shape {tuple(value.shape)}")
        if batch is not None and value.numel() not in (1, batch):
            raise ValueError(f"{name} has {value.numel()} members, the batch has {batch}")
        v = value.detach()

        def shown():  # the values read back only to report them
            return v.tolist() if v.numel() > 1 else v.item()

        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"{name} must be finite, got {shown()}")
        if bool((v < 0).any()) or (not allow_zero and bool((v == 0).any())):
            raise ValueError(f"{name} must be {'>=' if allow_zero else '>'} 0, got {shown()}")
        return value
    value = check_finite(name, value)
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>=' if allow_zero else '>'} 0, got {value}")
    return value


def check_magnitude(name: str, value: float, dtype: torch.dtype, scale: float = 1.0) -> None:
    """``ValueError`` naming ``name`` unless |value| * scale stays below the square root of the largest
    number of ``dtype``: the runs multiply such quantities in pairs (chi rho, c rho, gamma / h^2), and a
    product beyond the range is Inf, then NaN, a step later. ``scale`` turns a parameter into the quantity
    the run holds (M0 / h^d: the density of the mass in one cell)."""
    limit = math.sqrt(torch.finfo(dtype).max)
    if abs(value) * scale > limit:
        held = "" if scale == 1.0 else f" (the run holds {abs(value) * scale:.3g})"
        kind = str(dtype).removeprefix("torch.")
        raise ValueError(f"{name} {value:g} is too large for a {kind} run{held}: products of such values would "
                         f"overflow past {limit:.3g}, the square root of the largest {kind}")


def check_sequence(name: str, values) -> list[float]:
    """A non-empty sequence (list, tuple, 1-D array or tensor) of finite numbers as floats; a
    ``ValueError`` naming ``name`` otherwise."""
    items = values.tolist() if hasattr(values, "tolist") else list(values)
    if not isinstance(items, list) or not items:
        raise ValueError(f"{name} must be a number or a non-empty sequence of numbers, got {values!r}")
    return [check_finite(name, v) for v in items]


def check_schemes(limiter: str | None = None, c_update: str | None = None) -> None:
    """The finite-volume limiter and the c-update must be known names."""
    if limiter is not None and limiter not in LIMITERS:
        raise ValueError(f"unknown limiter {limiter!r}; choose one of {', '.join(LIMITERS)}")
    if c_update is not None and c_update not in C_UPDATES:
        raise ValueError(f"unknown c-update {c_update!r}; choose one of {', '.join(C_UPDATES)}")


def check_fields(rho: torch.Tensor, c: torch.Tensor, shape: tuple[int, ...], names=("rho", "c")) -> int:
    """rho and c: (B, *shape) tensors, finite and >= 0; returns B. One host sync. ``names`` name them."""
    pairs = tuple(zip(names, (rho, c)))
    for name, x in pairs:
        if not isinstance(x, torch.Tensor) or x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must have shape (B, {', '.join(map(str, shape))}), got {got}")
    if c.shape != rho.shape:
        raise ValueError(f"{names[1]} has shape {tuple(c.shape)}, {names[0]} has {tuple(rho.shape)}")
    for name, x in pairs:
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
        if bool((x < 0).any()):
            raise ValueError(f"{name} must be non-negative, min is {float(x.min()):.3g}")
    return rho.shape[0]


def per_member(value, like: torch.Tensor, trailing: int, divisor: float = 1.0):
    """value / divisor for broadcasting over a batch: a Python float stays a float; a (B,) tensor becomes
    (B, 1, ..., 1) with ``trailing`` ones, in like's device and dtype (B must match like's batch).

    The quotient is formed in float64 and rounded once, so a float and a one-member tensor give the same
    bits. Differentiable in a tensor ``value``.
    """
    if isinstance(value, torch.Tensor):
        if value.ndim == 1 and value.shape[0] not in (1, like.shape[0]):
            raise ValueError(f"per-member parameter must have shape ({like.shape[0]},), got {tuple(value.shape)}")
        scaled = value.to(device=like.device, dtype=torch.float64) / divisor
        return scaled.to(like.dtype).reshape(-1, *([1] * trailing)) if value.ndim else scaled.to(like.dtype)
    return float(value) / divisor


@dataclass(frozen=True)
class Params:
    """gamma: diffusion, chi: chemo-sensitivity (floats or (B,) tensors), M0: mass (a float, or a (B,) tensor
    for a sweep over mass), T: final time: the
    physics; the geometry (L, d, N) is the :class:`~nsipf_torch.problems.grid.Grid`'s. Every value is
    checked on construction (a ``ValueError`` names a bad one)."""

    gamma: float | torch.Tensor = 0.01
    chi: float | torch.Tensor = 1.0
    M0: float | torch.Tensor = 1.0
    T: float = 0.2

    def __post_init__(self):
        for name in ("gamma", "chi"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                value = torch.tensor([check_finite(name, v) for v in value], dtype=torch.float64)
            object.__setattr__(self, name, check_positive(name, value, allow_zero=True))
        gamma, chi = self.gamma, self.chi
        if isinstance(gamma, torch.Tensor) and isinstance(chi, torch.Tensor) and gamma.ndim and chi.ndim \
                and gamma.numel() != chi.numel() and 1 not in (gamma.numel(), chi.numel()):
            raise ValueError(f"gamma has {gamma.numel()} members and chi {chi.numel()}: they must agree")
        object.__setattr__(self, "M0", check_positive("M0", self.M0))
        object.__setattr__(self, "T", check_positive("T", self.T, allow_zero=True))

    @property
    def batch(self) -> int:
        """Members implied by the (B,) tensors among gamma and chi (1 when both are numbers)."""
        sizes = [v.numel() for v in (self.gamma, self.chi, self.M0) if isinstance(v, torch.Tensor) and v.ndim == 1]
        return max(sizes, default=1)

    def member_values(self, name: str, B: int) -> torch.Tensor:
        """gamma, chi or M0 as a (B,) float64 tensor (gradients kept), for per-member bookkeeping."""
        value = getattr(self, name)
        t = value.to(torch.float64) if isinstance(value, torch.Tensor) else torch.tensor(float(value), dtype=torch.float64)
        return t.reshape(-1).expand(B) if t.numel() == 1 else t.reshape(-1)

    def to_dict(self) -> dict:
        """Plain values only (tensors as lists), for config.json and checkpoints."""
        def plain(v):
            return v.detach().cpu().tolist() if isinstance(v, torch.Tensor) else v
        return {k: plain(getattr(self, k)) for k in ("gamma", "chi", "M0", "T")}
