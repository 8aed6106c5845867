"""The loop a robot runs to collect labelled episodes for online PA-RL: the `Robot` protocol and `run_episode`.

    with PolicyClient(url, api_key=key) as client:
        mode = collection_mode(client.metadata())          # "refined" when the server has a critic
        result = run_episode(client, robot, instruction="pick up the red block", max_steps=60, mode=mode,
                             label=keyboard_label())      # the operator types y/n after the episode

Each episode: `robot.reset()` → `start_episode` → per step `get_image` / `get_proprio` → `act(...,
episode_id=)` (the server records the step) → `apply_action` until the robot says the episode is over or
`max_steps` → `label()` → `end_episode(success=...)` with the observation after the last action. If anything
fails in between, the error propagates and the server discards the unfinished episode after its timeout.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from vla_parl_client.client import PolicyClient
from vla_parl_client.errors import PolicyServerError

__all__ = ["Robot", "EpisodeResult", "run_episode", "keyboard_label", "collection_mode"]


@runtime_checkable
class Robot(Protocol):
    """What the loop needs from a robot (a driver, or a simulator that stands in for one).

    Optional: `get_state() -> np.ndarray`, a low-dimensional state (object poses from a tracker; a
    simulator's block state), sent with every step and stored with the episode when the robot has it (for
    a critic that reads one)."""

    def reset(self) -> str | None:
        """Bring robot and scene to a start state; return the episode's instruction when the robot picks
        it (a simulator drawing a task), None to keep the caller's."""

    def get_image(self) -> np.ndarray:
        """The camera frame the policy sees: uint8 [H, W, 3]."""

    def get_proprio(self) -> np.ndarray | None:
        """Proprioception (e.g. end-effector pose + gripper) as float [P], or None when there is none."""

    def apply_action(self, action: np.ndarray) -> bool:
        """Execute one action (float [A], robot units); True when the episode is over (task done, stop)."""


@dataclass
class EpisodeResult:
    """One finished episode as the robot saw it; `stored` is the server's `end_episode` answer."""

    episode_id: str
    instruction: str
    success: bool
    actions: np.ndarray                          # [T, A] the served actions, robot units
    policy_versions: list[int]                   # [T] the version that served each step
    latencies_ms: list[float]                    # [T] request round trips
    stored: dict[str, Any]

    @property
    def steps(self) -> int:
        return len(self.policy_versions)


def collection_mode(metadata: dict[str, Any]) -> str:
    """The mode robots collect in: "refined" (PA-RL acts with its improvement operator) when the server has
    a critic, else "greedy"."""
    return "refined" if "refined" in metadata.get("modes", ()) else "greedy"


def keyboard_label(prompt: str = "success? [y/n] ", read: Callable[[str], str] = input) -> Callable[[], bool]:
    """A success label typed by the operator after each episode (asks again until the answer is y or n)."""

    def label() -> bool:
        while True:
            answer = read(prompt).strip().lower()
            if answer in ("y", "yes", "n", "no"):
                return answer.startswith("y")
            print("please answer y or n", file=sys.stderr)

    return label


def run_episode(client: PolicyClient, robot: Robot, *, label: Callable[[], bool], max_steps: int,
                instruction: str | None = None, mode: str = "refined", unnorm_key: str | None = None,
                metadata: dict[str, Any] | None = None) -> EpisodeResult:
    """Run one recorded episode on `robot` with actions from the server and store it with its label.

    Args:
        label: called once after the last step; returns the episode's success.
        max_steps: the episode ends after this many actions at the latest.
        instruction: the task; a robot whose `reset()` returns one overrides it.
        mode: "refined" (default; needs a critic on the server), "greedy" or "sample".
        metadata: stored with the episode (e.g. {"robot": "arm-2", "operator": "kim"}).
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    instruction = robot.reset() or instruction
    if not instruction:
        raise ValueError("no instruction: pass instruction=... (or use a robot whose reset() returns one)")
    get_state = getattr(robot, "get_state", None)
    episode_id = client.start_episode(instruction, unnorm_key=unnorm_key, metadata=metadata)
    actions, versions, latencies = [], [], []
    for step in range(max_steps):
        start = time.perf_counter()
        answer = client.act_info(robot.get_image(), instruction, unnorm_key, mode, episode_id=episode_id,
                                 proprio=robot.get_proprio(), state=None if get_state is None else get_state())
        latencies.append((time.perf_counter() - start) * 1e3)
        if answer["step"] != step:
            raise PolicyServerError(f"episode {episode_id}: the server recorded step {answer['step']} but this "
                                    f"is step {step} of the robot; the episode's record is inconsistent")
        action = np.asarray(answer["action"], dtype=np.float64)
        actions.append(action)
        versions.append(int(answer["policy_version"]))
        if robot.apply_action(action):
            break
    success = bool(label())
    stored = client.end_episode(episode_id, success=success, final_image=robot.get_image(),
                                final_proprio=robot.get_proprio(), final_state=None if get_state is None else get_state())
    return EpisodeResult(episode_id, instruction, success, np.stack(actions), versions, latencies, stored)
