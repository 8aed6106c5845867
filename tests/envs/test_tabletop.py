"""The pybullet tabletop: physics, seeding, action handling, rendering, errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from vla_parl.envs import ENV_ID, TASKS, TabletopEnv, make_env
from vla_parl.errors import ConfigError

HOLD_OPEN = np.array([0, 0, 0, 0, 0, 0, 1.0], dtype=np.float32)


@pytest.fixture
def lift_env():
    env = make_env("lift")
    yield env
    env.close()


def _block_z(env: TabletopEnv, color: str) -> float:
    return float(env._p.getBasePositionAndOrientation(env._blocks[color])[0][2])


def test_block_falls_and_comes_to_rest_on_the_table(lift_env):
    env = lift_env
    env.reset(seed=0)
    body = env._blocks["green"]
    pos, orn = env._p.getBasePositionAndOrientation(body)
    env._p.resetBasePositionAndOrientation(body, [pos[0], pos[1], 0.20], orn)
    heights = []
    for _ in range(12):  # 12 steps x 0.05 s
        env.step(HOLD_OPEN)
        heights.append(_block_z(env, "green"))
    # free fall from 0.20 m: after 0.05 s it has dropped g t^2 / 2 = 9.81 * 0.0025 / 2 ~ 1.2 cm
    assert 0.17 < heights[0] < 0.195
    assert heights[2] < heights[1] < heights[0]
    # it lands on the table top (z = 0) and rests with its centre at the half size, 0.02 m
    assert heights[-1] == pytest.approx(0.02, abs=2e-3)
    velocity = np.array(env._p.getBaseVelocity(body)[0])
    assert np.linalg.norm(velocity) < 0.02


def test_blocks_rest_after_reset(lift_env):
    _, info = lift_env.reset(seed=1)
    for _ in range(5):
        _, _, _, _, info2 = lift_env.step(HOLD_OPEN)
    for color, pose in info["block_poses"].items():
        assert pose[2] == pytest.approx(0.02, abs=1e-3)
        np.testing.assert_allclose(info2["block_poses"][color][:3], pose[:3], atol=1e-3)


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_same_observations_and_rollout(task):
    a, b = make_env(task), make_env(task)
    actions = np.random.default_rng(7).uniform(-1, 1, (25, 7)).astype(np.float32)
    obs_a, info_a = a.reset(seed=123)
    b.reset(seed=999)
    b.step(actions[0])  # dirty b's state first: reset must rebuild everything
    obs_b, info_b = b.reset(seed=123)
    np.testing.assert_array_equal(obs_a["image"], obs_b["image"])
    np.testing.assert_array_equal(obs_a["proprio"], obs_b["proprio"])
    assert obs_a["instruction"] == obs_b["instruction"]
    for act in actions:
        oa, ra, ta, tra, ia = a.step(act)
        ob, rb, tb, trb, ib = b.step(act)
        np.testing.assert_array_equal(oa["image"], ob["image"])
        np.testing.assert_array_equal(oa["proprio"], ob["proprio"])
        assert (ra, ta, tra) == (rb, tb, trb)
        for color in ia["block_poses"]:
            np.testing.assert_array_equal(ia["block_poses"][color], ib["block_poses"][color])
        if ta or tra:
            break
    a.close()
    b.close()


def test_different_seeds_give_different_scenes(lift_env):
    layouts = set()
    for seed in range(5):
        _, info = lift_env.reset(seed=seed)
        layouts.add(tuple(np.round(info["block_poses"]["red"][:2], 4)))
    assert len(layouts) == 5


def test_instruction_names_the_target_block_and_task():
    seen = set()
    for task, phrase in [("reach", "reach the"), ("push", "push the"), ("lift", "pick up the")]:
        env = make_env(task)
        for seed in range(12):
            obs, info = env.reset(seed=seed)
            assert obs["instruction"].startswith(phrase)
            assert f"{info['target_block']} block" in obs["instruction"]
            assert env.observation_space["instruction"].contains(obs["instruction"])
            seen.add(info["target_block"])
            if task == "push":
                side = "left" if info["push_direction"][1] > 0 else "right"
                assert obs["instruction"].endswith(f"to the {side}")
        env.close()
    assert seen == {"red", "green", "blue"}


def test_reset_options_choose_target_and_direction():
    env = make_env("push")
    obs, info = env.reset(seed=0, options={"target": "blue", "direction": "right"})
    assert obs["instruction"] == "push the blue block to the right"
    np.testing.assert_array_equal(info["push_direction"], [0.0, -1.0])
    with pytest.raises(ConfigError, match="Did you mean 'direction'"):
        env.reset(options={"directon": "left"})
    with pytest.raises(ConfigError, match="Did you mean 'green'"):
        env.reset(options={"target": "gren"})
    env.close()


def test_targets_restrict_the_drawn_target_colour():
    env = make_env("reach", image_size=16, targets=["red"])
    drawn = {env.reset(seed=seed)[1]["target_block"] for seed in range(8)}
    assert drawn == {"red"}
    assert len(env.reset(seed=0)[1]["block_poses"]) == 3  # the other blocks stay as distractors
    assert env.reset(seed=0, options={"target": "blue"})[1]["target_block"] == "blue"
    env.close()
    with pytest.raises(ConfigError, match="Did you mean 'green'"):
        make_env("reach", targets=["gren"])


def test_observation_matches_space_and_conventions(lift_env):
    obs, info = lift_env.reset(seed=0)
    assert lift_env.observation_space.contains(obs)
    assert obs["image"].dtype == np.uint8 and obs["image"].shape == (64, 64, 3)
    assert obs["proprio"].dtype == np.float32 and obs["proprio"].shape == (7,)
    np.testing.assert_allclose(obs["proprio"][:3], info["tcp_pos"], atol=1e-6)
    np.testing.assert_allclose(obs["proprio"][3:6], 0.0, atol=1e-3)  # fixed, downward orientation
    assert obs["proprio"][6] == pytest.approx(1.0, abs=1e-3)  # starts open (BridgeData: open = 1)


def test_action_moves_the_tcp_by_max_step(lift_env):
    obs, _ = lift_env.reset(seed=0)
    start = obs["proprio"][:3].copy()
    for _ in range(3):
        obs, *_ = lift_env.step(np.array([1.0, 0, 0, 0, 0, 0, 1.0]))
    # 3 steps at +1 on x: 3 * max_step = 7.5 cm along x, nothing else
    np.testing.assert_allclose(obs["proprio"][:3] - start, [0.075, 0.0, 0.0], atol=3e-3)


def test_gripper_closes_below_half_and_opens_at_or_above(lift_env):
    lift_env.reset(seed=0)
    for _ in range(3):
        obs, *_ = lift_env.step(np.array([0, 0, 0, 0, 0, 0, 0.49]))
    assert obs["proprio"][6] < 0.05
    for _ in range(3):
        obs, *_ = lift_env.step(np.array([0, 0, 0, 0, 0, 0, 0.5]))
    assert obs["proprio"][6] > 0.95


def test_out_of_range_actions_are_clipped_and_rotation_ignored():
    a, b = make_env("reach"), make_env("reach")
    a.reset(seed=3)
    b.reset(seed=3)
    oa, *_ = a.step(np.array([5.0, -3.0, 0.2, 0.0, 0.0, 0.0, 7.0]))
    ob, *_ = b.step(np.array([1.0, -1.0, 0.2, 0.9, -0.9, 0.5, 1.0]))
    np.testing.assert_array_equal(oa["proprio"], ob["proprio"])
    np.testing.assert_array_equal(oa["image"], ob["image"])


def test_tcp_stays_in_the_workspace(lift_env):
    lift_env.reset(seed=0)
    for _ in range(15):
        obs, *_ = lift_env.step(np.array([-1.0, 1.0, -1.0, 0, 0, 0, 1.0]))
    x, y, z = obs["proprio"][:3]
    assert x > -0.23 and y < 0.26 and z > 0.015


def test_bad_actions_raise_clear_errors(lift_env):
    lift_env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(7,\)"):
        lift_env.step(np.zeros(6))
    with pytest.raises(ValueError, match=r"shape \(7,\)"):
        lift_env.step(np.zeros((1, 7)))
    with pytest.raises(ValueError, match="non-finite"):
        lift_env.step(np.array([np.nan, 0, 0, 0, 0, 0, 1]))


def test_step_before_reset_raises():
    env = make_env("reach")
    with pytest.raises(RuntimeError, match="reset"):
        env.step(HOLD_OPEN)
    env.close()


@pytest.mark.parametrize("bad, suggestion", [("lfit", "lift"), ("psuh", "push"), ("Reach", "reach")])
def test_unknown_task_suggests_the_closest(bad, suggestion):
    with pytest.raises(ConfigError, match=f"Did you mean '{suggestion}'"):
        make_env(bad)


def test_bad_constructor_arguments():
    with pytest.raises(ConfigError, match="image_size"):
        TabletopEnv("lift", image_size=0)
    with pytest.raises(ConfigError, match="render_mode"):
        TabletopEnv("lift", render_mode="human")


@pytest.mark.parametrize("task", TASKS)
def test_zero_actions_never_succeed_and_truncate_at_the_horizon(task):
    env = make_env(task, max_episode_steps=30)
    for seed in range(3):
        env.reset(seed=seed)
        for t in range(30):
            _, reward, terminated, truncated, info = env.step(HOLD_OPEN)
            assert reward == 0.0 and not terminated and not info["success"]
            assert truncated == (t == 29)
    env.close()


@pytest.mark.parametrize("task, max_successes", [("reach", 1), ("push", 0), ("lift", 0)])
def test_random_policy_rarely_succeeds(task, max_successes):
    env = make_env(task)
    rng = np.random.default_rng(0)
    successes = 0
    for seed in range(10):
        env.reset(seed=seed)
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 7))
            done = terminated or truncated
        successes += int(reward == 1.0)
    assert successes <= max_successes
    env.close()


def test_image_size_is_configurable_and_shows_the_block_colours():
    env = make_env("lift", image_size=96, render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    image = obs["image"].astype(int)
    assert image.shape == (96, 96, 3)
    np.testing.assert_array_equal(env.render(), obs["image"])
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    red = (r > 150) & (g < 80) & (b < 80)
    green = (g > 120) & (r < 80) & (b < 80)
    blue = (b > 150) & (r < 80) & (g < 120)
    for name, mask in [("red", red), ("green", green), ("blue", blue)]:
        assert mask.sum() >= 10, f"the {name} block is not visible"
    assert image.std() > 10  # not a flat frame
    env.close()


def test_registered_gym_id():
    env = gym.make(ENV_ID, task="reach", image_size=32)
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (32, 32, 3)
    obs, *_ = env.step(env.action_space.sample())
    assert obs["instruction"].startswith("reach the")
    env.close()
