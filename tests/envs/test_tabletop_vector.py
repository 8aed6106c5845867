"""Vectorised tabletop envs."""

from __future__ import annotations

import numpy as np
import pytest

from vla_parl.envs import make_env, make_tabletop_vec_env
from vla_parl.errors import ConfigError


def test_sync_vector_env_batches_observations():
    envs = make_tabletop_vec_env(3, "push", image_size=32)
    obs, info = envs.reset(seed=0)
    assert obs["image"].shape == (3, 32, 32, 3) and obs["image"].dtype == np.uint8
    assert obs["proprio"].shape == (3, 7) and obs["proprio"].dtype == np.float32
    assert len(obs["instruction"]) == 3 and all(s.startswith("push the") for s in obs["instruction"])
    assert not np.array_equal(obs["image"][0], obs["image"][1])  # env i is seeded with 0 + i
    # env 1 of the batch is the single env reset with seed 1
    single = make_env("push", image_size=32)
    obs1, _ = single.reset(seed=1)
    np.testing.assert_array_equal(obs["image"][1], obs1["image"])
    actions = np.tile(np.array([0.5, 0, -0.5, 0, 0, 0, 1.0], dtype=np.float32), (3, 1))
    obs, rewards, terminated, truncated, info = envs.step(actions)
    assert obs["image"].shape == (3, 32, 32, 3)
    assert rewards.shape == terminated.shape == truncated.shape == (3,)
    assert info["block_poses"]["red"].shape == (3, 7)
    single_obs, *_ = single.step(actions[1])
    np.testing.assert_array_equal(obs["proprio"][1], single_obs["proprio"])
    envs.close()
    single.close()


def test_async_vector_env_steps():
    envs = make_tabletop_vec_env(2, "lift", asynchronous=True, image_size=32)
    obs, _ = envs.reset(seed=0)
    assert obs["image"].shape == (2, 32, 32, 3)
    obs, *_ = envs.step(np.zeros((2, 7), dtype=np.float32))
    assert obs["proprio"].shape == (2, 7)
    envs.close()


def test_vector_env_errors():
    with pytest.raises(ValueError, match="num_envs"):
        make_tabletop_vec_env(0, "lift")
    with pytest.raises(ConfigError, match="Did you mean 'reach'"):
        make_tabletop_vec_env(2, "reac")
