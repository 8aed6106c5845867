"""PyTorch streaming of RLDS steps: an ``IterableDataset`` that is safe with DataLoader workers and DDP.

Kept apart from `vla_parl.data.rlds` so that reading or inspecting data (the CLI) does not import torch.
"""

from __future__ import annotations

import os
from typing import Iterator

from torch.utils.data import IterableDataset

from vla_parl.data.rlds import _config_for, iter_steps, resolve_dataset_dir
from vla_parl.data.standardize import DatasetConfig

__all__ = ["RLDSStepDataset", "worker_shard"]


def worker_shard() -> tuple[int, int]:
    """(index, count) of this reader among all DDP ranks × DataLoader workers (0, 1 when alone)."""
    rank, world = 0, 1
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            rank, world = dist.get_rank(), dist.get_world_size()
    except ImportError:  # pragma: no cover
        pass
    wid, nw = 0, 1
    try:
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        if info is not None:
            wid, nw = info.id, info.num_workers
    except ImportError:  # pragma: no cover
        pass
    return rank * nw + wid, world * nw


class RLDSStepDataset(IterableDataset):
    """A PyTorch ``IterableDataset`` of standardised RLDS steps, safe with DataLoader workers and DDP.

    Each (rank, worker) reads a disjoint, contiguous slice of the episodes; the union is the whole
    split. Every ``__iter__`` (epoch) builds a fresh pipeline seeded from (seed, epoch, reader index), so
    epochs differ but runs repeat; call `set_epoch` from the training loop to pin the epoch (DDP).
    Items are step dicts (see `vla_parl.data.standardize`); the default collate gives tensors, and
    a list of strings for ``instruction``/``episode_id``.

    Args:
        shuffle_buffer: steps held for shuffling (memory ≈ shuffle_buffer × bytes per step; per worker).
        transform: optional function step → item (e.g. the model's processor), run in the worker.
    """

    def __init__(self, data_dir: str | os.PathLike, name: str, *, split: str = "train",
                 version: str | None = None, shuffle_buffer: int = 1000, seed: int = 0,
                 config: DatasetConfig | None = None, transform=None):
        super().__init__()
        self.data_dir, self.name, self.split, self.version = str(data_dir), name, split, version
        self.shuffle_buffer, self.seed, self.config, self.transform = shuffle_buffer, seed, config, transform
        self.epoch = 0
        resolve_dataset_dir(data_dir, name, version)  # fail early, in the main process
        _config_for(name, config)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict]:
        shard = worker_shard()
        seed = self.seed + 1000003 * self.epoch + 7919 * shard[0]
        self.epoch += 1
        for step in iter_steps(self.data_dir, self.name, split=self.split, version=self.version,
                               config=self.config, shuffle_buffer=self.shuffle_buffer, seed=seed,
                               shard=shard):
            yield self.transform(step) if self.transform else step
