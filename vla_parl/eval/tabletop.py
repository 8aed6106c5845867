"""Success rate of a policy on the built-in simulator over a fixed set of seeded episodes, with intervals.

    result = evaluate_tabletop(act, task="reach", episodes=40, seed=10_000, unnormalize=policy.unnormalize)
    result.success_rate, result.interval            # 95 % Wilson score interval

`act(obs) -> actions` maps an `Observation` batch (images, instructions, proprio, and the privileged
`state` for asymmetric critics) to normalised actions [B, A]; all episodes run in lockstep so the policy
is called once per step for the whole batch. Episode i resets with seed `seed + i`, so every policy is
scored on the same scenes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = ["wilson_interval", "EvalResult", "evaluate_tabletop", "greedy_actor", "reranking_actor"]


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion (n = 0 gives (0, 1))."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class EvalResult:
    successes: list[bool]
    lengths: list[int]
    frames: list[np.ndarray] = field(default_factory=list)   # per recorded episode: uint8 [T+1, H, W, 3]
    trajectories: list[dict[str, Any]] = field(default_factory=list)  # with keep_trajectories=True

    @property
    def episodes(self) -> int:
        return len(self.successes)

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.successes)) if self.successes else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(int(sum(self.successes)), len(self.successes))

    def summary(self) -> dict[str, Any]:
        low, high = self.interval
        return {"success_rate": self.success_rate, "successes": int(sum(self.successes)), "episodes": self.episodes,
                "interval95": [low, high], "mean_length": float(np.mean(self.lengths)) if self.lengths else 0.0}


def evaluate_tabletop(act: Callable[[Any], Any], *, task: str, episodes: int, seed: int,
                      unnormalize: Callable[[np.ndarray], np.ndarray], image_size: int = 56,
                      max_episode_steps: int = 25, record: int = 0, chunk: int = 40,
                      progress: Any = None, keep_trajectories: bool = False) -> EvalResult:
    """Run `episodes` seeded episodes (in lockstep chunks of `chunk` envs); record the first `record`.

    keep_trajectories: also return every episode as a replay episode (image/proprio/state [T+1, ...],
    normalised action [T, A], reward [T] = −1 per step / 0 on success, instruction, terminal, success).
    """
    import torch

    from vla_parl.envs import make_env
    from vla_parl.policy.base import Observation
    from vla_parl.training.data import tabletop_state

    successes: list[bool] = []
    lengths: list[int] = []
    frames: list[np.ndarray] = []
    trajectories_out: list[dict[str, Any]] = []
    for first in range(0, episodes, chunk):
        ids = list(range(first, min(episodes, first + chunk)))
        envs = [make_env(task, image_size=image_size, max_episode_steps=max_episode_steps) for _ in ids]
        obs, infos = zip(*[env.reset(seed=seed + i) for env, i in zip(envs, ids)])
        obs, infos = list(obs), list(infos)
        alive = list(range(len(ids)))
        done_success = [False] * len(ids)
        steps = [0] * len(ids)
        recorded = {j: [obs[j]["image"]] for j in range(len(ids)) if first + j < record}
        trajs = [{"image": [o["image"]], "proprio": [o["proprio"]], "state": [tabletop_state(info)], "action": [],
                  "instruction": o["instruction"]} for o, info in zip(obs, infos)] if keep_trajectories else []
        while alive:
            batch = Observation(images=torch.from_numpy(np.stack([obs[j]["image"] for j in alive])),
                                instructions=[obs[j]["instruction"] for j in alive],
                                proprio=torch.from_numpy(np.stack([obs[j]["proprio"] for j in alive]).astype(np.float32)),
                                state=torch.from_numpy(np.stack([tabletop_state(infos[j]) for j in alive])))
            normalised = np.asarray(act(batch), np.float32)
            actions = unnormalize(normalised)
            still = []
            for row, j in enumerate(alive):
                obs[j], _, terminated, truncated, infos[j] = envs[j].step(np.asarray(actions[row], np.float32))
                steps[j] += 1
                if trajs:
                    for key, value in (("image", obs[j]["image"]), ("proprio", obs[j]["proprio"]),
                                       ("state", tabletop_state(infos[j])), ("action", normalised[row])):
                        trajs[j][key].append(value)
                if j in recorded:
                    recorded[j].append(obs[j]["image"])
                if terminated or truncated:
                    done_success[j] = bool(terminated)
                else:
                    still.append(j)
            alive = still
        for env in envs:
            env.close()
        successes += done_success
        for j, traj in enumerate(trajs):
            out = {k: np.stack(v).astype(np.uint8 if k == "image" else np.float32)
                   for k, v in traj.items() if k != "instruction"}
            reward = np.full(steps[j], -1.0, np.float32)
            reward[-1] = 0.0 if done_success[j] else -1.0
            trajectories_out.append({**out, "reward": reward, "terminal": done_success[j], "success": done_success[j],
                                     "instruction": traj["instruction"]})
        lengths += steps
        frames += [np.stack(recorded[j]) for j in sorted(recorded)]
        if progress is not None:
            progress(len(ids))
    return EvalResult(successes=successes, lengths=lengths, frames=frames, trajectories=trajectories_out)


def greedy_actor(policy: Any, temperature: float = 0.0,
                 generator: Any = None) -> Callable[[Any], np.ndarray]:
    """Greedy (argmax-token; or sampled at `temperature` > 0) actions of an `OpenVLAPolicy`: normalised [B, A]."""
    import torch

    from vla_parl.policy.openvla import OpenVLAPolicy, SamplingSettings

    actor = OpenVLAPolicy(policy.model, SamplingSettings(temperature=temperature), unnorm_key=policy.unnorm_key)

    def act(obs: Any) -> np.ndarray:
        with torch.no_grad():
            return actor.sample_actions(obs, 1, generator=generator).actions[:, 0].numpy()

    return act


def reranking_actor(policy: Any, critic: Any, action_optimizer: Any, num_samples: int,
                    seed: int = 0) -> Callable[[Any], np.ndarray]:
    """Act with the PA-RL improvement operator over `policy` samples (V-GPS-style re-ranking, no training)."""
    import torch

    from vla_parl.parl import PolicyUpdate, PolicyUpdateConfig

    update = PolicyUpdate(policy, None, critic, action_optimizer, PolicyUpdateConfig(num_samples=num_samples),
                          generator=torch.Generator().manual_seed(seed))

    def act(obs: Any) -> np.ndarray:
        return update.improve(obs).actions.numpy()

    return act
