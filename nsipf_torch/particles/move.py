"""Particles: initial states, the Euler-Maruyama move and reflecting walls (docs/MODEL.md §2 step 4, paper eq. 34).

    X <- reflect( X + chi grad c~(X) dt + sqrt(2 gamma dt) xi ),   xi ~ N(0, I_d)

Reflection at the walls x = ±L is the particle form of the no-flux condition. It is done by folding
modulo 4L (the period of the reflected path), so a step of any length, even several box widths, lands
where a reflected Brownian path would, and a particle exactly on a wall stays there.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from nsipf_torch.problems.grid import Grid
from nsipf_torch.problems.initial import InitialCondition, check_particle_count, member_generator
from nsipf_torch.problems.params import per_member


def reflect(X: torch.Tensor, L: float) -> torch.Tensor:
    """Fold positions into [-L, L] by mirror reflection at both walls, for displacements of any size.

    y = (x + L) mod 4L lies in [0, 4L); the reflected path is y on [0, 2L] and 4L - y on (2L, 4L).
    x = ±L maps to y = 0 or 2L and stays put. Every output is in [-L, L] even after round-off: both
    branches give y' in [0, 2L] and y' - L rounds monotonically between the representable -L and L.
    """
    y = torch.remainder(X + L, 4.0 * L)
    y = torch.where(y > 2.0 * L, 4.0 * L - y, y)
    return y - L


def em_move(X: torch.Tensor, grad_c: torch.Tensor, noise: torch.Tensor, dt: float, gamma, chi,
            L: float = 1.0) -> torch.Tensor:
    """One Euler-Maruyama step (paper eq. 34) followed by reflection at the walls.

    gamma and chi are floats or per-member tensors of shape (B,); noise is standard normal (B, P, d).
    """
    gamma = per_member(gamma, X, 2)
    chi = per_member(chi, X, 2)
    sigma = torch.sqrt(2.0 * gamma * dt) if isinstance(gamma, torch.Tensor) else (2.0 * gamma * dt) ** 0.5
    return reflect(X + (chi * dt) * grad_c + sigma * noise, L)


SAMPLE_CHUNK = 2**20
"""Particles per chunk of a member's initial sample (:func:`chunk_seed`): a sample of at most this many
particles (the main job's 20,000, the 10^6 of the 2-D validation runs) is one draw of the member's own stream."""


def chunk_seed(seed: int, chunk: int) -> int:
    """The seed of chunk ``chunk`` of member ``seed``'s initial sample: particles [chunk * C, (chunk + 1) * C)
    of the global sample (C = :data:`SAMPLE_CHUNK`) are drawn from a stream of their own, so a process that
    owns some of them draws only the chunks it overlaps, and the global sample is the same for every split.
    Chunk 0 is the member's own seed; the others come from a SeedSequence of (seed, chunk), distinct from
    the Brownian streams' (:func:`nsipf_torch.particles.sipf.noise_seed`)."""
    if chunk == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(chunk), 0xC4C4]).generate_state(1, dtype=np.uint64)[0] >> 1)


def initial_particles(ic: InitialCondition, grid: Grid, P: int, seeds: Sequence[int], share: slice | None = None,
                      chunk: int = SAMPLE_CHUNK) -> torch.Tensor:
    """Initial positions (B, hi - lo, d) in grid.dtype on grid.device: particles ``share`` = [lo, hi) (default:
    all P) of each member's global sample.

    Member b's global sample is the concatenation of chunks of ``chunk`` particles, chunk j drawn with
    ``member_generator(chunk_seed(seeds[b], j))``. A process that owns [lo, hi) draws only the chunks it
    overlaps and keeps its part, so the initial state does not depend on how the particles are split, and no
    process draws more than its share plus two chunks. The
    sample is drawn where the grid lives: on the CPU as always, on a GPU from CUDA generators with the same
    seeds (another, equally valid sample, drawn without copying 10^8 positions from the host; as the
    Brownian increments of :func:`nsipf_torch.particles.sipf.draw_noise`).
    """
    if len(seeds) == 0:
        raise ValueError("seeds must name at least one member, got an empty list")
    check_particle_count(P)
    lo, hi = (0, P) if share is None else (share.start, share.stop)
    if not 0 <= lo < hi <= P:
        raise ValueError(f"the share [{lo}, {hi}) is not a non-empty part of the P={P} particles")
    where = grid.to(dtype=torch.float64)
    X = torch.empty(len(seeds), hi - lo, grid.dim, dtype=grid.dtype, device=grid.device)
    for j in range(lo // chunk, -(-hi // chunk)):
        first, size = j * chunk, min(chunk, P - j * chunk)
        keep = slice(max(lo, first) - first, min(hi, first + size) - first)
        into = slice(max(lo, first) - lo, min(hi, first + size) - lo)
        for b, seed in enumerate(seeds):
            part = ic.sample(size, member_generator(chunk_seed(seed, j), grid.device), where)
            X[b, into] = part[keep].to(device=grid.device, dtype=grid.dtype)
    return X
