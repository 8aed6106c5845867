"""CALVIN's official evaluation sequences and the initial conditions they start from.

The evaluation draws 1000 chains of 5 instructions. Each chain starts in one of 192 symbolic initial
states and must be *feasible*: every task's precondition (`vla_parl.envs.calvin.tasks.TASK_RULES`) holds in
the state left by the previous tasks. This module reproduces the official generator bit for bit (numpy's
legacy global generator, `np.random.seed(i)` per initial state, a final shuffle under seed 0), and the
construction of the simulator's `robot_obs` / `scene_obs` from a symbolic state (FNV-1 seeding, slot
shuffle, yaw draws).

Pure numpy: no simulator is needed to list the sequences.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from vla_parl.envs.calvin.tasks import BLOCKS, STATE_VALUES, TASK_CATEGORIES, TASK_NAMES, TASK_RULES

__all__ = [
    "ROBOT_OBS", "initial_states", "valid_next_states", "is_feasible", "get_sequences",
    "fnv1_32", "initial_condition_seed", "get_env_state_for_initial_condition",
]

#: The fixed robot_obs every evaluation chain starts from.
ROBOT_OBS = np.array([0.02586889, -0.2313129, 0.5712808, 3.09045411, -0.02908596, 1.50013585, 0.07999963,
                      -1.21779124, 1.03987629, 2.11978254, -2.34205014, -0.87015899, 1.64119093, 0.55344928,
                      1.0])


def initial_states() -> list[dict[str, Any]]:
    """The 192 symbolic initial states, in Cartesian-product order (1–2 blocks on the table, ≤ 1 per
    compartment)."""
    out = []
    for values in itertools.product(*STATE_VALUES.values()):
        blocks = values[4:7]
        if blocks.count("table") in (1, 2) and blocks.count("slider_right") < 2 and blocks.count("slider_left") < 2:
            out.append(dict(zip(STATE_VALUES, values)))
    return out


def _holds(state: dict[str, Any], condition: dict[str, Any]) -> bool:
    return all(state[k] in v if isinstance(v, list) else state[k] == v for k, v in condition.items())


def valid_next_states(state: dict[str, Any], task: str) -> list[dict[str, Any]]:
    """The states reached by each variant of `task` whose condition holds in `state`."""
    return [{**state, **rule["effect"]} for rule in TASK_RULES[task] if _holds(state, rule["condition"])]


def is_feasible(state: dict[str, Any], tasks: tuple[str, ...] | list[str]) -> bool:
    """True when each task has exactly one matching variant in turn and all categories differ."""
    if len({TASK_CATEGORIES[t] for t in tasks}) != len(tasks):
        return False
    for task in tasks:
        nxt = valid_next_states(state, task)
        if len(nxt) != 1:
            return False
        state = nxt[0]
    return True


@contextlib.contextmanager
def _temp_seed(seed: int) -> Iterator[None]:
    """Seed numpy's legacy global generator, restoring its previous state afterwards."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


def _sequences_for_state(args: tuple[int, int, dict[str, Any]]) -> list[tuple[str, ...]]:
    """Quota feasible draws for initial state number `index`.

    As specified: `np.random.seed(index)`, then `np.random.choice(TASK_NAMES, 5, replace=False)` until
    the quota is met. Legacy `choice` without replacement is `permutation(34)[:5]`, i.e. a shuffle of
    `arange(34)`; a private `RandomState(index)` produces the same stream without touching the global
    generator, and shuffling in place skips `choice`'s per-call overhead (the tests check both equal).
    """
    index, quota, state = args
    rng = np.random.RandomState(index)
    base = np.arange(len(TASK_NAMES))
    perm = base.copy()
    out: list[tuple[str, ...]] = []
    while len(out) < quota:
        perm[:] = base
        rng.shuffle(perm)
        ids = perm[:5].tolist()
        if len({_CATEGORY_LIST[k] for k in ids}) < 5:
            continue
        seq = tuple(TASK_NAMES[k] for k in ids)
        if is_feasible(state, seq):
            out.append(seq)
    return out


_CATEGORY_LIST = [TASK_CATEGORIES[t] for t in TASK_NAMES]


def _cache_file(num_sequences: int) -> Path | None:
    root = os.environ.get("VLA_PARL_CACHE", str(Path.home() / ".cache" / "vla_parl"))
    if root.lower() in ("", "0", "off", "none"):
        return None
    return Path(root) / "calvin" / f"sequences_v1_{num_sequences}.json"


def _generate(num_sequences: int, num_workers: int) -> list[tuple[dict[str, Any], tuple[str, ...]]]:
    states = initial_states()
    quotas = [len(part) for part in np.array_split(np.arange(num_sequences), len(states))]
    jobs = [(i, q, s) for i, (s, q) in enumerate(zip(states, quotas))]
    if num_workers > 1:
        import multiprocessing as mp

        # fork where there is one: pure numpy work, and no `if __name__ == "__main__"` guard needed
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with mp.get_context(method).Pool(num_workers) as pool:
            per_state = pool.map(_sequences_for_state, jobs, chunksize=4)
    else:
        per_state = [_sequences_for_state(job) for job in jobs]
    pairs = [(dict(s), seq) for (_, _, s), seqs in zip(jobs, per_state) for seq in seqs]
    rng = np.random.RandomState(0)  # == np.random.seed(0); np.random.shuffle(pairs)
    rng.shuffle(pairs)
    return pairs


@functools.lru_cache(maxsize=4)
def _cached(num_sequences: int, num_workers: int, use_disk: bool) -> str:
    path = _cache_file(num_sequences) if use_disk else None
    if path is not None and path.is_file():
        return path.read_text()
    text = json.dumps([[s, list(seq)] for s, seq in _generate(num_sequences, num_workers)])
    if path is not None:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(text)
            tmp.replace(path)
    return text


def get_sequences(num_sequences: int = 1000, *, num_workers: int | None = None,
                  cache: bool = True) -> list[tuple[dict[str, Any], tuple[str, ...]]]:
    """The official evaluation chains, in the official order: `(initial_state, 5 task names)` pairs.

    `initial_state` maps the keys of `STATE_VALUES` (in that order) to plain Python ints / strings.
    Generation is rejection sampling (~7 M draws for 1000 chains: tens of CPU-seconds), spread over
    `num_workers` processes (default: all cores, at most 8) and cached on disk under
    `$VLA_PARL_CACHE/calvin/` (default `~/.cache/vla_parl`; `VLA_PARL_CACHE=off` or `cache=False`
    disables it). The global numpy random state is not touched.
    """
    workers = num_workers if num_workers is not None else min(8, os.cpu_count() or 1)
    data = json.loads(_cached(int(num_sequences), max(1, int(workers)), bool(cache)))
    return [(dict(state), tuple(seq)) for state, seq in data]


def fnv1_32(data: str | bytes) -> int:
    """FNV-1 32-bit with initial value 0 (what `pyhash.fnv1_32()` computes)."""
    h = 0
    for byte in data.encode() if isinstance(data, str) else data:
        h = (h * 16777619) & 0xFFFFFFFF
        h ^= byte
    return h


def initial_condition_seed(state: dict[str, Any]) -> int:
    """The seed of an initial condition: FNV-1 of `str(state.values())`."""
    return fnv1_32(str({k: state[k] for k in state}.values()))


_TABLE_SLOTS = ((5.00000896e-02, -1.20000177e-01, 4.59990009e-01), (2.29995412e-01, -1.19995140e-01, 4.59990010e-01))
_COMPARTMENT_POS = {
    "slider_left": (-2.40851662e-01, 9.24044687e-02, 4.60990009e-01),
    "slider_right": (7.03416330e-02, 9.24044687e-02, 4.60990009e-01),
}
_YAW_RANGE = (np.pi / 2 - np.pi / 8, np.pi / 2 + np.pi / 8)


def get_env_state_for_initial_condition(state: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """`(robot_obs [15], scene_obs [24])` for a symbolic initial state, as the official evaluation
    builds them (scene D block order red, blue, pink)."""
    slots = list(_TABLE_SLOTS)
    with _temp_seed(initial_condition_seed(state)):
        np.random.shuffle(slots)
        yaws = [np.random.uniform(*_YAW_RANGE) for _ in BLOCKS]
    scene_obs = np.zeros(24)
    scene_obs[0] = 0.28 if state["slider"] == "left" else 0.0
    scene_obs[1] = 0.22 if state["drawer"] == "open" else 0.0
    scene_obs[3] = 0.088 if state["lightbulb"] == 1 else 0.0
    scene_obs[4] = state["lightbulb"]
    scene_obs[5] = state["led"]
    table_slot = {"red": 0, "blue": 1 if state["red_block"] == "table" else 0, "pink": 1}
    for k, c in enumerate(BLOCKS):
        place = state[f"{c}_block"]
        pos = _COMPARTMENT_POS[place] if place in _COMPARTMENT_POS else slots[table_slot[c]]
        scene_obs[6 + 6 * k: 9 + 6 * k] = pos
        scene_obs[11 + 6 * k] = yaws[k]
    return ROBOT_OBS.copy(), scene_obs
