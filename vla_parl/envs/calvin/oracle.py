"""CALVIN's task oracle: the 34 success rules, evaluated on two `get_info()` dicts.

`CalvinTaskOracle.completed(start_info, end_info, tasks)` returns the names among `tasks` whose rule
holds between the subtask start and the current step — what the official
`calvin_env.envs.tasks.Tasks.get_task_info_for_set` returns. It reads only the documented `get_info()`
structure (contacts are PyBullet tuples: `c[2]` other body, `c[4]` other link), so it works on the
official env's infos and on ours alike. Pure numpy.

Rules come from `conf/tasks/new_playtable_tasks.yaml` (`task: [rule, *args]`);
`vla_parl.envs.calvin.tasks.TASK_SPECS` is the same table in code, used when the YAML is not at hand.

`push_into_drawer` has two variants (`PUSH_INTO_DRAWER_RULES`): "official" (the default) is what
calvin_env computes and what published numbers follow — its check that the robot touches the block
neither at the start nor at the end compares the robot's uid (an int) with a set of (body, link)
tuples, so it never fails and robot contact is never checked; "strict" enforces that check, as the
official docstring intends (it counts fewer successes).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable

import numpy as np

from vla_parl.envs.calvin.tasks import TASK_SPECS

__all__ = ["PUSH_INTO_DRAWER_RULES", "CalvinTaskOracle", "quat_to_euler_xyz"]

#: "official": robot contact never checked (calvin_env's behaviour); "strict": the robot may touch the
#: block neither at the start nor at the end.
PUSH_INTO_DRAWER_RULES = ("official", "strict")

Info = dict[str, Any]


def _quat_to_matrix(q: Iterable[float]) -> np.ndarray:
    x, y, z, w = (float(v) for v in q)  # PyBullet / scipy order: xyzw
    n = x * x + y * y + z * z + w * w
    s = 2.0 / n if n > 0 else 0.0
    return np.array([
        [1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
        [s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)],
        [s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)],
    ])


def _matrix_to_euler_xyz(r: np.ndarray) -> np.ndarray:
    """Extrinsic x-y-z angles (R = Rz·Ry·Rx), in radians: scipy's "xyz", PyBullet's Euler."""
    pitch = -np.arcsin(np.clip(r[2, 0], -1.0, 1.0))
    if abs(r[2, 0]) < 1 - 1e-9:
        roll, yaw = np.arctan2(r[2, 1], r[2, 2]), np.arctan2(r[1, 0], r[0, 0])
    else:  # gimbal lock: put everything into yaw
        roll, yaw = 0.0, np.arctan2(-r[0, 1], r[1, 1])
    return np.array([roll, pitch, yaw])


def quat_to_euler_xyz(q: Iterable[float]) -> np.ndarray:
    """Quaternion (xyzw) → extrinsic xyz Euler angles in radians."""
    return _matrix_to_euler_xyz(_quat_to_matrix(q))


def _obj(info: Info, name: str) -> Info:
    return info["scene_info"]["movable_objects"][name]


def _bodies(contacts: Iterable[tuple]) -> set[int]:
    return {c[2] for c in contacts}


def _body_links(contacts: Iterable[tuple]) -> set[tuple[int, int]]:
    return {(c[2], c[4]) for c in contacts}


def _surface(info: Info, body: str, link: str) -> tuple[int, int]:
    fixed = info["scene_info"]["fixed_objects"][body]
    return fixed["uid"], fixed["links"][link]


# --- the rules: (start_info, end_info, *args) -> bool ---------------------------------------------

def rotate_object(start: Info, end: Info, obj: str, degrees: float, x_y_threshold: float = 30,
                  z_threshold: float = 180) -> bool:
    """Relative rotation end·start⁻¹ has z beyond ±`degrees`, |x|, |y| < 30°; moved ≤ 0.1 m; the block
    touches a non-robot body at the end."""
    rel = _quat_to_matrix(_obj(end, obj)["current_orn"]) @ _quat_to_matrix(_obj(start, obj)["current_orn"]).T
    x, y, z = np.degrees(_matrix_to_euler_xyz(rel))
    if not _bodies(_obj(end, obj)["contacts"]) - {start["robot_info"]["uid"]}:
        return False
    if np.linalg.norm(np.subtract(_obj(end, obj)["current_pos"], _obj(start, obj)["current_pos"])) > 0.1:
        return False
    z_ok = degrees < z < z_threshold if degrees > 0 else -z_threshold < z < degrees
    return bool(z_ok and abs(x) < x_y_threshold and abs(y) < x_y_threshold)


def push_object(start: Info, end: Info, obj: str, x_direction: float, y_direction: float) -> bool:
    """Displacement beyond the threshold along x (or y); non-robot contacts at start ⊆ those at end."""
    robot = start["robot_info"]["uid"]
    diff = np.subtract(_obj(end, obj)["current_pos"], _obj(start, obj)["current_pos"])
    c0 = {c for c in _body_links(_obj(start, obj)["contacts"]) if c[0] != robot}
    c1 = {c for c in _body_links(_obj(end, obj)["contacts"]) if c[0] != robot}
    if not c0 or not c1 or not c0 <= c1:
        return False
    for value, threshold in ((diff[0], x_direction), (diff[1], y_direction)):
        if (threshold > 0 and value > threshold) or (threshold < 0 and value < threshold):
            return True
    return False


def move_door_rel(start: Info, end: Info, joint: str, threshold: float) -> bool:
    """The door joint moved by more than `threshold` (signed)."""
    doors0, doors1 = start["scene_info"]["doors"], end["scene_info"]["doors"]
    diff = doors1[joint]["current_state"] - doors0[joint]["current_state"]
    return bool(diff > threshold if threshold > 0 else diff < threshold)


def lift_object(start: Info, end: Info, obj: str, z_direction: float, surface_body: str | None = None,
                surface_link: str | None = None) -> bool:
    """z rose more than `z_direction`; the robot is the only contact at the end; at the start the
    block touched `surface_body`/`surface_link`."""
    robot = start["robot_info"]["uid"]
    dz = _obj(end, obj)["current_pos"][2] - _obj(start, obj)["current_pos"][2]
    if _bodies(_obj(end, obj)["contacts"]) != {robot}:
        return False
    if surface_body and surface_link:
        if _surface(start, surface_body, surface_link) not in _body_links(_obj(start, obj)["contacts"]):
            return False
    return bool(dz > z_direction)


def place_object(start: Info, end: Info, dest_body: str, dest_link: str | None = None) -> bool:
    """At the start the robot holds one block that touches only the robot; at the end the robot has
    let go of it and the block touches `dest_body`/`dest_link`."""
    robot = start["robot_info"]["uid"]
    held = _bodies(start["robot_info"]["contacts"])
    if len(held) != 1:
        return False
    (uid,) = held
    if uid in _bodies(end["robot_info"]["contacts"]):
        return False
    names = [k for k, v in start["scene_info"]["movable_objects"].items() if v["uid"] == uid]
    if not names or _bodies(_obj(start, names[0])["contacts"]) != {robot}:
        return False
    end_contacts = _body_links(_obj(end, names[0])["contacts"])
    if dest_link is None:
        return start["scene_info"]["fixed_objects"][dest_body]["uid"] in {b for b, _ in end_contacts}
    return _surface(start, dest_body, dest_link) in end_contacts


def _small(values: Iterable[float]) -> bool:
    return bool(np.all(np.abs(np.asarray(values, dtype=float)) < 1))


def stack_objects(start: Info, end: Info) -> bool:
    """Some block touched no block at the start and touches only blocks (≥ 1) at the end, at rest."""
    objs = start["scene_info"]["movable_objects"]
    uids = {o["uid"] for o in objs.values()}
    for name in objs:
        c0, c1 = _bodies(_obj(start, name)["contacts"]), _bodies(_obj(end, name)["contacts"])
        o1 = _obj(end, name)
        if (not c0 & uids and c1 & uids and not c1 - uids
                and _small(o1["current_lin_vel"]) and _small(o1["current_ang_vel"])):
            return True
    return False


def unstack_objects(start: Info, end: Info) -> bool:
    """Some block touched only blocks (≥ 1) at the start (at rest) and no block at the end."""
    objs = start["scene_info"]["movable_objects"]
    uids = {o["uid"] for o in objs.values()}
    for name in objs:
        c0, c1 = _bodies(_obj(start, name)["contacts"]), _bodies(_obj(end, name)["contacts"])
        o0 = _obj(start, name)
        if (c0 & uids and not c0 - uids and not c1 & uids
                and _small(o0["current_lin_vel"]) and _small(o0["current_ang_vel"])):
            return True
    return False


def toggle_light(start: Info, end: Info, light: str, start_state: int, end_state: int) -> bool:
    """The light's logical state went from `start_state` to `end_state`."""
    l0, l1 = start["scene_info"]["lights"][light], end["scene_info"]["lights"][light]
    return bool(l0["logical_state"] == start_state and l1["logical_state"] == end_state)


def push_object_into(start: Info, end: Info, objs: list[str] | str, src_body: str, src_link: str,
                     dest_body: str, dest_link: str, *, strict: bool = False) -> bool:
    """A block whose only contact was `src_body`/`src_link` (the table top) touches `dest_link` (the
    drawer) at the end. `strict`: the robot may not touch it at the start or the end (see the module
    docstring: calvin_env never checks this)."""
    robot = start["robot_info"]["uid"]
    src, dest = _surface(start, src_body, src_link), _surface(end, dest_body, dest_link)
    for obj in [objs] if isinstance(objs, str) else objs:
        c0, c1 = _body_links(_obj(start, obj)["contacts"]), _body_links(_obj(end, obj)["contacts"])
        if strict and robot in {b for b, _ in c0} | {b for b, _ in c1}:
            continue
        if c0 == {src} and dest in c1:
            return True
    return False


_RULES: dict[str, Callable[..., bool]] = {f.__name__: f for f in (
    rotate_object, push_object, move_door_rel, lift_object, place_object, stack_objects, unstack_objects,
    toggle_light, push_object_into)}


class CalvinTaskOracle:
    """Success detection for the 34 CALVIN tasks (`specs`: task -> [rule name, *args]).

    `push_into_drawer`: "official" (default; calvin_env's behaviour) or "strict" (see the module docstring)."""

    def __init__(self, specs: dict[str, list[Any]] | None = None, *, push_into_drawer: str = "official") -> None:
        self.specs = dict(specs if specs is not None else TASK_SPECS)
        unknown = {s[0] for s in self.specs.values()} - set(_RULES)
        if unknown:
            raise ValueError(f"unknown CALVIN task rule(s) {sorted(unknown)}; known: {sorted(_RULES)}")
        if push_into_drawer not in PUSH_INTO_DRAWER_RULES:
            raise ValueError(f"push_into_drawer must be one of {PUSH_INTO_DRAWER_RULES}, got {push_into_drawer!r}")
        self.push_into_drawer = push_into_drawer
        self._rules = {**_RULES, "push_object_into": functools.partial(push_object_into,
                                                                       strict=push_into_drawer == "strict")}

    @classmethod
    def from_yaml(cls, path: str, *, push_into_drawer: str = "official") -> "CalvinTaskOracle":
        """Build from `conf/tasks/new_playtable_tasks.yaml`."""
        import yaml

        with open(path) as f:
            return cls(yaml.safe_load(f)["tasks"], push_into_drawer=push_into_drawer)

    @property
    def task_names(self) -> list[str]:
        return list(self.specs)

    def completed(self, start_info: Info, end_info: Info, tasks: Iterable[str] | None = None) -> set[str]:
        """The tasks (default: all) whose success rule holds between `start_info` and `end_info`."""
        names = self.specs if tasks is None else tasks
        done = set()
        for name in names:
            rule, *args = self.specs[name]
            if self._rules[rule](start_info, end_info, *args):
                done.add(name)
        return done
