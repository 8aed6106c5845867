"""Env adapters behind `run_episodes`: CALVIN-PA-RL observations become the policy's `Observation` and replay
episodes (image resized, robot_obs as proprio, one instruction), with reward = subtasks completed − 4."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla_parl.envs.calvin.tasks import PARL_INSTRUCTION, PARL_TASKS
from vla_parl.rollout import CalvinParlAdapter, TabletopAdapter, run_episodes


class _FakeCalvinParlEnv:
    """CalvinParlEnv's interface without pybullet: subtask k completes at step `done_at[k]`.

    rgb_static: left half (10·t, 0, 0), right half (0, 200, 0) at step t; robot_obs[j] = t + j/100 (float64)."""

    def __init__(self, done_at: tuple[int, ...], max_steps: int) -> None:
        self.done_at, self.max_steps, self.received = done_at, max_steps, []

    def _obs(self) -> dict:
        rgb = np.zeros((200, 200, 3), np.uint8)
        rgb[:, :100, 0] = 10 * self.t
        rgb[:, 100:, 1] = 200
        return {"rgb_static": rgb, "robot_obs": self.t + np.arange(15) / 100.0, "scene_obs": np.zeros(24)}

    def reset(self, seed=None):
        self.t = 0
        return self._obs(), {"completed": []}

    def step(self, action):
        self.received.append(np.array(action))
        self.t += 1
        completed = [task for task, at in zip(PARL_TASKS, self.done_at) if self.t >= at]
        terminated = len(completed) == 4
        return (self._obs(), float(len(completed) - 4), terminated, not terminated and self.t >= self.max_steps,
                {"completed": completed})

    def close(self) -> None:
        pass


class _FakeAdapter(CalvinParlAdapter):
    def __init__(self, plans: list[tuple[int, ...]], **kwargs) -> None:
        super().__init__(**kwargs)
        self.plans, self.envs = list(plans), []

    def make_env(self):
        self.envs.append(_FakeCalvinParlEnv(self.plans.pop(0), self.max_steps))
        return self.envs[-1]


@pytest.mark.calvin_assets  # the adapter checks for the assets when built
def test_calvin_adapter_converts_observations_rewards_and_episodes():
    adapter = _FakeAdapter([(2, 4, 5, 7), (3, 99, 99, 99)], image_size=32, max_steps=6)
    seen = []

    def act(obs):
        seen.append(obs)
        return np.full((len(obs), 7), 0.5, np.float32)

    result = run_episodes(adapter, act, episodes=2, seed=0, unnormalize=lambda a: 2 * a, keep_trajectories=True)
    first = seen[0]
    assert first.images.shape == (2, 32, 32, 3) and first.images.dtype == torch.uint8
    assert first.proprio.shape == (2, 15) and first.state is None
    assert first.instructions == [PARL_INSTRUCTION] * 2
    np.testing.assert_allclose(seen[3].proprio[0].numpy(), 3 + np.arange(15) / 100.0, rtol=1e-6)  # robot_obs at t=3
    # the box-resized image keeps the two halves' colours: (10·t, 0, 0) | (0, 200, 0)
    img = seen[3].images[0].numpy()
    assert (img[:, :16] == [30, 0, 0]).all() and (img[:, 16:] == [0, 200, 0]).all()
    assert np.allclose(adapter.envs[0].received[0], 1.0)            # the env gets un-normalised actions
    # episode 0: subtasks done after steps 2, 4, 5, 7 — but truncated at 6; episode 1: one subtask by step 3
    ep0, ep1 = result.trajectories
    assert ep0["reward"].tolist() == [-4, -3, -3, -2, -1, -1] and not ep0["terminal"]
    assert ep1["reward"].tolist() == [-4, -4, -3, -3, -3, -3] and not ep1["terminal"]
    assert ep0["image"].shape == (7, 32, 32, 3) and ep0["image"].dtype == np.uint8
    assert ep0["proprio"].shape == (7, 15) and ep0["proprio"].dtype == np.float32
    assert ep0["action"].shape == (6, 7) and np.allclose(ep0["action"], 0.5)   # normalised, as the buffer stores
    assert set(ep0) == {"image", "proprio", "action", "reward", "terminal", "success", "instruction"}
    assert result.returns == [-14.0, -20.0] and result.successes == [False, False]
    metrics = adapter.metrics(result)
    assert metrics["collect_return"] == -17.0 and metrics["collect_subtasks"] == 2.0   # (3 + 1) / 2
    assert metrics["collect_rate/open_drawer"] == 1.0 and metrics["collect_rate/turn_on_lightbulb"] == 0.5
    assert metrics["collect_rate/turn_on_led"] == 0.0


@pytest.mark.calvin_assets  # the adapter checks for the assets when built
def test_calvin_adapter_all_four_subtasks_terminate_with_reward_zero():
    adapter = _FakeAdapter([(1, 2, 2, 3)], image_size=200, max_steps=360)
    result = run_episodes(adapter, lambda obs: np.zeros((len(obs), 7), np.float32), episodes=1, seed=0,
                          unnormalize=lambda a: a, keep_trajectories=True)
    ep = result.trajectories[0]
    assert ep["reward"].tolist() == [-3, -1, 0] and ep["terminal"] and result.successes == [True]
    assert ep["image"].shape == (4, 200, 200, 3)                   # native size: no resize
    assert adapter.metrics(result)["collect_subtasks"] == 4.0


@pytest.mark.calvin_assets
def test_calvin_adapter_on_the_real_env_rewards_completed_minus_four():
    """A scripted press of the LED button on our CALVIN scene: −4 until the LED is on, then −3."""
    from vla_parl.envs.calvin.scripted import ScriptedCalvinPolicy
    from vla_parl.envs.calvin.tasks import INSTRUCTIONS

    adapter = CalvinParlAdapter(image_size=48, max_steps=20)
    assert adapter.obs_shapes == {"image": (48, 48, 3), "proprio": (15,)}
    scripted = ScriptedCalvinPolicy()

    def press_led(obs):   # reads the TCP pose from proprio, i.e. robot_obs
        return np.stack([scripted.act({"robot_obs": p.astype(np.float64), "scene_obs": np.zeros(24)},
                                      INSTRUCTIONS["turn_on_led"]) for p in obs.proprio.numpy()]).astype(np.float32)

    result = run_episodes(adapter, press_led, episodes=1, seed=0, unnormalize=lambda a: a, keep_trajectories=True)
    ep = result.trajectories[0]
    reward = ep["reward"]
    assert len(reward) == 20 and reward[0] == -4.0 and reward[-1] == -3.0
    assert set(reward.tolist()) == {-4.0, -3.0} and np.all(np.diff(reward) >= 0)
    assert result.final_infos[0]["completed"] == ["turn_on_led"] and not ep["terminal"]
    assert ep["image"].shape == (21, 48, 48, 3) and ep["proprio"].shape == (21, 15)
    assert adapter.metrics(result)["collect_rate/turn_on_led"] == 1.0


def test_tabletop_adapter_observation_matches_its_declared_shapes():
    adapter = TabletopAdapter("reach", image_size=32, max_episode_steps=3)
    env = adapter.make_env()
    try:
        seen = adapter.observe(*env.reset(seed=0))
    finally:
        env.close()
    assert {k: v.shape for k, v in seen.items() if k != "instruction"} == adapter.obs_shapes
    assert seen["state"].dtype == np.float32 and isinstance(seen["instruction"], str)
    assert adapter.reward(1.0, True, {}) == 0.0 and adapter.reward(0.0, False, {}) == -1.0


def test_calvin_adapter_names_missing_assets(tmp_path):
    from vla_parl.errors import ConfigError

    with pytest.raises(ConfigError, match="no CALVIN assets"):
        CalvinParlAdapter(tmp_path)
