"""The one table of methods: each method's name, its table label, its runner factory and the options it takes.

    name            label            runner
    fdm             FDM              finite volumes (docs/MODEL.md §1): FDRunner
    sipf-trilinear  SIPF-trilinear   SIPF (paper eqs. 32-34), trilinear grad c~: ParticleRunner
    sipf-spline     SIPF-spline      SIPF, cubic B-spline grad c~ (the paper's classical SIPF)
    nsipf           NSIPF            SIPF with the CNN interpolator (the paper's NSIPF)

A name is read without regard to case, so a table's label names its method too (``"NSIPF"`` is ``nsipf``).
The API's ``method``/``interp`` pair (``--method sipf --interp spline``) is :func:`from_config`'s way in;
an interpolator added with :func:`register_interp` is a method ``sipf-NAME``.
The API (:func:`nsipf_torch.api.make_runner`), the commands, the memory estimate and the studies all make
their runners here; the interpolators of the particle methods come from the one registry here
(:func:`make_interp`), so the classical ones (:mod:`nsipf_torch.particles.interp`) and the neural one
(:mod:`nsipf_torch.neural.interp`) need not know each other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from nsipf_torch.particles.distributed import World
from nsipf_torch.io.resources import default_checkpoint
from nsipf_torch.neural.interp import NeuralInterp
from nsipf_torch.particles.interp import SplineInterp, TrilinearInterp
from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.params import Params
from nsipf_torch.run.runners import FDRunner, ParticleRunner

FD_OPTIONS = ("limiter", "c_update", "compile", "ceq")
PARTICLE_OPTIONS = ("c_update", "deposit", "compile", "shared_interp", "ceq")
NEURAL_OPTIONS = (*PARTICLE_OPTIONS, "model", "cnn_precision")


def _neural(grid: Grid, model=None, **options):
    return NeuralInterp.from_checkpoint(model or default_checkpoint(grid.dim), grid, **options)


INTERPS = {"trilinear": TrilinearInterp, "spline": SplineInterp, "neural": _neural}


def register_interp(name: str, factory) -> None:
    """Add an interpolator: ``factory(grid, **options)`` returns an object with ``grad_c`` and ``value``."""
    INTERPS[name] = factory


def make_interp(name: str, grid: Grid, **options):
    """The interpolator ``name`` on ``grid``; ``options`` go to its factory (e.g. ``model``, ``precision``
    for "neural", ``chunk`` for the classical ones). A bad name or option is a ``ValueError``."""
    if name not in INTERPS:
        raise ValueError(f"unknown interpolator {name!r}; choose one of {sorted(INTERPS)}")
    try:
        return INTERPS[name](grid, **options)
    except TypeError as err:
        raise ValueError(f"interpolator {name!r}: {err}") from err


@dataclass(frozen=True)
class Method:
    """One row of the table. ``family`` is the API's ``method`` (fdm, sipf, nsipf), ``interp`` the
    particle interpolator (None for fdm), ``options`` the keywords :meth:`runner` takes beyond the run's
    grid, problem, parameters, seeds and particle count (the :class:`~nsipf_torch.api.SimConfig` fields
    of those names; ``shared_interp`` reuses an interpolator already built, e.g. so that compiled code
    is not compiled again for every timed run; ``ceq`` the c-equation, a
    :class:`~nsipf_torch.solvers.c_equation.CEquation`, default the paper's consumption)."""

    name: str
    label: str
    family: str
    interp: str | None
    options: tuple[str, ...]

    @property
    def particles(self) -> bool:
        return self.family != "fdm"

    def runner(self, grid: Grid, ic, params: Params, *, seeds: Sequence[int] = (0,), P: int = 0,
               world: World = World(), **options):
        """The runner of this method: one member per seed (FD: ``len(seeds)`` copies of the one solution,
        which is deterministic). ``compile``: True, or a ``torch.compile`` mode for the particle step.
        An option this method does not take is a ``ValueError`` naming it."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(f"method {self.name} takes no option {', '.join(unknown)}; "
                             f"it takes {', '.join(self.options)}")
        if not self.particles:
            return FDRunner(grid, ic, params, B=len(seeds), limiter=options.get("limiter", "minmod"),
                            c_update=options.get("c_update", "exp"), compile=bool(options.get("compile", False)),
                            ceq=options.get("ceq"))
        interp = options.get("shared_interp")
        if interp is None:
            extra = {}
            if self.interp == "neural":
                extra = {"precision": options.get("cnn_precision", "fp32")}
                if options.get("model") is not None:
                    extra["model"] = options["model"]
            interp = make_interp(self.interp, grid, **extra)
        return ParticleRunner(grid, ic, params, list(seeds), P, interp, c_update=options.get("c_update", "exp"),
                              deposit_method=options.get("deposit", "ngp"), world=world,
                              compile=options.get("compile", False), ceq=options.get("ceq"))


METHODS = {m.name: m for m in (
    Method("fdm", "FDM", "fdm", None, FD_OPTIONS),
    Method("sipf-trilinear", "SIPF-trilinear", "sipf", "trilinear", PARTICLE_OPTIONS),
    Method("sipf-spline", "SIPF-spline", "sipf", "spline", PARTICLE_OPTIONS),
    Method("nsipf", "NSIPF", "nsipf", "neural", NEURAL_OPTIONS),
)}
FAMILIES = tuple(dict.fromkeys(m.family for m in METHODS.values()))  # the API's --method: fdm, sipf, nsipf


def get_method(name: str) -> Method:
    """The method of a name or label (any case); ``sipf-NAME`` for a registered interpolator NAME."""
    key = str(name).lower()
    if key in METHODS:
        return METHODS[key]
    family, _, interp = key.partition("-")
    if family == "sipf" and interp in INTERPS and interp != "neural":
        return Method(key, f"SIPF-{interp}", "sipf", interp, PARTICLE_OPTIONS)
    raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")


def from_config(method: str, interp: str) -> Method:
    """The method of the API's pair: ``fdm``, ``nsipf``, or ``sipf`` with ``interp`` (``neural`` is nsipf)."""
    if method not in FAMILIES:
        raise ValueError(f"unknown --method {method!r}; choose one of {', '.join(FAMILIES)}")
    if method == "fdm":
        return METHODS["fdm"]
    if method == "nsipf" or interp == "neural":
        return METHODS["nsipf"]
    return get_method(f"sipf-{interp}")


def parse_methods(names: Sequence[str], flag: str = "--methods") -> list[str]:
    """Method names or labels as the registry's names, in order; a ``ValueError`` naming ``flag`` on an
    unknown one or none."""
    if not names:
        raise ValueError(f"{flag} must name at least one method")
    try:
        return [get_method(n).name for n in names]
    except ValueError as err:
        raise ValueError(f"{flag}: {err}") from None
