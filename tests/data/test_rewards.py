import numpy as np
import pytest

from vla_parl.data.rewards import done_masks, mc_returns, n_step_returns, sparse_rewards, success_labels
from vla_parl.errors import ConfigError


def test_sparse_rewards():
    s = success_labels(4, True)
    np.testing.assert_array_equal(sparse_rewards(s), [-1, -1, -1, 0])
    np.testing.assert_array_equal(sparse_rewards(s, bias=0.0), [0, 0, 0, 1])
    np.testing.assert_array_equal(sparse_rewards(success_labels(3, False)), [-1, -1, -1])
    np.testing.assert_array_equal(success_labels(4, True, num_success_steps=2), [0, 0, 1, 1])


def test_mc_returns_successful_hand_computed():
    # r = [-1, -1, 0], gamma = 0.5, a success: the plain sum under either rule
    # G2 = 0; G1 = -1 + 0.5*0 = -1; G0 = -1 + 0.5*(-1) = -1.5
    for tail in ("truncated", "failure"):
        np.testing.assert_allclose(mc_returns([-1, -1, 0], 0.5, tail=tail), [-1.5, -1.0, 0.0])


def test_mc_returns_unfinished_simulated_or_offline_is_the_truncated_sum():
    # never successful, r = -1 each step, gamma = 0.5, nothing after the last step:
    # G2 = -1; G1 = -1 + 0.5*(-1) = -1.5; G0 = -1 + 0.5*(-1.5) = -1.75
    np.testing.assert_allclose(mc_returns([-1, -1, -1], 0.5, tail="truncated"), [-1.75, -1.5, -1.0])
    # CALVIN's parl reward (subtasks - 4), gamma 0.5: G1 = -4; G0 = -3 + 0.5*(-4) = -5
    np.testing.assert_allclose(mc_returns([-3, -4], 0.5, tail="truncated"), [-5.0, -4.0])


def test_mc_returns_failed_real_robot_episode_is_worth_failing_for_ever():
    # every reward -1 (no success step): -1/(1 - 0.5) = -2 at every step, not the truncated [-1.75, -1.5, -1]
    np.testing.assert_allclose(mc_returns([-1, -1, -1], 0.5, tail="failure"), [-2, -2, -2])
    # gamma 0.99: -100 everywhere, however short the episode
    np.testing.assert_allclose(mc_returns(-np.ones(5), 0.99, tail="failure"), -100.0, rtol=1e-6)
    # a robot's own rewards that are not all the failure reward: the plain sum
    # r = [0, 0.5, 1], gamma 0.5: G2 = 1; G1 = 0.5 + 0.5 = 1; G0 = 0 + 0.5*1 = 0.5
    np.testing.assert_allclose(mc_returns([0, 0.5, 1], 0.5, tail="failure"), [0.5, 1.0, 1.0])
    # another failure reward: all -4 -> -4/(1 - 0.5) = -8
    np.testing.assert_allclose(mc_returns([-4, -4], 0.5, tail="failure", failure_reward=-4.0), [-8, -8])
    assert mc_returns([], 0.9, tail="failure").shape == (0,)


def test_mc_returns_errors_name_the_fix():
    with pytest.raises(ConfigError, match="gamma"):
        mc_returns([0.0], 1.0, tail="truncated")
    with pytest.raises(ConfigError, match="'failure' for real-robot episodes.*'repeat_last'"):
        mc_returns([0.0], 0.9, tail="repeat_last")


def test_done_masks_and_n_step():
    np.testing.assert_array_equal(done_masks([False, False, True]), [1, 1, 0])
    # r = [1, 2, 3], terminal at the end, gamma 0.5, n = 2:
    # t0: 1 + 0.5*2 = 2, discount 0.25, next 2; t1: 2 + 0.5*3 = 3.5 done; t2: 3 done (m = 1)
    R, disc, done, nxt, valid = n_step_returns([1, 2, 3], [0, 0, 1], 0.5, 2, has_final_obs=False)
    np.testing.assert_array_equal(nxt, [2, 3, 3])
    np.testing.assert_allclose(R, [2, 3.5, 3])
    np.testing.assert_allclose(disc, [0.25, 0.25, 0.5])
    np.testing.assert_array_equal(done, [False, True, True])
    assert valid.all()
    # not terminal, no final obs: the last n starts have no stored next observation
    _, _, done, _, valid = n_step_returns([1, 2, 3], [0, 0, 0], 0.5, 2, has_final_obs=False)
    np.testing.assert_array_equal(valid, [True, False, False])
    assert not done.any()
