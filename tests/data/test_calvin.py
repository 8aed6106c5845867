import numpy as np
import pytest

from vla_parl.envs.calvin.reader import CalvinReader, completed_tasks
from vla_parl.envs.calvin.tasks import PARL_TASKS
from vla_parl.data.synthetic import calvin_frame
from vla_parl.errors import ConfigError, VLAParlError


def test_windows_read_back_exact(calvin_dir):
    r = CalvinReader(calvin_dir, "training", gripper_camera=True)
    assert len(r) == 3 and r.tasks[1] == "move_slider_left"
    t = r.trajectory(1)  # frames 12..26 inclusive
    frames = [calvin_frame(i) for i in range(12, 27)]
    assert len(t["action"]) == 15
    np.testing.assert_array_equal(t["action"], np.stack([f["rel_actions"] for f in frames]).astype(np.float32))
    np.testing.assert_array_equal(t["proprio"], np.stack([f["robot_obs"] for f in frames]).astype(np.float32))
    np.testing.assert_array_equal(t["image"], np.stack([f["rgb_static"] for f in frames]))
    np.testing.assert_array_equal(t["image_wrist"], np.stack([f["rgb_gripper"] for f in frames]))
    assert t["image"].dtype == np.uint8 and t["instruction"] == "push the sliding door to the left side"
    np.testing.assert_array_equal(t["reward"], [0] * 14 + [1])
    assert t["is_terminal"].tolist() == [False] * 14 + [True] and t["is_first"][0]
    assert "image_wrist" not in CalvinReader(calvin_dir, "validation").trajectory(0)


def test_parl_reward_from_scene_state(calvin_dir):
    r = CalvinReader(calvin_dir, "training", reward="parl")
    t = r.trajectory(1)  # frames 12..26, judged against the reset state (slider, drawer, lights all 0):
    # slider 0.01*i > 0.15 from frame 16; lightbulb on from frame 20; drawer 0.005*i > 0.12 from frame 25; led 0
    np.testing.assert_array_equal(t["reward"], [-4] * 4 + [-3] * 4 + [-2] * 5 + [-1] * 2)
    assert not t["is_terminal"].any()
    r2 = CalvinReader(calvin_dir, "training", reward="parl", targets=("move_slider_left", "turn_on_lightbulb"))
    t2 = r2.trajectory(0)  # frames 0..9: slider at most 0.09, bulb off -> all -2
    np.testing.assert_array_equal(t2["reward"], [-2] * 10)
    # 12..26 with two targets: -2 for 12..15, -1 for 16..19, both complete at frame 20 -> terminal, cut there
    t2 = r2.trajectory(1)
    np.testing.assert_array_equal(t2["reward"], [-2] * 4 + [-1] * 4 + [0])
    assert t2["is_terminal"].tolist() == [False] * 8 + [True] and len(t2["action"]) == 9
    # 32..45: both already complete at the window's first frame -> a one-step terminal trajectory
    assert r2.trajectory(2)["reward"].tolist() == [0.0] and r2.trajectory(2)["is_terminal"].tolist() == [True]
    scene = np.zeros((5, 24))
    scene[:, 0] = [0, 0.1, 0.2, 0.3, 0.3]
    np.testing.assert_array_equal(completed_tasks(scene[0], scene, ["move_slider_left"]), [0, 0, 1, 1, 1])


def test_parl_subtask_completed_before_the_window_counts(tmp_path):
    """Official labelling: relative to the env's default reset state over the whole play episode, so a drawer
    opened before an annotated window starts counts inside it (relative to the window's first frame it would
    not)."""
    from vla_parl.envs.calvin.tasks import INSTRUCTIONS

    d = tmp_path / "training"
    (d / "lang_annotations").mkdir(parents=True)
    for i in range(20):                       # one play episode, frames 0..19
        frame = calvin_frame(i)
        frame["scene_obs"][:] = 0.0
        frame["scene_obs"][1] = 0.2 if i >= 5 else 0.0     # drawer opened at frame 5 (> 0.12 above closed)
        frame["scene_obs"][5] = float(i >= 12)              # led on from frame 12
        np.savez(d / f"episode_{i:07d}.npz", **frame)
    np.save(d / "ep_start_end_ids.npy", np.array([[0, 19]], np.int64))
    np.save(d / "ep_lens.npy", np.array([20], np.int64))
    ann = {"language": {"ann": [INSTRUCTIONS["turn_on_led"]], "task": ["turn_on_led"],
                        "emb": np.zeros((1, 1, 384), np.float32)},
           "info": {"indx": [(8, 15)], "episodes": []}}
    np.save(d / "lang_annotations" / "auto_lang_ann.npy", ann, allow_pickle=True)
    t = CalvinReader(tmp_path, "training", reward="parl").trajectory(0)   # frames 8..15, the PA-RL four targets
    # drawer open (1 target) at every frame; + led from frame 12: 1 - 4 = -3 for 8..11, 2 - 4 = -2 for 12..15
    np.testing.assert_array_equal(t["reward"], [-3] * 4 + [-2] * 4)
    assert not t["is_terminal"].any()
    # the same frames judged relative to the window's first frame (the old, wrong labelling) miss the drawer
    assert (completed_tasks(t["scene_obs"][0], t["scene_obs"], PARL_TASKS) - 4).tolist() == [-4] * 4 + [-3] * 4


def test_errors(calvin_dir, tmp_path):
    with pytest.raises(ConfigError, match="Did you mean \"training\""):
        CalvinReader(calvin_dir, "trainig")
    with pytest.raises(ConfigError, match="holds: .*training"):
        CalvinReader(calvin_dir / "training", "training")
    with pytest.raises(ConfigError, match="cannot be judged from scene_obs"):
        CalvinReader(calvin_dir, reward="parl", targets=("lift_red_block_table",))
    import shutil

    shutil.copytree(calvin_dir / "validation", tmp_path / "validation")
    bad = tmp_path / "validation" / "episode_0000005.npz"
    bad.write_bytes(bad.read_bytes()[:100])
    r = CalvinReader(tmp_path, "validation")
    with pytest.raises(VLAParlError, match="episode_0000005.npz' is corrupt"):
        r.trajectory(0)
    (tmp_path / "validation" / "episode_0000040.npz").unlink()
    with pytest.raises(VLAParlError, match="episode_0000040.npz' is missing"):
        r.trajectory(2)
