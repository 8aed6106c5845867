"""RLDS datasets described in the config (data.rlds) and the built-in Open X-Embodiment entries."""

from __future__ import annotations

import numpy as np
import pytest

T = 6


def _episode(ep: int) -> dict:
    """taco_play-shaped raw content: robot_obs[t, j] = t + j/100 + ep; relative and absolute gripper commands."""
    t = np.arange(T, dtype=np.float32)
    robot_obs = (t[:, None] + np.arange(15, dtype=np.float32)[None] / 100 + ep).astype(np.float32)
    rel = np.tile(np.array([0.1, 0.2, 0.3, 0.01, 0.02, 0.03, 1.0], np.float32), (T, 1))
    rel[::2, 6] = -1.0                                     # taco: −1 close / +1 open (absolute)
    closedness = np.array([0, 0, 1, 0, -1, 0], np.float32)  # relative: close at t=2, open at t=4
    return {"robot_obs": robot_obs, "rel": rel, "world": rel[:, :3] * 10, "closedness": closedness[:, None],
            "image": np.full((T, 16, 16, 3), 30 * ep, np.uint8)}


@pytest.fixture(scope="module")
def taco_dir(tmp_path_factory):
    from vla_parl.data._io import import_tfds

    tfds = import_tfds()

    class _Taco(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("0.1.0")

        def _info(self):
            img = tfds.features.Image(shape=(16, 16, 3), dtype=np.uint8, encoding_format="png")
            return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({"steps": tfds.features.Dataset({
                "observation": tfds.features.FeaturesDict({
                    "rgb_static": img, "rgb_gripper": img,
                    "robot_obs": tfds.features.Tensor(shape=(15,), dtype=np.float32),
                    "natural_language_instruction": tfds.features.Text()}),
                "action": tfds.features.FeaturesDict({
                    "rel_actions_world": tfds.features.Tensor(shape=(7,), dtype=np.float32),
                    "world_vector": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                    "gripper_closedness_action": tfds.features.Tensor(shape=(1,), dtype=np.float32)}),
                "is_first": np.bool_, "is_last": np.bool_, "is_terminal": np.bool_,
                "reward": tfds.features.Scalar(dtype=np.float32)})}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for ep in range(2):
                r = _episode(ep)
                yield f"ep{ep}", {"steps": [{
                    "observation": {"rgb_static": r["image"][t], "rgb_gripper": r["image"][t],
                                    "robot_obs": r["robot_obs"][t],
                                    "natural_language_instruction": f"stack block {ep}"},
                    "action": {"rel_actions_world": r["rel"][t], "world_vector": r["world"][t],
                               "gripper_closedness_action": r["closedness"][t]},
                    "is_first": t == 0, "is_last": t == T - 1, "is_terminal": t == T - 1,
                    "reward": float(t == T - 1)} for t in range(T)]}

    _Taco.name = "taco_play"
    root = tmp_path_factory.mktemp("oxe")
    _Taco(data_dir=str(root)).download_and_prepare()
    return root


def test_relative_gripper_commands_become_absolute():
    from vla_parl.data.oxe import relative_to_absolute_gripper

    # close at t=2, open at t=4: before the first command the gripper is open (the command closes it)
    assert relative_to_absolute_gripper(np.array([0, 0, 1, 0, -1, 0])).tolist() == [1, 1, 0, 0, 1, 1]
    assert relative_to_absolute_gripper(np.array([0, -1, 0, 1])).tolist() == [0, 1, 1, 0]   # first opens
    assert relative_to_absolute_gripper(np.zeros(3)).tolist() == [1, 1, 1]                 # never commanded


def test_builtin_taco_play_entry_reads_keys_slices_and_gripper(taco_dir):
    from vla_parl.data.rlds import iter_trajectories

    trajs = list(iter_trajectories(taco_dir, "taco_play"))
    assert len(trajs) == 2
    for ep, traj in zip((0, 1), sorted(trajs, key=lambda t: t["instruction"])):
        raw = _episode(ep)
        np.testing.assert_allclose(traj["action"][:, :6], raw["rel"][:, :6])
        assert traj["action"][:, 6].tolist() == [0, 1, 0, 1, 0, 1]            # clip(−1 / +1) → 0 / 1
        want = np.concatenate([raw["robot_obs"][:, :6], raw["robot_obs"][:, 7:8]], 1)
        np.testing.assert_allclose(traj["proprio"], want)
        assert traj["instruction"] == f"stack block {ep}"                    # from the observation


def test_yaml_description_overrides_the_layout(taco_dir):
    from vla_parl.config.schema import from_dict
    from vla_parl.data.sources import OfflineSource
    from vla_parl.recipes._configs import DataSection

    data = from_dict(DataSection, {
        "kind": "rlds", "path": str(taco_dir), "dataset_name": "taco_play",
        "rlds": {"image_key": "rgb_static", "state_keys": ["robot_obs[-3:]"], "state_encoding": "joint",
                 "action_keys": ["world_vector", "zeros:3", "gripper_closedness_action"], "gripper": "relative",
                 "language_key": "observation/natural_language_instruction"}})
    trajs = sorted(OfflineSource(data).trajectories(), key=lambda t: t["instruction"])
    raw = _episode(0)
    np.testing.assert_allclose(trajs[0]["action"][:, :3], raw["world"])
    assert not trajs[0]["action"][:, 3:6].any()
    assert trajs[0]["action"][:, 6].tolist() == [1, 1, 0, 0, 1, 1]
    np.testing.assert_allclose(trajs[0]["proprio"], raw["robot_obs"][:, -3:])


def test_a_wrong_description_names_the_key(taco_dir):
    from vla_parl.data.oxe import RLDSDescription
    from vla_parl.data.rlds import iter_trajectories
    from vla_parl.errors import ConfigError

    cfg = RLDSDescription(image_key="rgb_static", action_keys=("world_vector", "rotation_delta")).to_config("taco_play")
    with pytest.raises(ConfigError, match=r"action part 'rotation_delta' not found.*gripper_closedness_action"):
        next(iter_trajectories(taco_dir, "taco_play", config=cfg))
    with pytest.raises(ConfigError, match="gripper 'open' is not one of"):
        RLDSDescription(image_key="x", gripper="open")
