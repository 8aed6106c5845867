"""A scripted waypoint policy for CALVIN scene D: an oracle-style `CalvinPolicy` for tests, demos and
as a sanity baseline (it knows scene D's geometry; it is not a learned policy).

It reads the task from the instruction, plans TCP waypoints from `robot_obs` / `scene_obs` when the
subtask starts, and follows them with relative actions (a P-controller on the TCP position,
orientation held; it steers its own copy of the commanded target, as the env integrates relative
actions on a target pose). Supported: the four light tasks, both slider moves, open/close drawer,
lift_{c}_block_table and push_{c}_block_{left,right}; other tasks get a do-nothing action. Its
turn_off_lightbulb motion rarely succeeds in calvin_env's physics (and so in our scene, which matches it):
the fingertips slip off the raised switch knob at the edge of the Panda's reach.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vla_parl.envs.calvin.tasks import BLOCKS, INSTRUCTIONS

__all__ = ["ScriptedCalvinPolicy", "SCRIPTED_TASKS", "NoopCalvinPolicy"]

_OPEN, _CLOSE = 1.0, -1.0
_BLOCK_INDEX = {color: k for k, color in enumerate(BLOCKS)}   # scene_obs block order
# scene-D geometry (world frame, metres), measured on the CALVIN table D assets
_BUTTON_XY = (-0.12, -0.12)
_BUTTON_TOP = 0.485
_SWITCH_X = 0.30
_SLIDER_HANDLE_X = 0.04  # x of the sliding door's handle when the slide joint is 0 (door moves −x)
_DRAWER_X = 0.18
_DRAWER_GAP_Y = -0.21  # between the handle bar and the drawer front, drawer closed (opens −y)
_DRAWER_HANDLE_Z = 0.355

Waypoint = tuple[np.ndarray, float, int]  # (tcp position, gripper, steps to hold after arriving)


def _wp(x: float, y: float, z: float, gripper: float, hold: int = 0) -> Waypoint:
    return np.array([x, y, z], dtype=float), gripper, hold


def _plan(task: str, robot_obs: np.ndarray, scene_obs: np.ndarray) -> list[Waypoint] | None:
    tcp = robot_obs[:3]
    up = _wp(tcp[0], tcp[1], max(tcp[2], 0.56), _CLOSE)
    if task in ("turn_on_led", "turn_off_led"):
        x, y = _BUTTON_XY
        return [up, _wp(x, y, 0.56, _CLOSE), _wp(x, y, _BUTTON_TOP - 0.03, _CLOSE, 3), _wp(x, y, 0.58, _CLOSE)]
    if task == "turn_on_lightbulb":
        return [up, _wp(_SWITCH_X, -0.06, 0.53, _CLOSE), _wp(_SWITCH_X, -0.02, 0.49, _CLOSE),
                _wp(_SWITCH_X, 0.03, 0.575, _CLOSE), _wp(_SWITCH_X, 0.06, 0.63, _CLOSE, 3),
                _wp(_SWITCH_X, -0.05, 0.65, _CLOSE)]
    if task == "turn_off_lightbulb":
        # fingertips onto the top of the raised knob, then down along the switch's axis (0, −0.5, −0.87)
        # (its left end: the middle of the raised knob is at the edge of the Panda's reach)
        x = _SWITCH_X - 0.05
        return [up, _wp(x, 0.04, 0.66, _CLOSE), _wp(x, 0.045, 0.612, _CLOSE),
                _wp(x, -0.02, 0.50, _CLOSE, 3), _wp(x, -0.07, 0.60, _CLOSE)]
    if task in ("move_slider_left", "move_slider_right"):
        # fingers against the side of the door's handle, low enough that the hand clears its top
        hx = _SLIDER_HANDLE_X - scene_obs[0]
        side = 0.05 if task == "move_slider_left" else -0.05
        end = hx - 0.24 if task == "move_slider_left" else hx + 0.24
        return [_wp(hx + side, -0.07, 0.55, _CLOSE), _wp(hx + side, -0.01, 0.525, _CLOSE),
                _wp(end + side, -0.01, 0.525, _CLOSE), _wp(end + side, -0.07, 0.56, _CLOSE)]
    if task == "open_drawer":
        y = _DRAWER_GAP_Y - scene_obs[1]
        return [up, _wp(_DRAWER_X, y, 0.46, _CLOSE), _wp(_DRAWER_X, y, _DRAWER_HANDLE_Z, _CLOSE),
                _wp(_DRAWER_X, y - 0.18, _DRAWER_HANDLE_Z, _CLOSE), _wp(_DRAWER_X, y - 0.22, 0.50, _CLOSE)]
    if task == "close_drawer":
        y = _DRAWER_GAP_Y - scene_obs[1] - 0.09
        return [up, _wp(_DRAWER_X, y, 0.50, _CLOSE), _wp(_DRAWER_X, y, _DRAWER_HANDLE_Z, _CLOSE),
                _wp(_DRAWER_X, y + 0.20, _DRAWER_HANDLE_Z, _CLOSE, 3), _wp(_DRAWER_X, y + 0.10, 0.50, _CLOSE)]
    parts = task.split("_")
    if len(parts) == 4 and parts[2] == "block" and parts[1] in _BLOCK_INDEX:
        kind, color, where = parts[0], parts[1], parts[3]
        bx, by, bz = scene_obs[6 + 6 * _BLOCK_INDEX[color]: 9 + 6 * _BLOCK_INDEX[color]]
        if kind == "lift" and where == "table":
            return [_wp(bx, by, bz + 0.12, _OPEN), _wp(bx, by, bz + 0.005, _OPEN),
                    _wp(bx, by, bz + 0.005, _CLOSE, 12), _wp(bx, by, bz + 0.16, _CLOSE, 5)]
        if kind == "push" and where in ("left", "right"):
            sign = 1.0 if where == "right" else -1.0
            start = bx - sign * 0.07
            return [_wp(start, by, bz + 0.10, _CLOSE), _wp(start, by, bz + 0.005, _CLOSE),
                    _wp(bx + sign * 0.13, by, bz + 0.005, _CLOSE), _wp(bx + sign * 0.13, by, bz + 0.10, _CLOSE)]
    return None


#: Tasks the scripted policy knows how to do.
SCRIPTED_TASKS = tuple(
    [f"turn_{s}_{light}" for s in ("on", "off") for light in ("led", "lightbulb")]
    + ["move_slider_left", "move_slider_right", "open_drawer", "close_drawer"]
    + [f"lift_{c}_block_table" for c in _BLOCK_INDEX]
    + [f"push_{c}_block_{d}" for c in _BLOCK_INDEX for d in ("left", "right")])


class ScriptedCalvinPolicy:
    """Waypoint oracle for scene D (see the module docstring). `gain`: P-gain in action units per metre
    of TCP error divided by 0.02 m; `tol`: waypoint arrival tolerance (m); `max_steps_per_waypoint`:
    give up on a waypoint (and move on) after this many steps; `windup`: how far (m) the commanded
    target may lead the goal."""

    def __init__(self, gain: float = 0.7, tol: float = 0.01, max_steps_per_waypoint: int = 30,
                 windup: float = 0.03) -> None:
        self.task_of = {sentence: task for task, sentence in INSTRUCTIONS.items()}
        self.gain, self.tol, self.max_steps, self.windup = gain, tol, max_steps_per_waypoint, windup
        self.reset()

    def reset(self) -> None:
        self.plan: list[Waypoint] | None = None
        self.started = False
        self.k = 0
        self.steps_here = 0
        self.held = 0
        self.gripper = _OPEN

    def act(self, obs: dict[str, Any], instruction: str) -> np.ndarray:
        robot_obs, scene_obs = np.asarray(obs["robot_obs"]), np.asarray(obs["scene_obs"])
        if not self.started:
            self.started = True
            self.gripper = float(robot_obs[14]) if robot_obs[14] in (-1, 1) else _OPEN
            task = self.task_of.get(instruction, instruction)
            self.plan = _plan(task, robot_obs, scene_obs)
            self.target = robot_obs[:3].astype(float).copy()
        action = np.zeros(7)
        action[6] = self.gripper
        if not self.plan or self.k >= len(self.plan):
            return action
        goal, gripper, hold = self.plan[self.k]
        # feedback on the measured TCP, but the commanded target (the env adds 0.02 m per unit to a
        # stored target pose) may lead the goal by at most `windup` m: this corrects IK's steady-state
        # error without letting a blocked arm's target run away
        desired = self.target + np.clip(self.gain * (goal - robot_obs[:3]) / 0.02, -1.0, 1.0) * 0.02
        desired = np.clip(desired, goal - self.windup, goal + self.windup)
        step = np.clip((desired - self.target) / 0.02, -1.0, 1.0)
        self.target = self.target + step * 0.02
        action[:3] = step
        action[6] = self.gripper = gripper
        self.steps_here += 1
        close = np.linalg.norm(goal - robot_obs[:3]) < self.tol
        if close or self.steps_here >= self.max_steps:
            self.held += 1
            if self.held > hold:
                self.k, self.steps_here, self.held = self.k + 1, 0, 0
        return action


class NoopCalvinPolicy:
    """Does nothing (zero motion, gripper open): the floor of the benchmark (average length 0)."""

    def reset(self) -> None:
        pass

    def act(self, obs: dict[str, Any], instruction: str) -> np.ndarray:
        return np.array([0, 0, 0, 0, 0, 0, 1.0])
