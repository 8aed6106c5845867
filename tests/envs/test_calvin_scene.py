"""Our CALVIN scene D: conventions, reset fidelity, and the task oracle on scripted motions."""

from __future__ import annotations

import numpy as np
import pytest

from vla_parl.envs.calvin.oracle import CalvinTaskOracle
from vla_parl.envs.calvin.tasks import TASK_SPECS
from vla_parl.envs.calvin.scene import CalvinSceneEnv
from vla_parl.envs.calvin.scripted import SCRIPTED_TASKS, NoopCalvinPolicy, ScriptedCalvinPolicy
from vla_parl.envs.calvin.sequences import get_env_state_for_initial_condition
from vla_parl.envs.calvin.tasks import INSTRUCTIONS

BASE = {"led": 0, "lightbulb": 0, "slider": "right", "drawer": "closed", "red_block": "slider_left",
        "blue_block": "table", "pink_block": "table", "grasped": 0}


def _state_for(task: str) -> dict:
    """A symbolic state in which `task` is possible and its scripted motion is unobstructed."""
    st = dict(BASE)
    if task == "turn_off_led":
        st["led"] = 1
    if task == "turn_off_lightbulb":
        st["lightbulb"] = 1
    if task == "move_slider_right":
        st["slider"] = "left"
    if task == "close_drawer":
        st["drawer"] = "open"
    if "red_block" in task:
        st["red_block"], st["pink_block"] = "table", "slider_right"
    return st


@pytest.fixture(scope="module")
def env():
    e = CalvinSceneEnv(cameras=())  # physics only: the oracle does not need images
    yield e
    e.close()


@pytest.fixture(scope="module")
def env_head():
    e = CalvinSceneEnv(cameras=(), env_version="797142c")  # calvin_env HEAD: a reset LED can be pressed off
    yield e
    e.close()


@pytest.fixture(scope="module")
def env_rgb():
    e = CalvinSceneEnv()
    yield e
    e.close()


@pytest.mark.calvin_assets
def test_reset_reproduces_the_initial_condition(env_rgb):
    robot_obs, scene_obs = get_env_state_for_initial_condition({**BASE, "led": 1, "drawer": "open"})
    obs = env_rgb.reset(robot_obs=robot_obs, scene_obs=scene_obs)
    # the official robot_obs holds the TCP pose of its joints; reset ends with one physics step (as in
    # calvin_env), so the joints and blocks have moved by that one step only
    np.testing.assert_allclose(obs["robot_obs"], robot_obs, atol=1e-4)
    np.testing.assert_allclose(obs["scene_obs"][:6], scene_obs[:6], atol=1e-9)
    np.testing.assert_allclose(obs["scene_obs"][6:], scene_obs[6:], atol=5e-3)
    rgb = obs["rgb_obs"]["rgb_static"]
    assert rgb.shape == (200, 200, 3) and rgb.dtype == np.uint8 and rgb.std() > 20
    assert obs["robot_obs"].shape == (15,) and obs["scene_obs"].shape == (24,)
    # the LED lights up green in the static camera
    env_rgb.reset(robot_obs=robot_obs, scene_obs=np.where(np.arange(24) == 5, 0.0, scene_obs))
    dark = env_rgb.get_obs()["rgb_obs"]["rgb_static"].astype(int)
    lit = rgb.astype(int)
    green = (lit[..., 1] - lit[..., 0] > 100) & ~(dark[..., 1] - dark[..., 0] > 100)
    assert green.sum() > 10


@pytest.mark.calvin_assets
def test_info_structure_and_physics_rest(env):
    robot_obs, scene_obs = get_env_state_for_initial_condition(BASE)
    env.reset(robot_obs, scene_obs)
    info = env.get_info()
    assert set(info) == {"robot_info", "scene_info"}
    si = info["scene_info"]
    assert set(si["movable_objects"]) == {"block_red", "block_blue", "block_pink"}
    assert si["fixed_objects"]["table"]["links"]["base_link"] == -1
    assert {"plank_link", "drawer_link", "slide_link"} <= set(si["fixed_objects"]["table"]["links"])
    table = si["fixed_objects"]["table"]["uid"]
    top = (table, -1)
    # right after reset the contacts are those of the new state: blue and pink sit on the table top
    for name in ("block_blue", "block_pink"):
        assert top in {(c[2], c[4]) for c in si["movable_objects"][name]["contacts"]}
    plank = (table, si["fixed_objects"]["table"]["links"]["plank_link"])
    assert plank in {(c[2], c[4]) for c in si["movable_objects"]["block_red"]["contacts"]}
    for _ in range(30):
        obs, reward, done, info = env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
    assert reward == 0.0 and done is False
    np.testing.assert_allclose(obs["scene_obs"], scene_obs, atol=2e-3)  # nothing drifts or falls


@pytest.mark.calvin_assets
def test_noop_episode_completes_nothing(env):
    env.reset(*get_env_state_for_initial_condition({**BASE, "led": 1, "lightbulb": 1}))
    start = env.get_info()
    policy = NoopCalvinPolicy()
    obs = env.get_obs()
    for _ in range(60):
        obs, _, _, info = env.step(policy.act(obs, INSTRUCTIONS["open_drawer"]))
    assert env.completed_tasks(start, info) == set()


@pytest.mark.calvin_assets
def test_gripper_action_must_be_plus_minus_one(env):
    with pytest.raises(ValueError, match="gripper"):
        env.step(np.array([0, 0, 0, 0, 0, 0, 0.3]))
    with pytest.raises(ValueError, match="7 values"):
        env.step(np.zeros(6))


@pytest.mark.calvin_assets
def test_relative_action_moves_the_target_by_2cm(env):
    env.reset(*get_env_state_for_initial_condition(BASE))
    before = env.get_obs()["robot_obs"][:3]
    for _ in range(10):
        obs, *_ = env.step(np.array([1.0, 0, 0, 0, 0, 0, 1.0]))
    for _ in range(15):
        obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
    np.testing.assert_allclose(obs["robot_obs"][:3] - before, [0.2, 0, 0], atol=0.01)


# The scripted turn_off_lightbulb motion rarely works in calvin_env's physics (which our scene now
# reproduces): the fingertips slip off the raised switch knob at the edge of the Panda's reach.
_RELIABLE = [t for t in SCRIPTED_TASKS if t != "turn_off_lightbulb"]


@pytest.mark.calvin_assets
@pytest.mark.parametrize("task", _RELIABLE)
def test_scripted_motion_triggers_exactly_its_task(env, env_head, task):
    # 1431a46 (the default) leaves the button's logical state off at reset, so pressing a lit LED
    # "turns it on" (test_calvin_parity covers that); HEAD turns it off
    env = env_head if task == "turn_off_led" else env
    env.reset(*get_env_state_for_initial_condition(_state_for(task)))
    policy = ScriptedCalvinPolicy()
    policy.reset()
    start, obs = env.get_info(), env.get_obs()
    for _ in range(200):
        obs, _, _, info = env.step(policy.act(obs, INSTRUCTIONS[task]))
        done = env.completed_tasks(start, info)
        if done:
            break
    assert done == {task}


@pytest.mark.calvin_assets
def test_random_reset_places_blocks_on_surfaces():
    with CalvinSceneEnv(cameras=(), seed=3) as e:
        a = e.reset()["scene_obs"]
        b = e.reset()["scene_obs"]
    assert not np.allclose(a[6:], b[6:])
    for s in (a, b):
        np.testing.assert_allclose(s[:6], 0, atol=1e-6)
        assert np.all((s[[8, 14, 20]] > 0.44) & (s[[8, 14, 20]] < 0.5))  # resting on the table or the plank


@pytest.mark.calvin_assets
def test_oracle_specs_match_the_task_yaml():
    from vla_parl.envs.calvin.assets import find_calvin_assets

    specs = find_calvin_assets().yaml("tasks", "new_playtable_tasks.yaml")
    if specs is None:
        pytest.skip("conf/tasks/new_playtable_tasks.yaml not next to the CALVIN assets")
    assert specs["tasks"] == TASK_SPECS
    assert list(specs["tasks"]) == list(INSTRUCTIONS)


# ----- oracle rules that scripted motions do not reach, on hand-built infos ---------------------------
ROBOT, TABLE, RED, BLUE, PINK = 5, 1, 2, 3, 4
LINKS = {"base_link": -1, "slide_link": 2, "drawer_link": 3, "plank_link": 6}


def _c(other: int, link: int = -1) -> tuple:
    return (0, 0, other, -1, link)


def _info(robot_contacts=(), red=None, blue=None, pink=None) -> dict:
    def obj(uid, spec):
        spec = spec or {}
        return {"uid": uid, "current_pos": np.array(spec.get("pos", [0.0, 0.0, 0.46])),
                "current_orn": np.array(spec.get("orn", [0, 0, 0, 1.0])), "contacts": spec.get("contacts", ()),
                "current_lin_vel": np.array(spec.get("vel", [0.0] * 3)), "current_ang_vel": np.zeros(3)}

    return {"robot_info": {"uid": ROBOT, "contacts": tuple(robot_contacts)},
            "scene_info": {"fixed_objects": {"table": {"uid": TABLE, "links": LINKS}},
                           "movable_objects": {"block_red": obj(RED, red), "block_blue": obj(BLUE, blue),
                                               "block_pink": obj(PINK, pink)},
                           "doors": {"base__slide": {"current_state": 0.0}, "base__drawer": {"current_state": 0.0}},
                           "lights": {"lightbulb": {"logical_state": 0}, "led": {"logical_state": 0}}}}


def test_oracle_rotate_stack_unstack_place_push_into_drawer():
    oracle = CalvinTaskOracle()
    table = (_c(TABLE),)
    yaw = {a: [0, 0, np.sin(np.radians(a) / 2), np.cos(np.radians(a) / 2)] for a in (0, 45, 90, -90)}
    start = _info(red={"contacts": table, "orn": yaw[0]})
    assert oracle.completed(start, _info(red={"contacts": table, "orn": yaw[90]})) == {"rotate_red_block_left"}
    assert oracle.completed(start, _info(red={"contacts": table, "orn": yaw[-90]})) == {"rotate_red_block_right"}
    assert oracle.completed(start, _info(red={"contacts": table, "orn": yaw[45]})) == set()  # < 60°
    assert oracle.completed(start, _info(red={"contacts": (_c(ROBOT),), "orn": yaw[90]})) == set()  # held
    # stack: blue held (only robot contact) ends resting on red only
    s0 = _info(robot_contacts=(_c(BLUE),), blue={"contacts": (_c(ROBOT),)}, red={"contacts": table})
    s1 = _info(blue={"contacts": (_c(RED),)}, red={"contacts": table + (_c(BLUE),)})
    assert "stack_block" in oracle.completed(s0, s1)
    assert "stack_block" not in oracle.completed(s0, _info(blue={"contacts": (_c(RED),), "vel": [0, 0, -1.5]}))
    assert "unstack_block" in oracle.completed(s1, _info(blue={"contacts": (_c(ROBOT),)}, red={"contacts": table}))
    # place: the held block goes from the robot to the plank (slider) — or to the drawer
    s0 = _info(robot_contacts=(_c(PINK),), pink={"contacts": (_c(ROBOT),)})
    assert oracle.completed(s0, _info(pink={"contacts": (_c(TABLE, 6),)}), {"place_in_slider", "place_in_drawer"}) \
        == {"place_in_slider"}
    assert oracle.completed(s0, _info(robot_contacts=(_c(PINK),), pink={"contacts": (_c(TABLE, 6), _c(ROBOT))}),
                            {"place_in_slider"}) == set()  # not released
    # push into drawer: table top only at start, drawer at end
    s0 = _info(red={"contacts": table})
    assert oracle.completed(s0, _info(red={"contacts": (_c(TABLE, 3),)}), {"push_into_drawer"}) == {"push_into_drawer"}
    assert oracle.completed(s0, _info(red={"contacts": (_c(TABLE, 3), _c(TABLE, -1))}),
                            {"push_into_drawer"}) == {"push_into_drawer"}
    assert oracle.completed(_info(red={"contacts": table + (_c(BLUE),)}), _info(red={"contacts": (_c(TABLE, 3),)}),
                            {"push_into_drawer"}) == set()  # the table top was not its only contact


def test_push_into_drawer_official_ignores_robot_contact_strict_does_not():
    s0, table = _info(red={"contacts": ((_c(TABLE)),)}), (_c(TABLE),)
    pushed = _info(red={"contacts": (_c(TABLE, 3), _c(ROBOT))})  # in the drawer, still touched by the robot
    held_at_start = _info(red={"contacts": table + (_c(ROBOT),)})
    official, strict = CalvinTaskOracle(), CalvinTaskOracle(push_into_drawer="strict")
    assert official.push_into_drawer == "official"  # the default: what calvin_env (and published numbers) do
    assert official.completed(s0, pushed, {"push_into_drawer"}) == {"push_into_drawer"}
    assert strict.completed(s0, pushed, {"push_into_drawer"}) == set()
    # a robot contact at the start also breaks "the table top is its only contact", in both variants
    assert official.completed(held_at_start, _info(red={"contacts": (_c(TABLE, 3),)}), {"push_into_drawer"}) == set()
    assert strict.completed(s0, _info(red={"contacts": (_c(TABLE, 3),)}), {"push_into_drawer"}) == {"push_into_drawer"}
    with pytest.raises(ValueError, match="push_into_drawer must be one of"):
        CalvinTaskOracle(push_into_drawer="lenient")


@pytest.mark.calvin_assets
def test_button_springs_back_so_a_second_press_turns_the_led_off(env):
    env.reset(*get_env_state_for_initial_condition(BASE))
    policy = ScriptedCalvinPolicy()
    obs = env.get_obs()
    for task in ("turn_on_led", "turn_off_led"):
        policy.reset()
        start = env.get_info()
        for _ in range(120):
            obs, _, _, info = env.step(policy.act(obs, INSTRUCTIONS[task]))
            if env.completed_tasks(start, info, {task}):
                break
        assert env.completed_tasks(start, info, {task}) == {task}
        assert info["scene_info"]["buttons"]["base__button"]["logical_state"] == obs["scene_obs"][5]
