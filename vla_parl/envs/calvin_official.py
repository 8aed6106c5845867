"""Adapter around the official CALVIN simulator (`calvin_env.envs.play_table_env.PlayTableSimEnv`).

Gives it the contract our `CalvinSceneEnv` has (see `vla_parl.eval.calvin.CalvinEnv`), so the same
evaluation code runs on either: `reset(robot_obs, scene_obs)`, `get_obs()`, `step(action)` (the env's
gym 4-tuple is passed through; a gymnasium 5-tuple is folded to 4), `get_info()`, and
`completed_tasks(start_info, end_info, tasks)` backed by the official `Tasks` oracle built from
`conf/tasks/new_playtable_tasks.yaml`.

calvin_env is an optional, heavy stack imported lazily; install it from a git checkout (its
constructor reads the git commit hash and resolves `data/` against the checkout):

    git clone --recursive https://github.com/mees/calvin_env && pip install -e calvin_env
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from vla_parl.errors import MissingExtraError

__all__ = ["OfficialCalvinEnv", "INSTALL_HINT", "import_calvin_env"]

INSTALL_HINT = ("The official CALVIN simulator needs the 'calvin_env' package, which is not installed. "
                "Install it from a git checkout: git clone --recursive https://github.com/mees/calvin_env "
                "&& pip install -e calvin_env (it also needs hydra-core, gitpython, numpy-quaternion, scipy); "
                "or use vla_parl.envs.calvin_scene.CalvinSceneEnv, which needs only pybullet.")


def import_calvin_env():
    """Import and return the `calvin_env` package, or raise `MissingExtraError` with the install hint."""
    try:
        import calvin_env
    except ImportError as e:
        raise MissingExtraError(INSTALL_HINT) from e
    return calvin_env


class OfficialCalvinEnv:
    """calvin_env's `PlayTableSimEnv` behind our CALVIN env contract.

    Args:
        dataset_dir: a CALVIN dataset split (e.g. `task_D_D/validation`) with `.hydra/merged_config.yaml`:
            the env is built exactly as the official evaluation does (`get_env(dataset_dir, show_gui=False)`).
            None: compose calvin_env's `conf/config_data_collection.yaml` (static + gripper cameras,
            `use_vr=False`, `use_scene_info=True`; scene D unless `scene` is given).
        use_egl: GPU rendering via the eglRenderer plugin (False: CPU TinyRenderer; textures differ slightly).
        scene: a scene config name (`calvin_scene_D`, …) for the no-dataset path.
        cameras: `obs_space` for `get_env` (default: static and gripper RGB; the tactile camera needs tacto).
    """

    def __init__(self, dataset_dir: str | os.PathLike | None = None, *, use_egl: bool = False,
                 scene: str = "calvin_scene_D", cameras: dict[str, list[str]] | None = None) -> None:
        calvin_env = import_calvin_env()
        import hydra
        from omegaconf import OmegaConf

        self.root = Path(calvin_env.__file__).resolve().parent.parent
        obs_space = cameras or {"rgb_obs": ["rgb_static", "rgb_gripper"], "depth_obs": []}
        if dataset_dir is not None:
            from calvin_env.envs.play_table_env import get_env

            self.env = get_env(Path(dataset_dir), obs_space=obs_space, show_gui=False, use_egl=use_egl)
        else:
            from hydra import compose, initialize_config_dir

            with initialize_config_dir(config_dir=str(self.root / "conf"), version_base=None):
                cfg = compose("config_data_collection.yaml", overrides=[
                    "cameras=static_and_gripper", f"scene={scene}", "use_vr=False", f"use_egl={use_egl}",
                    "use_scene_info=True"])
            self.env = hydra.utils.instantiate(cfg.env, show_gui=False, use_vr=False, use_scene_info=True)
        tasks_cfg = OmegaConf.load(self.root / "conf" / "tasks" / "new_playtable_tasks.yaml")
        self.tasks = hydra.utils.instantiate(tasks_cfg)

    def reset(self, robot_obs: Any = None, scene_obs: Any = None) -> dict[str, Any]:
        return self.env.reset(robot_obs=robot_obs, scene_obs=scene_obs)

    def get_obs(self) -> dict[str, Any]:
        return self.env.get_obs()

    def step(self, action: Any) -> tuple[dict, float, bool, dict]:
        # the pinned calvin_env scaled a relative action in place: hand it a copy
        out = self.env.step(action.copy() if hasattr(action, "copy") else action)
        if len(out) == 5:  # a gymnasium-style env: (obs, reward, terminated, truncated, info)
            obs, reward, terminated, truncated, info = out
            return obs, reward, bool(terminated or truncated), info
        return out

    def get_info(self) -> dict[str, Any]:
        return self.env.get_info()

    def completed_tasks(self, start_info: dict, end_info: dict, tasks: Iterable[str] | None = None) -> set[str]:
        if tasks is None:
            return set(self.tasks.get_task_info(start_info, end_info))
        return set(self.tasks.get_task_info_for_set(start_info, end_info, set(tasks)))

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if close is not None:
            close()
