"""Our CALVIN scene does what calvin_env does, checked from the official code's facts and invariants.

Recorded reference trajectories are not available, so each test pins one fact read from calvin_env
(797142c / 1431a46) — the IK call, the gear constraint, the gripper camera's view, the Franka limits,
load and reset order, the button and switch logic — or an invariant (determinism). The side-by-side
comparison with calvin_env itself is in `test_calvin_official.py` (runs where calvin_env is installed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pybullet
import pytest

from vla_parl.envs.calvin.scene import DEFAULT_ENV_VERSION, CalvinSceneEnv, resolve_env_version
from vla_parl.errors import ConfigError
from vla_parl.envs.calvin.sequences import get_env_state_for_initial_condition

STATE = {"led": 1, "lightbulb": 1, "slider": "left", "drawer": "open", "red_block": "slider_left",
         "blue_block": "table", "pink_block": "slider_right", "grasped": 0}
NOOP = np.array([0, 0, 0, 0, 0, 0, 1.0])


class _Spy:
    """Forwards to the pybullet module and records calls of the named functions."""

    def __init__(self, names: set[str]) -> None:
        self.names, self.calls = names, []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(pybullet, name)
        if name not in self.names:
            return attr

        def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return attr(*args, **kwargs)

        return record

    def named(self, name: str) -> list[tuple[tuple, dict]]:
        return [(a, k) for n, a, k in self.calls if n == name]


@pytest.fixture(scope="module")
def env():
    e = CalvinSceneEnv(cameras=())
    yield e
    e.close()


def _spy_on(env: CalvinSceneEnv, *names: str) -> _Spy:
    spy = _Spy(set(names))
    env.p = spy
    return spy


@pytest.mark.calvin_assets
def test_ik_uses_the_null_space_over_all_9_dof_then_the_franka_limits(env):
    env.reset(*get_env_state_for_initial_condition(STATE))
    spy = _spy_on(env, "calculateInverseKinematics")
    try:
        env.step(np.array([0.5, 0, -0.5, 0, 0, 0.2, -1.0]))
    finally:
        env.p = pybullet
    ((args, _),) = spy.named("calculateInverseKinematics")
    dof = pybullet.computeDofCount(env.robot_uid, physicsClientId=env.cid)
    lower, upper, ranges, rest = args[4:8]
    # pybullet silently ignores null-space lists whose length is not the DoF count (9: 7 joints + 2 fingers)
    assert dof == 9 and all(len(x) == dof for x in (lower, upper, ranges, rest))
    assert lower == [-7] * 9 and upper == [7] * 9 and ranges == [7] * 9
    assert rest == list(env.cfg["robot_initial_joint_positions"]) + [0.04, 0.04]
    # the solution is clipped to the Franka limits of calvin_env's robot config, not the URDF's
    quat = pybullet.getQuaternionFromEuler([np.pi, 0, np.pi / 2])
    q = env._inverse_kinematics([-0.34, -0.46, 1.4], quat)  # straight above the base: out of reach
    lo, hi = env._franka_ll, env._franka_ul
    assert hi[1] == 1.7628 and hi[3] == -0.0698
    assert np.all((q >= lo) & (q <= hi))
    urdf = np.array([pybullet.getJointInfo(env.robot_uid, j, physicsClientId=env.cid)[8:10] for j in range(7)])
    assert np.all(urdf[:, 0] < lo) and np.all(urdf[:, 1] > hi)  # the Franka limits are the tighter ones
    assert ((q == lo) | (q == hi)).any()  # and one of them clipped this solution


@pytest.mark.calvin_assets
def test_fingers_are_geared_and_the_base_cylinder_is_drawn(env):
    p, cid = pybullet, env.cid
    assert p.getNumConstraints(physicsClientId=cid) == 1
    info = p.getConstraintInfo(env.gear_constraint, physicsClientId=cid)
    assert info[:5] == (env.robot_uid, 9, env.robot_uid, 11, p.JOINT_GEAR)
    assert info[10] == 50 and info[11] == -1 and info[14] == pytest.approx(0.1)  # max force, gear ratio, erp
    # load order robot, base cylinder, blocks, table, plane (body ids are load order)
    names = [p.getBodyInfo(i, physicsClientId=cid)[1].decode() for i in range(p.getNumBodies(physicsClientId=cid))]
    assert names == ["panda", "", "block_red", "block_blue", "block_pink", "playtable_8", "plane"]
    assert (env.robot_uid, env.base_cylinder_uid, env.table_uid, env.plane_uid) == (0, 1, 5, 6)
    ((_, _, shape, dims, _, pos, _, rgba),) = p.getVisualShapeData(env.base_cylinder_uid, physicsClientId=cid)
    assert shape == p.GEOM_CYLINDER and dims[:2] == pytest.approx((0.24, 0.13)) and rgba == (1, 1, 1, 1)
    assert pos == pytest.approx((-0.39, -0.46, 0.12))
    assert p.getCollisionShapeData(env.base_cylinder_uid, -1, physicsClientId=cid) == ()  # visual only


@pytest.mark.calvin_assets
def test_construction_does_not_step_and_leaves_overlapping_pairs_nondeterministic(monkeypatch):
    spy = _Spy({"resetSimulation", "setPhysicsEngineParameter", "stepSimulation"})
    for name in spy.names:
        monkeypatch.setattr(pybullet, name, spy.__getattr__(name))
    with CalvinSceneEnv(cameras=()):
        pass
    monkeypatch.undo()
    names = [n for n, _, _ in spy.calls]
    assert "stepSimulation" not in names
    last_reset = len(names) - 1 - names[::-1].index("resetSimulation")
    # calvin_env turns deterministicOverlappingPairs on and then calls resetSimulation, which erases it
    dop = [k["deterministicOverlappingPairs"] for n, _, k in spy.calls[last_reset:]
           if n == "setPhysicsEngineParameter" and "deterministicOverlappingPairs" in k]
    assert dop in ([], [0])


@pytest.mark.calvin_assets
def test_reset_order_scene_then_robot_then_one_physics_step(env):
    spy = _spy_on(env, "resetJointState", "resetBasePositionAndOrientation", "stepSimulation")
    try:
        env.reset(*get_env_state_for_initial_condition(STATE))
    finally:
        env.p = pybullet
    order = [(n, a[0] if a else None) for n, a, _ in spy.calls]
    bodies = [body for n, body in order if n != "stepSimulation"]
    first_robot = bodies.index(env.robot_uid)
    assert set(bodies[:first_robot]) == {env.table_uid, *env.block_uids.values()}  # the scene first
    assert set(bodies[first_robot:]) == {env.robot_uid}  # then the robot
    assert [n for n, _ in order].count("stepSimulation") == 1 and order[-1][0] == "stepSimulation"


@pytest.mark.calvin_assets
def test_robot_obs_reads_the_tcp_link_state_cached_at_the_last_step(env):
    env.reset(*get_env_state_for_initial_condition(STATE))
    for _ in range(5):
        obs, _, _, info = env.step(np.array([1.0, 0, 0, 0, 0, 0, 1.0]))
    cached = pybullet.getLinkState(env.robot_uid, 15, physicsClientId=env.cid)
    np.testing.assert_array_equal(obs["robot_obs"][:3], cached[0])
    np.testing.assert_array_equal(obs["robot_obs"][3:6], pybullet.getEulerFromQuaternion(cached[1]))
    assert info["robot_info"]["tcp_orn"] == pytest.approx(tuple(obs["robot_obs"][3:6]))  # Euler, as calvin_env
    # not forward kinematics of the current joints: the cache lags them by the last sub-step's motion
    fresh = pybullet.getLinkState(env.robot_uid, 15, computeForwardKinematics=True, physicsClientId=env.cid)
    assert 1e-4 < np.linalg.norm(np.subtract(fresh[0], obs["robot_obs"][:3])) < 5e-3


@pytest.mark.calvin_assets
def test_gripper_camera_looks_along_the_links_plus_y_with_up_minus_z(env):
    env.reset(*get_env_state_for_initial_condition(STATE))
    env.step(np.array([0.3, -0.2, 0.1, 0.1, 0, 0.3, 1.0]))
    pos, orn = pybullet.getLinkState(env.robot_uid, env.robot_links["gripper_cam"], physicsClientId=env.cid)[:2]
    rot = np.array(pybullet.getMatrixFromQuaternion(orn)).reshape(3, 3)
    view = np.array(env.gripper_view_matrix()).reshape(4, 4).T  # column-major → world-to-camera
    to_cam = lambda x: (view @ np.append(x, 1.0))[:3]  # noqa: E731
    # an OpenGL camera looks down its −z axis with +y up
    np.testing.assert_allclose(to_cam(np.array(pos) + 0.1 * rot[:, 1]), [0, 0, -0.1], atol=1e-6)
    np.testing.assert_allclose(to_cam(np.array(pos) - 0.1 * rot[:, 2]), [0, 0.1, 0], atol=1e-6)


@pytest.mark.calvin_assets
def test_free_space_motion_is_deterministic():
    robot_obs, scene_obs = get_env_state_for_initial_condition(STATE)
    runs = []
    for _ in range(2):
        with CalvinSceneEnv(cameras=()) as e:
            e.reset(robot_obs, scene_obs)
            track = [e.step(np.array([0.4, -0.3, 0.5 * np.sin(t / 5), 0, 0, 0.1, 1.0 - 2 * (t > 20)]))[0]["robot_obs"]
                     for t in range(30)]
            runs.append(np.array(track))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert np.abs(runs[0][-1, :3] - robot_obs[:3]).max() > 0.05  # it did move


def _press(env: CalvinSceneEnv, depth: float) -> None:
    """Put the button joint at `depth` and run calvin_env's per-step button/switch update."""
    pybullet.resetJointState(env.table_uid, env.table_joints["base__button"], depth, physicsClientId=env.cid)
    env._step_button_and_switch()


@pytest.mark.calvin_assets
@pytest.mark.parametrize("version, led_after_first_press", [("1431a46", 1), ("797142c", 0)])
def test_button_toggles_on_a_press_edge_and_its_reset_state_depends_on_the_version(version, led_after_first_press):
    with CalvinSceneEnv(cameras=(), env_version=version) as e:
        e.reset(*get_env_state_for_initial_condition(STATE))  # LED on
        assert e.button_state == (1 if version == "797142c" else 0)
        _press(e, 0.02)
        assert e.lights["led"] == led_after_first_press  # 1431a46: the first press "turns on" a lit LED
        _press(e, 0.019)  # held down: no edge, no toggle
        assert e.lights["led"] == led_after_first_press
        _press(e, 0.0)
        _press(e, 0.02)  # the next press edge toggles
        assert e.lights["led"] == 1 - led_after_first_press
        info = e.get_info()["scene_info"]
        assert info["buttons"]["base__button"]["logical_state"] == e.button_state
        # the pressed flag survives reset: a reset with the button already down is not a new press
        r, s = get_env_state_for_initial_condition(STATE)
        e.reset(r, np.where(np.arange(24) == 2, 0.02, s))
        led = e.lights["led"]
        e._step_button_and_switch()
        assert e.lights["led"] == led


@pytest.mark.calvin_assets
def test_switch_changes_the_bulb_only_when_it_crosses_its_midpoint(env):
    r, s = get_env_state_for_initial_condition({**STATE, "lightbulb": 0})
    # switch down (0) but the bulb on: no crossing, the bulb stays on (it is not recomputed from the switch)
    env.reset(r, np.where(np.arange(24) == 4, 1.0, s))
    env.step(NOOP)
    assert env.lights["lightbulb"] == 1 and env.get_info()["scene_info"]["switches"]["base__switch"]["logical_state"] == 0
    # switch up (0.088) with the bulb off: reset sets the switch state off, so the first step turns the bulb on
    env.reset(r, np.where(np.arange(24) == 3, 0.088, s))
    assert env.lights["lightbulb"] == 0
    env.step(NOOP)
    assert env.lights["lightbulb"] == 1


def test_env_version_names():
    assert DEFAULT_ENV_VERSION == "1431a46"  # what mees/calvin pins, so what published numbers ran on
    assert resolve_env_version("pinned") == "1431a46" and resolve_env_version("HEAD") == "797142c"
    with pytest.raises(ConfigError, match="calvin.env_version"):
        resolve_env_version("main")
