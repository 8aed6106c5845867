"""Data layer: RLDS (Open X-Embodiment / BridgeData V2), LeRobotDataset (v2.1/v3.0) and CALVIN readers,
normalisation statistics, sparse rewards and Monte-Carlo returns, a crash-safe disk-backed replay buffer and
the shared offline transition store.

Importing this package is cheap; tensorflow loads only when an RLDS dataset is actually read
(``pip install 'vla-parl[data]'``).

    from vla_parl.data import RLDSStepDataset, CalvinReader, ReplayBuffer, sample_mixed, merge_norm_stats
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    # standardize
    "DatasetConfig": "standardize", "register_dataset": "standardize", "get_dataset_config": "standardize",
    "registered_datasets": "standardize", "bridge_standardize": "standardize",
    "binarize_gripper_actions": "standardize", "trajectory_to_steps": "standardize",
    # rlds
    "iter_trajectories": "rlds", "iter_steps": "rlds", "RLDSStepDataset": "loader", "worker_shard": "loader",
    "resolve_dataset_dir": "rlds", "StepStream": "loader", "StepBatches": "loader", "collate_steps": "loader",
    # lerobot, offline sources and the transition store
    "LeRobotSource": "lerobot", "lerobot_statistics": "lerobot", "write_lerobot": "lerobot_write",
    "OfflineSource": "sources", "build_store": "transition_store", "open_store": "transition_store",
    # calvin (the reader lives with the rest of CALVIN)
    "CalvinReader": "vla_parl.envs.calvin.reader",
    # statistics
    "compute_statistics": "statistics", "rlds_statistics": "statistics", "calvin_statistics": "statistics",
    "merge_norm_stats": "statistics", "load_statistics": "statistics", "save_statistics": "statistics",
    # rewards
    "success_labels": "rewards", "sparse_rewards": "rewards", "mc_returns": "rewards",
    "done_masks": "rewards", "n_step_returns": "rewards",
    # replay
    "ReplayBuffer": "replay", "sample_mixed": "replay", "to_torch": "replay",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = _EXPORTS[name]
        return getattr(importlib.import_module(module if "." in module else f"vla_parl.data.{module}"), name)
    raise AttributeError(f"module 'vla_parl.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
