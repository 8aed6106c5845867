import numpy as np
import pytest

from vla_parl.data.standardize import binarize_gripper_actions, bridge_standardize, trajectory_to_steps
from vla_parl.errors import ConfigError


def test_binarize_gripper_hand_example():
    g = np.array([0.99, 0.5, 0.3, 0.01, 0.6, 0.97, 0.5, 0.4], np.float32)
    # from the end: 0.4, 0.5 are a trailing intermediate run -> last raw value 0.4;
    # 0.97 -> 1; 0.6 takes the next non-intermediate (0.97 -> 1); 0.01 -> 0;
    # 0.3, 0.5 take the next non-intermediate (0.01 -> 0); 0.99 -> 1
    expect = np.array([1, 0, 0, 0, 1, 1, 0.4, 0.4], np.float32)
    np.testing.assert_array_equal(binarize_gripper_actions(g), expect)


def test_bridge_standardize_hand_example():
    state = np.array([[0, 0, 0, 0, 0, 0, 1],
                      [1, 2, 3, 0.1, 0.2, 0.3, 1],
                      [2, 4, 7, 0.1, 0.2, 0.5, 0],
                      [4, 4, 7, 0.0, 0.2, 0.5, 0]], np.float32)
    action = np.array([[0] * 7, [9] * 6 + [0.98], [9] * 6 + [0.5], [9] * 6 + [0.02]], np.float32)
    img = np.arange(4, dtype=np.uint8)[:, None, None, None] * np.ones((4, 2, 2, 3), np.uint8)
    raw = {"state": state, "action": action, "image": img, "reward": np.array([0, 0, 0, 1], np.float32),
           "is_terminal": np.array([0, 0, 0, 1], bool), "instruction": "x", "episode_id": "e"}
    out = bridge_standardize(raw)
    # step 0 dropped -> states 1..3; gripper [0.98, 0.5, 0.02] -> [1, 0, 0]; movement s[t+1]-s[t];
    # last step dropped -> 2 steps
    np.testing.assert_allclose(out["action"], [[1, 2, 4, 0, 0, 0.2, 1], [2, 0, 0, -0.1, 0, 0, 0]], atol=1e-6)
    np.testing.assert_array_equal(out["proprio"], state[1:3])
    np.testing.assert_array_equal(out["image"][:, 0, 0, 0], [1, 2])
    np.testing.assert_array_equal(out["reward"], [0, 1])  # success of the dropped last frame kept
    np.testing.assert_array_equal(out["is_first"], [True, False])
    np.testing.assert_array_equal(out["is_last"], [False, True])
    np.testing.assert_array_equal(out["is_terminal"], [False, True])
    steps = list(trajectory_to_steps(out))
    assert [s["step"] for s in steps] == [0, 1] and steps[1]["instruction"] == "x"


def test_bridge_standardize_short_and_bad():
    two = {"state": np.zeros((2, 7), np.float32), "action": np.zeros((2, 7), np.float32)}
    assert bridge_standardize(two) is None
    with pytest.raises(ConfigError, match="state \\[T, 7\\]"):
        bridge_standardize({"state": np.zeros((5, 3)), "action": np.zeros((5, 7))})
