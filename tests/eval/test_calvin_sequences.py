"""CALVIN's evaluation-sequence generator and initial conditions against the spec's test vectors."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest

from vla_parl.envs.calvin import sequences as cs
from vla_parl.envs.calvin import tasks as ct
from vla_parl.envs.calvin.sequences import get_sequences

SEQ1_STATE = {"led": 1, "lightbulb": 1, "slider": "left", "drawer": "open", "red_block": "slider_left",
              "blue_block": "table", "pink_block": "slider_right", "grasped": 0}
SEQ1_TASKS = ("rotate_blue_block_right", "move_slider_right", "lift_red_block_slider", "place_in_slider",
              "turn_off_lightbulb")
SEQ2_TASKS = ("turn_off_led", "push_into_drawer", "lift_blue_block_drawer", "place_in_slider", "close_drawer")


def test_fnv1_32_vectors():
    assert cs.fnv1_32("hello world") == 2805756500
    assert cs.fnv1_32(b"") == 0  # FNV-1 with initial value 0, as pyhash.fnv1_32
    assert str(SEQ1_STATE.values()) == "dict_values([1, 1, 'left', 'open', 'slider_left', 'table', 'slider_right', 0])"
    assert cs.initial_condition_seed(SEQ1_STATE) == 47886304


def test_initial_states_and_quotas():
    states = cs.initial_states()
    assert len(states) == 192
    assert list(states[0]) == list(ct.STATE_VALUES)
    for s in states:
        blocks = [s[f"{c}_block"] for c in ct.BLOCKS]
        assert blocks.count("table") in (1, 2) and blocks.count("slider_left") <= 1 and blocks.count("slider_right") <= 1
    quotas = [len(q) for q in np.array_split(np.arange(1000), 192)]
    assert quotas[:40] == [6] * 40 and quotas[40:] == [5] * 152


def test_rules_order_categories_and_instructions():
    assert len(ct.TASK_NAMES) == 34
    assert ct.TASK_NAMES[:6] == ("rotate_red_block_right", "rotate_red_block_left", "rotate_blue_block_right",
                                 "rotate_blue_block_left", "rotate_pink_block_right", "rotate_pink_block_left")
    assert ct.TASK_NAMES[12:16] == ("move_slider_left", "move_slider_right", "open_drawer", "close_drawer")
    assert ct.TASK_NAMES[16:19] == ("lift_red_block_table", "lift_red_block_slider", "lift_red_block_drawer")
    assert ct.TASK_NAMES[25:] == ("place_in_slider", "place_in_drawer", "stack_block", "unstack_block",
                                  "turn_on_lightbulb", "turn_off_lightbulb", "turn_on_led", "turn_off_led",
                                  "push_into_drawer")
    assert collections.Counter(ct.TASK_CATEGORIES.values()) == {1: 12, 2: 2, 3: 2, 4: 3, 5: 3, 6: 3, 7: 2, 8: 4,
                                                                9: 1, 10: 1, 11: 1}
    assert len(ct.TASK_RULES["stack_block"]) == 6 and len(ct.TASK_RULES["place_in_slider"]) == 6
    assert ct.INSTRUCTIONS["lift_red_block_drawer"] == "Take the red block from the drawer"
    assert ct.INSTRUCTIONS["move_slider_right"] == "push the sliding door to the right side"


@pytest.mark.calvin_assets
def test_instructions_match_the_validation_annotations():
    from vla_parl.envs.calvin.assets import find_calvin_assets
    import yaml

    root = find_calvin_assets().data.parent / "annotations" / "new_playtable_validation.yaml"
    if not root.is_file():
        pytest.skip("annotations/new_playtable_validation.yaml not next to the CALVIN assets")
    official = {task: sentences[0] for task, sentences in yaml.safe_load(root.read_text()).items()}
    assert official == ct.INSTRUCTIONS


def test_rule_semantics():
    assert cs.valid_next_states(SEQ1_STATE, "lift_red_block_slider") == []  # hidden behind the door
    (s,) = cs.valid_next_states(SEQ1_STATE, "move_slider_right")
    assert s == {**SEQ1_STATE, "slider": "right"}
    # stack needs the grasped block and exactly one other block on the table
    s2 = cs.valid_next_states(s, "lift_red_block_slider")
    assert s2 == [{**s, "red_block": "grasped", "grasped": 1}]
    assert cs.valid_next_states(s2[0], "stack_block") == [
        {**s2[0], "red_block": "stacked_top", "blue_block": "stacked_bottom", "grasped": 0}]
    assert cs.valid_next_states(s, "open_drawer") == []  # already open
    assert cs.is_feasible(SEQ1_STATE, SEQ1_TASKS)
    assert not cs.is_feasible(SEQ1_STATE, ("open_drawer",) + SEQ1_TASKS[1:])
    assert not cs.is_feasible(SEQ1_STATE, ("turn_off_led", "turn_off_lightbulb"))  # same category
    # two blocks on the table: stacking is ambiguous, so rejected
    two = {**SEQ1_STATE, "red_block": "table", "pink_block": "table", "blue_block": "slider_left"}
    assert not cs.is_feasible(two, ("lift_blue_block_slider", "stack_block"))


def test_fast_sampler_equals_np_random_choice():
    """The shuffle-based sampler draws exactly what `np.random.seed(i); np.random.choice(...)` draws."""
    states = cs.initial_states()
    for i in (0, 57):
        np.random.seed(i)
        expected = []
        while len(expected) < 1:
            draw = tuple(str(t) for t in np.random.choice(ct.TASK_NAMES, size=5, replace=False))
            if cs.is_feasible(states[i], draw):
                expected.append(draw)
        assert cs._sequences_for_state((i, 1, states[i])) == expected


def test_initial_condition_of_sequence_1():
    robot_obs, scene_obs = cs.get_env_state_for_initial_condition(SEQ1_STATE)
    assert robot_obs.shape == (15,) and robot_obs[14] == 1.0
    rng = np.random.RandomState(47886304)  # the FNV-1 seed; draws: slot shuffle, then 3 yaws
    slots = [(5.00000896e-02, -1.20000177e-01, 4.59990009e-01), (2.29995412e-01, -1.19995140e-01, 4.59990010e-01)]
    rng.shuffle(slots)
    yaws = [rng.uniform(np.pi / 2 - np.pi / 8, np.pi / 2 + np.pi / 8) for _ in range(3)]
    np.testing.assert_allclose(scene_obs[:6], [0.28, 0.22, 0, 0.088, 1, 1])
    np.testing.assert_allclose(scene_obs[6:9], [-2.40851662e-01, 9.24044687e-02, 4.60990009e-01])  # red: slider_left
    np.testing.assert_allclose(scene_obs[12:15], slots[0])  # blue on the table, red not: slot 0
    np.testing.assert_allclose(scene_obs[18:21], [7.03416330e-02, 9.24044687e-02, 4.60990009e-01])
    np.testing.assert_allclose(scene_obs[[11, 17, 23]], yaws)
    assert np.all(scene_obs[[9, 10, 15, 16, 21, 22]] == 0)
    state = np.random.get_state()[1].copy()
    cs.get_env_state_for_initial_condition(SEQ1_STATE)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global generator restored


def test_small_generation_and_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VLA_PARL_CACHE", str(tmp_path))
    cs._cached.cache_clear()
    seqs = get_sequences(3, num_workers=1)  # states 0..2 get one chain each
    assert len(seqs) == 3 and all(cs.is_feasible(s, t) for s, t in seqs)
    files = list((tmp_path / "calvin").glob("sequences_*_3.json"))
    assert len(files) == 1 and len(json.loads(files[0].read_text())) == 3
    cs._cached.cache_clear()
    assert get_sequences(3, num_workers=1) == seqs  # served from the file


@pytest.mark.slow
def test_official_sequences_match_the_test_vectors(tmp_path, monkeypatch):
    monkeypatch.setenv("VLA_PARL_CACHE", "off")
    cs._cached.cache_clear()
    before = np.random.get_state()[1].copy()
    seqs = get_sequences(1000, num_workers=2)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    assert len(seqs) == 1000
    assert seqs[0] == (SEQ1_STATE, SEQ1_TASKS)
    assert list(seqs[0][0]) == list(ct.STATE_VALUES)
    assert seqs[1][1] == SEQ2_TASKS
    counts = collections.Counter(t for _, tasks in seqs for t in tasks)
    assert sum(counts.values()) == 5000
    assert counts["place_in_slider"] == 398 and counts["open_drawer"] == 379
    assert counts.most_common(2) == [("place_in_slider", 398), ("open_drawer", 379)]
    assert min(counts.values()) == counts["lift_pink_block_drawer"] == 17
    assert all(cs.is_feasible(s, t) for s, t in seqs)
    per_state = collections.Counter(json.dumps(s) for s, _ in seqs)
    assert len(per_state) == 192 and sorted(set(per_state.values())) == [5, 6]
