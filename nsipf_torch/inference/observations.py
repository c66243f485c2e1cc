"""Observed densities for parameter inference: the ``obs.npz`` format, its validation and converters.

An ``obs.npz`` holds, on the N^d cell-centred data grid of [-L, L]^d (d = 2 or 3):

    t      (K,)           observation times, > 0 and strictly increasing
    rho    (K, N, ..., N) observed rho: cell averages (any noise is in these values)
    rho0   (N, ..., N)    rho at t = 0: cell averages, in absolute units
    c0     (N, ..., N)    c at t = 0: values at the cell centres, in absolute units
    L      ()             optional half box width (default 1)
    M0     ()             optional mass of rho; rho0 is rescaled to carry it (default: the mass of rho0)
    chi_true, gamma_true  optional: the parameters that made synthetic data (reported beside the estimates)
    c_equation     optional: the c-equation the data were made with, a JSON string of the flags --c-equation,
                   --eps, --Dc, --alpha, --beta, --sensitivity, --kappa (:meth:`CEquation.to_dict`)

:func:`observations_from_run` converts a ``simulate.py`` run directory (snap_KKKK.npz with a leading batch
axis, config.json) into this format, the run's c-equation with it; :func:`save_observations` writes it.
:func:`resolve_c_equation` decides the system a fit uses: the data's own unless the caller's contradicts it.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nsipf_torch.io.files import load_npz, save_npz
from nsipf_torch.solvers.c_equation import OPTIONS, CEquation

REQUIRED_KEYS = ("t", "rho", "rho0", "c0")


@dataclass(frozen=True)
class Observations:
    """Validated observations (float64 numpy arrays); build with :func:`make_observations`."""

    t: np.ndarray
    rho: np.ndarray
    rho0: np.ndarray
    c0: np.ndarray
    L: float = 1.0
    M0: float = 1.0
    chi_true: float | None = None
    gamma_true: float | None = None
    c_equation: CEquation | None = None  # what made the data, when known (a simulate run, synthetic data)

    @property
    def dim(self) -> int:
        return self.rho0.ndim

    @property
    def N(self) -> int:
        return self.rho0.shape[0]

    @property
    def K(self) -> int:
        return self.t.shape[0]


def _array(name: str, value) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} is not a numeric array ({err})") from err
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return arr


def _scalar(name: str, value) -> float:
    arr = _array(name, value)
    if arr.size != 1:
        raise ValueError(f"{name} must be a scalar, got shape {arr.shape}")
    return float(arr.reshape(()))


def make_observations(t, rho, rho0, c0, L=None, M0=None, chi_true=None, gamma_true=None,
                      c_equation: CEquation | None = None) -> Observations:
    """Check every field (shapes, signs, finiteness, times) and return :class:`Observations`.

    c0 >= 0 except with a mean-free ``c_equation`` (elliptic, alpha = 0), whose c has no level. Raises
    ``ValueError`` naming the first offending value.
    """
    if c_equation is not None and not isinstance(c_equation, CEquation):
        raise ValueError(f"c_equation must be a CEquation, got {type(c_equation).__name__}")
    t, rho, rho0, c0 = (_array(n, v) for n, v in (("t", t), ("rho", rho), ("rho0", rho0), ("c0", c0)))
    if t.ndim != 1:
        raise ValueError(f"t must be a 1-D array of observation times, got shape {t.shape}")
    if t.shape[0] == 0:
        raise ValueError("t is empty: at least one observation time (K >= 1) is needed")
    if (t <= 0).any():
        raise ValueError(f"observation times must be > 0, got min(t) = {t.min():g}")
    if (np.diff(t) <= 0).any():
        raise ValueError(f"observation times must be strictly increasing, got t = {t.tolist()}")
    dim = rho0.ndim
    if dim not in (2, 3):
        raise ValueError(f"rho0 must be an N^d grid with d = 2 or 3, got shape {rho0.shape}")
    N = rho0.shape[0]
    if any(s != N for s in rho0.shape) or N < 4:
        raise ValueError(f"rho0 must be a cubic grid (N, ..., N) with N >= 4, got shape {rho0.shape}")
    if c0.shape != rho0.shape:
        raise ValueError(f"c0 has shape {c0.shape}, rho0 has {rho0.shape}")
    if rho.shape != (t.shape[0], *rho0.shape):
        raise ValueError(f"rho must have shape (K, {', '.join(['N'] * dim)}) = {(t.shape[0], *rho0.shape)} "
                         f"for K = len(t) and the grid of rho0, got {rho.shape}")
    signed = (("rho", rho), ("rho0", rho0)) + ((("c0", c0),) if c_equation is None or not c_equation.mean_free else ())
    for name, arr in signed:
        if (arr < 0).any():
            raise ValueError(f"{name} has negative values (min {arr.min():g}); densities must be >= 0")
    L = 1.0 if L is None else _scalar("L", L)
    if L <= 0:
        raise ValueError(f"L must be > 0, got {L}")
    mass0 = float(rho0.sum()) * (2.0 * L / N) ** dim
    if mass0 <= 0:
        raise ValueError("rho0 has zero mass")
    if M0 is not None:
        M0 = _scalar("M0", M0)
        if M0 <= 0:
            raise ValueError(f"M0 must be > 0, got {M0}")
        rho0 = rho0 * (M0 / mass0)
    else:
        M0 = mass0
    truths = [None if v is None else _scalar(n, v) for n, v in (("chi_true", chi_true), ("gamma_true", gamma_true))]
    return Observations(t, rho, rho0, c0, L, M0, *truths, c_equation)


def c_equation_from(options: dict, where: str) -> CEquation:
    """The :class:`CEquation` of recorded flag values (a config.json, an obs.npz); ``ValueError`` naming
    ``where`` when they are not a valid one."""
    try:
        return CEquation.from_options(**{k: options[k] for k in OPTIONS if k in options})
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: the recorded c-equation is not valid ({err})") from err


def resolve_c_equation(obs: Observations, given: CEquation | dict | None = None) -> CEquation:
    """The system a fit of ``obs`` uses: the data's own (``obs.c_equation``) or, when the data do not say,
    ``given`` (a :class:`CEquation` or a dict of any of the flags :data:`~nsipf_torch.solvers.c_equation.OPTIONS`,
    built as simulate.py builds them), else the consumption default. A given value that contradicts the
    data's is a ``ValueError`` naming the flag: data made with one system cannot be fitted with another."""
    if isinstance(given, CEquation):
        given = given.to_dict()
    elif given is None:
        given = {}
    elif not isinstance(given, dict) or set(given) - set(OPTIONS):
        raise ValueError(f"c_equation must be a CEquation or a dict of {', '.join(OPTIONS)}, got {given!r}")
    ceq = CEquation.from_options(**given)  # the given flags alone are refused as simulate.py refuses them
    if obs.c_equation is None:
        return ceq
    own, asked = obs.c_equation.to_dict(), ceq.to_dict()
    for name in given:
        if asked[name] != own[name]:
            raise ValueError(f"--{name.replace('_', '-')} {asked[name]} contradicts the data, which were made with "
                             f"{name} = {own[name]} (c-equation {own['c_equation']}); leave it out to fit the data's own")
    return obs.c_equation


def load_observations(path: str | Path) -> Observations:
    """Read and validate an ``obs.npz``; any problem is a ``ValueError`` naming the file and the value."""
    path = Path(path)
    arrays = load_npz(path, "data file")
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{str(path)!r} lacks the key(s) {', '.join(missing)} (needs {', '.join(REQUIRED_KEYS)})")
    optional = {k: arrays[k] for k in ("L", "M0", "chi_true", "gamma_true") if k in arrays}
    try:
        if "c_equation" in arrays:
            optional["c_equation"] = c_equation_from(_recorded(arrays["c_equation"]), "the key c_equation")
        return make_observations(arrays["t"], arrays["rho"], arrays["rho0"], arrays["c0"], **optional)
    except ValueError as err:
        raise ValueError(f"{str(path)!r}: {err}") from err


def _recorded(value: np.ndarray) -> dict:
    """The flags of an obs.npz's c_equation key (a JSON object in a 0-d string array)."""
    try:
        options = json.loads(str(value.reshape(())) if value.dtype.kind == "U" else "")
    except (ValueError, TypeError):
        options = None
    if not isinstance(options, dict):
        raise ValueError("the key c_equation must be a JSON object of the c-equation flags (a string)")
    return options


def save_observations(path: str | Path, obs: Observations) -> Path:
    extra = {k: getattr(obs, k) for k in ("chi_true", "gamma_true") if getattr(obs, k) is not None}
    if obs.c_equation is not None:
        extra["c_equation"] = np.array(json.dumps(obs.c_equation.to_dict()))
    return save_npz(path, t=obs.t, rho=obs.rho, rho0=obs.rho0, c0=obs.c0, L=obs.L, M0=obs.M0, **extra)


def observations_from_run(run_dir: str | Path, member: int = 0) -> Observations:
    """The snapshots of a ``simulate.py`` run as observations of one batch member.

    snap_0000 (t = 0) gives rho0 and c0, the later snapshots the observed rho; the member's gamma and chi
    are kept as ``gamma_true``/``chi_true``. The run's rho are cell averages for fdm and deposited cell
    masses / h^d for the particle methods; c is the grid field (cell centres).
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    snaps = sorted(run_dir.glob("snap_[0-9][0-9][0-9][0-9].npz"))
    if not config_path.is_file() or not snaps:
        raise ValueError(f"{str(run_dir)!r} is not a simulate.py run directory (needs config.json and snap_KKKK.npz)")
    try:
        config = json.loads(config_path.read_text())["config"]
        loaded = []
        for p in snaps:
            with np.load(p, allow_pickle=False) as d:
                loaded.append({k: d[k] for k in ("t", "rho", "c", "gamma", "chi")})
    except (KeyError, ValueError, OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read the run in {str(run_dir)!r}: {err}") from err
    B = loaded[0]["rho"].shape[0]
    if not 0 <= member < B:
        raise ValueError(f"member {member} out of range: the run has {B} member(s)")
    if float(loaded[0]["t"]) != 0.0 or len(loaded) < 2:
        raise ValueError(f"{str(run_dir)!r} needs snap_0000 at t = 0 and at least one later snapshot")
    _warn_if_collapsed(run_dir / "summary.json", member)
    first = loaded[0]
    # a run from before the c-equation was a choice (no c_equation in its config) ran the paper's system
    ceq = c_equation_from(config, f"{str(config_path)!r}")
    return make_observations(
        t=[float(s["t"]) for s in loaded[1:]],
        rho=np.stack([s["rho"][member] for s in loaded[1:]]),
        rho0=first["rho"][member], c0=first["c"][member], L=config["L"],
        chi_true=float(first["chi"][member]), gamma_true=float(first["gamma"][member]), c_equation=ceq)



def _warn_if_collapsed(path: Path, member: int) -> None:
    """A member that collapsed (summary.json) ends on a snapshot past the collapse criterion, which the
    forward model rejects at every parameter point that reproduces it: say so (the data are kept)."""
    try:
        hit = json.loads(path.read_text())["collapses"][member]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return
    if isinstance(hit, dict) and "t" in hit:
        warnings.warn(f"member {member} of the run collapsed at t = {hit['t']:.4g}: its last snapshot is past the "
                      "collapse criterion, which the fit's forward model rejects, so the estimate is the nearest "
                      "point that does not collapse; fit the snapshots before it (obs.npz) instead", stacklevel=2)
