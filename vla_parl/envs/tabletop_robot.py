"""The built-in tabletop behind the robot-side `vla_parl_client.Robot` protocol, so the code that drives a
lab's robots (`vla_parl_client.run_episode`, `serving/example_robot_loop.py`, `vla-parl robot sim`) drives
the simulator unchanged. It implements the protocol structurally (nothing from the client is imported).

    robot = TabletopRobot("reach", seeds=[0, 1, 2], image_size=56, max_episode_steps=20, targets=["red"])
    instruction = robot.reset()                       # episode on seed 0
    done = robot.apply_action(action)                 # True when the task is achieved or time is up
    robot.success                                     # the env's `terminated`: the task was achieved

Besides the camera image and proprio [7] it offers `get_state()`, the privileged target-block state [6]
(`tabletop_state`) that a demo critic trained with `privileged_state` reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from vla_parl.envs.tabletop import make_env, tabletop_state

__all__ = ["TabletopRobot"]


class TabletopRobot:
    """One tabletop env as a robot: each `reset()` starts an episode on the next of `seeds`."""

    def __init__(self, task: str = "reach", *, seeds: Iterable[int], image_size: int = 56,
                 max_episode_steps: int = 20, targets: Sequence[str] | None = None) -> None:
        self.env = make_env(task, image_size=image_size, max_episode_steps=max_episode_steps,
                            targets=None if targets is None else list(targets))
        self._seeds = iter(seeds)
        self._obs: dict[str, Any] = {}
        self._info: dict[str, Any] = {}
        self.success = False

    def reset(self) -> str:
        seed = next(self._seeds, None)
        if seed is None:
            raise RuntimeError("TabletopRobot: every seed it was given has been used; give it one per episode")
        self._obs, self._info = self.env.reset(seed=seed)
        self.success = False
        return self._obs["instruction"]

    def get_image(self) -> np.ndarray:
        return self._obs["image"]

    def get_proprio(self) -> np.ndarray:
        return self._obs["proprio"]

    def get_state(self) -> np.ndarray:
        return tabletop_state(self._info)

    def apply_action(self, action: np.ndarray) -> bool:
        space = self.env.action_space
        action = np.clip(np.asarray(action, dtype=np.float32), space.low, space.high)
        self._obs, _, terminated, truncated, self._info = self.env.step(action)
        self.success = bool(terminated)
        return bool(terminated or truncated)

    def close(self) -> None:
        self.env.close()
