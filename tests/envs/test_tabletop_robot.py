"""`TabletopRobot`: the tabletop behind the robot-side protocol — seeded resets, success = the env's terminated."""

from __future__ import annotations

import numpy as np
import pytest

from vla_parl.envs.tabletop_robot import TabletopRobot


def test_a_controller_on_the_privileged_state_reaches_the_block_and_the_robot_reports_success():
    robot = TabletopRobot("reach", seeds=[3, 3], image_size=32, max_episode_steps=30, targets=["red"])
    try:
        assert robot.reset() == "reach the red block"
        first = robot.get_image().copy()
        for step in range(30):
            to_block = robot.get_state()[3:]                  # block − gripper (metres)
            done = robot.apply_action(np.append(np.clip(to_block / 0.025, -1, 1), [0, 0, 0, 1]))
            if done:
                break
        assert done and robot.success and step < 29           # ended by success, not by the time limit
        robot.reset()                                         # the same seed again: the same scene
        np.testing.assert_array_equal(robot.get_image(), first)
        assert robot.success is False and robot.get_proprio().shape == (7,)
        with pytest.raises(RuntimeError, match="every seed"):
            robot.reset()
    finally:
        robot.close()


def test_an_episode_that_runs_out_of_time_is_over_without_success():
    robot = TabletopRobot("lift", seeds=[0], image_size=16, max_episode_steps=2)
    try:
        robot.reset()
        assert robot.apply_action(np.zeros(7)) is False
        assert robot.apply_action(np.full(7, 5.0)) is True and robot.success is False   # clipped to the box
    finally:
        robot.close()
