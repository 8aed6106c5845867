"""The CALVIN long-horizon protocol end to end on our scene: chain loop, bookkeeping, resume, workers."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from vla_parl.envs.calvin.scene import CalvinSceneEnv
from vla_parl.envs.calvin.scripted import NoopCalvinPolicy, ScriptedCalvinPolicy
from vla_parl.envs.calvin.protocol import ChainResult, CalvinPolicy, evaluate_calvin, summarize, to_env_action

STATE = {"led": 0, "lightbulb": 0, "slider": "right", "drawer": "closed", "red_block": "slider_left",
         "blue_block": "table", "pink_block": "table", "grasped": 0}
# chain 0: all five scripted → 5; chain 1: rotate (not scripted) third → 2; chain 2: first task not scripted → 0
CHAINS = [
    (STATE, ("turn_on_led", "open_drawer", "move_slider_left", "turn_on_lightbulb", "lift_blue_block_table")),
    ({**STATE, "led": 1}, ("push_pink_block_left", "turn_off_led", "rotate_blue_block_right", "open_drawer",
                           "move_slider_left")),
    (STATE, ("stack_block", "open_drawer", "turn_on_led", "move_slider_left", "turn_on_lightbulb")),
]


def test_summarize_bookkeeping():
    rows = [ChainResult(0, STATE, ["a", "b", "c", "d", "e"], 5), ChainResult(1, STATE, ["a", "c", "x", "y", "z"], 2),
            ChainResult(2, STATE, ["b", "a", "c", "d", "e"], 0), ChainResult(3, STATE, ["a", "b", "c", "d", "e"], 1)]
    s = summarize(rows)
    assert s["chain_sr"] == {"1": 0.75, "2": 0.5, "3": 0.25, "4": 0.25, "5": 0.25}
    assert s["avg_seq_len"] == pytest.approx(2.0) == pytest.approx(sum(s["chain_sr"].values()))
    # successes count; only the first failed subtask counts as a failure; later subtasks are not counted
    assert s["task_info"] == {"a": {"success": 3, "total": 3}, "b": {"success": 1, "total": 3},
                              "c": {"success": 2, "total": 2}, "d": {"success": 1, "total": 1},
                              "e": {"success": 1, "total": 1}, "x": {"success": 0, "total": 1}}


def test_to_env_action_maps_the_gripper():
    np.testing.assert_array_equal(to_env_action([0.1, 0, 0, 0, 0, 0, 0.2])[6], 1.0)
    np.testing.assert_array_equal(to_env_action(np.zeros(7))[6], -1.0)
    with pytest.raises(ValueError, match="7 values"):
        to_env_action(np.zeros(8))
    assert isinstance(ScriptedCalvinPolicy(), CalvinPolicy) and isinstance(NoopCalvinPolicy(), CalvinPolicy)


@pytest.mark.calvin_assets
def test_scripted_policy_end_to_end_with_resume(tmp_path):
    # the scripted policy needs no images; calvin_env HEAD's button, so chain 1's turn_off_led (LED lit at
    # reset) succeeds (with the pinned 1431a46 the first press leaves a lit LED on)
    make_env = functools.partial(CalvinSceneEnv, cameras=(), env_version="797142c")
    s = evaluate_calvin(make_env, ScriptedCalvinPolicy, tmp_path, sequences=CHAINS, ep_len=150, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "chains.jsonl").read_text().splitlines()]
    assert [r["result"] for r in sorted(rows, key=lambda r: r["index"])] == [5, 2, 0]
    assert s["avg_seq_len"] == pytest.approx(7 / 3)
    assert s["chain_sr"] == pytest.approx({"1": 2 / 3, "2": 2 / 3, "3": 1 / 3, "4": 1 / 3, "5": 1 / 3})
    assert s["task_info"]["rotate_blue_block_right"] == {"success": 0, "total": 1}
    assert s["task_info"]["stack_block"] == {"success": 0, "total": 1}
    assert s["task_info"]["open_drawer"] == {"success": 1, "total": 1}  # chain 1 never reached it
    assert rows[1]["steps"][-1] == 150  # the failed subtask used the whole budget, then the chain stopped
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["0"] == s and (tmp_path / "success_rates.png").stat().st_size > 1000
    # resume after an interrupted run: chain 2's line was cut short, so only chain 2 runs again
    log = tmp_path / "chains.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in rows[:2]) + '\n{"index": 2, "res')
    s2 = evaluate_calvin(make_env, ScriptedCalvinPolicy, tmp_path, sequences=CHAINS, ep_len=150,
                         progress=False, epoch=1)
    assert s2 == s and set(json.loads((tmp_path / "results.json").read_text())) == {"0", "1"}
    assert [json.loads(x)["index"] for x in log.read_text().splitlines() if x.endswith("}")] == [0, 1, 2]

    # everything done: neither an env nor a policy is built
    def boom():
        raise AssertionError("a finished evaluation must not run chains again")

    assert evaluate_calvin(boom, boom, tmp_path, sequences=CHAINS, progress=False, plot=False) == s


@pytest.mark.calvin_assets
def test_noop_policy_on_the_rendered_scene_in_two_workers(tmp_path):
    s = evaluate_calvin(CalvinSceneEnv, NoopCalvinPolicy, tmp_path, sequences=CHAINS, ep_len=20,
                        num_workers=2, progress=True)
    assert s["avg_seq_len"] == 0.0 and s["num_sequences"] == 3
    assert all(v == 0.0 for v in s["chain_sr"].values())
    assert {t: v["total"] for t, v in s["task_info"].items()} == {"turn_on_led": 1, "push_pink_block_left": 1,
                                                                  "stack_block": 1}
    rows = [json.loads(line) for line in (tmp_path / "chains.jsonl").read_text().splitlines()]
    assert sorted(r["index"] for r in rows) == [0, 1, 2] and all(r["steps"] == [20] for r in rows)
