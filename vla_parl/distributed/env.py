"""The process group, from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "dist_info", "init_distributed", "barrier", "all_reduce_mean"]


@dataclass(frozen=True)
class DistInfo:
    """rank / world_size of this process (0 / 1 without a process group) and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()


def dist_info() -> DistInfo:
    """Where this process stands; works with or without an initialised process group."""
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device)
    return DistInfo(0, 1, local_rank, device)


def init_distributed(backend: str | None = None) -> DistInfo:
    """Initialise the default process group when launched by torchrun (WORLD_SIZE set); else a no-op.

    backend: "nccl" when CUDA is available, else "gloo" (CPU), unless given.
    """
    if "WORLD_SIZE" in os.environ and dist.is_available() and not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    return dist_info()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: float | torch.Tensor) -> float:
    """Mean of a scalar over ranks (the value itself without a process group)."""
    tensor = torch.as_tensor(value, dtype=torch.float64).detach().reshape(1).clone()
    if dist.is_available() and dist.is_initialized():
        if dist.get_backend() == "nccl":
            tensor = tensor.cuda()
        dist.all_reduce(tensor)
        tensor /= dist.get_world_size()
    return float(tensor.item())
