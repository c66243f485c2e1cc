"""The c-equation c_t = -c rho (paper eq. 2) over one step with rho frozen (paper eq. 33).

``exp`` is exact for frozen rho and keeps c >= 0 unconditionally; ``euler`` is the paper's explicit update
c - dt c rho, which goes negative once dt * rho > 1 in a crowded cell (docs/MODEL.md §6).
Used by both the FD solver (Strang half-steps) and the particle stepper: this is the one c-update.

:class:`CEquation` generalises it to the Keller-Segel family of issue 20 (a diffusing nutrient, the
parabolic and the elliptic production equation, the sensitivity Phi of the drift); its consumption case
at D = 0 with Phi = c is this update, unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nsipf_torch.solvers import spectral

C_UPDATES = ("exp", "euler")


def update_c(c: torch.Tensor, rho: torch.Tensor, dt, mode: str = "exp") -> torch.Tensor:
    """Advance c by dt with rho frozen. ``dt`` is a float or a tensor broadcastable to c."""
    if mode == "exp":
        return c * torch.exp(-dt * rho)
    if mode == "euler":
        return c - dt * c * rho
    raise ValueError(f"unknown c-update {mode!r}; choose one of {C_UPDATES}")


# ---------------------------------------------------------------------------------------------------
# The Keller-Segel family (issue 20): rho_t = div(gamma grad rho - chi rho grad Phi(c)),
# eps c_t = D Delta c - alpha c + beta rho.

C_EQUATIONS = ("consumption", "parabolic", "elliptic")
SENSITIVITIES = ("linear", "log", "receptor")
OPTIONS = ("c_equation", "eps", "Dc", "alpha", "beta", "sensitivity", "kappa")  # the flags (simulate.py, infer.py)


@dataclass(frozen=True)
class CEquation:
    """The c-equation of a run and its sensitivity Phi, one object for the solvers, runners and API.

    - ``consumption``: c_t = D Delta c - c rho (paper eq. 2 at D = 0, the default; D > 0 a diffusing nutrient);
    - ``parabolic``: eps c_t = D Delta c - alpha c + beta rho (eps > 0, D > 0, alpha >= 0, beta > 0);
    - ``elliptic``: 0 = D Delta c - alpha c + beta rho (Patlak-Keller-Segel); with alpha = 0 the no-flux walls
      leave the level of c free, and c is the mean-free solution of -D Delta c = beta (rho - mean rho).

    ``sensitivity`` is Phi in the drift chi grad Phi(c): ``linear`` Phi = c (the paper's), ``log``
    Phi = log(c + kappa), ``receptor`` Phi = c / (1 + c / kappa) (Lapidus-Schiller). A mean-free c has no
    level, so log and receptor are refused with it. Every bad value is a ``ValueError`` naming it.
    """

    equation: str = "consumption"
    eps: float = 1.0
    D: float = 0.0
    alpha: float = 0.0
    beta: float = 1.0
    sensitivity: str = "linear"
    kappa: float = 1.0

    def __post_init__(self):
        if self.equation not in C_EQUATIONS:
            raise ValueError(f"unknown --c-equation {self.equation!r}; choose one of {', '.join(C_EQUATIONS)}")
        if self.sensitivity not in SENSITIVITIES:
            raise ValueError(f"unknown --sensitivity {self.sensitivity!r}; choose one of {', '.join(SENSITIVITIES)}")
        for name in ("eps", "D", "alpha", "beta", "kappa"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"--{_FLAGS[name]} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        kind = self.equation
        if kind == "parabolic" and self.eps <= 0:
            raise ValueError(f"--eps must be > 0 for the parabolic c-equation, got {self.eps} "
                             "(eps = 0 is --c-equation elliptic)")
        if self.D < 0 or (kind != "consumption" and self.D == 0):
            raise ValueError(f"--Dc must be {'>= 0' if kind == 'consumption' else '> 0'} for the {kind} "
                             f"c-equation, got {self.D}")
        if self.alpha < 0:
            raise ValueError(f"--alpha must be >= 0, got {self.alpha}")
        if self.beta <= 0:
            raise ValueError(f"--beta must be > 0, got {self.beta}")
        if self.sensitivity != "linear":
            if self.kappa <= 0:
                raise ValueError(f"--kappa must be > 0 for the {self.sensitivity} sensitivity, got {self.kappa}")
            if self.mean_free:
                raise ValueError(f"--sensitivity {self.sensitivity} needs a level of c, but the elliptic c with "
                                 "--alpha 0 is mean-free (defined up to a constant); use --alpha > 0 or linear")

    @classmethod
    def from_options(cls, c_equation: str = "consumption", eps: float = 1.0, Dc: float | None = None,
                     alpha: float = 0.0, beta: float = 1.0, sensitivity: str = "linear", kappa: float = 1.0):
        """From the flags' names and values (:data:`OPTIONS`, what :meth:`to_dict` writes); ``Dc=None`` is the
        equation's default D: 0 for consumption, 1 for parabolic and elliptic (which need D > 0)."""
        D = Dc if Dc is not None else (0.0 if c_equation == "consumption" else 1.0)
        return cls(c_equation, eps, D, alpha, beta, sensitivity, kappa)

    @property
    def is_paper(self) -> bool:
        """The paper's system (c_t = -c rho, Phi = c): solved by the original code path, bit for bit."""
        return self.equation == "consumption" and self.D == 0 and self.sensitivity == "linear"

    @property
    def elliptic(self) -> bool:
        return self.equation == "elliptic"

    @property
    def mean_free(self) -> bool:
        return self.equation == "elliptic" and self.alpha == 0

    @property
    def can_collapse(self) -> bool:
        """Cells that produce their attractant (parabolic, elliptic) can concentrate without bound."""
        return self.equation != "consumption"

    def phi(self, c: torch.Tensor) -> torch.Tensor:
        """Phi(c), the field whose gradient drives the cells; c itself for the linear sensitivity."""
        if self.sensitivity == "linear":
            return c
        c = c.clamp_min(0.0)  # round-off negatives of a c >= 0 model stay out of log and the receptor law
        if self.sensitivity == "log":
            return torch.log(c + self.kappa)
        return c / (1.0 + c / self.kappa)

    def phi_prime(self, c: float) -> float:
        """Phi'(c) at a level c (the linearised drift of the instability analysis)."""
        if self.sensitivity == "linear":
            return 1.0
        if self.sensitivity == "log":
            return 1.0 / (c + self.kappa)
        return 1.0 / (1.0 + c / self.kappa) ** 2

    def step(self, c: torch.Tensor, rho: torch.Tensor, dt, h: float, dim: int, c_update: str = "exp") -> torch.Tensor:
        """c after time dt with rho frozen (the c-step of the FD Strang split and of the particle step).

        Consumption: ``update_c`` then the exact heat step of D (none at D = 0); parabolic: the exact
        exponential step over tau = dt / eps; elliptic: the solve for rho (dt plays no part). Spectral
        (:mod:`nsipf_torch.solvers.spectral`); c >= 0 is restored from round-off except for a mean-free c.
        """
        if self.equation == "consumption":
            c = update_c(c, rho, dt, c_update)
            return c if self.D == 0 else spectral.heat_step(c, dt, dim, h, self.D).clamp_min(0.0)
        if self.equation == "parabolic":
            c = spectral.parabolic_step(c, rho, dt / self.eps, dim, h, self.D, self.alpha, self.beta)
        else:
            c = spectral.elliptic_solve(rho, dim, h, self.D, self.alpha, self.beta)
        return c if self.mean_free else c.clamp_min(0.0)

    def initial(self, c0: torch.Tensor, rho0: torch.Tensor, h: float, dim: int) -> torch.Tensor:
        """The starting c: the problem's c0, or for the elliptic equation the solve for rho0."""
        return self.step(c0, rho0, 0.0, h, dim) if self.elliptic else c0

    def to_dict(self) -> dict:
        return {"c_equation": self.equation, "eps": self.eps, "Dc": self.D, "alpha": self.alpha, "beta": self.beta,
                "sensitivity": self.sensitivity, "kappa": self.kappa}


_FLAGS = {"eps": "eps", "D": "Dc", "alpha": "alpha", "beta": "beta", "kappa": "kappa"}


def free_energy(rho: torch.Tensor, c: torch.Tensor, ceq: CEquation, gamma, chi, h: float, dim: int) -> torch.Tensor:
    """The Lyapunov functional of the linear-sensitivity Keller-Segel system, per member (B,):

        F = int gamma rho log rho - chi rho c + (chi / (2 beta)) (D |grad c|^2 + alpha c^2) dx,

    non-increasing in time for the parabolic and the elliptic c-equation (at eps = 0 the last two terms
    equal (chi / 2) int rho c). grad c by face differences (zero at the walls), so the discrete F
    uses the same Laplacian as the field solve. gamma, chi: floats or (B,) tensors.
    """
    axes = tuple(range(-dim, 0))
    gamma, chi = (torch.as_tensor(v, dtype=rho.dtype, device=rho.device).reshape(-1) for v in (gamma, chi))
    vol = h**dim
    grad2 = sum((torch.diff(c, dim=a) ** 2).sum(dim=axes) for a in axes) * h ** (dim - 2)
    entropy = torch.xlogy(rho, rho).sum(dim=axes) * vol
    coupling = (rho * c).sum(dim=axes) * vol
    quadratic = (ceq.D * grad2 + ceq.alpha * (c * c).sum(dim=axes) * vol) / (2.0 * ceq.beta)
    return gamma * entropy + chi * (quadratic - coupling)
