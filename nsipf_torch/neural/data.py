"""Training data of the neural interpolator, made from radial solutions (docs/MODEL.md §3).

Generation, step by step (everything is seeded by ``DataConfig.seed``; the training and the validation
set use disjoint seed streams, so validation is held out *by whole radial trajectory*):

1. **Radial problems.** ``n_traj`` problems of the radial PHKS system (paper eqs. 35-36) on a ball of
   radius ``R``. rho0 is a Gaussian of width sigma_rho in [0.06, 0.2] and mass M in [0.3, 1.2]; c0 is
   a * exp(-(r - r_c)^2 / (2 sigma_c^2)), amplitude a in [0.5, 12] (log-uniform), sigma_c in [0.08, 0.4],
   centred (r_c = 0) or, with probability 0.3, a ring r_c in [0.2, 0.7] (the local shape of ``annuli``'s
   food); gamma in [0.005, 0.02] and chi in [0.5, 2] log-uniform. The first two training trajectories are
   the canonical ``blob`` and one blob of ``two_blobs`` on its food (docs/MODEL.md §5). The batched solver
   :func:`nsipf_torch.solvers.radial.solve_radial` returns c(r, t) at every particle step t_k = k dt up to T.
2. **Persistent particles.** ``P_max`` particles per problem start from rho0 and follow
   dX = chi grad c(X, t) dt + sqrt(2 gamma) dW, with the exact radial c of step 1 (so their density is the
   radial rho) and reflection at |x| = R. Their *paths* persist over the same dt steps a simulation takes,
   so the holes a slow particle digs into c stay correlated in time, exactly as in SIPF. (Resampling the
   particles independently each step would understate the roughness several-fold.)
3. **Grids.** Each problem gets ``grids_per_traj`` grids: spacing h = 2/N with N log-uniform in
   [N_min, N_max] (h/sigma of every grid the one checkpoint serves), a random sub-cell shift of the lattice
   against the radial centre, and a particle count P in [P_min, P_max] (the first P particles, mass M/P
   each). Every step the particles are deposited (nearest grid point, :mod:`nsipf_torch.particles.deposit`) on each grid, and the SIPF field
   c_i = c0(x_i) exp(-sum_k dt rho_hat_i^k) (paper eq. 33, exact form) is accumulated.
4. **Patches.** At ``snapshots`` times in (0, T] (plus t = 0), ``patches_per_grid`` patches per grid are
   cut around randomly chosen particles, so patches sit where the neural interpolator is evaluated:
   - ``rough``: (n + 2 halo)^d coarse cells of the SIPF field of step 3: the input with roughness;
   - ``smooth``: the same cells of the blurred and downsampled exact field (the average of c(r, t) over
     each coarse cell, 4^d sample points): the paper's degraded input, without roughness;
   - ``target``: the exact c(r, t) at the (s n)^d fine cell centres of the central n^d cells.
   Values are raw (not normalised): the CNN is scale-equivariant and the loss normalises per sample.

Which input to train on: a CNN trained on ``rough`` with the exact target beats linear and spline
upsampling on rough patches, but it learns to denoise away the holes the particles dig into c, and end to
end it fails (docs/MODEL.md §6 "over-smoothing c is wrong"). A CNN trained on ``smooth`` alone (``train.py
--roughness off``, the paper's input) amplifies those grid-scale holes in the drift instead (the measured
errors: docs/VALIDATION.md). The
shipped models (``train.py --roughness keep``, the default) take ``rough`` as input and
``target + linear upsampling of (rough - smooth)`` as target: the residual they add is that of the smooth
field, and the holes pass through as linear upsampling would, neither filled nor amplified.

The result is cached in the user cache folder (:func:`cache_folder`) under a name hashed from the config,
written atomically by :func:`nsipf_torch.io.files.save_torch` (tensors and plain values;
``torch.load(weights_only=True)``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm import tqdm

from nsipf_torch.particles.deposit import deposit
from nsipf_torch.problems.grid import Grid
from nsipf_torch.io.files import save_torch
from nsipf_torch.solvers.radial import RadialGrid, gaussian_shell_averages, solve_radial

_PATCH_REACH = 0.9  # patches are centred on particles within this distance of the radial centre per axis


def cache_folder(override: str | Path | None = None) -> Path:
    """Where generated data is cached: ``override`` if given, else ``$NSIPF_CACHE``, else
    ``$XDG_CACHE_HOME/nsipf_torch``, else ``~/.cache/nsipf_torch`` (never inside the package or checkout)."""
    if override:
        return Path(override)
    if os.environ.get("NSIPF_CACHE"):
        return Path(os.environ["NSIPF_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nsipf_torch"


@dataclass(frozen=True)
class DataConfig:
    dim: int = 3
    n_traj: int = 64            # radial trajectories for training (the paper used 50 solutions)
    n_val_traj: int = 8         # held-out trajectories for validation
    snapshots: int = 6          # snapshot times in (0, T], plus t = 0
    grids_per_traj: int = 3     # (N, shift, P) grids per trajectory
    patches_per_grid: int = 3   # patches per grid and snapshot
    tile: int = 8               # n: coarse cells of a patch's output region per axis
    halo: int = 3               # coarse cells of context per side (>= the CNN's receptive radius)
    scale: int = 2              # s: fine cells per coarse cell per axis
    N_min: int = 32
    N_max: int = 128
    P_min: int = 10_000
    P_max: int = 30_000
    T: float = 0.2
    dt: float = 1e-3
    Nr: int = 256
    R: float = 1.5
    chunk: int = 4              # trajectories whose particles move together (memory bound)
    seed: int = 0

    def __post_init__(self):
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {self.dim!r}")
        for name in ("n_traj", "n_val_traj", "snapshots", "grids_per_traj", "patches_per_grid", "tile",
                     "scale", "N_min", "N_max", "P_min", "P_max", "Nr", "chunk"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.N_min > self.N_max or self.P_min > self.P_max:
            raise ValueError(f"need N_min <= N_max and P_min <= P_max, got {self}")
        if not (self.T > 0 and self.dt > 0 and self.R > 0 and self.halo >= 0):
            raise ValueError(f"T, dt, R must be > 0 and halo >= 0, got T={self.T}, dt={self.dt}, R={self.R}")

    def key(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


def _log_uniform(g, lo, hi, n):
    return torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * torch.rand(n, generator=g, dtype=torch.float64))


def _uniform(g, lo, hi, n):
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


PROBLEM_KEYS = ("sigma_rho", "mass", "amp", "sigma_c", "ring", "gamma", "chi")


def sample_problems(n: int, g: torch.Generator, canonical: bool) -> dict[str, torch.Tensor]:
    """Parameters of n radial problems (module docstring, step 1), each a (n,) float64 tensor."""
    p = {
        "sigma_rho": _uniform(g, 0.06, 0.2, n),
        "mass": _uniform(g, 0.3, 1.2, n),
        "amp": _log_uniform(g, 0.5, 12.0, n),
        "sigma_c": _uniform(g, 0.08, 0.4, n),
        "ring": torch.where(torch.rand(n, generator=g, dtype=torch.float64) < 0.3,
                            _uniform(g, 0.2, 0.7, n), torch.zeros(n, dtype=torch.float64)),
        "gamma": _log_uniform(g, 0.005, 0.02, n),
        "chi": _log_uniform(g, 0.5, 2.0, n),
    }
    if canonical:
        # blob: rho0 sigma 0.1 mass 1 on c0 = G(0.2); two_blobs: a blob of mass 1/2 on 10 G(0.3).
        for i, (s, m, a, sc) in enumerate([(0.1, 1.0, 1.0, 0.2), (0.1, 0.5, 10.0, 0.3)][:n]):
            p["sigma_rho"][i], p["mass"][i], p["amp"][i], p["sigma_c"][i], p["ring"][i] = s, m, a, sc, 0.0
            p["gamma"][i], p["chi"][i] = 0.01, 1.0
    return p


def _profile(values: torch.Tensor, r_centres: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of radial profiles values (B, Nr) at radii r (B, ...) -> (B, ...).

    Constant beyond the first and last centre (the profiles are flat at r = 0 and at the wall).
    """
    dr = float(r_centres[1] - r_centres[0])
    u = ((r - r_centres[0]) / dr).clamp(0, values.shape[-1] - 1 - 1e-9)
    i0 = u.floor().long()
    w = u - i0
    flat = r.reshape(r.shape[0], -1)
    i0f, wf = i0.reshape_as(flat), w.reshape_as(flat)
    lo = torch.gather(values, 1, i0f)
    hi = torch.gather(values, 1, i0f + 1)
    return (lo + wf * (hi - lo)).reshape(r.shape)


def _radial_slope(c: torch.Tensor, rgrid: RadialGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """dc/dr at the cell faces (B, Nr+1), zero at r = 0 and at r = R, and the face radii."""
    inner = torch.diff(c, dim=-1) / rgrid.dr
    zero = torch.zeros_like(c[:, :1])
    return torch.cat([zero, inner, zero], dim=-1), rgrid.edges


def _sample_gaussian_ball(sigma, P, dim, R, g):
    """P points per member from the d-dimensional Gaussian of width sigma (B,), folded into the ball."""
    X = torch.randn(sigma.shape[0], P, dim, generator=g, dtype=torch.float64) * sigma.reshape(-1, 1, 1)
    return _reflect_ball(X, R)


def _reflect_ball(X, R):
    r = torch.linalg.vector_norm(X, dim=-1, keepdim=True)
    return torch.where(r > R, X * ((2 * R - r) / r).clamp(min=0.0), X)


def _move(X: torch.Tensor, c_radial: torch.Tensor, rgrid: RadialGrid, chi: torch.Tensor, noise_sd: torch.Tensor,
          dt: float, R: float, g: torch.Generator) -> torch.Tensor:
    """One Euler-Maruyama step (paper eq. 34) of the persistent particles with the exact radial drift of
    c(r) at the step's start (the field the deposit saw); the noise comes from the split's CPU generator."""
    slope, edges = (v.to(torch.float32) for v in _radial_slope(c_radial, rgrid))
    rad = torch.linalg.vector_norm(X, dim=-1)
    grad = _profile(slope, edges, rad).unsqueeze(-1) * X / rad.clamp(min=1e-12).unsqueeze(-1)
    noise = torch.randn(X.shape, generator=g, dtype=torch.float32).to(X.device)
    return _reflect_ball(X + chi * dt * grad + noise_sd * noise, R)


def _generate_split(cfg: DataConfig, n_traj: int, seed: int, canonical: bool, progress: bool = False,
                    device: str | torch.device = "cpu"):
    """One split (module docstring, steps 1-4). The radial solve, the particle paths and the deposits run
    on ``device``; every random number is drawn from the one seeded CPU generator, so the data do not
    depend on the device beyond round-off. Patches are cut on the host."""
    device = torch.device(device)
    g = torch.Generator().manual_seed(seed)
    d, n, k = cfg.dim, cfg.tile, cfg.halo
    prob = sample_problems(n_traj, g, canonical)
    rgrid = RadialGrid(cfg.Nr, cfg.R, d, device=device)
    r = rgrid.r
    on = {key: value.to(device) for key, value in prob.items()}
    rho0 = gaussian_shell_averages(rgrid, on["sigma_rho"], on["mass"])
    c0 = on["amp"].reshape(-1, 1) * torch.exp(-(r - on["ring"].reshape(-1, 1)) ** 2
                                              / (2 * on["sigma_c"].reshape(-1, 1) ** 2))
    steps = round(cfg.T / cfg.dt)
    times = [i * cfg.dt for i in range(steps + 1)]
    _, c_hist = solve_radial(rho0, c0, on["gamma"], on["chi"], rgrid, times, cfg.dt, progress=progress)
    snap_steps = sorted({0} | {round(steps * (j + 1) / cfg.snapshots) for j in range(cfg.snapshots)})
    host = _HostView(rgrid.to(device="cpu"), c_hist.cpu(), c0.cpu())

    G = cfg.grids_per_traj
    N = _log_uniform(g, cfg.N_min, cfg.N_max, n_traj * G).reshape(n_traj, G)
    h = 2.0 / N
    shift = torch.rand(n_traj, G, d, generator=g, dtype=torch.float64)
    Pg = _log_uniform(g, cfg.P_min, cfg.P_max, n_traj * G).round().long().reshape(n_traj, G)
    # The SIPF field is accumulated on a lattice covering every patch around a particle with |x_a| < 0.9
    # (cells per side; lattice index i in [-half, half)). Float32 keeps the 128^3 lattices affordable.
    half = torch.ceil(_PATCH_REACH / h).long() + n // 2 + k + 2

    out = {"rough": [], "smooth": [], "target": [], "traj": [], "time": [], "h": [], "P": []}
    bar = tqdm(total=n_traj * steps, desc=f"particle paths ({n_traj} trajectories)", unit="path-step",
               disable=not progress, leave=False)
    for lo in range(0, n_traj, cfg.chunk):
        idx = list(range(lo, min(n_traj, lo + cfg.chunk)))
        # Particles in float32: the paths' statistics, not their last digits, are what the data needs.
        X = _sample_gaussian_ball(prob["sigma_rho"][idx], cfg.P_max, d, cfg.R, g).to(device, torch.float32)
        chi = on["chi"][idx].reshape(-1, 1, 1).to(torch.float32)
        noise_sd = torch.sqrt(2 * on["gamma"][idx] * cfg.dt).reshape(-1, 1, 1).to(torch.float32)
        lattices = [[_Lattice(int(half[t, j]), float(h[t, j]), shift[t, j], d, device) for j in range(G)] for t in idx]
        for step in range(steps + 1):
            if step in snap_steps:
                _cut_patches(cfg, step, idx, X.cpu(), [[lat.acc.cpu() for lat in row] for row in lattices], host,
                             h, shift, Pg, half, g, out)
            if step == steps:
                break
            # Deposit (NGP, nsipf_torch.particles.deposit) each grid's first P particles: sum_k dt rho_hat^k, the
            # exponent of eq. 33.
            for bi, t in enumerate(idx):
                for j in range(G):
                    lattices[bi][j].add(X[bi, :int(Pg[t, j])], cfg.dt * float(prob["mass"][t]))
            X = _move(X, c_hist[idx, step], rgrid, chi, noise_sd, cfg.dt, cfg.R, g)
            bar.update(len(idx))
    bar.close()
    return _collect(out, prob)


def _collect(out: dict, prob: dict) -> dict:
    """The split's patches as float32 tensors, their labels, and one row per trajectory with the parameters
    that define it (tests check the splits are disjoint)."""
    data = {key: torch.cat(v) if key in ("rough", "smooth", "target") else torch.tensor(sum(v, []))
            for key, v in out.items()}
    data["problems"] = torch.stack([prob[key] for key in PROBLEM_KEYS], dim=-1)
    for key in ("rough", "smooth", "target"):
        data[key] = data[key].to(torch.float32)
    return data


class _HostView(NamedTuple):
    """What cutting patches reads, on the CPU: the radial grid, c(r, t_k) and c0(r)."""

    rgrid: RadialGrid
    c_hist: torch.Tensor
    c0: torch.Tensor


class _Lattice:
    """One random SIPF grid of a trajectory: 2*half cells of width h per axis, shifted by ``shift`` cells
    against the radial centre, and the flat float32 accumulator of sum_k dt rho_hat^k on it."""

    def __init__(self, half: int, h: float, shift: torch.Tensor, dim: int, device):
        # cell i of the lattice spans x in [(i - half + shift) h, (i - half + shift + 1) h): as a Grid on
        # [-half h, half h] the positions are taken relative to the shifted origin
        self.grid = Grid(2 * half, dim, half * h, device, torch.float32)
        self.offset = (shift * h).to(device, torch.float32)
        self.acc = torch.zeros((2 * half) ** dim, dtype=torch.float32, device=device)

    def add(self, X: torch.Tensor, dt_mass: float) -> None:
        """acc += dt * rho_hat of the particles X (P, d), each of mass ``dt_mass / dt / P``."""
        self.acc += deposit((X - self.offset).unsqueeze(0), self.grid, dt_mass).reshape(-1)


def _cut_patches(cfg, step, idx, X, acc, host: _HostView, h, shift, Pg, half, g, out):
    """The patches of every grid of the trajectories ``idx`` at ``step`` (module docstring, step 4); on the
    host: X (b, P, d) and the accumulators ``acc`` are CPU copies."""
    d, G, m, s, n, k = cfg.dim, cfg.grids_per_traj, cfg.patches_per_grid, cfg.scale, cfg.tile, cfg.halo
    r, c_hist, c0 = host.rgrid.r, host.c_hist, host.c0
    sub = 4  # sample points per axis for the cell average of the smooth input
    offs_in = torch.arange(-k - n // 2, n - n // 2 + k, dtype=torch.float64)  # coarse offsets of a patch
    offs_fine = (torch.arange(s * n, dtype=torch.float64) + 0.5) / s - n // 2  # fine centres, in cells
    offs_sub = (torch.arange(sub, dtype=torch.float64) + 0.5) / sub - 0.5

    def mesh(o):
        return torch.stack(torch.meshgrid(*([o] * d), indexing="ij"), dim=-1)  # (m,)*d x d

    for bi, t in enumerate(idx):
        c_t = c_hist[t:t + 1, step]
        for j in range(G):
            hh, u, H = float(h[t, j]), shift[t, j], int(half[t, j])
            # Centre cells of the patches: the cells of random particles well inside the lattice.
            inside = (X[bi].abs() < _PATCH_REACH).all(dim=-1)
            cand = X[bi][inside]
            pick = cand[torch.randint(cand.shape[0], (m,), generator=g)].to(torch.float64)
            centre = torch.floor(pick / hh - u).long()  # lattice cell (before the +half offset)
            for q in range(m):
                ci = centre[q].to(torch.float64)
                # Coarse cell centres of the patch (relative to the radial centre).
                coarse_idx = ci + mesh(offs_in)  # (m_in,)*d x d, lattice coordinates
                x_coarse = (coarse_idx + u + 0.5) * hh
                lat = coarse_idx.long() + H
                flat = sum(lat[..., a] * (2 * H) ** (d - 1 - a) for a in range(d))
                expo = acc[bi][j][flat].to(torch.float64)
                c0_i = _profile(c0[t:t + 1], r, torch.linalg.vector_norm(x_coarse, dim=-1).unsqueeze(0))[0]
                rough = c0_i * torch.exp(-expo)
                # Blurred + downsampled exact field: the cell average of c(r, t).
                xs = x_coarse.unsqueeze(-2) + hh * mesh(offs_sub).reshape(-1, d)
                smooth = _profile(c_t, r, torch.linalg.vector_norm(xs, dim=-1).unsqueeze(0))[0].mean(dim=-1)
                x_fine = (ci + u + mesh(offs_fine)) * hh
                target = _profile(c_t, r, torch.linalg.vector_norm(x_fine, dim=-1).unsqueeze(0))[0]
                out["rough"].append(rough.unsqueeze(0))
                out["smooth"].append(smooth.unsqueeze(0))
                out["target"].append(target.unsqueeze(0))
                out["traj"].append([t])
                out["time"].append([step * cfg.dt])
                out["h"].append([hh])
                out["P"].append([int(Pg[t, j])])


def make_dataset(cfg: DataConfig, cache_dir: str | Path | None = "", progress: bool = False,
                 device: str | torch.device = "cpu") -> dict:
    """{"train": split, "val": split, "config": asdict(cfg)}; a split maps "rough", "smooth" (N_s, m_in..)
    and "target" (N_s, m_out..) float32 tensors and per-sample "traj", "time", "h", "P".

    Loaded from ``cache_dir/<dim>d-<hash>.pt`` when present, else generated and saved atomically there
    (``""``: the user cache folder of :func:`cache_folder`; ``None``: no cache). ``device``: where the
    radial solve and the particle paths run (the data are the same up to round-off; they return on the CPU).
    """
    path = None
    if cache_dir is not None:
        path = cache_folder(cache_dir) / f"{cfg.dim}d-{cfg.key()}.pt"
        if path.exists():
            return torch.load(path, weights_only=True)
    data = {
        "train": _generate_split(cfg, cfg.n_traj, cfg.seed * 2 + 1, True, progress, device),
        "val": _generate_split(cfg, cfg.n_val_traj, cfg.seed * 2 + 2, False, progress, device),
        "config": dataclasses.asdict(cfg),
    }
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_torch(path, data)
    return data
