"""One interface over the on-disk offline datasets of the recipes: RLDS, LeRobotDataset and CALVIN.

An `OfflineSource` is built from a config's data section (``kind``, ``path`` and the kind's keys) and gives:

* `trajectories(shard=, shuffle=, seed=, images=)` — a stream of standard trajectories (image, proprio, action,
  reward as 0/1 success labels — or CALVIN's PA-RL reward —, is_terminal, instruction), at most
  ``data.max_episodes`` of them, split disjointly across readers by ``shard = (index, count)``;
* `identity()` and `files()` — what the content depends on, to key caches (the transition store, statistics);
* `statistics(name)` — exact normalisation statistics over the whole dataset, cached next to the data.

Nothing here holds more than one episode; tensorflow, HF datasets and PyAV load only when a source is read.
"""

from __future__ import annotations

import os
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator

from vla_parl.errors import ConfigError

__all__ = ["OfflineSource", "STREAMING_KINDS"]

#: data kinds read from files (tabletop demonstrations are generated in memory by the simulator)
STREAMING_KINDS = ("rlds", "lerobot", "calvin")


class OfflineSource:
    """The dataset named by a data section (`recipes._configs.DataSection` or any object with its fields)."""

    def __init__(self, data: Any) -> None:
        if data.kind not in STREAMING_KINDS:
            raise ConfigError(f"data.kind={data.kind} is not read from files; file datasets are {STREAMING_KINDS}")
        self.data = data
        self.kind = data.kind
        self._lerobot = None
        self.rlds_config = None
        self.wrist_key = getattr(data, "wrist_camera_key", None)
        if self.kind == "rlds":
            import dataclasses

            from vla_parl.data.oxe import describe
            from vla_parl.data.rlds import _config_for

            # the wrist camera is read only when asked for (data.wrist_camera_key names its observation key)
            config = _config_for(data.dataset_name, describe(data.dataset_name, getattr(data, "rlds", None)))
            self.rlds_config = dataclasses.replace(config, wrist_image_key=self.wrist_key)
        if self.kind == "calvin" and self.wrist_key not in (None, "rgb_gripper"):
            raise ConfigError(f"data.wrist_camera_key={self.wrist_key!r}: CALVIN's wrist camera is 'rgb_gripper' "
                              f"(set data.wrist_camera_key=rgb_gripper, or null for none).")
        if self.kind == "lerobot":
            from vla_parl.data.lerobot import LeRobotSource

            self._lerobot = LeRobotSource(data.path, camera_key=data.camera_key,
                                          wrist_camera_key=data.wrist_camera_key, state_key=data.state_key,
                                          action_key=data.action_key)

    @property
    def name(self) -> str:
        """The dataset's statistics name: the RLDS dataset name, the LeRobot folder/repo name, or calvin."""
        if self.kind == "rlds":
            return self.data.dataset_name
        return self._lerobot.name if self._lerobot is not None else "calvin"

    def _calvin(self):
        from vla_parl.envs.calvin.reader import CalvinReader

        split = "training" if self.data.split == "train" else self.data.split
        return CalvinReader(self.data.path, split, reward=self.data.reward, gripper_camera=self.wrist_key is not None)

    def identity(self) -> dict[str, Any]:
        """Everything besides the files that determines the trajectories."""
        d = self.data
        base = {"kind": self.kind, "max_episodes": d.max_episodes, "reward": d.reward,
                **({"wrist": self.wrist_key} if self.wrist_key is not None else {})}
        if self.kind == "rlds":
            from vla_parl.data.rlds import _config_for

            cfg = _config_for(d.dataset_name, self.rlds_config)
            return {**base, "name": d.dataset_name, "split": d.split, "standardize": cfg.standardize.__name__,
                    "tag": cfg.version_tag, "image_key": cfg.image_key, "state_keys": cfg.state_keys,
                    "action_key": cfg.action_key, "language_key": cfg.language_key,
                    "skip_without_language": cfg.skip_without_language}
        if self.kind == "lerobot":
            return {**base, **self._lerobot.identity()}
        return {**base, "split": d.split}

    def files(self) -> list[Path]:
        """The content files (their names, sizes and mtimes key the caches)."""
        if self.kind == "rlds":
            from vla_parl.data.rlds import dataset_files, resolve_dataset_dir

            return dataset_files(resolve_dataset_dir(self.data.path, self.data.dataset_name))
        if self.kind == "lerobot":
            return self._lerobot.content_files()
        return self._calvin().content_files()

    def folder(self) -> Path:
        """Where the dataset lives (caches go next to it when it is writable)."""
        if self.kind == "rlds":
            from vla_parl.data.rlds import resolve_dataset_dir

            return resolve_dataset_dir(self.data.path, self.data.dataset_name)
        if self.kind == "lerobot":
            return self._lerobot.root
        return self._calvin().dir

    @property
    def selective_images(self) -> bool:
        """True when `trajectories` can decode the cameras of chosen trajectories only (``images=`` a function)."""
        return self.kind == "lerobot"

    def trajectories(self, *, shard: tuple[int, int] = (0, 1), shuffle: bool = False, seed: int = 0,
                     images: bool | Callable[[int], bool] = True) -> Iterator[dict[str, Any]]:
        """Standard trajectories, at most ``data.max_episodes`` (the first ones), those of reader `shard`.

        `images`: decode the cameras; a function of the trajectory's ordinal in this stream decodes only those it
        accepts where `selective_images` (elsewhere it means True)."""
        d, (index, count) = self.data, shard
        if callable(images) and not self.selective_images:
            images = True
        if self.kind == "lerobot":
            yield from self._lerobot.iter_trajectories(images=images, shard=shard, shuffle=shuffle, seed=seed,
                                                       max_episodes=d.max_episodes)
            return
        if self.kind == "rlds" and d.max_episodes is None:
            from vla_parl.data.rlds import iter_trajectories

            yield from iter_trajectories(d.path, d.dataset_name, split=d.split, shard=shard, shuffle_files=shuffle,
                                         seed=seed, config=self.rlds_config, images=images)
            return
        if self.kind == "rlds":
            from vla_parl.data.rlds import iter_trajectories

            source: Iterator[dict] = iter_trajectories(d.path, d.dataset_name, split=d.split, config=self.rlds_config,
                                                       images=images)
        else:
            source = iter(self._calvin())
        for i, traj in enumerate(islice(source, d.max_episodes)):
            if i % count == index:
                yield traj

    def statistics(self, name: str) -> dict[str, Any]:
        """``{name: stats}`` over the whole dataset (all episodes; cached next to the data or in ~/.cache)."""
        d = self.data
        if self.kind == "rlds":
            from vla_parl.data.statistics import rlds_statistics

            stats, _, _ = rlds_statistics(d.path, d.dataset_name, split=d.split, config=self.rlds_config)
        elif self.kind == "lerobot":
            from vla_parl.data.lerobot import lerobot_statistics

            stats, _, _ = lerobot_statistics(d.path, camera_key=d.camera_key, wrist_camera_key=d.wrist_camera_key,
                                             state_key=d.state_key, action_key=d.action_key)
        else:
            from vla_parl.data.statistics import calvin_statistics

            stats, _, _ = calvin_statistics(d.path, "training" if d.split == "train" else d.split)
        return {name: next(iter(stats.values()))}


def cache_root(store_dir: str | os.PathLike | None) -> Path:
    """The folder of transition stores: `store_dir`, else $VLA_PARL_CACHE/stores, else ~/.cache/vla_parl/stores."""
    if store_dir:
        return Path(store_dir).expanduser()
    base = (os.environ.get("VLA_PARL_CACHE")
            or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vla_parl")
    return Path(base) / "stores"
