"""CALVIN's 34 tasks, written once: names, categories, symbolic rules, instructions and success thresholds.

- `TASK_RULES` / `TASK_CATEGORIES`: each task's symbolic precondition and effect (what the official
  evaluation-sequence generator chains, `vla_parl.envs.calvin.sequences`) and its category (a chain never
  repeats one).
- `INSTRUCTIONS`: the sentence the evaluation gives the policy for each task.
- `TASK_SPECS`: each task's success rule and thresholds, `[rule, *args]` as in calvin_env's
  `conf/tasks/new_playtable_tasks.yaml` (the oracle, `vla_parl.envs.calvin.oracle`, evaluates them).
- `SCENE_STATE_TASKS`: the tasks decidable from `scene_obs` alone (doors and lights), with their
  `scene_obs` index, sign and threshold taken from `TASK_SPECS` (the dataset reader's PA-RL reward).
- `PARL_TASKS` / `PARL_INSTRUCTION`: PA-RL's (and Cal-QL's) four-task CALVIN setting.

Pure Python and numpy: importing it loads no simulator.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BLOCKS", "STATE_VALUES", "TASK_NAMES", "TASK_CATEGORIES", "TASK_RULES", "INSTRUCTIONS", "TASK_SPECS",
    "SCENE_STATE_TASKS", "PARL_TASKS", "PARL_INSTRUCTION",
]

BLOCKS = ("red", "blue", "pink")
_DIRS = ("right", "left")
_COMPARTMENTS = ("slider_right", "slider_left")

#: Symbolic state keys and their values, in the official key and value order.
STATE_VALUES: dict[str, list[Any]] = {
    "led": [0, 1],
    "lightbulb": [0, 1],
    "slider": ["right", "left"],
    "drawer": ["closed", "open"],
    "red_block": ["table", "slider_right", "slider_left"],
    "blue_block": ["table", "slider_right", "slider_left"],
    "pink_block": ["table", "slider_right", "slider_left"],
    "grasped": [0],
}

Rule = dict[str, dict[str, Any]]  # {"condition": {...}, "effect": {...}}


def _rule(condition: dict[str, Any], effect: dict[str, Any] | None = None) -> Rule:
    return {"condition": condition, "effect": effect or {}}


def _build_rules() -> dict[str, list[Rule]]:
    """The 34 tasks in rules-dict order, each a list of (condition, effect) variants."""
    rules: dict[str, list[Rule]] = {}
    for kind in ("rotate", "push"):
        for c in BLOCKS:
            for d in _DIRS:
                rules[f"{kind}_{c}_block_{d}"] = [_rule({f"{c}_block": "table", "grasped": 0})]
    rules["move_slider_left"] = [_rule({"slider": "right", "grasped": 0}, {"slider": "left"})]
    rules["move_slider_right"] = [_rule({"slider": "left", "grasped": 0}, {"slider": "right"})]
    rules["open_drawer"] = [_rule({"drawer": "closed", "grasped": 0}, {"drawer": "open"})]
    rules["close_drawer"] = [_rule({"drawer": "open", "grasped": 0}, {"drawer": "closed"})]
    for c in BLOCKS:
        b, grab = f"{c}_block", {f"{c}_block": "grasped", "grasped": 1}
        rules[f"lift_{c}_block_table"] = [_rule({b: "table", "grasped": 0}, grab)]
        rules[f"lift_{c}_block_slider"] = [
            _rule({b: "slider_left", "slider": "right", "grasped": 0}, grab),
            _rule({b: "slider_right", "slider": "left", "grasped": 0}, grab),
        ]
        rules[f"lift_{c}_block_drawer"] = [_rule({b: "drawer", "drawer": "open", "grasped": 0}, grab)]
    rules["place_in_slider"] = [
        _rule({f"{c}_block": "grasped", "slider": p, "grasped": 1}, {f"{c}_block": f"slider_{p}", "grasped": 0})
        for c in BLOCKS for p in _DIRS
    ]
    rules["place_in_drawer"] = [
        _rule({f"{c}_block": "grasped", "drawer": "open", "grasped": 1}, {f"{c}_block": "drawer", "grasped": 0})
        for c in BLOCKS
    ]
    pairs = [(x, y) for x in BLOCKS for y in BLOCKS if x != y]
    rules["stack_block"] = [
        _rule({f"{x}_block": "grasped", f"{y}_block": "table", "grasped": 1},
              {f"{x}_block": "stacked_top", f"{y}_block": "stacked_bottom", "grasped": 0})
        for x, y in pairs
    ]
    rules["unstack_block"] = [
        _rule({f"{x}_block": "stacked_top", f"{y}_block": "stacked_bottom", "grasped": 0},
              {f"{x}_block": "table", f"{y}_block": "table"})
        for x, y in pairs
    ]
    for light in ("lightbulb", "led"):
        rules[f"turn_on_{light}"] = [_rule({light: 0, "grasped": 0}, {light: 1})]
        rules[f"turn_off_{light}"] = [_rule({light: 1, "grasped": 0}, {light: 0})]
    # the official dict order puts the lightbulb before the led, which the loop above already does
    rules["push_into_drawer"] = [
        _rule({f"{c}_block": "table", **{f"{o}_block": list(_COMPARTMENTS) for o in BLOCKS if o != c},
               "drawer": "open", "grasped": 0},
              {f"{c}_block": "drawer", "grasped": 0})
        for c in BLOCKS
    ]
    return rules


#: task name -> list of {"condition", "effect"} variants, in the official rules-dict order.
TASK_RULES: dict[str, list[Rule]] = _build_rules()
#: The 34 task names in rules-dict order (the population `np.random.choice` samples from).
TASK_NAMES: tuple[str, ...] = tuple(TASK_RULES)


def _category(task: str) -> int:
    if task.startswith(("rotate_", "push_")) and task != "push_into_drawer":
        return 1
    if task.startswith("move_slider"):
        return 2
    if task.endswith("_drawer") and task in ("open_drawer", "close_drawer"):
        return 3
    for suffix, cat in (("_table", 4), ("_slider", 5), ("_drawer", 6)):
        if task.startswith("lift_") and task.endswith(suffix):
            return cat
    if task.startswith("place_in_"):
        return 7
    if task.startswith("turn_"):
        return 8
    return {"push_into_drawer": 9, "stack_block": 10, "unstack_block": 11}[task]


#: task name -> category 1..11; a feasible chain never repeats a category.
TASK_CATEGORIES: dict[str, int] = {t: _category(t) for t in TASK_NAMES}


def _load_instructions() -> dict[str, str]:
    """The 34 evaluation instructions (conf/annotations/new_playtable_validation.yaml, first entry)."""
    out: dict[str, str] = {}
    for c in BLOCKS:
        for d in _DIRS:
            out[f"rotate_{c}_block_{d}"] = f"take the {c} block and rotate it to the {d}"
            out[f"push_{c}_block_{d}"] = f"go push the {c} block {d}"
    for d in _DIRS:
        out[f"move_slider_{d}"] = f"push the sliding door to the {d} side"
    out["open_drawer"] = "pull the handle to open the drawer"
    out["close_drawer"] = "push the handle to close the drawer"
    for c in BLOCKS:
        out[f"lift_{c}_block_table"] = f"grasp and lift the {c} block"
        out[f"lift_{c}_block_slider"] = f"lift the {c} block from the sliding cabinet"
        out[f"lift_{c}_block_drawer"] = f"Take the {c} block from the drawer"
    out["place_in_slider"] = "store the grasped block in the sliding cabinet"
    out["place_in_drawer"] = "store the grasped block in the drawer"
    out["push_into_drawer"] = "slide the block that it falls into the drawer"
    out["stack_block"] = "stack the grasped block"
    out["unstack_block"] = "remove the stacked block"
    for on in ("on", "off"):
        out[f"turn_{on}_lightbulb"] = f"use the switch to turn {on} the light bulb"
        out[f"turn_{on}_led"] = f"press the button to turn {on} the led light"
    return {t: out[t] for t in TASK_NAMES}


#: task name -> the instruction string the evaluation gives the policy.
INSTRUCTIONS: dict[str, str] = _load_instructions()


def _task_specs() -> dict[str, list[Any]]:
    specs: dict[str, list[Any]] = {}
    for c in BLOCKS:
        specs[f"rotate_{c}_block_right"] = ["rotate_object", f"block_{c}", -60]
        specs[f"rotate_{c}_block_left"] = ["rotate_object", f"block_{c}", 60]
    for c in BLOCKS:
        specs[f"push_{c}_block_right"] = ["push_object", f"block_{c}", 0.1, 0]
        specs[f"push_{c}_block_left"] = ["push_object", f"block_{c}", -0.1, 0]
    specs["move_slider_left"] = ["move_door_rel", "base__slide", 0.15]
    specs["move_slider_right"] = ["move_door_rel", "base__slide", -0.15]
    specs["open_drawer"] = ["move_door_rel", "base__drawer", 0.12]
    specs["close_drawer"] = ["move_door_rel", "base__drawer", -0.12]
    for c in BLOCKS:
        specs[f"lift_{c}_block_table"] = ["lift_object", f"block_{c}", 0.05, "table", "base_link"]
        specs[f"lift_{c}_block_slider"] = ["lift_object", f"block_{c}", 0.03, "table", "plank_link"]
        specs[f"lift_{c}_block_drawer"] = ["lift_object", f"block_{c}", 0.05, "table", "drawer_link"]
    specs["place_in_slider"] = ["place_object", "table", "plank_link"]
    specs["place_in_drawer"] = ["place_object", "table", "drawer_link"]
    specs["stack_block"] = ["stack_objects"]
    specs["unstack_block"] = ["unstack_objects"]
    for light in ("lightbulb", "led"):
        specs[f"turn_on_{light}"] = ["toggle_light", light, 0, 1]
        specs[f"turn_off_{light}"] = ["toggle_light", light, 1, 0]
    specs["push_into_drawer"] = ["push_object_into", [f"block_{c}" for c in BLOCKS], "table", "base_link",
                                 "table", "drawer_link"]
    return specs


#: task name -> [success rule name, *arguments], as in new_playtable_tasks.yaml (thresholds in metres, degrees,
#: or logical light states).
TASK_SPECS: dict[str, list[Any]] = _task_specs()

#: `scene_obs` index of the door joints and lights (the layout: `vla_parl.envs.calvin.scene.SCENE_OBS_LAYOUT`).
_SCENE_OBS_INDEX = {"base__slide": 0, "base__drawer": 1, "lightbulb": 4, "led": 5}


def _scene_state_tasks() -> dict[str, tuple[int, int, float]]:
    out: dict[str, tuple[int, int, float]] = {}
    for task, (rule, *args) in TASK_SPECS.items():
        if rule == "move_door_rel":          # the joint moved by more than the signed threshold
            joint, threshold = args
            out[task] = (_SCENE_OBS_INDEX[joint], 1 if threshold > 0 else -1, abs(threshold))
        elif rule == "toggle_light":         # the logical state went start → end (0/1: a change beyond 0.5)
            light, start, end = args
            out[task] = (_SCENE_OBS_INDEX[light], end - start, 0.5)
    return out


#: task → (scene_obs index, sign, threshold): complete when sign·(end − start) > threshold. The tasks whose success
#: `scene_obs` decides alone; contact-based ones (lift, push, stack…) need the simulator's contacts.
SCENE_STATE_TASKS: dict[str, tuple[int, int, float]] = _scene_state_tasks()

#: The four target subtasks of PA-RL's (and Cal-QL's) CALVIN setting, in any order within one episode.
PARL_TASKS: tuple[str, ...] = ("open_drawer", "turn_on_lightbulb", "move_slider_left", "turn_on_led")
#: The instruction OpenVLA gets in that setting: the official sentences of the four subtasks.
PARL_INSTRUCTION = (", ".join(INSTRUCTIONS[t] for t in PARL_TASKS[:-1])
                    + f" and {INSTRUCTIONS[PARL_TASKS[-1]]}")
