"""Success rate of a policy on the built-in simulator over a fixed set of seeded episodes, with intervals.

    result = evaluate_tabletop(act, task="reach", episodes=40, seed=10_000, unnormalize=policy.unnormalize)
    result.success_rate, result.interval            # 95 % Wilson score interval

`act(obs) -> actions` maps an `Observation` batch (images, instructions, proprio, and the privileged
`state` for asymmetric critics) to normalised actions [B, A]; all episodes run in lockstep so the policy
is called once per step for the whole batch. Episode i resets with seed `seed + i`, so every policy is
scored on the same scenes. The loop is `vla_parl.rollout.run_episodes` with a `TabletopAdapter`.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from vla_parl.rollout.episodes import EvalResult, run_episodes, wilson_interval

__all__ = ["wilson_interval", "EvalResult", "evaluate_tabletop", "greedy_actor", "sample_actor", "policy_actor",
           "improvement_actor"]


def evaluate_tabletop(act: Callable[[Any], Any], *, task: str, episodes: int, seed: int,
                      unnormalize: Callable[[np.ndarray], np.ndarray], image_size: int = 56,
                      max_episode_steps: int = 25, record: int = 0, chunk: int = 40,
                      progress: Any = None, keep_trajectories: bool = False, targets: Any = None) -> EvalResult:
    """Run `episodes` seeded episodes (in lockstep chunks of `chunk` envs); record the first `record`.

    keep_trajectories: also return every episode as a replay episode (image/proprio/state [T+1, ...],
    normalised action [T, A], reward [T] = −1 per step / 0 on success, instruction, terminal, success).
    """
    from vla_parl.rollout.adapters import TabletopAdapter

    adapter = TabletopAdapter(task, image_size=image_size, max_episode_steps=max_episode_steps, targets=targets)
    return run_episodes(adapter, act,
                        episodes=episodes, seed=seed, unnormalize=unnormalize, record=record, chunk=chunk,
                        progress=progress, keep_trajectories=keep_trajectories)


def greedy_actor(policy: Any) -> Callable[[Any], np.ndarray]:
    """Greedy (argmax-token) actions of an `OpenVLAPolicy`, whatever its own sampling settings: normalised [B, A]."""
    from vla_parl.policy.openvla import OpenVLAPolicy, SamplingSettings

    return sample_actor(OpenVLAPolicy(policy.model, SamplingSettings(temperature=0.0), unnorm_key=policy.unnorm_key))


def sample_actor(policy: Any, seed: int = 0, generator: Any = None) -> Callable[[Any], np.ndarray]:
    """One sample of any `Policy` per state (a diffusion policy's DDPM sample, a Gaussian's draw, an OpenVLA's at
    its sampling settings), from `generator` or else one seeded with `seed`: normalised [B, A]."""
    import torch

    generator = generator if generator is not None else torch.Generator().manual_seed(seed)

    def act(obs: Any) -> np.ndarray:
        with torch.no_grad():
            return policy.sample_actions(obs, 1, generator=generator).actions[:, 0].cpu().numpy()

    return act


def policy_actor(policy: Any, seed: int = 0) -> Callable[[Any], np.ndarray]:
    """The policy alone, as each class acts: an OpenVLA greedy (argmax tokens), any other class one sample."""
    from vla_parl.policy.openvla import OpenVLAPolicy

    return greedy_actor(policy) if isinstance(policy, OpenVLAPolicy) else sample_actor(policy, seed)


def improvement_actor(operator: Any, seed: int = 0) -> Callable[[Any], np.ndarray]:
    """Act with the PA-RL improvement operator (`vla_parl.parl.ImprovementOperator`: N policy samples →
    top-k by Q → local steps → max-Q) over its policy, drawing from a generator seeded with `seed`; the
    V-GPS-style re-ranking ablation when the policy is the SFT one (no training)."""
    import torch

    return operator.actor(torch.Generator().manual_seed(seed), choice="argmax")
