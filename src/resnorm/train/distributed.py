"""Data-parallel plumbing: the process group under ``torchrun``, the device, small collectives.

Under ``torchrun --nproc_per_node N`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
the rendezvous address) `setup` joins a process group, gloo on CPU and NCCL on CUDA; without
them the run is one process and every collective here is the identity. Rank 0 alone writes the
store and checkpoints; the others learn what it decided through `broadcast`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from resnorm.errors import ConfigError


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` of ``world_size``, its ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False  # whether `setup` created the process group (and must destroy it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without CUDA is a ConfigError."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("train.device", "cuda was asked for but CUDA is not available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def setup(device: str) -> World:
    """Join the ``torchrun`` process group if there is one (or reuse an initialized one)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size <= 1:
        return World(0, 1, 0, dev)
    owns = False
    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        owns = True
    return World(dist.get_rank(), dist.get_world_size(), local_rank, dev, owns)


def teardown(world: World) -> None:
    if world.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, world: World) -> torch.Tensor:
    """``t`` summed over ranks, in place."""
    if world.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast(obj: Any, world: World) -> Any:
    """Rank 0's ``obj`` on every rank (picklable; only between our own processes)."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=world.device)
    return box[0]


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
