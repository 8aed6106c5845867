import numpy as np
import pytest

from vla_parl.envs.calvin.reader import CalvinReader, completed_tasks
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
    t = r.trajectory(1)  # frames 12..26: slider 0.01*i moves > 0.15 from frame 28 on: never;
    # drawer 0.005*i never > 0.12 above 0.06; lightbulb turns on at frame 20 (relative to 0 at 12)
    np.testing.assert_array_equal(t["reward"], [-4] * 8 + [-3] * 7)
    r2 = CalvinReader(calvin_dir, "training", reward="parl", targets=("move_slider_left", "turn_on_lightbulb"))
    t2 = r2.trajectory(0)  # frames 0..9: slider +0.01/frame never > 0.15; bulb off -> all -2
    np.testing.assert_array_equal(t2["reward"], [-2] * 10)
    # 32..45: bulb already on at the start; slider passes 0.15 above 0.32 at frame 48 -> never
    assert (r2.trajectory(2)["reward"] == -2).all()
    # all targets complete -> terminal and the window ends there
    scene = np.zeros((5, 24))
    scene[:, 0] = [0, 0.1, 0.2, 0.3, 0.3]
    np.testing.assert_array_equal(completed_tasks(scene[0], scene, ["move_slider_left"]), [0, 0, 1, 1, 1])


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
