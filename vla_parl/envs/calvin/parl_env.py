"""PA-RL's CALVIN setting as a gymnasium env: four tasks in one 360-step episode.

The robot must complete open_drawer, turn_on_lightbulb, move_slider_left and turn_on_led, in any
order, within 360 control steps of our CALVIN scene D. Reward at each step = (number of the four tasks
completed so far) − 4, so it is −4 until the first task is done and 0 once all four are; the episode
terminates when all four are done and is truncated at 360 steps.

Observation (`gymnasium.spaces.Dict`): `rgb_static` uint8 [200, 200, 3], `robot_obs` [15],
`scene_obs` [24]. Action: `Box(-1, 1, (7,))` relative `[dx, dy, dz, droll, dpitch, dyaw, gripper]`
(gripper > 0 → open, else close). The initial state has the drawer closed, the slider right and both
lights off; blocks are placed at random on the table and in the slider (seeded by `reset(seed=…)`).
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np

from vla_parl.envs.calvin.scene import CalvinSceneEnv
from vla_parl.envs.calvin.tasks import PARL_TASKS

__all__ = ["CalvinParlEnv"]


class CalvinParlEnv(gym.Env):
    """PA-RL's 4-task CALVIN environment (see the module docstring).

    Args:
        data_path: CALVIN assets (see `CalvinSceneEnv`).
        max_steps: episode length (360).
        tasks: the tasks to complete (default `PARL_TASKS`).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, data_path: str | os.PathLike | None = None, *, max_steps: int = 360,
                 tasks: tuple[str, ...] = PARL_TASKS, render_mode: str | None = "rgb_array") -> None:
        self.sim = CalvinSceneEnv(data_path, cameras=("static",))
        self.tasks = tuple(tasks)
        self.max_steps = max_steps
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Dict({
            "rgb_static": gym.spaces.Box(0, 255, (200, 200, 3), np.uint8),
            "robot_obs": gym.spaces.Box(-np.inf, np.inf, (15,), np.float64),
            "scene_obs": gym.spaces.Box(-np.inf, np.inf, (24,), np.float64),
        })
        self.action_space = gym.spaces.Box(-1.0, 1.0, (7,), np.float32)
        self._last_obs: dict[str, Any] | None = None

    @staticmethod
    def _flatten(obs: dict[str, Any]) -> dict[str, np.ndarray]:
        return {"rgb_static": obs["rgb_obs"]["rgb_static"], "robot_obs": obs["robot_obs"],
                "scene_obs": obs["scene_obs"]}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.sim.rng = np.random.default_rng(self.np_random.integers(2**63))
        self.sim.reset()  # doors closed, lights off, random blocks
        options = options or {}
        if "robot_obs" in options or "scene_obs" in options:
            self.sim.reset(options.get("robot_obs"), options.get("scene_obs"))
        obs = self.sim.get_obs()
        self._start_info = self.sim.get_info()
        self.completed: set[str] = set()
        self.t = 0
        self._last_obs = obs
        return self._flatten(obs), {"completed": [], "start_scene_obs": obs["scene_obs"].copy()}

    def step(self, action):
        a = np.asarray(action, dtype=np.float64).reshape(7).copy()
        a[:6] = np.clip(a[:6], -1.0, 1.0)
        a[6] = 1.0 if a[6] > 0 else -1.0
        obs, _, _, info = self.sim.step(a)
        self.t += 1
        self.completed |= self.sim.completed_tasks(self._start_info, info, set(self.tasks) - self.completed)
        reward = float(len(self.completed) - len(self.tasks))
        terminated = len(self.completed) == len(self.tasks)
        truncated = not terminated and self.t >= self.max_steps
        self._last_obs = obs
        return self._flatten(obs), reward, terminated, truncated, {"completed": sorted(self.completed)}

    def render(self):
        return None if self._last_obs is None else self._last_obs["rgb_obs"]["rgb_static"]

    def close(self) -> None:
        self.sim.close()
