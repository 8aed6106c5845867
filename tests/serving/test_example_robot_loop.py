"""The example robot loop (and `vla_parl_client.run_episode` under it) records labelled tabletop episodes on a
real server; success labels come from a callback or the operator's y/n."""

from __future__ import annotations

import pytest

from serving.example_robot_loop import choose_label, main
from tests.serving._robot_server import episode_server
from vla_parl_client import PolicyClient, keyboard_label, run_episode


@pytest.fixture(scope="module")
def episode_url(checkpoint_dirs, tmp_path_factory):
    with episode_server(*checkpoint_dirs, tmp_path_factory.mktemp("episodes")) as url:
        yield url


def test_run_episode_records_the_served_actions_with_the_label(episode_url):
    from vla_parl.envs.tabletop_robot import TabletopRobot

    robot = TabletopRobot("lift", seeds=[0], image_size=48, max_episode_steps=3)
    labels = []
    try:
        with PolicyClient(episode_url) as client:
            result = run_episode(client, robot, label=lambda: labels.append(1) or True, max_steps=3,
                                 mode="greedy", unnorm_key="default")
            stored = {row["episode_id"]: row for row in client.episodes()["episodes"]}[result.episode_id]
    finally:
        robot.close()
    assert labels == [1] and result.success is True and result.instruction.startswith("pick up the ")
    assert result.steps == 3 and result.actions.shape == (3, 7) and result.policy_versions == [0, 0, 0]
    assert result.stored == {"episode_id": result.episode_id, "steps": 3, "stored": True}
    assert stored["steps"] == 3 and stored["success"] is True and min(result.latencies_ms) > 0


def test_keyboard_label_asks_until_the_answer_is_y_or_n(capsys):
    answers = iter(["maybe", " Y ", "n"])
    label = keyboard_label(read=lambda prompt: next(answers))
    assert label() is True and label() is False
    assert "please answer y or n" in capsys.readouterr().err


def test_the_label_is_the_operator_in_a_terminal_else_the_robot():
    class Arm:             # a robot without a success signal of its own
        pass

    assert choose_label(Arm(), "auto", interactive=True).__qualname__.startswith("keyboard_label")
    with pytest.raises(ValueError, match="--label keyboard"):
        choose_label(Arm(), "auto", interactive=False)


def test_main_collects_in_refined_mode_when_the_server_has_a_critic(episode_url, capsys):
    assert main(["--url", episode_url, "--episodes", "2", "--max-steps", "2", "--unnorm-key", "bridge_orig",
                 "--image-size", "48"]) == 0          # stdin is not a terminal: the simulator labels
    out = capsys.readouterr().out
    assert "collecting in mode refined" in out
    assert "episode 0: " in out and "episode 1: " in out and "success rate" in out
    assert out.count("in 2 steps") + out.count("in 1 steps") == 2


def test_main_reports_a_mode_the_server_lacks_and_an_unreachable_server_without_a_traceback(checkpoint_dirs,
                                                                                            tmp_path, capsys):
    with episode_server(checkpoint_dirs[0], None, tmp_path / "eps") as url:               # no critic
        assert main(["--url", url, "--mode", "refined", "--max-steps", "1", "--image-size", "48"]) == 2
    err = capsys.readouterr().err
    assert "not --mode refined" in err and "--critic" in err
    assert main(["--url", "http://127.0.0.1:9", "--api-key", "k", "--max-steps", "1", "--image-size", "48"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
