"""Read the CALVIN dataset (language-annotated windows of play data) into the standard trajectory format.

Layout (see spec/calvin.md §3): ``<root>/{training,validation}/`` with one ``episode_%07d.npz`` per
frame, ``ep_start_end_ids.npy`` ((N, 2), inclusive frame ids) and
``lang_annotations/auto_lang_ann.npy`` (a pickled dict: ``['language']['ann']`` instructions,
``['language']['task']`` task names, ``['info']['indx']`` inclusive (start, end) windows).

Each annotated window becomes one trajectory: ``image`` = ``rgb_static`` (uint8 200×200×3),
optional ``image_wrist`` = ``rgb_gripper``, ``proprio`` = ``robot_obs`` (15), ``action`` =
``rel_actions`` (7; gripper ±1, as CALVIN's env expects), plus ``scene_obs`` (24) and ``task``.

Rewards (``reward`` key), chosen by ``reward=``:

* ``"sparse"``: r_t = 1 at the window's last frame (the annotated task is complete there), else 0;
  ``is_terminal`` on the last step. Convert to −1/0 with `vla_parl.data.rewards.sparse_rewards`.
* ``"parl"``: r_t = (number of `targets` complete at frame t) − k, with k = len(targets) by default
  (PA-RL/Cal-QL CALVIN: 4 targets, r ∈ {−4, …, 0}); ``is_terminal`` where all targets are complete (the
  trajectory ends at the first such frame). As the official labelling, completion is judged over the whole
  play episode relative to the env's default reset state (`DEFAULT_RESET_SCENE_OBS`: doors closed, lights
  off), not relative to the annotated window's first frame: a drawer opened earlier in the play episode,
  before the window starts, counts at every frame where it is still open. A frame's label therefore depends
  only on its own ``scene_obs``, and a window's labels are those of its frames in the play episode. Only
  tasks decidable from the scene state are allowed (`vla_parl.envs.calvin.tasks.SCENE_STATE_TASKS`);
  contact-based tasks (lift, push, stack…) need the simulator and raise a ConfigError.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from vla_parl.data._io import suggest
from vla_parl.envs.calvin.tasks import PARL_TASKS, SCENE_STATE_TASKS
from vla_parl.errors import ConfigError, VLAParlError

__all__ = ["CalvinReader", "DEFAULT_RESET_SCENE_OBS", "completed_tasks", "load_frame"]

_SPLITS = ("training", "validation")

#: ``scene_obs`` [24] of the env's default reset (calvin_env's, and `CalvinSceneEnv.reset()` without arguments):
#: sliding door right and drawer closed (joints 0), button and switch 0, lightbulb and LED off. The blocks, placed
#: at random there, decide none of the scene-state tasks.
DEFAULT_RESET_SCENE_OBS = np.zeros(24)


def completed_tasks(reference: np.ndarray, scene: np.ndarray, targets: Sequence[str]) -> np.ndarray:
    """Number of `targets` complete at each frame, relative to `reference`. reference [24], scene [T, 24] → int [T].

    complete_i(t) = sign_i · (scene[t, idx_i] − reference[idx_i]) > thr_i (current state, not latched).
    The PA-RL reward uses `DEFAULT_RESET_SCENE_OBS` as the reference.
    """
    unknown = [t for t in targets if t not in SCENE_STATE_TASKS]
    if unknown:
        raise ConfigError(f"PA-RL reward targets {unknown} cannot be judged from scene_obs; choose from "
                          f"{sorted(SCENE_STATE_TASKS)}.{suggest(unknown[0], SCENE_STATE_TASKS)}")
    scene = np.atleast_2d(scene)
    count = np.zeros(len(scene), np.int64)
    for t in targets:
        idx, sign, thr = SCENE_STATE_TASKS[t]
        count += (sign * (scene[:, idx] - reference[idx]) > thr).astype(np.int64)
    return count


def load_frame(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Load the given keys of one CALVIN frame; a clear error names a missing/corrupt file or key."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise VLAParlError(f"CALVIN frame {str(path)!r} lacks keys {missing} (has {sorted(z.files)}).")
            return {k: z[k] for k in keys}
    except FileNotFoundError as exc:
        raise VLAParlError(f"CALVIN frame {str(path)!r} is missing; ep_start_end_ids.npy / the language "
                           f"annotations refer to it. Is the download complete?") from exc
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise VLAParlError(f"CALVIN frame {str(path)!r} is corrupt ({type(exc).__name__}: {exc}). "
                           f"Re-extract it from the dataset archive.") from exc


class CalvinReader:
    """Language-annotated windows of one CALVIN split as standard trajectories.

    Args:
        root: the dataset folder holding ``training/`` and ``validation/`` (e.g. ``task_D_D``).
        split: ``"training"`` or ``"validation"``.
        gripper_camera: also read ``rgb_gripper`` as ``image_wrist``.
        reward: ``"sparse"`` or ``"parl"`` (see the module docstring).
        targets, k: PA-RL targets and offset (k None → len(targets)).
    """

    def __init__(self, root: str | os.PathLike, split: str = "training", *, gripper_camera: bool = False,
                 reward: str = "sparse", targets: Sequence[str] = PARL_TASKS, k: int | None = None):
        if split not in _SPLITS:
            raise ConfigError(f"CALVIN split {split!r} does not exist; use one of {_SPLITS}.{suggest(split, _SPLITS)}")
        if reward not in ("sparse", "parl"):
            raise ConfigError(f"reward {reward!r} unknown; use 'sparse' or 'parl'.")
        self.root = Path(root).expanduser()
        self.dir = self.root / split
        if not self.dir.is_dir():
            have = sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
            raise ConfigError(f"CALVIN split folder {str(self.dir)!r} not found. "
                              + (f"{str(self.root)!r} holds: {', '.join(have) or 'nothing'}." if self.root.is_dir()
                                 else f"{str(self.root)!r} does not exist.")
                              + " Point root at the folder that contains training/ and validation/.")
        self.split, self.gripper_camera, self.reward = split, gripper_camera, reward
        self.targets, self.k = tuple(targets), len(targets) if k is None else k
        if reward == "parl":
            completed_tasks(np.zeros(24), np.zeros((1, 24)), self.targets)  # validates target names
        self.episodes = self._load_npy("ep_start_end_ids.npy").reshape(-1, 2).astype(np.int64)
        ann = self._load_npy("lang_annotations/auto_lang_ann.npy", pickled=True)
        try:
            ann = ann.item()
            self.instructions = [str(a) for a in ann["language"]["ann"]]
            self.tasks = [str(t) for t in ann["language"]["task"]]
            self.windows = np.asarray(ann["info"]["indx"], dtype=np.int64).reshape(-1, 2)
        except (KeyError, TypeError, ValueError) as exc:
            raise VLAParlError(f"{str(self.dir / 'lang_annotations/auto_lang_ann.npy')!r} does not have "
                               f"['language']['ann'/'task'] and ['info']['indx'] ({exc}).") from exc
        if not len(self.windows) == len(self.instructions) == len(self.tasks):
            raise VLAParlError(f"auto_lang_ann.npy is inconsistent: {len(self.windows)} windows, "
                               f"{len(self.instructions)} instructions, {len(self.tasks)} tasks.")
        for s, e in self.windows:
            inside = (self.episodes[:, 0] <= s) & (e <= self.episodes[:, 1])
            if e < s or not inside.any():
                raise VLAParlError(f"annotated window ({s}, {e}) in {str(self.dir)!r} does not lie inside one "
                                   f"episode of ep_start_end_ids.npy.")

    def _load_npy(self, rel: str, pickled: bool = False) -> np.ndarray:
        path = self.dir / rel
        if not path.is_file():
            raise ConfigError(f"{str(path)!r} not found: not a CALVIN split folder (it needs "
                              f"ep_start_end_ids.npy and lang_annotations/auto_lang_ann.npy).")
        try:
            return np.load(path, allow_pickle=pickled)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise VLAParlError(f"{str(path)!r} is corrupt or unreadable ({exc}).") from exc

    def __len__(self) -> int:
        return len(self.windows)

    def frame_path(self, i: int) -> Path:
        return self.dir / f"episode_{i:07d}.npz"

    def content_files(self) -> list[Path]:
        """Files whose size/mtime define this split's content (for statistics cache keys)."""
        ids = sorted({i for s, e in self.windows for i in range(s, e + 1)})
        return [self.dir / "ep_start_end_ids.npy", self.dir / "lang_annotations/auto_lang_ann.npy"] + \
            [self.frame_path(i) for i in ids]

    def trajectory(self, w: int) -> dict:
        """The w-th annotated window as a trajectory dict."""
        s, e = (int(x) for x in self.windows[w])
        keys = ["rel_actions", "robot_obs", "scene_obs", "rgb_static"] + (["rgb_gripper"] if self.gripper_camera else [])
        frames = [load_frame(self.frame_path(i), keys) for i in range(s, e + 1)]
        stack = {k: np.stack([f[k] for f in frames]) for k in keys}
        T = e - s + 1
        scene = stack["scene_obs"].astype(np.float32)
        if self.reward == "sparse":
            reward = np.zeros(T, np.float32)
            reward[-1] = 1.0
            terminal = np.arange(T) == T - 1
        else:
            done = completed_tasks(DEFAULT_RESET_SCENE_OBS, stack["scene_obs"], self.targets)  # as stored: float64
            reward = (done - self.k).astype(np.float32)
            terminal = done >= len(self.targets)
            if terminal.any():  # the episode ends at the first frame where all targets are complete
                end = int(np.argmax(terminal)) + 1
                stack = {k: v[:end] for k, v in stack.items()}
                scene, reward, terminal, T = scene[:end], reward[:end], terminal[:end], end
        traj = {
            "image": stack["rgb_static"].astype(np.uint8),
            "proprio": stack["robot_obs"].astype(np.float32),
            "action": stack["rel_actions"].astype(np.float32),
            "scene_obs": scene,
            "reward": reward, "discount": np.ones(T, np.float32),
            "is_first": np.arange(T) == 0, "is_last": np.arange(T) == T - 1, "is_terminal": terminal,
            "instruction": self.instructions[w], "task": self.tasks[w],
            "episode_id": f"{self.split}:{s}-{e}",
        }
        if self.gripper_camera:
            traj["image_wrist"] = stack["rgb_gripper"].astype(np.uint8)
        return traj

    def __iter__(self) -> Iterator[dict]:
        for w in range(len(self)):
            yield self.trajectory(w)
