"""Scripted experts for the tabletop tasks, with a noise knob (`vla_parl.rollout.expert_episodes` runs them).

An expert reads privileged state from the env's `info` (block poses, TCP position, target block, push
direction) and returns an OpenVLA-convention action in [-1, 1]^7 (gripper 1 = open, 0 = closed).

Noise: with `noise = s`, each action gets Gaussian noise of std `s * action_std` on the three
translation dims, and at every step a "mistake" starts with probability `s * mistake_prob`: for
`mistake_len` steps the expert outputs one random action (random translation, random gripper). The
rotation dims stay 0, as an operator would leave them: the gripper's orientation is fixed, so rotation
noise would only be unlearnable label noise for the policy. `s = 0` is the clean
expert (>= 90% success); `s = 1` (the default) is calibrated to roughly 30-60% success per task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_parl.envs.tabletop import TASKS, _check_choice

__all__ = ["ExpertNoise", "ScriptedExpert", "DEFAULT_NOISE", "make_expert"]

DEFAULT_NOISE = 1.0


@dataclass(frozen=True)
class ExpertNoise:
    """Per-task noise levels at `noise = 1` (they scale linearly with `noise`)."""

    action_std: float
    mistake_prob: float
    mistake_len: int


# Calibrated on seeds 0..199 (docs/envs.md) so that noise = 1 gives ~30-60 % success.
_NOISE_AT_ONE = {
    "reach": ExpertNoise(action_std=0.5, mistake_prob=0.13, mistake_len=6),
    "push": ExpertNoise(action_std=0.3, mistake_prob=0.09, mistake_len=6),
    "lift": ExpertNoise(action_std=0.3, mistake_prob=0.08, mistake_len=6),
}

_HOVER = 0.08  # TCP height for moving above blocks (finger tips clear a block by ~2 cm)
_PUSH_BACKOFF = 0.058  # TCP distance behind the block's centre before pushing
_GRASP_TOL = 0.008
_CLOSE_STEPS = 3


class ScriptedExpert:
    """A state-machine expert for one task. Call `reset(seed)` at the start of every episode.

    Args:
        task: one of `TASKS`.
        noise: noise scale s >= 0 (0 = clean; `DEFAULT_NOISE` = 1 calibrated to ~30-60 % success).
        levels: the per-task noise at s = 1 (defaults to the calibrated table).
        speed: (low, high) in (0, 1]: each episode the operator's speed is drawn uniformly from this range and
            scales the translation commands (a hesitant operator is slower than the task allows); (1, 1) = full
            speed.
    """

    def __init__(self, task: str, noise: float = DEFAULT_NOISE, levels: ExpertNoise | None = None,
                 speed: tuple[float, float] = (1.0, 1.0)) -> None:
        _check_choice("task", task, TASKS)
        if not (noise >= 0 and np.isfinite(noise)):
            raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
        low, high = (float(v) for v in speed)
        if not 0 < low <= high <= 1:
            raise ValueError(f"speed must be a range (low, high) with 0 < low <= high <= 1, got {speed!r}")
        self.speed_range = (low, high)
        self._speed = high
        self.task = task
        self.noise = float(noise)
        self.levels = levels or _NOISE_AT_ONE[task]
        self._rng = np.random.default_rng(0)
        self._phase = "approach"
        self._closing = 0
        self._mistake_left = 0
        self._mistake = np.zeros(7)

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)
        low, high = self.speed_range
        self._speed = self._rng.uniform(low, high) if low < high else high
        self._phase = "approach"
        self._closing = 0
        self._mistake_left = 0

    def act(self, obs: dict[str, Any], info: dict[str, Any]) -> np.ndarray:
        """Action [7] float32 for the current step (`obs` is unused: the expert is privileged)."""
        if info.get("task") != self.task:
            raise ValueError(f"this expert is for task {self.task!r}, the env runs {info.get('task')!r}")
        action = getattr(self, f"_{self.task}")(info)
        action[:3] *= self._speed
        return self._perturb(action).astype(np.float32)

    __call__ = act

    # ------------------------------------------------------------------ noise
    def _perturb(self, action: np.ndarray) -> np.ndarray:
        s = self.noise
        if s == 0:
            return action
        if self._mistake_left == 0 and self._rng.random() < s * self.levels.mistake_prob:
            self._mistake_left = self.levels.mistake_len
            self._mistake = np.concatenate([self._rng.uniform(-1, 1, 3), np.zeros(3), [float(self._rng.random() < 0.5)]])
        if self._mistake_left > 0:
            self._mistake_left -= 1
            return self._mistake.copy()
        noisy = action.copy()
        noisy[:3] += self._rng.normal(0.0, s * self.levels.action_std, 3)
        return np.clip(noisy, -1.0, 1.0)

    # ------------------------------------------------------------------ tasks
    @staticmethod
    def _move(info: dict[str, Any], goal: np.ndarray, gripper: float) -> np.ndarray:
        delta = (np.asarray(goal) - info["tcp_pos"]) / info["max_step"]
        return np.concatenate([np.clip(delta, -1.0, 1.0), np.zeros(3), [gripper]])

    def _reach(self, info: dict[str, Any]) -> np.ndarray:
        block = info["block_poses"][info["target_block"]][:3]
        tcp = info["tcp_pos"]
        if np.linalg.norm(tcp[:2] - block[:2]) > 0.015:  # stay high until above the block
            return self._move(info, np.array([block[0], block[1], max(_HOVER, tcp[2])]), 1.0)
        return self._move(info, block, 1.0)

    def _lift(self, info: dict[str, Any]) -> np.ndarray:
        block = info["block_poses"][info["target_block"]][:3]
        tcp = info["tcp_pos"]
        xy_err = np.linalg.norm(tcp[:2] - block[:2])
        if self._phase in ("close", "lift") and (xy_err > 0.02 or tcp[2] - block[2] > 0.02):
            self._phase = "approach"  # the block slipped or was never held: open and start over
        if self._phase == "approach":
            if xy_err > 0.012:
                return self._move(info, np.array([block[0], block[1], max(_HOVER, tcp[2])]), 1.0)
            if info["gripper_opening"] < 0.9:  # wait for the fingers to open fully
                return self._move(info, np.array([block[0], block[1], tcp[2]]), 1.0)
            if abs(tcp[2] - block[2]) > _GRASP_TOL:
                return self._move(info, block, 1.0)
            self._phase, self._closing = "close", 0
        if self._phase == "close":
            self._closing += 1
            if self._closing < _CLOSE_STEPS:
                return self._move(info, block, 0.0)
            self._phase = "lift"
        return self._move(info, np.array([block[0], block[1], 0.16]), 0.0)

    def _push(self, info: dict[str, Any]) -> np.ndarray:
        block = info["block_poses"][info["target_block"]][:3]
        tcp = info["tcp_pos"]
        d = np.append(info["push_direction"], 0.0)
        behind = block - d * _PUSH_BACKOFF
        behind[2] = block[2]
        along = (tcp - block) @ d
        lateral = tcp[:2] - block[:2] - along * d[:2]
        if self._phase == "approach":
            if np.linalg.norm(tcp[:2] - behind[:2]) > 0.012:
                return self._move(info, np.array([behind[0], behind[1], max(_HOVER, tcp[2])]), 0.0)
            if abs(tcp[2] - behind[2]) > 0.01:
                return self._move(info, behind, 0.0)
            self._phase = "push"
        if along > -0.02 or np.linalg.norm(lateral) > 0.025:  # lost contact geometry: back off and redo
            self._phase = "approach"
            return self._move(info, np.array([tcp[0], tcp[1], _HOVER]), 0.0)
        goal = block + d * 0.05
        goal[2] = block[2]
        goal[:2] -= 0.5 * lateral  # steer back onto the block's line
        return self._move(info, goal, 0.0)


def make_expert(task: str, noise: float = DEFAULT_NOISE, speed: tuple[float, float] = (1.0, 1.0)) -> ScriptedExpert:
    """The scripted expert for `task` at noise scale `noise` (0 = clean) and per-episode speed range `speed`."""
    return ScriptedExpert(task, noise=noise, speed=speed)
