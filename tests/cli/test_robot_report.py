"""`vla-parl robot report`: success per policy version of the episodes a policy server stored (table and PNG)."""

from __future__ import annotations

import numpy as np

from vla_parl.cli.main import main


def _store(root, episodes: list[tuple[list[int], bool | None]]) -> None:
    """Episodes as the server stores them: info with the version of each step and the success label."""
    from vla_parl.data import ReplayBuffer

    with ReplayBuffer(root) as store:
        for versions, success in episodes:
            steps = max(len(versions), 2)
            store.add_episode({"image": np.zeros((steps, 8, 8, 3), np.uint8)}, np.zeros((steps, 7), np.float32),
                              -np.ones(steps, np.float32), terminal=bool(success), instruction="reach",
                              info={"policy_versions": versions, "success": success,
                                    "source": "act" if versions else "upload"})


def test_report_counts_each_episode_under_its_first_steps_version_and_plots(tmp_path, capsys):
    from PIL import Image

    _store(tmp_path / "episodes", [([0, 0], False), ([0, 1], True), ([1, 1], True), ([1, 1], False),
                                   ([2, 2], True), ([], True), ([1, 1], None)])
    out = tmp_path / "success.png"
    assert main(["robot", "report", "--episodes", str(tmp_path / "episodes"), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [[cell.strip() for cell in line.split("|")] for line in lines[1:5]]
    assert rows == [["0", "2", "2", "1", "50.0%"],          # [0, 1] counts under v0, its first step's
                    ["1", "3", "2", "1", "50.0%"],          # the unlabelled episode is counted, not rated
                    ["2", "1", "1", "1", "100.0%"],
                    ["upload", "1", "1", "1", "100.0%"]]
    assert lines[-1] == f"wrote {out}"
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 300


def test_report_on_a_folder_without_episodes_says_which_folder_to_pass(tmp_path, capsys):
    assert main(["robot", "report", "--episodes", str(tmp_path / "nothing")]) == 2
    assert "holds no stored episodes: pass the server's --episodes DIR" in capsys.readouterr().err
