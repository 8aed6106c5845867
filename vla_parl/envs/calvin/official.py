"""Adapter around the official CALVIN simulator (`calvin_env.envs.play_table_env.PlayTableSimEnv`).

Gives it the contract our `CalvinSceneEnv` has (see `vla_parl.envs.calvin.protocol.CalvinEnv`), so the same
evaluation code runs on either: `reset(robot_obs, scene_obs)`, `get_obs()`, `step(action)` (the env's
gym 4-tuple is passed through; a gymnasium 5-tuple is folded to 4), `get_info()`, and
`completed_tasks(start_info, end_info, tasks)` backed by the official `Tasks` oracle built from
`conf/tasks/new_playtable_tasks.yaml`.

calvin_env is an optional, heavy stack imported lazily; install it from a git checkout (its
constructor reads the git commit hash and resolves `data/` against the checkout). Published CALVIN
numbers ran on the commit mees/calvin pins (1431a46):

    git clone https://github.com/mees/calvin_env && git -C calvin_env checkout 1431a46
    pip install -e calvin_env   # + hydra-core, hydra-colorlog, gitpython, gym, numpy-quaternion, opencv

`OfficialCalvinEnv.commit` says which commit is in use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from vla_parl.errors import MissingExtraError

__all__ = ["OfficialCalvinEnv", "INSTALL_HINT", "import_calvin_env", "official_commit"]

INSTALL_HINT = ("The official CALVIN simulator needs the 'calvin_env' package, which is not installed. "
                "Install it from a git checkout: git clone --recursive https://github.com/mees/calvin_env "
                "&& pip install -e calvin_env (it also needs hydra-core, hydra-colorlog, gitpython, gym, "
                "numpy-quaternion, opencv-python, scipy); or use vla_parl.envs.calvin.scene.CalvinSceneEnv, "
                "which needs only pybullet.")


def _git_commit(root: Path) -> str | None:
    """The short commit id of the calvin_env checkout at `root` (None if it is not a git checkout)."""
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=7", "HEAD"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def official_commit() -> str | None:
    """The commit of the installed calvin_env checkout (e.g. "1431a46"); raises `MissingExtraError` if absent."""
    return _git_commit(Path(import_calvin_env().__file__).resolve().parent.parent)


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
            the env is built from it as the official evaluation does (`get_env(dataset_dir, show_gui=False)`).
            None: compose the checkout's `conf/config_data_collection.yaml` (no dataset needed; scene D
            unless `scene` is given, `use_vr=False`, `use_scene_info=True`).
        use_egl: GPU rendering via the eglRenderer plugin (False: CPU TinyRenderer; textures differ
            slightly). Honoured on both paths (the official `get_env` ignores it).
        scene: a scene config name (`calvin_scene_D`, …) for the no-dataset path.
        cameras: an `obs_space` as `get_env` takes it (default: static and gripper RGB; the tactile camera
            needs tacto); `{"rgb_obs": [], "depth_obs": []}` renders nothing (state-only policies).
    """

    def __init__(self, dataset_dir: str | os.PathLike | None = None, *, use_egl: bool = False,
                 scene: str = "calvin_scene_D", cameras: dict[str, list[str]] | None = None) -> None:
        calvin_env = import_calvin_env()
        import hydra
        from omegaconf import OmegaConf, open_dict

        self.root = Path(calvin_env.__file__).resolve().parent.parent
        obs_space = cameras if cameras is not None else {"rgb_obs": ["rgb_static", "rgb_gripper"], "depth_obs": []}
        if dataset_dir is not None:
            config = Path(dataset_dir) / ".hydra" / "merged_config.yaml"
            if not config.is_file():
                raise FileNotFoundError(f"{config} not found: pass a CALVIN dataset split (e.g. task_D_D/validation) "
                                        "or dataset_dir=None to build from the calvin_env checkout's conf/")
            cfg = OmegaConf.load(config)
        else:
            from hydra import compose, initialize_config_dir

            with initialize_config_dir(config_dir=str(self.root / "conf"), version_base=None):
                cfg = compose("config_data_collection.yaml", overrides=[
                    "cameras=static_and_gripper", f"scene={scene}", "use_vr=False"])
        wanted = {key.split("_", 1)[1] for key in [*obs_space.get("rgb_obs", []), *obs_space.get("depth_obs", [])]}
        with open_dict(cfg):
            for name in set(cfg.cameras) - wanted:  # as get_env does with obs_space
                del cfg.cameras[name]
        self.env = hydra.utils.instantiate(cfg.env, show_gui=False, use_vr=False, use_scene_info=True, use_egl=use_egl)
        self.use_egl = use_egl
        self.commit = _git_commit(self.root)
        tasks_cfg = OmegaConf.load(self.root / "conf" / "tasks" / "new_playtable_tasks.yaml")
        self.tasks = hydra.utils.instantiate(tasks_cfg)

    def describe(self) -> dict[str, Any]:
        """Which simulator and calvin_env behaviour produce the numbers (stored with results)."""
        return {"simulator": "official", "env_version": self.commit, "use_egl": self.use_egl}

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
        if close is not None and getattr(self.env, "cid", 0) >= 0:
            close()
            self.env.cid = -1  # calvin_env's __del__ closes again: make that a no-op
