"""`run_episodes`: the chunk's envs are made once and reset for the later chunks, without changing an episode."""

from __future__ import annotations

import numpy as np

from vla_parl.rollout import TabletopAdapter
from vla_parl.rollout.episodes import run_episodes
from vla_parl.rollout.experts import ExpertActor


class _CountingAdapter(TabletopAdapter):
    def __init__(self, **kwargs):
        super().__init__("reach", image_size=32, max_episode_steps=6, targets=["red"], **kwargs)
        self.made, self.closed = 0, 0

    def make_env(self):
        env, adapter = super().make_env(), self
        close = env.close

        def counted_close():
            adapter.closed += 1
            close()

        env.close = counted_close
        self.made += 1
        return env


def _episodes(chunk: int) -> tuple[_CountingAdapter, list[dict]]:
    adapter = _CountingAdapter()
    result = run_episodes(adapter, ExpertActor("reach", noise=0.2, speed=(0.3, 1.0)), episodes=7, seed=3,
                          unnormalize=lambda a: a, chunk=chunk, keep_trajectories=True)
    return adapter, result.trajectories


def test_envs_are_reused_across_chunks_and_each_episode_matches_a_fresh_env():
    reused, episodes = _episodes(chunk=3)          # chunks of 3, 3, 1 episodes on the same 3 envs
    fresh, reference = _episodes(chunk=7)          # every episode on an env of its own
    assert (reused.made, reused.closed) == (3, 3) and (fresh.made, fresh.closed) == (7, 7)
    assert len(episodes) == len(reference) == 7
    for got, want in zip(episodes, reference):
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert np.array_equal(got[key], value) if isinstance(value, np.ndarray) else got[key] == value, key
