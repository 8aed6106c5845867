"""`vla-parl bench robot_loop`: the figures from the robots' request records, hand-made here (the loop itself, with
real processes, runs in tests/serving/test_robot_loop.py); and its registration in `bench` and `bench all`."""

from __future__ import annotations

import pytest

from vla_parl.bench import BENCHMARKS, suite
from vla_parl.bench.robot_loop import _analyse


def test_requests_are_split_by_learner_window_and_swap_span():
    windows = [(0.0, 10.0, "idle", 0.0), (10.0, 20.0, "training", 0.9)]
    requests = [(1.0, 1.1, 0), (2.0, 2.3, 0),              # idle: 100 and 300 ms
                (9.9, 10.1, 0),                            # spans both windows: in neither
                (11.0, 11.2, 0), (12.0, 12.5, 0),          # training; the second overlaps the swap to v1
                (13.0, 13.1, 1), (15.0, 15.2, 1)]          # the first answer of v1 (13.1) ends the swap span
    episodes = [(5.0, 10, True), (14.0, 10, False), (25.0, 3, False)]      # the last ends after the windows
    result = _analyse(requests, episodes, windows, published={1: 12.2, 2: 19.0})   # v2: never answered

    idle, training = result["rows"]
    assert (idle["requests"], training["requests"]) == (2, 4)
    assert idle["p50_ms"] == pytest.approx(200) and idle["p99_ms"] == pytest.approx(100 + 0.99 * 200)
    assert idle["episodes_per_min"] == pytest.approx(6.0) and training["learner_cpu"] == pytest.approx(0.9)
    swaps = result["swaps"]
    assert swaps["versions"] == [1] and swaps["span_s"] == [pytest.approx(0.9)]
    assert swaps["requests"] == 2 and swaps["longest_ms"] == pytest.approx(500)   # 12.0–12.5 and 13.0–13.1
    assert swaps["normal_p99_ms"] == pytest.approx(200)                           # 11.0–11.2 and 15.0–15.2
    assert swaps["ratio"] == pytest.approx(2.5)
    assert result["episodes_per_min"] == pytest.approx(6.0) and result["episodes"] == 3


def test_no_swap_seen_leaves_the_ratio_empty_and_the_headline_says_so():
    result = _analyse([(1.0, 1.1, 0), (11.0, 11.2, 0)], [], [(0.0, 10.0, "idle", None), (10.0, 20.0, "training", None)],
                      published={})
    assert result["swaps"]["ratio"] is None and result["rows"][1]["learner_cpu"] is None
    row = suite.headline("robot_loop", {**result, "failed_requests": 0})
    assert row["ratio"] == pytest.approx(2.0) and "no swap seen" in row["value"]


def test_robot_loop_is_a_bench_subcommand_and_part_of_bench_all():
    assert BENCHMARKS["robot_loop"] == "vla_parl.bench.robot_loop"
    module, _, quick = suite.MODULES["robot_loop"]
    assert module == "vla_parl.bench.robot_loop" and quick == ["--quick"]
