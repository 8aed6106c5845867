"""The built-in tabletop as a remote robot that speaks only HTTP (`vla-parl robot sim`).

A stand-in for a lab's robots in the online PA-RL loop: each robot process holds its own pybullet
tabletop and a `vla_parl_client.PolicyClient`, and runs recorded episodes exactly as a real robot
would (`vla_parl_client.run_episode`: start_episode → act with episode_id → end_episode). Nothing but
HTTP reaches the server; success is the env's `terminated` (the task was achieved).

- `vla_parl.envs.tabletop_robot.TabletopRobot`: the env behind the `vla_parl_client.Robot` protocol
  (including the privileged `state` a demo critic reads); `SimRobotSpec` holds its settings.
- `run_sim_robots(spec, episodes, processes)`: N episodes over P processes. Episode i (0-based) always
  uses env seed `spec.seed + i` and runs in process `i % P`, so the scenes do not depend on P.
- `spec.episodes_per_version` = K > 0 paces the robots to the learner, as PA-RL's real-robot rounds
  alternate collection and training: the P robots share K episodes per policy version (process p runs
  K // P, plus one when p < K mod P) and then wait until the server serves a newer version.
- `success_by_version(results)`: episodes and successes per policy version (the version that served an
  episode's first step), for the table `vla-parl robot sim` prints.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_parl.envs.tabletop_robot import TabletopRobot

__all__ = ["SimRobotSpec", "SimEpisode", "run_robot_process", "run_sim_robots", "success_by_version"]


@dataclass(frozen=True)
class SimRobotSpec:
    """What every simulated robot process needs (picklable: it travels to spawned processes)."""

    url: str
    mode: str                                    # greedy | sample | refined
    # the scene: `vla-parl robot sim` fills these from its flags, whose defaults (vla_parl.cli.robot.DEFAULTS) are
    # the demo's tabletop
    task: str
    image_size: int
    max_steps: int
    targets: tuple[str, ...] | None = None
    unnorm_key: str | None = None
    api_key: str | None = None
    seed: int = 0
    timeout: float = 30.0                        # seconds per request (refined answers on a busy CPU are slow)
    episodes_per_version: int = 0                # > 0: after these (all robots together), wait for a new version
    version_wait_s: float = 3600.0               # how long a paced robot waits for that version


@dataclass(frozen=True)
class SimEpisode:
    """One stored episode as its robot saw it."""

    index: int                                   # 0-based episode number across all processes
    seed: int
    episode_id: str
    success: bool
    steps: int
    policy_versions: tuple[int, ...]             # the version that served each step
    mean_latency_ms: float


def run_robot_process(spec: SimRobotSpec, process: int, processes: int, episodes: int) -> list[SimEpisode]:
    """The episodes i ≡ process (mod processes) of `episodes`, one after another, on one robot."""
    from vla_parl_client import PolicyClient, run_episode

    indices = list(range(process, episodes, processes))
    robot = TabletopRobot(spec.task, seeds=[spec.seed + i for i in indices], image_size=spec.image_size,
                          max_episode_steps=spec.max_steps, targets=spec.targets)
    per_version = spec.episodes_per_version
    quota = per_version // processes + (process < per_version % processes)
    out = []
    try:
        with PolicyClient(spec.url, api_key=spec.api_key, timeout=spec.timeout) as client:
            version, on_version = int(client.metadata().get("policy_version", 0)), 0
            for i in indices:
                if per_version and on_version >= quota:
                    version, on_version = _wait_for_newer_version(client, version, spec.version_wait_s), 0
                result = run_episode(client, robot, label=lambda: robot.success, max_steps=spec.max_steps,
                                     mode=spec.mode, unnorm_key=spec.unnorm_key,
                                     metadata={"robot": f"tabletop-sim-{process}", "task": spec.task,
                                               "seed": spec.seed + i})
                episode = SimEpisode(i, spec.seed + i, result.episode_id, result.success, result.steps,
                                     tuple(result.policy_versions), float(np.mean(result.latencies_ms)))
                out.append(episode)
                if episode.policy_versions[0] > version:     # the server swapped before this episode began
                    version, on_version = episode.policy_versions[0], 0
                on_version += 1
                versions = sorted(set(episode.policy_versions))
                print(f"robot {process} episode {i} (seed {episode.seed}): "
                      f"{'success' if episode.success else 'failure'} in {episode.steps} steps "
                      f"({episode.mean_latency_ms:.1f} ms/step), policy version{'s' if len(versions) > 1 else ''} "
                      f"{', '.join(map(str, versions))}", flush=True)
    finally:
        robot.close()
    return out


def _wait_for_newer_version(client: Any, version: int, timeout_s: float, poll_s: float = 0.5) -> int:
    """Poll /v1/metadata until the server serves a version newer than `version`; → that version."""
    from vla_parl_client import PolicyServerError

    deadline = time.monotonic() + timeout_s
    while True:
        served = int(client.metadata().get("policy_version", 0))
        if served > version:
            return served
        if time.monotonic() > deadline:
            raise PolicyServerError(f"waited {timeout_s:g} s for a policy version newer than {version}: is the "
                                    "learner publishing into the server's --policy-updates DIR?")
        time.sleep(poll_s)


def run_sim_robots(spec: SimRobotSpec, episodes: int, processes: int = 1) -> list[SimEpisode]:
    """`episodes` recorded episodes over `processes` robot processes (1: in this process), by episode index.

    A robot's error (a `vla_parl_client.PolicyServerError`: server unreachable, a rejected request) is raised
    once every robot has stopped (the lowest-numbered failing robot's, when several fail)."""
    if episodes < 1 or processes < 1:
        raise ValueError(f"episodes and processes must be >= 1, got {episodes} and {processes}")
    processes = min(processes, episodes)
    if processes == 1:
        return run_robot_process(spec, 0, 1, episodes)
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_robot_process, spec, p, processes, episodes) for p in range(processes)]
        results = [f.result() for f in futures]
    return sorted((e for r in results for e in r), key=lambda e: e.index)


def success_by_version(results: Iterable[SimEpisode]) -> dict[int, tuple[int, int]]:
    """{policy version of an episode's first step: (episodes, successes)}, by version."""
    table: dict[int, list[int]] = {}
    for episode in results:
        row = table.setdefault(episode.policy_versions[0], [0, 0])
        row[0] += 1
        row[1] += episode.success
    return {version: (n, s) for version, (n, s) in sorted(table.items())}
