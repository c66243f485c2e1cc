"""Particle sharding across processes with torch.distributed: no engine of our own.

``torchrun --nproc_per_node=K simulate.py ...`` starts K processes; each owns a contiguous slice of every
member's particles. A run joins the process group first (:func:`init_world`), then binds to its rank's
device (GPU LOCAL_RANK), then checks its configuration there (free memory), so no rank opens a context on
another's GPU. Each rank draws only its slice of a member's global initial sample, which is made of
fixed-size chunks, each from its own (seed, chunk) stream (:func:`nsipf_torch.particles.move.initial_particles`):
the initial state does not depend on the world size. Each rank's Brownian noise comes from its own
(seed, rank) stream. Each step every rank histograms its particles and an all-reduce sums the integer
counts: nearest-grid-point deposits are therefore exact and identical on every rank, and c, updated from
them, stays identical too. Cloud-in-cell deposits are float sums whose all-reduce order may differ in the
last bit between world sizes (mass is still conserved to round-off). NCCL is used on CUDA, gloo on the CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from nsipf_torch.particles.deposit import counts_to_rho, deposit, deposit_counts
from nsipf_torch.problems.grid import Grid


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0  # the rank among this node's processes: its GPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def place(self, device: torch.device) -> torch.device:
        """This rank's device for a run asked on ``device``: its own GPU under torchrun, ``device`` otherwise."""
        if self.size > 1 and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def shard(self, P: int) -> slice:
        """This rank's particles of a member: P must divide evenly (a documented rule, checked up front)."""
        if P % self.size:
            raise ValueError(f"P={P} particles cannot be split evenly over {self.size} processes; "
                             f"choose P divisible by the world size")
        n = P // self.size
        return slice(self.rank * n, (self.rank + 1) * n)

    def all_reduce_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks in place (a no-op for one process)."""
        if self.size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor


def init_world(device: torch.device) -> World:
    """Join the process group that torchrun describes in the environment; a single process otherwise.

    The first thing a run does, before anything asks CUDA for memory: with CUDA the process binds to GPU
    LOCAL_RANK here, and the run's tensors go to :meth:`World.place` of its device.
    """
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return World()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), local_rank)


def close_world(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def sharded_deposit(world: World, grid: Grid, M0: float, P_total: int, method: str = "ngp"):
    """``deposit_fn`` for the SIPF step when each rank holds P_total / world.size particles of each member.

    NGP: local integer counts, all-reduced, then rho = count M0 / (P_total h^d): exact and independent of
    the world size. CIC: each rank deposits its share of the mass and the float fields are all-reduced.
    """
    if method == "ngp":
        return lambda X: counts_to_rho(world.all_reduce_(deposit_counts(X, grid)), grid, M0, P_total)
    return lambda X: world.all_reduce_(deposit(X, grid, M0 * X.shape[1] / P_total, method))
