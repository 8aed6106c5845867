"""The offline transitions of a dataset, built once into a memory-mapped store and shared by every run.

The critic and PA-RL draw random transitions (s, a, r, s', mc_return) from the offline data. Instead of decoding
a dataset into a list and copying it into each run directory, the dataset is written once, episode by episode,
into a store in the replay-buffer format (`vla_parl.data.replay`: per-episode ``.npy`` files opened with
``mmap_mode="r"``, at most ``cache_episodes`` maps open), and every later run — any recipe, any seed — opens the
same store read-only. Peak memory while building is one episode; while sampling, one batch plus the page cache.

**Key.** ``<root>/<name>-<hash20>/`` where the hash is the SHA-256 of the source's identity (kind, keys,
standardisation, split, max_episodes, reward), γ (the stored Monte-Carlo returns depend on it) and the content
files' names, sizes and mtimes (`vla_parl.data.statistics.cache_key`): editing or re-downloading the dataset
makes a new store; nothing else does. ``root`` is ``data.store_dir``, else ``$VLA_PARL_CACHE/stores``, else
``~/.cache/vla_parl/stores``.

**Atomic.** A store is built in ``<root>/.tmp-<key>-<random>/`` (holding an ``fcntl`` lock on
``<root>/.<key>.lock``, so concurrent runs build it once: the others wait and then reuse it), synced, marked
``complete`` and renamed into place. A crash leaves only a ``.tmp-*`` folder, deleted by the next build; a
store folder without ``complete`` is never opened.

**Actions are stored raw** (as in the dataset): each run normalises its samples with its own model's statistics
(`ReplayBuffer(action_transform=...)`), so one store serves models with different statistics.

Disk: one uint8 image per frame at the dataset's resolution plus a few floats (BridgeData V2, 256×256: ~200 KB
per frame, ~280 GB for its 1.4 M frames; ``data.max_episodes`` bounds it).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from vla_parl.data._io import atomic_dir, atomic_write_json
from vla_parl.data.statistics import cache_key
from vla_parl.errors import VLAParlError

__all__ = ["store_path", "build_store", "open_store", "is_complete", "episode_obs", "OBS_KEYS"]

_MARKER = "complete"


#: the observation arrays of a standard episode that go into a store / replay buffer (``image_wrist`` only when the
#: dataset was read with data.wrist_camera_key; tabletop episodes have none, so their replay format is unchanged)
OBS_KEYS = ("image", "image_wrist", "proprio", "state")


def episode_obs(ep: dict[str, Any]) -> dict[str, np.ndarray]:
    """The `OBS_KEYS` arrays of episode `ep`, all of length T or all T + 1 (with the observation after the end)."""
    T = len(ep["action"])
    obs = {k: ep[k] if len(ep[k]) in (T, T + 1) else ep[k][:T] for k in OBS_KEYS if k in ep}
    if len({len(v) for v in obs.values()}) != 1:
        obs = {k: v[:T] for k, v in obs.items()}
    return obs


def store_path(root: str | os.PathLike, name: str, identity: dict[str, Any], files: Iterable[Path],
               gamma: float) -> Path:
    """The folder of the store of this content (exists only once built)."""
    # store_format 2: truncated Monte-Carlo returns and CALVIN parl rewards relative to the default reset state
    key = cache_key({**identity, "gamma": float(gamma), "store_format": 2}, files)[:20]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "dataset"
    return Path(root).expanduser() / f"{safe}-{key}"


def is_complete(path: Path) -> bool:
    return (Path(path) / _MARKER).is_file()


def build_store(path: Path, episodes: Callable[[], Iterable[dict[str, Any]]], gamma: float, *,
                progress: bool = False) -> dict[str, Any]:
    """Build the store at `path` unless it is complete; returns its ``complete`` record.

    `episodes()` yields standard episodes (`vla_parl.training.data` format: image, proprio, action, reward in
    PA-RL's convention, terminal, instruction, success). Concurrent callers build it once (a file lock).
    """
    from vla_parl.data.replay import ReplayBuffer
    from vla_parl.data.rewards import mc_returns

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)            # another run building the same store: wait for it
        if is_complete(path):
            return json.loads((path / _MARKER).read_text())
        for stale in path.parent.glob(f".tmp-{path.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)   # a build that crashed
        shutil.rmtree(path, ignore_errors=True)        # a folder without the marker is not a store
        start = time.perf_counter()
        with atomic_dir(path, f".tmp-{path.name}-") as tmp:
            buffer = ReplayBuffer(tmp, gamma=gamma, durable=False)
            frames = 0
            iterator = episodes()
            if progress:
                from tqdm import tqdm

                iterator = tqdm(iterator, desc=f"building offline store {path.name}", leave=False)
            for ep in iterator:
                buffer.add_episode(episode_obs(ep), np.asarray(ep["action"], np.float32), ep["reward"],
                                   terminal=ep["terminal"], instruction=ep["instruction"],
                                   mc_return=mc_returns(ep["reward"], gamma, tail="truncated"),  # offline data
                                   info={"success": bool(ep.get("success", False))})
                frames += len(ep["action"])
            buffer.close()
            if buffer.num_episodes == 0:
                raise VLAParlError(f"the dataset yielded no episodes for the offline store {path.name} (empty "
                                   f"split, max_episodes=0, or every episode skipped for lacking an instruction).")
            record = {"episodes": buffer.num_episodes, "transitions": frames,
                      "build_seconds": round(time.perf_counter() - start, 3), "gamma": gamma}
            atomic_write_json(tmp / _MARKER, record)
        return record
    finally:
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        os.close(lock_fd)


def open_store(path: Path, gamma: float, action_transform: Callable[[np.ndarray], np.ndarray] | None = None):
    """The complete store at `path`, read-only and memory-mapped, actions passed through `action_transform`."""
    from vla_parl.data.replay import ReplayBuffer

    if not is_complete(path):
        raise VLAParlError(f"offline store {str(path)!r} is not complete: build it first (the main process does, "
                           f"in the critic and parl recipes).")
    return ReplayBuffer(path, gamma=gamma, readonly=True, action_transform=action_transform)
