"""Our CALVIN-scene simulation: scene D of calvin_env rebuilt on PyBullet from the CALVIN assets.

It issues the same PyBullet calls, in the same order, as the official
`calvin_env.envs.play_table_env.PlayTableSimEnv` (see `docs/calvin.md`, "How faithful our scene is"),
so that for the same `reset(robot_obs, scene_obs)` and the same actions it gives the same observations:

- world: 1/240 s steps, 8 per 30 Hz control step, gravity −9.8, `deterministicOverlappingPairs` off
  (calvin_env sets it, then its `resetSimulation` erases it); load order robot, its white base cylinder
  (visual only, r 0.13 m), blocks, table, plane; nothing is stepped at construction;
- robot: Panda with longer fingers, fingers tied by a gear constraint (ratio −1, erp 0.1, max force 50);
  relative actions `[dx, dy, dz, droll, dpitch, dyaw, gripper]` add position × 0.02 m and Euler × 0.05 rad
  to a stored target pose, solved by PyBullet null-space IK over all 9 DoF (limits ±7, ranges 7, rest pose
  = initial joints + open fingers), clipped to the Franka limits, position control (force 200, max
  velocity 2); gripper +1 opens (0.04 m per finger, force 2), −1 closes (force 200), max velocity 1.
  Absolute `(pos, euler|quat, gripper)` tuples are accepted too;
- scene: doors and switch braked by velocity control (force 4), button spring by position control
  (force 4); the button toggles its LED on a press edge, the switch changes the bulb when it crosses its
  midpoint; the button's logical state at reset depends on `env_version` (see `ENV_VERSIONS`);
- observations: `rgb_obs.rgb_static` 200×200×3 (fov 10°), optional `rgb_gripper` 84×84×3 (fov 75°, along
  the camera link's +y, up −z), optional depth; `robot_obs` [15] and `get_info()` read the TCP from the
  link state PyBullet cached at the last step; `scene_obs` [24];
- `reset(robot_obs=None, scene_obs=None)`: scene, then robot (fingers held at the reset width), then one
  physics step; `step(action) -> (obs, 0, False, info)` (gym 4-tuple); `get_obs()`, `get_info()` (calvin's
  structure, PyBullet contact tuples) and `completed_tasks(start_info, end_info, tasks)`
  (`vla_parl.envs.calvin.oracle`).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from vla_parl.envs._pybullet import quiet_stdout
from vla_parl.envs.calvin.assets import CalvinAssets, find_calvin_assets
from vla_parl.envs.calvin.oracle import CalvinTaskOracle
from vla_parl.envs.calvin.tasks import TASK_SPECS
from vla_parl.errors import ConfigError

__all__ = ["CalvinSceneEnv", "ROBOT_OBS_LAYOUT", "SCENE_OBS_LAYOUT", "ENV_VERSIONS", "DEFAULT_ENV_VERSION",
           "resolve_env_version"]

ROBOT_OBS_LAYOUT = ("tcp_pos[0:3]", "tcp_euler[3:6]", "gripper_width[6]", "arm_joints[7:14]", "gripper_action[14]")
SCENE_OBS_LAYOUT = ("slide[0]", "drawer[1]", "button[2]", "switch[3]", "lightbulb[4]", "led[5]",
                    "block_red xyz+euler[6:12]", "block_blue[12:18]", "block_pink[18:24]")

#: calvin_env behaviours we reproduce, by commit. "1431a46" is the commit mees/calvin pins as its
#: calvin_env submodule (what published CALVIN numbers ran on): a reset leaves the button's logical
#: state OFF, so the first press with the LED already on does not turn it off. "797142c" (calvin_env
#: HEAD, Dec 2022) copies the LED's state into the button at reset.
ENV_VERSIONS: dict[str, str] = {
    "1431a46": "calvin_env as pinned by mees/calvin (published baselines): button OFF after reset",
    "797142c": "calvin_env HEAD: the button's logical state follows the LED after reset",
}
DEFAULT_ENV_VERSION = "1431a46"
# reset(scene_obs) order after the doors: HEAD resets the lights before the button (whose state it copies)
_SCENE_RESET_ORDER = {"1431a46": ("button", "switch", "lights"), "797142c": ("lights", "button", "switch")}
_VERSION_ALIASES = {"pinned": "1431a46", "head": "797142c"}

# Scene-D defaults, used when the conf/ YAML is not next to the assets (the YAML wins when present).
_SCENE_D = {
    "global_scaling": 0.8,
    "robot_base_position": [-0.34, -0.46, 0.24],
    "robot_base_orientation": [0, 0, 0],
    "robot_initial_joint_positions": [-1.21779206, 1.03987646, 2.11978261, -2.34205014, -0.87015947,
                                      1.64119353, 0.55344866],
    "surfaces": {"table": [[0.0, -0.15, 0.46], [0.35, -0.03, 0.46]],
                 "slider_left": [[-0.32, 0.05, 0.46], [-0.16, 0.12, 0.46]],
                 "slider_right": [[-0.05, 0.05, 0.46], [0.13, 0.12, 0.46]]},
    "table_file": "calvin_table_D/urdf/calvin_table_D.urdf",
    "blocks": {"block_red": "blocks/block_red_middle.urdf", "block_blue": "blocks/block_blue_small.urdf",
               "block_pink": "blocks/block_pink_big.urdf"},
    "doors": ["base__slide", "base__drawer"],
    "button": ("base__button", "led"),
    "switch": ("base__switch", "lightbulb"),
    "lights": {"lightbulb": ("light_link", [1, 1, 0, 1]), "led": ("led_link", [0, 1, 0, 1])},
}
# calvin_env's conf/robot/panda.yaml (+ panda_longer_finger.yaml); the YAML wins when present.
_ROBOT = {
    "filename": "franka_panda/panda_longer_finger.urdf",
    "lower_joint_limits": [-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973],
    "upper_joint_limits": [2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973],
    "max_joint_force": 200.0, "gripper_force": 200.0, "max_velocity": 2.0,
    "arm_joint_ids": [0, 1, 2, 3, 4, 5, 6], "gripper_joint_ids": [9, 11], "gripper_joint_limits": [0.0, 0.04],
    "tcp_link_id": 15, "end_effector_link_id": 7, "max_rel_pos": 0.02, "max_rel_orn": 0.05,
}
_STATIC_CAMERA = {"fov": 10, "aspect": 1, "nearval": 0.01, "farval": 10, "width": 200, "height": 200,
                  "look_at": [-0.026242351159453392, -0.0302329882979393, 0.3920000493526459],
                  "look_from": [2.871459009488717, -2.166602199425597, 2.555159848480571],
                  "up_vector": [0.4041403970338857, 0.22629790978217404, 0.8862616969685161]}
_GRIPPER_CAMERA = {"fov": 75, "aspect": 1, "nearval": 0.01, "farval": 2, "width": 84, "height": 84}

_SUBSTEPS = 8  # 240 Hz physics / 30 Hz control
_SCENE_FORCE = 4.0  # N: doors/switch brake (velocity control) and button spring (position control)
_IK_NULL_SPACE = 7.0  # calvin_env's null-space limits (±7), ranges (7) for every DoF
_GRIPPER_MAX_VEL = 1.0
_BASE_CYLINDER_RADIUS = 0.13
_RESET_TRIES = 1000  # random block placement: resample until no two blocks touch


def resolve_env_version(version: str) -> str:
    """`"1431a46"`, `"797142c"` (or the aliases `"pinned"`, `"head"`) → the commit id; else ConfigError."""
    v = _VERSION_ALIASES.get(str(version).lower(), str(version).lower())
    if v not in ENV_VERSIONS:
        raise ConfigError(f"unknown calvin.env_version {version!r}; use one of {sorted(ENV_VERSIONS)} "
                          f"(aliases: {_VERSION_ALIASES})")
    return v


class CalvinSceneEnv:
    """CALVIN scene D on PyBullet (DIRECT). See the module docstring for the conventions.

    Args:
        data_path: a calvin_env checkout, a folder with its `data/` (+ `conf/`), or None to search
            (`$CALVIN_ENV_DATA`, an installed calvin_env, `../shared/calvin_env_data`).
        cameras: which cameras to render: any of "static" (200×200) and "gripper" (84×84).
        depth: also return `depth_obs` (metric depth per camera).
        seed: seeds the block poses sampled at construction and by `reset()` without a `scene_obs`
            (numpy `default_rng(seed)`, the generator gym's seeding gives calvin_env).
        renderer: "tiny" (CPU TinyRenderer, as calvin_env without EGL; the default) or "opengl".
        env_version: which calvin_env behaviour to reproduce (`ENV_VERSIONS`; default `DEFAULT_ENV_VERSION`).
        push_into_drawer: the oracle's push_into_drawer rule, "official" (default) or "strict"
            (see `vla_parl.envs.calvin.oracle`).
    """

    def __init__(self, data_path: str | os.PathLike | None = None, *, cameras: Sequence[str] = ("static",),
                 depth: bool = False, seed: int = 0, renderer: str = "tiny", env_version: str = DEFAULT_ENV_VERSION,
                 push_into_drawer: str = "official") -> None:
        from vla_parl.envs._pybullet import pybullet as p

        self.p = p
        self.env_version = resolve_env_version(env_version)
        self.assets: CalvinAssets = find_calvin_assets(data_path)
        bad = set(cameras) - {"static", "gripper"}
        if bad:
            raise ValueError(f"unknown camera(s) {sorted(bad)}; use 'static' and/or 'gripper'")
        if renderer not in ("tiny", "opengl"):
            raise ValueError(f"renderer must be 'tiny' or 'opengl', got {renderer!r}")
        self.cameras = tuple(cameras)
        self.depth = depth
        self.rng = np.random.default_rng(seed)
        self._renderer = p.ER_TINY_RENDERER if renderer == "tiny" else p.ER_BULLET_HARDWARE_OPENGL
        self._load_config()
        self.oracle = self._load_oracle(push_into_drawer)
        with quiet_stdout():
            self.cid = p.connect(p.DIRECT)
        self._build()

    # ----- construction ---------------------------------------------------------------------------
    def _load_config(self) -> None:
        cfg = dict(_SCENE_D)
        scene = self.assets.yaml("scene", "calvin_scene_D.yaml")
        if scene:
            for key in ("global_scaling", "robot_base_position", "robot_base_orientation",
                        "robot_initial_joint_positions", "surfaces"):
                cfg[key] = scene.get(key, cfg[key])
            objects = scene.get("objects", {})
            table = objects.get("fixed_objects", {}).get("table", {})
            cfg["table_file"] = table.get("file", cfg["table_file"])
            movable = objects.get("movable_objects")
            if movable:
                cfg["blocks"] = {name: spec["file"] for name, spec in movable.items()}
            if table.get("joints"):
                cfg["doors"] = list(table["joints"])
            for kind, key in (("button", "buttons"), ("switch", "switches")):
                entries = table.get(key)
                if entries:
                    (name, spec), = entries.items()
                    cfg[kind] = (name, spec["effect"])
            lights = table.get("lights")
            if lights:
                cfg["lights"] = {name: (v["link"], v["color"]) for name, v in lights.items()}
        self.cfg = cfg
        robot = dict(_ROBOT)
        for name in ("panda.yaml", "panda_longer_finger.yaml"):
            robot.update({k: v for k, v in (self.assets.yaml("robot", name) or {}).items() if k in _ROBOT})
        self.robot_cfg = robot
        cam = dict(_STATIC_CAMERA)
        cam.update({k: v for k, v in (self.assets.yaml("cameras", "cameras", "static.yaml") or {}).items()
                    if k in cam})
        self.static_camera = cam
        gripper_cam = dict(_GRIPPER_CAMERA)
        gripper_cam.update({k: v for k, v in (self.assets.yaml("cameras", "cameras", "gripper.yaml") or {}).items()
                            if k in gripper_cam})
        self.gripper_camera = gripper_cam
        self.block_names = tuple(cfg["blocks"])

    def _load_oracle(self, push_into_drawer: str) -> CalvinTaskOracle:
        specs = self.assets.yaml("tasks", "new_playtable_tasks.yaml")
        return CalvinTaskOracle(specs["tasks"] if specs else TASK_SPECS, push_into_drawer=push_into_drawer)

    def _build(self) -> None:
        p, cid = self.p, self.cid
        p.resetSimulation(physicsClientId=cid)
        p.setPhysicsEngineParameter(deterministicOverlappingPairs=0, physicsClientId=cid)
        p.setTimeStep(1.0 / 240.0, physicsClientId=cid)
        p.setGravity(0, 0, -9.8, physicsClientId=cid)
        self._load_robot()
        self._load_scene()

    def _load_robot(self) -> None:
        p, cid, r = self.p, self.cid, self.robot_cfg
        base_orn = p.getQuaternionFromEuler(self.cfg["robot_base_orientation"])
        self.robot_uid = p.loadURDF(str(self.assets.data / r["filename"]), self.cfg["robot_base_position"], base_orn,
                                    useFixedBase=True, physicsClientId=cid)
        self._add_base_cylinder()
        f0, f1 = r["gripper_joint_ids"]
        gear = p.createConstraint(self.robot_uid, f0, self.robot_uid, f1, jointType=p.JOINT_GEAR, jointAxis=[1, 0, 0],
                                  parentFramePosition=[0, 0, 0], childFramePosition=[0, 0, 0], physicsClientId=cid)
        p.changeConstraint(gear, gearRatio=-1, erp=0.1, maxForce=50, physicsClientId=cid)
        self.gear_constraint = gear
        dof = p.computeDofCount(self.robot_uid, physicsClientId=cid)
        open_width = r["gripper_joint_limits"][1]
        self._ik_ll, self._ik_ul, self._ik_jr = [-_IK_NULL_SPACE] * dof, [_IK_NULL_SPACE] * dof, [_IK_NULL_SPACE] * dof
        self._ik_rest = list(self.cfg["robot_initial_joint_positions"]) + [open_width] * (dof - len(r["arm_joint_ids"]))
        self._franka_ll = np.array(r["lower_joint_limits"], dtype=float)
        self._franka_ul = np.array(r["upper_joint_limits"], dtype=float)
        self.robot_links = {p.getJointInfo(self.robot_uid, j, physicsClientId=cid)[12].decode(): j
                            for j in range(p.getNumJoints(self.robot_uid, physicsClientId=cid))}
        self.gripper_action = 1
        self._reset_robot(None)

    def _add_base_cylinder(self) -> None:
        """The white visual cylinder calvin_env draws under the robot (no collision shape)."""
        p, cid = self.p, self.cid
        base = list(self.cfg["robot_base_position"])
        yaw = self.cfg["robot_base_orientation"][2]
        pos = [base[0] - np.cos(yaw) * 0.05, base[1] - np.sin(yaw) * 0.05, base[2] / 2]
        shape = p.createVisualShape(shapeType=p.GEOM_CYLINDER, rgbaColor=[1, 1, 1, 1], radius=_BASE_CYLINDER_RADIUS,
                                    length=base[2], visualFramePosition=pos, physicsClientId=cid)
        self.base_cylinder_uid = p.createMultiBody(baseVisualShapeIndex=shape, physicsClientId=cid)

    def _load_scene(self) -> None:
        p, cid, data, scale = self.p, self.cid, self.assets.data, self.cfg["global_scaling"]
        self.block_uids = {}
        for name, f in self.cfg["blocks"].items():
            pos, orn = self._sample_block_pose()
            self.block_uids[name] = p.loadURDF(str(data / f), pos, orn, globalScaling=scale, physicsClientId=cid)
        self.table_uid = p.loadURDF(str(data / self.cfg["table_file"]), [0, 0, 0], p.getQuaternionFromEuler([0, 0, 0]),
                                    globalScaling=scale, physicsClientId=cid)
        self.table_links = {"base_link": -1}
        self.table_joints: dict[str, int] = {}
        self.joint_limits: dict[str, tuple[float, float]] = {}
        for j in range(p.getNumJoints(self.table_uid, physicsClientId=cid)):
            info = p.getJointInfo(self.table_uid, j, physicsClientId=cid)
            self.table_links[info[12].decode()] = j
            self.table_joints[info[1].decode()] = j
            self.joint_limits[info[1].decode()] = (info[8], info[9])
        self._button, self._led = self.cfg["button"]
        self._switch, self._bulb = self.cfg["switch"]
        for name in self.cfg["doors"]:
            p.setJointMotorControl2(self.table_uid, self.table_joints[name], p.VELOCITY_CONTROL, force=_SCENE_FORCE,
                                    physicsClientId=cid)
        p.setJointMotorControl2(self.table_uid, self.table_joints[self._button], p.POSITION_CONTROL,
                                targetPosition=0, force=_SCENE_FORCE, physicsClientId=cid)
        p.setJointMotorControl2(self.table_uid, self.table_joints[self._switch], p.VELOCITY_CONTROL,
                                force=_SCENE_FORCE, physicsClientId=cid)
        self.button_state = 0  # logical states, as calvin_env's Button/Switch keep them
        self.switch_state = 0
        self._button_was_pressed = self._pressed(self._button)  # survives reset, as in calvin_env
        self.lights = {name: 0 for name in self.cfg["lights"]}
        self.plane_uid = p.loadURDF(str(data / "plane" / "plane.urdf"), physicsClientId=cid)

    def _sample_block_pose(self) -> tuple[np.ndarray, tuple]:
        """A random surface, a uniform position on it and a uniform yaw (calvin_env's draw order)."""
        surfaces = self.cfg["surfaces"]
        lo, hi = np.array(surfaces[self.rng.choice(list(surfaces))], dtype=float)
        pos = self.rng.uniform(lo, hi)
        euler = self.rng.uniform([0, 0, -np.pi], [0, 0, np.pi])
        return pos, self.p.getQuaternionFromEuler(euler)

    # ----- reset ------------------------------------------------------------------------------------
    def reset(self, robot_obs: Sequence[float] | None = None, scene_obs: Sequence[float] | None = None) -> dict:
        """Reset the scene (`scene_obs`; None: doors closed, lights off, blocks at random without
        touching), then the robot (`robot_obs[7:14]` joints, `robot_obs[6]/2` per finger; None: the
        scene's initial joints, gripper open), then take one physics step. Returns the observation."""
        self._reset_scene(scene_obs)
        self._reset_robot(robot_obs)
        self.p.stepSimulation(physicsClientId=self.cid)
        return self.get_obs()

    def _reset_robot(self, robot_obs: Sequence[float] | None) -> None:
        p, cid, r = self.p, self.cid, self.robot_cfg
        if robot_obs is None:
            joints, finger = list(self.cfg["robot_initial_joint_positions"]), r["gripper_joint_limits"][1]
        else:
            joints, finger = list(robot_obs[7:14]), float(robot_obs[6]) / 2
        for j, q in zip(r["arm_joint_ids"], joints):
            p.resetJointState(self.robot_uid, j, q, physicsClientId=cid)
            p.setJointMotorControl2(self.robot_uid, j, p.POSITION_CONTROL, force=r["max_joint_force"],
                                    targetPosition=q, maxVelocity=r["max_velocity"], physicsClientId=cid)
        for j in r["gripper_joint_ids"]:  # held at the reset width until the next action
            p.resetJointState(self.robot_uid, j, finger, physicsClientId=cid)
            p.setJointMotorControl2(self.robot_uid, j, p.POSITION_CONTROL, force=r["gripper_force"],
                                    targetPosition=finger, maxVelocity=_GRIPPER_MAX_VEL, physicsClientId=cid)
        pos, orn = self._tcp_pose()
        self.target_pos, self.target_orn = np.array(pos), np.array(p.getEulerFromQuaternion(orn))

    def _reset_scene(self, scene_obs: Sequence[float] | None) -> None:
        p, cid = self.p, self.cid
        if scene_obs is None:
            for name in self.cfg["doors"]:
                p.resetJointState(self.table_uid, self.table_joints[name], 0, physicsClientId=cid)
            self._reset_button(0)  # before the lights, as calvin_env orders them here
            self._reset_switch(0)
            self._reset_lights([0] * len(self.lights))
            self._place_blocks_randomly()
            return
        s = np.asarray(scene_obs, dtype=float)
        if s.shape != (24,):
            raise ValueError(f"scene_obs must have 24 values (see SCENE_OBS_LAYOUT), got shape {s.shape}")
        for k, name in enumerate(self.cfg["doors"]):
            p.resetJointState(self.table_uid, self.table_joints[name], s[k], physicsClientId=cid)
        resets: dict[str, Callable[[], None]] = {"button": lambda: self._reset_button(s[2]),
                                                 "switch": lambda: self._reset_switch(s[3]),
                                                 "lights": lambda: self._reset_lights(s[4:6])}
        for part in _SCENE_RESET_ORDER[self.env_version]:
            resets[part]()
        for k, name in enumerate(self.block_names):
            pose = s[6 + 6 * k: 12 + 6 * k]
            p.resetBasePositionAndOrientation(self.block_uids[name], pose[:3], p.getQuaternionFromEuler(pose[3:]),
                                              physicsClientId=cid)

    def _reset_button(self, joint: float) -> None:
        self.p.resetJointState(self.table_uid, self.table_joints[self._button], joint, physicsClientId=self.cid)
        self.button_state = self.lights[self._led] if self.env_version == "797142c" else 0

    def _reset_switch(self, joint: float) -> None:
        self.p.resetJointState(self.table_uid, self.table_joints[self._switch], joint, physicsClientId=self.cid)
        self.switch_state = 0  # the bulb changes only when the switch next crosses its midpoint

    def _reset_lights(self, states: Iterable[float]) -> None:
        for name, state in zip(self.lights, states):
            if state not in (0, 1):
                raise ValueError(f"the {name} state in scene_obs must be 0 or 1, got {state}")
            self._set_light(name, int(state))

    def _place_blocks_randomly(self) -> None:
        p, cid = self.p, self.cid
        for _ in range(_RESET_TRIES):
            for name in self.block_names:
                pos, orn = self._sample_block_pose()
                p.resetBasePositionAndOrientation(self.block_uids[name], pos, orn, physicsClientId=cid)
            p.stepSimulation(physicsClientId=cid)
            uids = list(self.block_uids.values())
            if not any(p.getContactPoints(bodyA=a, bodyB=b, physicsClientId=cid)
                       for i, a in enumerate(uids) for b in uids[i + 1:]):
                return

    # ----- stepping ---------------------------------------------------------------------------------
    def step(self, action: Any) -> tuple[dict, float, bool, dict]:
        """Apply one 30 Hz control step. `action`: 7-D relative array, or `(pos, euler|quat, gripper)`
        absolute. The gripper entry must be exactly ±1. Returns `(obs, 0, False, info)`."""
        r = self.robot_cfg
        if isinstance(action, tuple) and len(action) == 3:
            pos, orn, gripper = action
            target_pos, target_orn = np.asarray(pos, dtype=float), np.asarray(orn, dtype=float)
        else:
            a = np.asarray(action, dtype=float)
            if a.shape != (7,):
                raise ValueError(f"a relative CALVIN action has 7 values, got shape {a.shape}")
            self.target_pos = self.target_pos + a[:3] * r["max_rel_pos"]
            self.target_orn = self.target_orn + a[3:6] * r["max_rel_orn"]
            target_pos, target_orn, gripper = self.target_pos, self.target_orn, a[6]
        if gripper not in (-1, 1):
            raise ValueError(f"the gripper action must be exactly -1 (close) or 1 (open), got {gripper}")
        quat = self.p.getQuaternionFromEuler(target_orn) if len(target_orn) == 3 else target_orn
        self._control_arm(self._inverse_kinematics(target_pos, quat))
        self._control_gripper(int(gripper))
        for _ in range(_SUBSTEPS):
            self.p.stepSimulation(physicsClientId=self.cid)
        self._step_button_and_switch()
        return self.get_obs(), 0, False, self.get_info()

    def _inverse_kinematics(self, pos: Sequence[float], quat: Sequence[float]) -> np.ndarray:
        """Null-space IK over all DoF, then the arm joints clipped to the Franka limits."""
        q = self.p.calculateInverseKinematics(self.robot_uid, self.robot_cfg["tcp_link_id"], pos, quat,
                                              self._ik_ll, self._ik_ul, self._ik_jr, self._ik_rest,
                                              physicsClientId=self.cid)
        return np.clip(q[: len(self._franka_ll)], self._franka_ll, self._franka_ul)

    def _control_arm(self, q: np.ndarray) -> None:
        p, r = self.p, self.robot_cfg
        for j in range(r["end_effector_link_id"]):
            p.setJointMotorControl2(self.robot_uid, j, p.POSITION_CONTROL, force=r["max_joint_force"],
                                    targetPosition=q[j], maxVelocity=r["max_velocity"], physicsClientId=self.cid)

    def _control_gripper(self, action: int) -> None:
        r = self.robot_cfg
        self.gripper_action = action
        lo, hi = r["gripper_joint_limits"]
        target, force = (hi, r["gripper_force"] / 100) if action == 1 else (lo, r["gripper_force"])
        for j in r["gripper_joint_ids"]:
            self.p.setJointMotorControl2(self.robot_uid, j, self.p.POSITION_CONTROL, targetPosition=target,
                                         force=force, maxVelocity=_GRIPPER_MAX_VEL, physicsClientId=self.cid)

    def _joint(self, name: str) -> float:
        return float(self.p.getJointState(self.table_uid, self.table_joints[name], physicsClientId=self.cid)[0])

    def _pressed(self, name: str) -> bool:
        """Past the joint's range midpoint (the button and switch start at 0, below it)."""
        lo, hi = self.joint_limits[name]
        return self._joint(name) > (lo + hi) / 2

    def _step_button_and_switch(self) -> None:
        pressed = self._pressed(self._button)
        if pressed and not self._button_was_pressed:  # a press edge toggles the logical state
            self.button_state = 1 - self.button_state
            self._set_light(self._led, self.button_state)
        self._button_was_pressed = pressed
        on = int(self._pressed(self._switch))
        if on != self.switch_state:  # crossing the midpoint
            self._set_light(self._bulb, on)
        self.switch_state = on

    def _set_light(self, name: str, state: int) -> None:
        self.lights[name] = state
        link, color = self.cfg["lights"][name]
        self.p.changeVisualShape(self.table_uid, self.table_links[link], rgbaColor=color if state else [1, 1, 1, 1],
                                 physicsClientId=self.cid)

    # ----- observations -------------------------------------------------------------------------------
    def _tcp_pose(self) -> tuple[tuple, tuple]:
        """The TCP link's world pose as PyBullet cached it (COM frame, no forward kinematics call)."""
        return self.p.getLinkState(self.robot_uid, self.robot_cfg["tcp_link_id"], physicsClientId=self.cid)[:2]

    def _robot_state(self) -> tuple[tuple, tuple, float, list[float]]:
        p, cid, r = self.p, self.cid, self.robot_cfg
        pos, orn = self._tcp_pose()
        width = sum(p.getJointState(self.robot_uid, j, physicsClientId=cid)[0] for j in r["gripper_joint_ids"])
        arm = [p.getJointState(self.robot_uid, j, physicsClientId=cid)[0] for j in r["arm_joint_ids"]]
        return pos, p.getEulerFromQuaternion(orn), width, arm

    def get_state_obs(self) -> dict[str, np.ndarray]:
        p, cid = self.p, self.cid
        pos, euler, width, arm = self._robot_state()
        robot_obs = np.array([*pos, *euler, width, *arm, self.gripper_action])
        scene = [self._joint(n) for n in self.cfg["doors"]] + [self._joint(self._button), self._joint(self._switch)]
        scene += [self.lights[n] for n in self.lights]
        for name in self.block_names:
            bpos, born = p.getBasePositionAndOrientation(self.block_uids[name], physicsClientId=cid)
            scene += [*bpos, *p.getEulerFromQuaternion(born)]
        return {"robot_obs": robot_obs, "scene_obs": np.array(scene)}

    def _render(self, view: Sequence[float], c: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        p = self.p
        proj = p.computeProjectionMatrixFOV(fov=c["fov"], aspect=c["aspect"], nearVal=c["nearval"], farVal=c["farval"])
        _, _, rgba, depth, _ = p.getCameraImage(c["width"], c["height"], viewMatrix=view, projectionMatrix=proj,
                                                renderer=self._renderer, physicsClientId=self.cid)
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(c["height"], c["width"], 4)[:, :, :3]
        depth = np.asarray(depth, dtype=np.float32).reshape(c["height"], c["width"])
        near, far = c["nearval"], c["farval"]
        return rgb, far * near / (far - (far - near) * depth)

    def render_static(self) -> tuple[np.ndarray, np.ndarray]:
        c = self.static_camera
        return self._render(self.p.computeViewMatrix(c["look_from"], c["look_at"], c["up_vector"]), c)

    def gripper_view_matrix(self) -> tuple[float, ...]:
        """The gripper camera's view: eye at link `gripper_cam`, looking along its +y axis, up = −z."""
        p = self.p
        pos, orn = p.getLinkState(self.robot_uid, self.robot_links["gripper_cam"], physicsClientId=self.cid)[:2]
        rot = np.array(p.getMatrixFromQuaternion(orn)).reshape(3, 3)
        return p.computeViewMatrix(pos, (np.array(pos) + rot[:, 1]).tolist(), (-rot[:, 2]).tolist())

    def render_gripper(self) -> tuple[np.ndarray, np.ndarray]:
        return self._render(self.gripper_view_matrix(), self.gripper_camera)

    def get_obs(self) -> dict[str, Any]:
        """`{"rgb_obs": {"rgb_static", ["rgb_gripper"]}, "depth_obs": {...}, "robot_obs", "scene_obs"}`."""
        rgb_obs, depth_obs = {}, {}
        for cam in self.cameras:
            rgb, depth = self.render_static() if cam == "static" else self.render_gripper()
            rgb_obs[f"rgb_{cam}"] = rgb
            if self.depth:
                depth_obs[f"depth_{cam}"] = depth
        return {"rgb_obs": rgb_obs, "depth_obs": depth_obs, **self.get_state_obs()}

    # ----- info and task oracle -------------------------------------------------------------------------
    def _contacts(self, uid: int) -> tuple:
        return tuple(self.p.getContactPoints(bodyA=uid, physicsClientId=self.cid))

    def get_info(self) -> dict[str, Any]:
        """calvin_env's info dict: `robot_info` and `scene_info` (see docs/calvin.md)."""
        p, cid = self.p, self.cid
        pos, euler, width, arm = self._robot_state()
        robot_info = {"tcp_pos": pos, "tcp_orn": euler, "gripper_opening_width": width, "arm_joint_states": arm,
                      "gripper_action": self.gripper_action, "uid": self.robot_uid,
                      "contacts": self._contacts(self.robot_uid)}
        movable = {}
        for name, uid in self.block_uids.items():
            bpos, born = p.getBasePositionAndOrientation(uid, physicsClientId=cid)
            lin, ang = p.getBaseVelocity(uid, physicsClientId=cid)
            movable[name] = {"current_pos": bpos, "current_orn": born, "current_lin_vel": lin,
                             "current_ang_vel": ang, "contacts": self._contacts(uid), "uid": uid}
        scene_info = {
            "fixed_objects": {"table": {"uid": self.table_uid, "links": dict(self.table_links),
                                        "contacts": self._contacts(self.table_uid)}},
            "movable_objects": movable,
            "doors": {n: {"current_state": self._joint(n)} for n in self.cfg["doors"]},
            "buttons": {self._button: {"joint_state": self._joint(self._button), "logical_state": self.button_state}},
            "switches": {self._switch: {"joint_state": self._joint(self._switch), "logical_state": self.switch_state}},
            "lights": {n: {"logical_state": v} for n, v in self.lights.items()},
        }
        return {"robot_info": robot_info, "scene_info": scene_info}

    def describe(self) -> dict[str, Any]:
        """Which simulator and calvin_env behaviour produce the numbers (stored with results)."""
        return {"simulator": "ours", "env_version": self.env_version, "push_into_drawer": self.oracle.push_into_drawer}

    def completed_tasks(self, start_info: dict, end_info: dict, tasks: Iterable[str] | None = None) -> set[str]:
        """The tasks (default: all 34) the oracle sees completed between two `get_info()` dicts."""
        return self.oracle.completed(start_info, end_info, tasks)

    @property
    def task_names(self) -> list[str]:
        return self.oracle.task_names

    def close(self) -> None:
        if getattr(self, "cid", None) is not None:
            try:
                self.p.disconnect(physicsClientId=self.cid)
            except Exception:  # already disconnected
                pass
            self.cid = None

    def __enter__(self) -> "CalvinSceneEnv":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
