"""Write tiny datasets in the real on-disk formats (TFDS/RLDS and CALVIN), for tests, benchmarks and
trying the readers without downloading hundreds of GB.

The RLDS writer is tensorflow-datasets' own ``GeneratorBasedBuilder.download_and_prepare`` with the
BridgeData V2 features (JPEG images, float32 state/action, language, RLDS flags, episode metadata), so
the result is laid out exactly like ``<data_dir>/bridge_orig/1.0.0/``. Contents are deterministic
functions of (episode, step), documented in `rlds_episode`, so readers can be checked value by value.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vla_parl.data._io import import_tfds

__all__ = ["rlds_episode", "write_tiny_rlds", "calvin_frame", "write_tiny_calvin"]


def rlds_episode(ep: int, num_steps: int, image_size: int = 64) -> dict:
    """Raw content of synthetic episode `ep` (float32 state/action, uint8 flat-colour images).

    state[t] = [0.01·t·(ep+1), −0.02·t, 0.5 + 0.001·t², 0.1·ep, 0, −0.05·t, gripper_state]
    action[t] = [0.3, …, gripper cmd] with gripper cmd cycling open(1.0) → 0.5 → closed(0.0) …;
    action[0] is all zeros (as in BridgeData V2); image_0[t] = flat colour (10·t, 20·ep, 128).
    Episode 1 has an empty instruction (readers skip it, as OpenVLA does).
    """
    t = np.arange(num_steps, dtype=np.float32)
    grip_cmd = np.array([1.0, 1.0, 0.5, 0.0, 0.0, 0.7, 1.0, 0.02], np.float32)
    state = np.stack([0.01 * t * (ep + 1), -0.02 * t, 0.5 + 0.001 * t ** 2, np.full_like(t, 0.1 * ep),
                      np.zeros_like(t), -0.05 * t, np.where(t % 4 < 2, 1.0, 0.0)], 1).astype(np.float32)
    action = np.full((num_steps, 7), 0.3, np.float32)
    action[:, 6] = grip_cmd[np.arange(num_steps) % len(grip_cmd)]
    action[0] = 0.0
    img = np.zeros((num_steps, image_size, image_size, 3), np.uint8)
    img[..., 0] = (10 * np.arange(num_steps) % 250)[:, None, None]
    img[..., 1] = 20 * ep % 250
    img[..., 2] = 128
    reward = np.zeros(num_steps, np.float32)
    reward[-1] = 1.0
    return {"image_0": img, "image_1": 255 - img, "state": state, "action": action, "reward": reward,
            "instruction": "" if ep == 1 else f"put the block {ep} in the pot"}


def write_tiny_rlds(data_dir: str | os.PathLike, name: str = "bridge_orig",
                    episode_lengths: tuple[int, ...] = (6, 5, 7, 9), image_size: int = 64,
                    version: str = "1.0.0", num_shards: int | None = None) -> Path:
    """Build a tiny RLDS dataset with TFDS' writer; returns ``<data_dir>/<name>/<version>``."""
    tfds = import_tfds()

    S = image_size

    class _Tiny(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version(version)

        def _info(self):
            img = lambda: tfds.features.Image(shape=(S, S, 3), dtype=np.uint8, encoding_format="jpeg")  # noqa: E731
            return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
                "steps": tfds.features.Dataset({
                    "observation": tfds.features.FeaturesDict({
                        "image_0": img(), "image_1": img(),
                        "state": tfds.features.Tensor(shape=(7,), dtype=np.float32)}),
                    "action": tfds.features.Tensor(shape=(7,), dtype=np.float32),
                    "language_instruction": tfds.features.Text(),
                    "is_first": np.bool_, "is_last": np.bool_, "is_terminal": np.bool_,
                    "reward": tfds.features.Scalar(dtype=np.float32),
                    "discount": tfds.features.Scalar(dtype=np.float32),
                }),
                "episode_metadata": tfds.features.FeaturesDict({
                    "file_path": tfds.features.Text(), "episode_id": np.int32,
                    "has_language": np.bool_, "has_image_0": np.bool_,
                }),
            }))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for ep, T in enumerate(episode_lengths):
                raw = rlds_episode(ep, T, S)
                steps = [{
                    "observation": {"image_0": raw["image_0"][t], "image_1": raw["image_1"][t],
                                    "state": raw["state"][t]},
                    "action": raw["action"][t], "language_instruction": raw["instruction"],
                    "is_first": t == 0, "is_last": t == T - 1, "is_terminal": t == T - 1,
                    "reward": raw["reward"][t], "discount": 1.0,
                } for t in range(T)]
                yield f"ep{ep}", {"steps": steps, "episode_metadata": {
                    "file_path": f"/synthetic/{ep}.npy", "episode_id": ep,
                    "has_language": bool(raw["instruction"]), "has_image_0": True}}

    _Tiny.name = name
    builder = _Tiny(data_dir=str(data_dir))
    kwargs = {}
    if num_shards:
        kwargs["download_config"] = tfds.download.DownloadConfig(num_shards=num_shards)
    builder.download_and_prepare(**kwargs)
    return Path(data_dir) / name / version


def calvin_frame(i: int, image_size: int = 32, gripper_size: int = 16) -> dict:
    """Content of synthetic CALVIN frame `i` (float64 arrays, as in the real dataset).

    rel_actions = [sin(i), cos(i), 0.1, 0, 0, 0.01·i, ±1]; robot_obs[j] = i + j/100;
    scene_obs: slider joint [0] = 0.01·i (moves left), drawer [1] = 0.005·i, lightbulb [4] = i ≥ 20,
    led [5] = 0; rgb_static = flat colour (i % 256, 7, 9).
    """
    rel = np.array([np.sin(i), np.cos(i), 0.1, 0.0, 0.0, 0.01 * i, 1.0 if (i // 5) % 2 == 0 else -1.0])
    robot = i + np.arange(15) / 100.0
    scene = np.zeros(24)
    scene[0], scene[1], scene[4] = 0.01 * i, 0.005 * i, float(i >= 20)
    static = np.zeros((image_size, image_size, 3), np.uint8)
    static[..., 0], static[..., 1], static[..., 2] = i % 256, 7, 9
    gripper = np.full((gripper_size, gripper_size, 3), (i * 3) % 256, np.uint8)
    return {"actions": rel * 2, "rel_actions": rel, "robot_obs": robot, "scene_obs": scene,
            "rgb_static": static, "rgb_gripper": gripper}


def write_tiny_calvin(root: str | os.PathLike, episodes: tuple[tuple[int, int], ...] = ((0, 29), (30, 49)),
                      windows: tuple[tuple[int, int, str], ...] = (
                          (0, 9, "open_drawer"), (12, 26, "move_slider_left"), (32, 45, "turn_on_lightbulb")),
                      splits: tuple[str, ...] = ("training", "validation")) -> Path:
    """Write a tiny CALVIN dataset: per split, one ``episode_%07d.npz`` per frame,
    ``ep_start_end_ids.npy`` (inclusive ids), ``ep_lens.npy`` and ``lang_annotations/auto_lang_ann.npy``.
    `windows`: annotated (first frame, last frame, task), each annotated with the task's evaluation instruction.
    The validation split reuses the same frames and windows. Returns `root`."""
    from vla_parl.envs.calvin.tasks import INSTRUCTIONS

    root = Path(root)
    for split in splits:
        d = root / split
        (d / "lang_annotations").mkdir(parents=True, exist_ok=True)
        for s, e in episodes:
            for i in range(s, e + 1):
                np.savez(d / f"episode_{i:07d}.npz", **calvin_frame(i))
        np.save(d / "ep_start_end_ids.npy", np.array(episodes, dtype=np.int64))
        np.save(d / "ep_lens.npy", np.array([e - s + 1 for s, e in episodes], dtype=np.int64))
        ann = {"language": {"ann": [INSTRUCTIONS[w[2]] for w in windows], "task": [w[2] for w in windows],
                            "emb": np.zeros((len(windows), 1, 384), np.float32)},
               "info": {"indx": [(w[0], w[1]) for w in windows], "episodes": []}}
        np.save(d / "lang_annotations" / "auto_lang_ann.npy", ann, allow_pickle=True)
    return root
