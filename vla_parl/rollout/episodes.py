"""Seeded episodes in lockstep: one `Observation` batch per step, normalised actions, replay-ready trajectories.

    adapter = CalvinParlAdapter(image_size=200, max_steps=360)     # or TabletopAdapter(task="reach")
    result = run_episodes(adapter, act, episodes=16, seed=0, unnormalize=policy.unnormalize,
                          keep_trajectories=True)
    result.success_rate, result.returns, result.trajectories     # → training.data.episodes_to_buffer

`act(obs) -> actions` maps an `Observation` batch (images, instructions, proprio and, where the env has
one, the privileged `state`) to *normalised* actions [B, A]; `unnormalize` turns them into the env's units.
Episode i resets with seed `seed + i`, so every policy meets the same scenes; up to `chunk` environments
step together and the policy is called once per step for all of those still running. `obs.extras["env"]`
holds one `EnvView` per row (the episode's reset seed, the step index and the env's own observation and info):
learned policies ignore it, a scripted expert reads the simulator through it (`vla_parl.rollout.ExpertActor`).

**The episode format** (every collector returns it; `training.data.episodes_to_buffer` stores it): the
observed keys (``image`` uint8 [T+1, H, W, 3], ``proprio`` float32 [T+1, P], optionally ``state`` float32
[T+1, S]) including the observation after the last action, ``action`` float32 [T, A] as the actor chose
it, ``reward`` float32 [T] in PA-RL's convention, ``terminal`` and ``success`` (bool) and ``instruction``.
Simulated episodes carry no ``mc_tail``: their Cal-QL returns are the plain truncated sums; real-robot episodes
(`RobotEpisodes.to_learner`) carry ``mc_tail="failure"`` (`vla_parl.data.rewards.mc_returns`).

What differs between environments is behind an `EnvAdapter`: building the env, turning its observation
(and info) into the policy's fields, and PA-RL's reward convention. This loop is what evaluation
(`vla_parl.eval.tabletop.evaluate_tabletop`) and online PA-RL collection (`recipes/parl.py`) share;
`vla_parl.rollout.ParallelRollout` is the other loop, for throughput: vector envs that auto-reset and
an `ActionSource` answering in robot units (a local model or a policy server).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Protocol, runtime_checkable

import numpy as np

__all__ = ["EnvAdapter", "EnvView", "EvalResult", "run_episodes", "wilson_interval"]


class EnvView(NamedTuple):
    """What one env shows a privileged actor at a step: the reset seed of its episode, the step index t (0 right
    after the reset) and the env's own observation and info dict."""

    seed: int
    step: int
    obs: Any
    info: dict[str, Any]


@runtime_checkable
class EnvAdapter(Protocol):
    """One environment family behind `run_episodes`.

    `make_env()` returns a gymnasium-style env (`reset(seed=) -> (obs, info)`, `step(action) -> (obs,
    reward, terminated, truncated, info)`) where `terminated` means success. `observe(obs, info)` gives one
    step's fields: ``image`` uint8 [H, W, 3], ``instruction`` str, ``proprio`` float32 [P] and optionally
    ``state`` float32 [S] (the privileged simulator state of an asymmetric critic). `reward(r, terminated,
    info)` turns the env's reward into PA-RL's convention. `obs_shapes` names the stored keys and their
    per-step shapes (they must match the offline data the online episodes are mixed with); `max_parallel`
    bounds how many envs step together; `metrics(result)` adds env-specific per-round numbers.
    """

    obs_shapes: dict[str, tuple[int, ...]]
    max_parallel: int

    def make_env(self) -> Any: ...

    def observe(self, obs: Any, info: dict[str, Any]) -> dict[str, Any]: ...

    def reward(self, env_reward: float, terminated: bool, info: dict[str, Any]) -> float: ...

    def metrics(self, result: "EvalResult") -> dict[str, float]: ...


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
    """Per episode: success, length, undiscounted return and the last step's info dict."""

    successes: list[bool]
    lengths: list[int]
    frames: list[np.ndarray] = field(default_factory=list)   # per recorded episode: uint8 [T+1, H, W, 3]
    trajectories: list[dict[str, Any]] = field(default_factory=list)  # with keep_trajectories=True
    returns: list[float] = field(default_factory=list)
    final_infos: list[dict[str, Any]] = field(default_factory=list)

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


def run_episodes(adapter: EnvAdapter, act: Callable[[Any], Any], *, episodes: int, seed: int,
                 unnormalize: Callable[[np.ndarray], np.ndarray], record: int = 0, chunk: int | None = None,
                 progress: Any = None, keep_trajectories: bool = False) -> EvalResult:
    """Run `episodes` seeded episodes (in lockstep chunks of `chunk`, default `adapter.max_parallel`, envs);
    record the frames of the first `record`. The chunk's envs are made once and reset for every later chunk
    (an episode starts from `reset(seed=...)` alone, as in gymnasium), and closed at the end.

    keep_trajectories: also return every episode as a replay episode: the observed keys (image, proprio,
    [state]) [T+1, ...], normalised action [T, A], reward [T] (the adapter's convention), instruction,
    terminal = success.
    """
    chunk = chunk or adapter.max_parallel
    result = EvalResult(successes=[], lengths=[])
    pool: list[Any] = []
    try:
        for first in range(0, episodes, chunk):
            ids = list(range(first, min(episodes, first + chunk)))
            pool += [adapter.make_env() for _ in range(len(ids) - len(pool))]
            _run_chunk(adapter, act, pool[:len(ids)], ids, seed=seed, unnormalize=unnormalize, record=record,
                       keep_trajectories=keep_trajectories, result=result)
            if progress is not None:
                progress(len(ids))
    finally:
        for env in pool:
            env.close()
    return result


def _run_chunk(adapter: EnvAdapter, act: Callable[[Any], Any], envs: list[Any], ids: list[int], *, seed: int,
               unnormalize: Callable[[np.ndarray], np.ndarray], record: int, keep_trajectories: bool,
               result: EvalResult) -> None:
    """Episodes `ids` (seeds `seed + id`) in lockstep on `envs`, one each; appended to `result`."""
    import torch

    from vla_parl.policy.base import Observation

    first = ids[0]
    views = [EnvView(seed + i, 0, *env.reset(seed=seed + i)) for env, i in zip(envs, ids)]
    seen = [adapter.observe(view.obs, view.info) for view in views]
    infos: list[dict[str, Any]] = [{} for _ in ids]
    alive = list(range(len(ids)))
    done_success = [False] * len(ids)
    rewards: list[list[float]] = [[] for _ in ids]
    recorded = {j: [seen[j]["image"]] for j in range(len(ids)) if first + j < record}
    trajs = [{**{k: [v] for k, v in s.items() if k != "instruction"}, "action": [],
              "instruction": s["instruction"]} for s in seen] if keep_trajectories else []
    while alive:
        rows = [seen[j] for j in alive]
        batch = Observation(
            images=torch.from_numpy(np.stack([s["image"] for s in rows])),
            instructions=[s["instruction"] for s in rows],
            proprio=torch.from_numpy(np.stack([s["proprio"] for s in rows]).astype(np.float32)),
            state=torch.from_numpy(np.stack([s["state"] for s in rows])) if "state" in rows[0] else None,
            extras={"env": [views[j] for j in alive]})
        normalised = np.asarray(act(batch), np.float32)
        actions = unnormalize(normalised)
        still = []
        for row, j in enumerate(alive):
            obs, env_reward, terminated, truncated, infos[j] = envs[j].step(np.asarray(actions[row], np.float32))
            views[j] = EnvView(views[j].seed, views[j].step + 1, obs, infos[j])
            seen[j] = adapter.observe(obs, infos[j])
            rewards[j].append(adapter.reward(env_reward, terminated, infos[j]))
            if trajs:
                for key, value in seen[j].items():
                    if key != "instruction":
                        trajs[j][key].append(value)
                trajs[j]["action"].append(normalised[row])
            if j in recorded:
                recorded[j].append(seen[j]["image"])
            if terminated or truncated:
                done_success[j] = bool(terminated)
            else:
                still.append(j)
        alive = still
    result.successes += done_success
    result.lengths += [len(r) for r in rewards]
    result.returns += [float(np.sum(r, dtype=np.float32)) for r in rewards]
    result.final_infos += infos
    for j, traj in enumerate(trajs):
        out = {k: np.stack(v).astype(np.uint8 if k == "image" else np.float32)
               for k, v in traj.items() if k != "instruction"}
        result.trajectories.append({**out, "reward": np.asarray(rewards[j], np.float32),
                                    "terminal": done_success[j], "success": done_success[j],
                                    "instruction": traj["instruction"]})
    result.frames += [np.stack(recorded[j]) for j in sorted(recorded)]
