"""The drift error of NSIPF against the classical interpolators on smooth fields: three measurements of grad c~.

``affine``: the CNN's value and gradient on random positive affine fields c = a + b.x in float64, at random
points at least the CNN's halo + 1 cells from the walls (the shipped CNNs are exact there by construction,
``nsipf_torch/neural/model.py``; tests/test_neural.py checks it to 1e-10), and the per-fine-cell slope on
c = x + 2.

``polynomials``: each interpolator's gradient at random points of the interior (|x| < 0.6) on positive
linear and quadratic fields c = (x - x0)^k, against the exact gradient, binned by q = c / (h |grad c|) (how
close c is to zero in units of its slope per cell); and the CNN's per-fine-cell slope on c = x + 2 (the
particles' drift is that slope: NSIPF samples its fine field bilinearly).

``planar``: grad c~ at the particles of a SIPF run on a planar problem at time t, against the exact
x-derivative of the 1-D reference c (2048 cells) at t, on the run's rough c and on the reference's smooth c.

``foods``: each interpolator's gradient on the c0 of the held-out ``mixture`` problems (3D, sampled at the
cell centres, no particles), at 4,000 points drawn from a Gaussian of each food's width around its centre,
against the exact gradient, at N = 32 and 64: relative L2 error per food, with its width in cells. Beside
NSIPF's drift (the slope of the multilinear interpolant of the CNN's fine field, first order in the fine
spacing) a variant that was tried and not shipped: the fine field's central differences (``torch.gradient``
of the field padded by reflection), sampled multilinearly, second order (docs/VALIDATION.md, "A
second-order drift, tried").

    python -m studies.interp_exactness --what affine [--model OLD.pt --dim 3]
    python -m studies.interp_exactness --what polynomials
    python -m studies.interp_exactness --what planar --dim 2 --N 64 --P 100000 --steps 100
    python -m studies.interp_exactness --what foods --problem mixture:101,mixture:102
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch

from nsipf_torch.commands.cli import parse_config, usage_error
from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.initial import PlanarIC, get_ic
from nsipf_torch.methods import make_interp
from studies.references import lift, solve_planar_1d
from nsipf_torch.api import MAX_STEPS, make_runner, prepare, run

PROG = "interp_exactness.py"
BINS = ((0, 2), (2, 4), (4, 8), (8, 16), (16, 64), (64, float("inf")))


@dataclass
class ExactnessConfig:
    what: str = field(default="polynomials", metadata={
        "help": "which measurement: affine (the CNN on affine fields), polynomials (grad c on linear and quadratic "
                "fields, binned by q), planar (grad c~ at a SIPF run's particles against the 1-D reference) or "
                "foods (grad c0 around each Gaussian food of mixture problems, 3D, N = 32 and 64)",
        "choices": ("affine", "polynomials", "planar", "foods")})
    dim: int = field(default=0, metadata={"help": "space dimension (0: both for polynomials, 2 for planar)",
                                          "choices": (0, 2, 3)})
    N: int = field(default=0, metadata={"help": "grid size, >= 16 (0: 32 in 3D, 64 in 2D)"})
    P: int = field(default=100_000, metadata={"help": "planar: particles"})
    steps: int = field(default=100, metadata={"help": "planar: steps of 1e-3 before measuring"})
    problem: str = field(default="", metadata={"help": "planar: a planar problem (planar, planar:SEED, planar_c30; "
                                                 "default planar); foods: mixture problems, comma separated "
                                                 "(default mixture:101,mixture:102)"})
    model: str = field(default="", metadata={"help": "the CNN checkpoint (default: the shipped one of the dimension)"})

    def validate(self) -> None:
        if self.N < 0 or 0 < self.N < 16:
            raise ValueError(f"--N must be 0 or >= 16, got {self.N}")
        for flag, value in (("--P", self.P), ("--steps", self.steps)):
            if value < 1:
                raise ValueError(f"{flag} must be >= 1, got {value}")
        foods = self.what == "foods"
        self.problem = self.problem or ("mixture:101,mixture:102" if foods else "planar")
        for name in self.problem.split(",") if foods else [self.problem]:
            if foods and not name.startswith("mixture:"):
                raise ValueError(f"--problem {name!r} is not a mixture problem (foods measures mixture:SEED)")
            try:
                ic = get_ic(name)
            except ValueError as err:
                raise ValueError(f"--problem: {err}") from None
            if not foods and not isinstance(ic, PlanarIC):
                raise ValueError(f"--problem {name!r} is not a planar problem")


def _interps(grid: Grid, model: str = "") -> dict:
    return {"trilinear": make_interp("trilinear", grid), "spline": make_interp("spline", grid),
            "NSIPF": make_interp("neural", grid, model=model or None)}


def _slope_line(nn, dim: int) -> str:
    """The CNN's per-fine-cell slope on c = x + 2 along x, relative to the exact 1, minus 1."""
    mesh = nn.grid.mesh()
    fine = nn.fine_field((mesh[0] + 2.0)[None])[0]
    slope = torch.diff(fine, dim=0) / nn.fine_grid.h
    centre = (slice(8, 16),) + (nn.fine_grid.N // 2,) * (dim - 1)
    return (f"  CNN fine field on c = x + 2: per-fine-cell slope / exact - 1 along x: "
            f"{[round(float(v), 4) for v in slope[centre] - 1.0]}")


def affine(dim: int, N: int, model: str = "") -> None:
    """Max relative errors of the CNN's value and gradient on 20 random positive affine fields."""
    grid = Grid(N, dim, dtype=torch.float64)
    nn = make_interp("neural", grid, model=model or None, tile=None)
    g = torch.Generator().manual_seed(0)
    inner = grid.L - (nn.model.halo + 1) * grid.h
    X = (2 * torch.rand(20, 2000, dim, generator=g, dtype=torch.float64) - 1) * inner
    a = 4.0 + torch.rand(20, generator=g, dtype=torch.float64)
    b = 2 * torch.rand(20, dim, generator=g, dtype=torch.float64) - 1
    c = a.reshape(20, *[1] * dim) + torch.einsum("bd,d...->b...", b, torch.stack(grid.mesh()))
    value = a[:, None] + torch.einsum("bd,bpd->bp", b, X)
    err_v = float(((nn.value(c, X) - value).abs() / value).max())
    err_g = float(((nn.grad_c(c, X) - b[:, None]).norm(dim=-1) / b.norm(dim=-1)[:, None]).max())
    print(f"{dim}D N = {N}, {model or 'shipped CNN'}: 20 affine fields x 2,000 points >= {nn.model.halo + 1} cells "
          f"from the walls, float64: max relative error of the value {err_v:.1e}, of the gradient {err_g:.1e}")
    print(_slope_line(nn, dim))


def polynomials(dim: int, N: int, model: str = "") -> None:
    grid = Grid(N, dim)
    its = _interps(grid, model)
    X = torch.rand(1, 20_000, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.2 - 0.6
    mesh = grid.mesh()
    print(f"{dim}D N = {N}: relative error of grad c at 20,000 interior points, binned by q = c / (h |grad c|)")
    for k, kind in ((1, "linear"), (2, "quadratic")):
        q_all, err = [], {name: [] for name in its}
        for x0 in (-0.7, -0.8, -1.0, -1.5, -3.0, -10.0):
            c = ((mesh[0] - x0) ** k)[None]
            exact = torch.zeros_like(X)
            exact[..., 0] = k * (X[..., 0] - x0) ** (k - 1)
            q_all.append(((X[..., 0] - x0) / (k * grid.h))[0])
            for name, it in its.items():
                err[name].append(((it.grad_c(c, X) - exact).norm(dim=-1) / exact.norm(dim=-1))[0])
        q = torch.cat(q_all)
        for lo, hi in BINS:
            m = (q >= lo) & (q < hi)
            if m.any():
                cells = ", ".join(f"{name} {float(torch.cat(e)[m].mean()):.1e}" for name, e in err.items())
                print(f"  {kind:9s} q in [{lo:g}, {hi:g}): {cells}")
    print(_slope_line(its["NSIPF"], dim))


def planar(dim: int, N: int, P: int, steps: int, problem: str, dt: float = 1e-3, model: str = "") -> None:
    ic = get_ic(problem)
    if not isinstance(ic, PlanarIC):
        raise ValueError(f"{problem!r} is not a planar problem")
    grid = Grid(N, dim)
    its = _interps(grid, model)
    NR = 2048
    _, c_ref = solve_planar_1d(ic, NR, dim, 0.01, 1.0, steps * dt, dt)
    x = -1.0 + (torch.arange(NR, dtype=torch.float64) + 0.5) * (2.0 / NR)
    dc = torch.gradient(c_ref, spacing=(x,))[0]
    smooth = lift(c_ref, grid)[None].contiguous()  # the reference's c on the run's cells
    for driver in ("sipf-spline", "nsipf"):
        setup = prepare(problem, driver, N=N, dim=dim, P=P, T=steps * dt, dt=dt, device="cpu", fallback=False,
                        dtype=str(grid.dtype).removeprefix("torch."), snapshots=1, diag_every=MAX_STEPS)
        runner = make_runner(setup)
        run(setup, runner)
        X, c = runner.X, runner.c
        u = ((X[..., 0] + 1.0) / (2.0 / NR) - 0.5).clamp(0, NR - 1 - 1e-9)
        i0 = u.floor().long()
        w = u - i0
        exact = torch.zeros_like(X)
        exact[..., 0] = dc[i0] * (1 - w) + dc[(i0 + 1).clamp(max=NR - 1)] * w
        cells = []
        for name, it in its.items():
            if hasattr(it, "plan_capacity"):
                it.plan_capacity(X)
            rough = float((it.grad_c(c, X) - exact).norm() / exact.norm())
            smooth_err = float((it.grad_c(smooth, X) - exact).norm() / exact.norm())
            cells.append(f"{name}: rough c {rough:.3f}, smooth c {smooth_err:.3f}")
        print(f"{dim}D N = {N}, P = {P:,}, {problem}, t = {steps * dt:g}, particles of a {driver} run: "
              + "; ".join(cells), flush=True)


def foods(problems: list[str], model: str = "") -> None:
    """Relative L2 error of grad c0 around each food of the mixtures ``problems`` (module docstring)."""
    print("| problem | food width (cells) | N | trilinear | spline | NSIPF | NSIPF, central differences (tried) |")
    print("|---|---|---|---|---|---|---|")
    for name in problems:
        ic = get_ic(name)
        for N in (32, 64):
            grid = Grid(N, 3, dtype=torch.float64)
            c = ic.c0(grid)[None]
            its = _interps(grid, model)
            nn = its["NSIPF"]
            # the tried drift's fields: central differences of the fine field, walls mirrored (replicate, 1 cell)
            padded = torch.nn.functional.pad(nn.fine_field(c)[:, None], (1, 1) * 3, mode="replicate")[:, 0]
            slopes = [s[:, 1:-1, 1:-1, 1:-1].contiguous()
                      for s in torch.gradient(padded, spacing=nn.fine_grid.h, dim=(1, 2, 3))]
            g = torch.Generator().manual_seed(0)
            for centre, width, _ in sorted(ic.foods, key=lambda food: food[1]):
                X = torch.tensor(centre) + width * torch.randn(4000, 3, generator=g, dtype=torch.float64)
                X = X.clamp(-grid.L, grid.L)[None].requires_grad_(True)
                (exact,) = torch.autograd.grad(ic.c0_fn(X.unbind(-1)).sum(), X)
                X = X.detach()
                grads = {key: it.grad_c(c, X) for key, it in its.items()}
                grads["central"] = torch.stack([nn.fine_interp.value(s, X) for s in slopes], dim=-1)
                errors = [f"{float((grad - exact).norm() / exact.norm()):.3f}" for grad in grads.values()]
                print(f"| {name} | {width:.3f} ({width * N / 2:.2f}) | {N} | " + " | ".join(errors) + " |", flush=True)


def main(argv=None) -> int:
    try:
        cfg = parse_config(ExactnessConfig, argv, prog=PROG, description=__doc__.split("\n\n")[0])
    except ValueError as err:
        return usage_error(PROG, err)
    torch.set_num_threads(1)
    if cfg.what == "foods":
        foods(cfg.problem.split(","), cfg.model)
    elif cfg.what in ("affine", "polynomials"):
        for dim in ((cfg.dim,) if cfg.dim else (3, 2)):
            (affine if cfg.what == "affine" else polynomials)(dim, cfg.N or (32 if dim == 3 else 64), cfg.model)
    else:
        dim = cfg.dim or 2
        planar(dim, cfg.N or (32 if dim == 3 else 64), cfg.P, cfg.steps, cfg.problem, model=cfg.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
