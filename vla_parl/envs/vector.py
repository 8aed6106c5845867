"""Vectorised tabletop envs through gymnasium's vector API."""

from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium as gym

from vla_parl.envs.tabletop import TASKS, TabletopEnv, _check_choice

__all__ = ["make_tabletop_vec_env"]


def make_tabletop_vec_env(num_envs: int, task: str = "lift", *, asynchronous: bool = False,
                          context: str | None = None,
                          **env_kwargs: Any) -> gym.vector.VectorEnv:
    """`num_envs` copies of `TabletopEnv(task, **env_kwargs)` batched by gymnasium.

    Observations come back batched: image uint8 [N, H, W, 3], proprio float32 [N, 7], instruction a
    tuple of N strings; actions are [N, 7]. The default steps the envs in-process (SyncVectorEnv);
    `asynchronous=True` runs each in its own process (AsyncVectorEnv with multiprocessing start method
    `context`, e.g. "spawn"; a script using it needs an `if __name__ == "__main__":` guard). Episodes
    auto-reset with gymnasium's default NEXT_STEP mode; `reset(seed=s)` seeds env i with s + i.
    """
    if not (isinstance(num_envs, int) and num_envs >= 1):
        raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
    _check_choice("task", task, TASKS)
    fns = [partial(TabletopEnv, task=task, **env_kwargs) for _ in range(num_envs)]
    if asynchronous:
        fns[0]().close()  # bad env kwargs fail here with a clear error, not inside the worker processes
        # shared memory mangles gymnasium Text spaces (the instruction): pass observations by pipe
        return gym.vector.AsyncVectorEnv(fns, context=context, shared_memory=False)
    return gym.vector.SyncVectorEnv(fns)
