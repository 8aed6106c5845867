"""The tabletop's scripted experts as an actor for `run_episodes`: demonstrations in the one episode format.

    episodes = expert_episodes("lift", 60, seed=0, noise=1.0, image_size=56, max_episode_steps=25)

An expert is privileged: it reads the simulator (block poses, TCP, push direction) from the env's info dict,
which `run_episodes` hands every actor in `obs.extras["env"]` (`EnvView`). `ExpertActor` keeps one
`ScriptedExpert` per running episode, reset with that episode's reset seed at its first step, so episode i
of `expert_episodes(..., seed=s)` is the same whether it runs alone or beside others. Its actions are in the
env's units (`unnormalize` is the identity); the recipes normalise them when they store the episodes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vla_parl.rollout.adapters import TabletopAdapter
from vla_parl.rollout.episodes import run_episodes

__all__ = ["ExpertActor", "expert_episodes"]


class ExpertActor:
    """`run_episodes` actor: the scripted expert of `task` (`vla_parl.envs.make_expert`) in every env.

    Args:
        task: the tabletop task (reach | push | lift).
        noise: expert noise scale (0 = clean).
        speed: per-episode operator speed range (low, high).
    """

    def __init__(self, task: str, *, noise: float, speed: tuple[float, float] = (1.0, 1.0)) -> None:
        from vla_parl.envs import make_expert

        make_expert(task, noise=noise, speed=speed)        # a bad task, noise or speed fails here, before any env
        self.task, self.noise, self.speed = task, noise, tuple(speed)
        self._experts: dict[int, Any] = {}                 # reset seed of a running episode → its expert

    def __call__(self, obs: Any) -> np.ndarray:
        from vla_parl.envs import make_expert

        actions = []
        for view in obs.extras["env"]:
            if view.step == 0:
                self._experts[view.seed] = expert = make_expert(self.task, noise=self.noise, speed=self.speed)
                expert.reset(view.seed)
            actions.append(self._experts[view.seed].act(view.obs, view.info))
        return np.stack(actions)


def expert_episodes(task: str, num_episodes: int, seed: int, *, noise: float, image_size: int,
                    max_episode_steps: int, targets: Any = None, speed: tuple[float, float] = (1.0, 1.0),
                    progress: bool = False) -> list[dict[str, Any]]:
    """Scripted noisy-expert episodes (reset seeds seed .. seed + n − 1), with the privileged ``state``, in the
    episode format of `run_episodes` (actions in the env's units; reward −1 per step, 0 on success)."""
    adapter = TabletopAdapter(task, image_size=image_size, max_episode_steps=max_episode_steps, targets=targets)
    actor = ExpertActor(task, noise=noise, speed=speed)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=num_episodes, desc="demos", leave=False)
    try:
        result = run_episodes(adapter, actor, episodes=num_episodes, seed=seed, unnormalize=lambda a: a,
                              progress=bar.update if bar is not None else None, keep_trajectories=True)
    finally:
        if bar is not None:
            bar.close()
    return result.trajectories
