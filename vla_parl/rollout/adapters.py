"""Environment adapters for `run_episodes`: the built-in tabletop and PA-RL's 4-task CALVIN setting.

Each adapter builds its env and turns an env step into the fields the policy (`Observation`) and the
replay buffer (`training.data.episodes_to_buffer`) take, with PA-RL's reward convention:

| adapter | image | proprio | state | instruction | reward per step |
|---|---|---|---|---|---|
| `TabletopAdapter` | `image` | `proprio` [7] | block xyz, block − gripper [6] | the env's | −1, 0 on success |
| `CalvinParlAdapter` | `rgb_static` resized | `robot_obs` [15] | — | fixed (all four tasks) | completed − 4 |

Success is `terminated` for both (tabletop: the task is achieved; CALVIN: all four subtasks are done).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from vla_parl.rollout.episodes import EvalResult

__all__ = ["TabletopAdapter", "CalvinParlAdapter"]


class TabletopAdapter:
    """The built-in pybullet tabletop (`vla_parl.envs.make_env`), with the privileged target-block state."""

    max_parallel = 40

    def __init__(self, task: str, *, image_size: int = 56, max_episode_steps: int = 25,
                 targets: Any = None) -> None:
        self.task, self.image_size, self.max_episode_steps = task, image_size, max_episode_steps
        self.targets = targets
        self.obs_shapes = {"image": (image_size, image_size, 3), "proprio": (7,), "state": (6,)}

    def make_env(self) -> Any:
        from vla_parl.envs import make_env

        return make_env(self.task, image_size=self.image_size, max_episode_steps=self.max_episode_steps,
                        targets=self.targets)

    def observe(self, obs: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
        from vla_parl.envs import tabletop_state

        return {"image": obs["image"], "proprio": obs["proprio"], "state": tabletop_state(info),
                "instruction": obs["instruction"]}

    @staticmethod
    def reward(env_reward: float, terminated: bool, info: dict[str, Any]) -> float:
        return float(env_reward) - 1.0          # env: 1 on success, else 0 → PA-RL: 0 / −1

    def metrics(self, result: EvalResult) -> dict[str, float]:
        return {}


class CalvinParlAdapter:
    """PA-RL's CALVIN setting (`vla_parl.envs.calvin.parl_env.CalvinParlEnv` on our CALVIN scene D).

    Args:
        assets: the CALVIN scene assets (a calvin_env checkout or its data/); None searches
            `$CALVIN_ENV_DATA`, an installed calvin_env and `shared/calvin_env_data`. Checked here, so a
            missing asset folder fails before any training.
        image_size: the 200×200 static camera image is resized (area-averaged) to this size; it must match
            the offline data's images when both are mixed.
        max_steps: episode length (PA-RL: 360).
        instruction: the instruction for the whole episode (default `vla_parl.envs.calvin.tasks.PARL_INSTRUCTION`).
    """

    max_parallel = 16            # one pybullet CALVIN scene holds ~100 MB

    def __init__(self, assets: str | os.PathLike | None = None, *, image_size: int = 200, max_steps: int = 360,
                 instruction: str | None = None) -> None:
        from vla_parl.envs.calvin.assets import find_calvin_assets
        from vla_parl.envs.calvin.tasks import PARL_INSTRUCTION

        find_calvin_assets(assets)
        self.assets, self.image_size, self.max_steps = assets, image_size, max_steps
        self.instruction = instruction or PARL_INSTRUCTION
        self.obs_shapes = {"image": (image_size, image_size, 3), "proprio": (15,)}

    def make_env(self) -> Any:
        from vla_parl.envs.calvin.parl_env import CalvinParlEnv

        return CalvinParlEnv(self.assets, max_steps=self.max_steps)

    def observe(self, obs: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
        image = np.asarray(obs["rgb_static"], np.uint8)
        if image.shape[:2] != (self.image_size, self.image_size):
            from PIL import Image

            image = np.asarray(Image.fromarray(image).resize((self.image_size, self.image_size), Image.BOX))
        return {"image": image, "proprio": np.asarray(obs["robot_obs"], np.float32), "instruction": self.instruction}

    def reward(self, env_reward: float, terminated: bool, info: dict[str, Any]) -> float:
        return float(env_reward)                # the env's: (subtasks completed so far) − 4

    def metrics(self, result: EvalResult) -> dict[str, float]:
        """Mean return, episode length and subtasks completed per episode, and each subtask's completion rate."""
        from vla_parl.envs.calvin.tasks import PARL_TASKS

        done = [set(info.get("completed", ())) for info in result.final_infos]
        out = {"collect_return": float(np.mean(result.returns)), "collect_length": float(np.mean(result.lengths)),
               "collect_subtasks": float(np.mean([len(d) for d in done]))}
        out.update({f"collect_rate/{task}": float(np.mean([task in d for d in done])) for task in PARL_TASKS})
        return out
