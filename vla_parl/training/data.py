"""Datasets for the recipes: tabletop demonstrations, RLDS (BridgeData V2), LeRobotDataset and CALVIN.

Datasets on disk never become a Python list: SFT streams their steps (`vla_parl.data.loader.StepStream`), and the
critic and PA-RL sample a memory-mapped transition store built once per dataset (`open_offline_data`,
`vla_parl.data.transition_store`). The in-memory path below serves the simulator's tabletop demonstrations:

Every source becomes standard episodes (``image`` uint8 [T, H, W, 3], ``proprio`` [T, P], ``action``
[T, A], ``reward`` [T] with PA-RL's sparse −1 per step / 0 on success — or, for CALVIN with
``data.reward=parl``, (PA-RL subtasks completed − 4) — ``instruction``, ``terminal``,
plus the observation after the last step when known) written once into a disk-backed `ReplayBuffer`
(`<run>/data/offline`), which the recipes sample with a seeded `numpy.random.Generator`.
Batches become `Observation`s / `TransitionBatch`es with `batch_to_transitions`.

The tabletop demonstrations are the scripted expert's episodes through `vla_parl.rollout.run_episodes`
(`vla_parl.rollout.experts.expert_episodes`); they also record ``state`` (float [T+1, 6]: the target block's xyz
and its offset from the gripper) for an *asymmetric* critic; the policy never sees it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_episodes", "episodes_to_buffer", "open_offline_buffer",
           "open_offline_data", "dataset_statistics", "batch_to_observation", "batch_to_transitions",
           "episode_statistics"]


def _standard_to_episode(traj: dict[str, Any], reward_kind: str = "sparse") -> dict[str, Any]:
    """sparse: the source's 0/1 success reward → −1 / 0; parl: CALVIN's (subtasks completed − 4), kept."""
    reward = np.asarray(traj.get("reward", np.zeros(len(traj["action"]))), np.float32)
    terminal = bool(np.asarray(traj.get("is_terminal", [False]))[-1])
    out = {"image": np.asarray(traj["image"], np.uint8), "action": np.asarray(traj["action"], np.float32),
           "reward": reward if reward_kind == "parl" else (reward > 0).astype(np.float32) - 1.0, "terminal": terminal,
           "instruction": str(traj.get("instruction", "")), "success": terminal}
    if "proprio" in traj:
        out["proprio"] = np.asarray(traj["proprio"], np.float32)
    if "image_wrist" in traj:   # read only when data.wrist_camera_key asks for it
        out["image_wrist"] = np.asarray(traj["image_wrist"], np.uint8)
    return out


def load_episodes(data: Any, *, progress: bool = False) -> list[dict[str, Any]]:
    """Episodes of a `DataSection` as a list (tabletop: collected now; a dataset on disk: read from data.path,
    at most data.max_episodes — the recipes stream those instead, see `open_offline_data`)."""
    if data.kind == "tabletop":
        from vla_parl.rollout.experts import expert_episodes

        return expert_episodes(data.task, data.num_episodes, data.seed, noise=data.expert_noise,
                               image_size=data.env_image_size, max_episode_steps=data.max_episode_steps,
                               targets=data.targets, speed=tuple(data.expert_speed), progress=progress)
    from vla_parl.data.sources import OfflineSource

    return [_standard_to_episode(traj, data.reward) for traj in OfflineSource(data).trajectories()]


def episode_statistics(episodes: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """`{name: statistics}` for the model's norm_stats (gripper dim left un-normalised)."""
    from vla_parl.data import compute_statistics

    action_dim = episodes[0]["action"].shape[1]
    stats = compute_statistics(({"action": e["action"], **({"proprio": e["proprio"][:len(e["action"])]}
                                                           if "proprio" in e else {})} for e in episodes),
                               action_mask=[True] * (action_dim - 1) + [False])
    return {name: stats}


def episodes_to_buffer(episodes: list[dict[str, Any]], buffer: Any, normalize: Any, gamma: float) -> None:
    """Append episodes to a `ReplayBuffer` with normalised actions and Monte-Carlo returns (Cal-QL); an
    episode's "info" dict (e.g. a robot episode's server id) is kept in the buffer's episode info.

    The returns follow the episode's ``mc_tail`` (`vla_parl.data.rewards.mc_returns`): real-robot episodes
    carry ``"failure"`` (`vla_parl.rollout.RobotEpisodes.to_learner` sets it); simulated rollouts and offline
    data carry none and get the official rule for them, ``"truncated"``."""
    from vla_parl.data import mc_returns
    from vla_parl.data.transition_store import episode_obs

    for ep in episodes:
        buffer.add_episode(episode_obs(ep), normalize(ep["action"]).astype(np.float32), ep["reward"],
                           terminal=ep["terminal"], instruction=ep["instruction"],
                           mc_return=mc_returns(ep["reward"], gamma, tail=ep.get("mc_tail", "truncated")),
                           info={"success": bool(ep.get("success", False)), **ep.get("info", {})})


def open_offline_buffer(root: Path, episodes_fn: Any, normalize: Any, gamma: float, readonly: bool = False) -> Any:
    """The offline data as a replay buffer at `root`, built once (a `complete` marker guards reuse).

    `readonly=True` (non-main ranks, after the main rank built it) only opens the finished buffer."""
    import shutil

    from vla_parl.data import ReplayBuffer

    root = Path(root)
    if readonly:
        if not (root / "complete").is_file():
            raise RuntimeError(f"{root} is not complete: build the offline buffer on the main process first")
        return ReplayBuffer(root, gamma=gamma, readonly=True)
    if not (root / "complete").is_file():
        shutil.rmtree(root, ignore_errors=True)
        buffer = ReplayBuffer(root, gamma=gamma)
        episodes_to_buffer(episodes_fn(), buffer, normalize, gamma)
        (root / "complete").write_text(json.dumps({"episodes": buffer.num_episodes}) + "\n")
        return buffer
    return ReplayBuffer(root, gamma=gamma)


def open_offline_buffer_on_ranks(accelerator: Any, root: Path, load_episodes_fn: Any, normalize: Any,
                                 gamma: float) -> Any:
    """`open_offline_buffer` in a multi-process run: the main rank loads the episodes and builds the buffer
    (only when it is not already complete), the other ranks wait and open it read-only."""
    main = accelerator.is_main_process
    with accelerator.main_process_first():
        needed = main and not (Path(root) / "complete").is_file()
        episodes = load_episodes_fn() if needed else None
        return open_offline_buffer(root, lambda: episodes, normalize, gamma, readonly=not main)


def open_offline_data(accelerator: Any, data: Any, run_dir: Path, load_episodes_fn: Any, normalize: Any,
                      gamma: float, *, progress: bool = False, episodes_given: bool = False) -> Any:
    """The offline transitions of a recipe, as a memory-mapped `ReplayBuffer` with normalised actions.

    ``data.kind=tabletop`` (generated in memory) or episodes handed to the recipe: built into
    ``<run>/data/offline`` (`open_offline_buffer_on_ranks`). A dataset on disk (rlds, lerobot, calvin): the shared
    transition store of that content (`vla_parl.data.transition_store`), built once by the main rank if no run
    has built it yet, then opened read-only by every rank; its raw actions are normalised at sampling time."""
    if data.kind == "tabletop" or episodes_given:
        return open_offline_buffer_on_ranks(accelerator, run_dir / "data" / "offline", load_episodes_fn, normalize,
                                            gamma)
    from vla_parl.data.sources import OfflineSource, cache_root
    from vla_parl.data.transition_store import build_store, open_store, store_path

    source = OfflineSource(data)
    path = store_path(cache_root(data.store_dir), source.name, source.identity(), source.files(), gamma)
    with accelerator.main_process_first():
        if accelerator.is_main_process:
            build_store(path, lambda: (_standard_to_episode(t, data.reward) for t in source.trajectories()), gamma,
                        progress=progress)
        return open_store(path, gamma, action_transform=normalize)


def dataset_statistics(data: Any, name: str) -> dict[str, Any]:
    """`{name: statistics}` of a dataset on disk over all its episodes (cached next to the data)."""
    from vla_parl.data.sources import OfflineSource

    return OfflineSource(data).statistics(name)


def batch_to_observation(obs: dict[str, Any], *, use_state: bool = True) -> Any:
    """A replay batch's ``obs`` (numpy) → `Observation` (torch); a wrist camera goes to ``extras["image_wrist"]``."""
    import torch

    from vla_parl.policy.base import Observation

    extras = {"image_wrist": torch.from_numpy(np.ascontiguousarray(obs["image_wrist"]))} if "image_wrist" in obs else {}
    return Observation(images=torch.from_numpy(np.ascontiguousarray(obs["image"])),
                       instructions=list(obs["instruction"]),
                       proprio=torch.from_numpy(np.asarray(obs["proprio"], np.float32)) if "proprio" in obs else None,
                       state=(torch.from_numpy(np.asarray(obs["state"], np.float32))
                              if use_state and "state" in obs else None),
                       extras=extras)


def batch_to_transitions(batch: dict[str, Any], *, use_state: bool = True) -> Any:
    """A replay batch → `TransitionBatch` (rewards are n-step sums; `done` stops bootstrapping)."""
    import torch

    from vla_parl.parl import TransitionBatch

    return TransitionBatch(obs=batch_to_observation(batch["obs"], use_state=use_state),
                           actions=torch.from_numpy(batch["action"]),
                           rewards=torch.from_numpy(batch["reward"]),
                           next_obs=batch_to_observation(batch["next_obs"], use_state=use_state),
                           dones=torch.from_numpy(batch["done"]),
                           mc_returns=torch.from_numpy(batch["mc_return"]) if "mc_return" in batch else None)
