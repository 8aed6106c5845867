"""Parallel rollouts: N env workers + one batched policy call per step give the same episodes as
`run_episodes`, in its episode format; auto-reset steps cost no policy call."""

from __future__ import annotations

import numpy as np
import pytest

from vla_parl.rollout import (ParallelRollout, RolloutStats, TabletopAdapter, as_action_source, make_rollout_env,
                              run_episodes)
from vla_parl.rollout.sources import CallableSource, ModelSource

ENV_KWARGS = {"image_size": 32, "max_episode_steps": 5}


def image_policy(images: np.ndarray) -> np.ndarray:
    """A deterministic image-conditioned policy: move towards the brighter half of the frame."""
    img = images.astype(np.float32) / 255.0
    left, right = img[:, :, :16].mean(axis=(1, 2, 3)), img[:, :, 16:].mean(axis=(1, 2, 3))
    red = img[..., 0].mean(axis=(1, 2))
    actions = np.zeros((len(images), 7), dtype=np.float32)
    actions[:, 0] = np.tanh(10 * (red - 0.5))
    actions[:, 1] = np.tanh(50 * (left - right))
    actions[:, 2] = -0.5
    actions[:, 6] = 1.0
    return actions


class RecordingPolicy:
    """`policy(obs_batch)` that remembers the batch size of every call."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def __call__(self, obs: dict) -> np.ndarray:
        assert obs["image"].dtype == np.uint8 and len(obs["instruction"]) == len(obs["image"])
        self.batch_sizes.append(len(obs["image"]))
        return image_policy(obs["image"])


def test_two_subprocess_workers_reproduce_single_env_episodes_with_one_call_per_step():
    policy = RecordingPolicy()
    runner = ParallelRollout(make_rollout_env(2, "push", **ENV_KWARGS), policy)
    try:
        episodes, stats = runner.collect(num_episodes=2, seed=0)
    finally:
        runner.close()
    adapter = TabletopAdapter("push", **ENV_KWARGS)
    reference = run_episodes(adapter, lambda obs: image_policy(obs.images.numpy()), episodes=2, seed=0, chunk=1,
                             unnormalize=lambda a: a, keep_trajectories=True).trajectories
    assert len(episodes) == 2
    for ours, theirs in zip(episodes, reference):
        theirs.pop("state")                     # the privileged state: run_episodes' adapter reads it from info
        assert set(ours) == set(theirs)
        for key, value in theirs.items():
            if isinstance(value, np.ndarray):
                assert ours[key].dtype == value.dtype, key
                np.testing.assert_array_equal(ours[key], value, err_msg=key)
            else:
                assert ours[key] == value, key
    assert isinstance(stats, RolloutStats) and stats.episodes == 2
    assert stats.env_steps == sum(len(e["action"]) for e in episodes)
    assert policy.batch_sizes == [2] * stats.policy_calls  # one call per step, both envs batched


def test_auto_reset_steps_ask_no_action_and_episodes_keep_the_replay_format(tiny_vla):
    runner = ParallelRollout(make_rollout_env(2, "lift", image_size=32, max_episode_steps=3), tiny_vla)
    try:
        episodes, stats = runner.collect(num_episodes=4, seed=3)
    finally:
        runner.close()
    assert isinstance(runner.source, ModelSource)
    assert len(episodes) == 4 and stats.episodes == 4
    # truncation after 3 steps: 3 acting steps, 1 reset-only step (no policy call), 3 acting steps
    assert [len(e["action"]) for e in episodes] == [3, 3, 3, 3]
    assert stats.env_steps == 12 and stats.policy_calls == 6
    for episode in episodes:
        assert episode["image"].shape == (4, 32, 32, 3) and episode["image"].dtype == np.uint8
        assert episode["proprio"].shape == (4, 7) and episode["action"].shape == (3, 7)
        assert episode["reward"].tolist() == [-1.0] * 3                     # PA-RL's convention, no success
        assert episode["terminal"] is False and episode["success"] is False
        assert episode["instruction"].startswith("pick up") and np.isfinite(episode["action"]).all()
    # second-round episodes start from a fresh reset, not from the first episode's final frame
    assert not np.array_equal(episodes[2]["image"][0], episodes[0]["image"][-1])


def test_num_steps_budget_and_source_adapters():
    policy = RecordingPolicy()
    runner = ParallelRollout(make_rollout_env(1, "reach", **ENV_KWARGS), policy)
    try:
        episodes, stats = runner.collect(num_steps=3, seed=0)
    finally:
        runner.close()
    assert stats.env_steps == 3 and episodes == [] and policy.batch_sizes == [1, 1, 1]
    assert stats.steps_per_s > 0

    class Remote:  # anything with act_batch (e.g. serving.client.PolicyClient) is used as it is
        def act_batch(self, images, instructions):
            return image_policy(np.stack(images))

    remote = Remote()
    assert as_action_source(remote) is remote
    assert isinstance(as_action_source(policy), CallableSource)
    with pytest.raises(TypeError, match="not an action source"):
        as_action_source(42)
    with pytest.raises(ValueError, match="num_episodes"):
        ParallelRollout(make_rollout_env(1, "reach", **ENV_KWARGS), policy).collect()
