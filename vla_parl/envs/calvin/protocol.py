"""CALVIN long-horizon evaluation (LH-MTLC): 5-instruction chains in scene D, 360 steps per subtask.

    from functools import partial
    from vla_parl.envs.calvin.scene import CalvinSceneEnv
    from vla_parl.envs.calvin.protocol import evaluate_calvin
    results = evaluate_calvin(CalvinSceneEnv, make_policy, "runs/calvin_eval", num_sequences=1000, num_workers=4)

**Policy protocol** (`CalvinPolicy`): `reset()` is called once at the start of every subtask;
`act(obs, instruction) -> np.ndarray[7]` returns a relative action `[dx, dy, dz, droll, dpitch, dyaw,
gripper]` in [-1, 1] (×0.02 m, ×0.05 rad in the env); the gripper value is mapped to +1 (open) when
> 0, else −1 (close). `obs` is the env's observation dict (`rgb_obs.rgb_static` uint8 [200, 200, 3],
`robot_obs` [15], `scene_obs` [24], …); `instruction` is the official evaluation sentence.

**Env protocol** (`CalvinEnv`): `reset(robot_obs, scene_obs)`, `get_obs()`, `step(action)` (gym 4- or
5-tuple), `get_info()`, `completed_tasks(start_info, end_info, tasks) -> set[str]`. Implemented by our
`vla_parl.envs.calvin.scene.CalvinSceneEnv` and by the official-env adapter
`vla_parl.envs.calvin.official.OfficialCalvinEnv`.

Per chain: reset to the chain's initial condition; for each subtask, `policy.reset()`, record
`start_info`, then step up to `ep_len` times until the oracle reports the subtask; a failure ends the
chain, a success moves on without a reset. Results are appended per chain to `<out>/chains.jsonl`
(a rerun skips chains already there), then summarised in `<out>/results.json` (the official format
`{epoch: {avg_seq_len, chain_sr, task_info}}`, plus `env`: the env's `describe()` — which simulator and
which calvin_env behaviour, e.g. `{"simulator": "ours", "env_version": "1431a46"}`) and plotted in
`<out>/success_rates.png`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence, runtime_checkable

import numpy as np

from vla_parl.envs.calvin.sequences import get_env_state_for_initial_condition, get_sequences
from vla_parl.envs.calvin.tasks import INSTRUCTIONS

__all__ = [
    "EP_LEN", "NUM_SEQUENCES", "CalvinPolicy", "CalvinEnv", "ChainResult", "get_sequences",
    "to_env_action", "run_chain", "summarize", "plot_results", "evaluate_calvin",
]

EP_LEN = 360
NUM_SEQUENCES = 1000


@runtime_checkable
class CalvinPolicy(Protocol):
    """What the evaluation needs from a policy (see the module docstring)."""

    def reset(self) -> None:
        """Called once at the start of every subtask."""
        ...

    def act(self, obs: dict[str, Any], instruction: str) -> np.ndarray:
        """A 7-D relative action for `obs` under the language `instruction`."""
        ...


@runtime_checkable
class CalvinEnv(Protocol):
    """The simulator contract shared by our CALVIN scene and the official-env adapter."""

    def reset(self, robot_obs: Any = None, scene_obs: Any = None) -> dict[str, Any]: ...

    def get_obs(self) -> dict[str, Any]: ...

    def step(self, action: Any) -> tuple: ...

    def get_info(self) -> dict[str, Any]: ...

    def completed_tasks(self, start_info: dict, end_info: dict, tasks: Iterable[str] | None = None) -> set[str]: ...


@dataclass
class ChainResult:
    """One evaluated chain: `result` = number of consecutive successful subtasks (0–5)."""

    index: int
    initial_state: dict[str, Any]
    tasks: list[str]
    result: int
    steps: list[int] = field(default_factory=list)  # steps used per attempted subtask
    seconds: float = 0.0


def to_env_action(action: Any) -> np.ndarray:
    """A policy's 7-D action as the env takes it: float64, gripper exactly +1 (> 0) or −1."""
    a = np.asarray(action, dtype=np.float64).reshape(-1).copy()
    if a.shape != (7,):
        raise ValueError(f"a CALVIN policy must return 7 values (xyz, euler, gripper), got shape {a.shape}")
    a[6] = 1.0 if a[6] > 0 else -1.0
    return a


def _step(env: CalvinEnv, action: np.ndarray) -> tuple[dict, dict]:
    out = env.step(action)
    return out[0], out[-1]  # gym 4-tuple (obs, r, done, info) or gymnasium 5-tuple


def run_chain(env: CalvinEnv, policy: CalvinPolicy, initial_state: dict[str, Any], tasks: Sequence[str], *,
              ep_len: int = EP_LEN, index: int = 0) -> ChainResult:
    """Evaluate one chain of subtasks from a symbolic initial state (see the module docstring)."""
    t0 = time.perf_counter()
    robot_obs, scene_obs = get_env_state_for_initial_condition(initial_state)
    env.reset(robot_obs=robot_obs, scene_obs=scene_obs)
    result, steps = 0, []
    for subtask in tasks:
        obs = env.get_obs()
        instruction = INSTRUCTIONS[subtask]
        policy.reset()
        start_info = env.get_info()
        success, used = False, 0
        for used in range(1, ep_len + 1):
            obs, info = _step(env, to_env_action(policy.act(obs, instruction)))
            if env.completed_tasks(start_info, info, {subtask}):
                success = True
                break
        steps.append(used)
        if not success:
            break
        result += 1
    return ChainResult(index=index, initial_state=dict(initial_state), tasks=list(tasks), result=result,
                       steps=steps, seconds=time.perf_counter() - t0)


def summarize(results: Iterable[ChainResult | dict]) -> dict[str, Any]:
    """`{avg_seq_len, chain_sr {1..5}, task_info {task: {success, total}}, num_sequences}`.

    SR_k = fraction of chains with ≥ k successes; avg_seq_len = mean result = Σ_k SR_k. Per task,
    completed subtasks count as successes and only the first failed subtask as a failure. Rows that
    carry an `env` entry (`evaluate_calvin` adds the env's `describe()`) add `env` to the summary:
    which simulator and calvin_env behaviour produced the numbers."""
    rows = [r if isinstance(r, dict) else asdict(r) for r in results]
    n = len(rows)
    counts = np.array([r["result"] for r in rows], dtype=float)
    chain_sr = {str(k): float((counts >= k).mean()) if n else 0.0 for k in range(1, 6)}
    task_info: dict[str, dict[str, int]] = {}
    for r in rows:
        for k, task in enumerate(r["tasks"][: r["result"] + 1]):
            entry = task_info.setdefault(task, {"success": 0, "total": 0})
            entry["total"] += 1
            entry["success"] += int(k < r["result"])
    summary = {"avg_seq_len": float(counts.mean()) if n else 0.0, "chain_sr": chain_sr,
               "task_info": dict(sorted(task_info.items())), "num_sequences": n}
    envs = [e for e in dict.fromkeys(json.dumps(r["env"], sort_keys=True) for r in rows if r.get("env"))]
    if envs:  # which simulator / calvin_env behaviour produced the rows (a list if they were mixed)
        summary["env"] = json.loads(envs[0]) if len(envs) == 1 else [json.loads(e) for e in envs]
    return summary


def plot_results(summary: dict[str, Any], path: str | os.PathLike, title: str = "CALVIN") -> Path:
    """Bar plots of SR_1..5 and per-task success rates; writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [1, 3]})
    ks = list(summary["chain_sr"])
    ax1.bar(ks, [summary["chain_sr"][k] for k in ks], color="tab:blue")
    ax1.set(ylim=(0, 1), xlabel="tasks completed in a row", ylabel="success rate",
            title=f"{title}: avg len {summary['avg_seq_len']:.2f} (n={summary['num_sequences']})")
    tasks = list(summary["task_info"])
    rates = [summary["task_info"][t]["success"] / max(1, summary["task_info"][t]["total"]) for t in tasks]
    ax2.bar(range(len(tasks)), rates, color="tab:green")
    ax2.set_xticks(range(len(tasks)), tasks, rotation=75, ha="right", fontsize=7)
    ax2.set(ylim=(0, 1), title="per-task success (first failure counted)")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


# ----- parallel, resumable driver -------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(make_env: Callable[[], CalvinEnv], make_policy: Callable[[], CalvinPolicy], ep_len: int) -> None:
    env = make_env()
    describe = getattr(env, "describe", None)
    _WORKER.update(env=env, policy=make_policy(), ep_len=ep_len, env_info=describe() if describe else None)


def _run_job(job: tuple[int, dict[str, Any], list[str]]) -> dict[str, Any]:
    index, state, tasks = job
    row = asdict(run_chain(_WORKER["env"], _WORKER["policy"], state, tasks, ep_len=_WORKER["ep_len"], index=index))
    if _WORKER["env_info"] is not None:
        row["env"] = _WORKER["env_info"]
    return row


def _load_done(path: Path) -> dict[int, dict[str, Any]]:
    done: dict[int, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by an interrupted run
                continue
            done[int(row["index"])] = row
    return done


def evaluate_calvin(make_env: Callable[[], CalvinEnv], make_policy: Callable[[], CalvinPolicy],
                    out_dir: str | os.PathLike, *, num_sequences: int = NUM_SEQUENCES,
                    sequences: Sequence[tuple[dict[str, Any], Sequence[str]]] | None = None,
                    chains: Sequence[int] | None = None, num_workers: int = 1, ep_len: int = EP_LEN,
                    epoch: str | int = 0, progress: bool = True, plot: bool = True) -> dict[str, Any]:
    """Run the long-horizon evaluation and write `chains.jsonl`, `results.json`, `success_rates.png`.

    Args:
        make_env / make_policy: zero-argument factories (picklable, e.g. a class or
            `functools.partial`, when `num_workers > 1`): each worker builds one env and one policy.
        out_dir: results folder; chains already in its `chains.jsonl` are not run again (resume).
        num_sequences: how many of the official sequences to generate (1000 in the benchmark).
        sequences: explicit `(initial_state, tasks)` chains instead of the official ones.
        chains: evaluate only these indices of the sequence list (default: all `num_sequences`).
        num_workers: env processes (1 = in this process). Workers are spawned, so a script that
            uses them needs the usual `if __name__ == "__main__":` guard.
        ep_len: steps per subtask (360 in the benchmark).
    Returns the summary (`summarize`) that is also stored under `results.json[str(epoch)]`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sequences = list(sequences) if sequences is not None else get_sequences(num_sequences)
    wanted = list(range(len(sequences))) if chains is None else [int(i) for i in chains]
    log = out / "chains.jsonl"
    done = {i: row for i, row in _load_done(log).items() if i in set(wanted)}
    jobs = [(i, sequences[i][0], list(sequences[i][1])) for i in wanted if i not in done]
    if log.is_file() and log.stat().st_size and not log.read_bytes().endswith(b"\n"):
        with open(log, "a") as f:  # an interrupted run left half a line: start a fresh one
            f.write("\n")
    with open(log, "a") as f, _progress(progress, len(wanted), len(done)) as advance:
        def record(row: dict[str, Any]) -> None:
            f.write(json.dumps(row) + "\n")
            f.flush()
            done[row["index"]] = row
            advance(row)

        if not jobs:
            pass
        elif num_workers <= 1 or len(jobs) == 1:
            _init_worker(make_env, make_policy, ep_len)
            try:
                for job in jobs:
                    record(_run_job(job))
            finally:
                env = _WORKER.pop("env", None)
                _WORKER.clear()
                if env is not None and hasattr(env, "close"):
                    env.close()
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            with ctx.Pool(min(num_workers, len(jobs)), initializer=_init_worker,
                          initargs=(make_env, make_policy, ep_len)) as pool:
                for row in pool.imap_unordered(_run_job, jobs):
                    record(row)
    summary = summarize([done[i] for i in wanted])
    results_path = out / "results.json"
    all_results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    all_results[str(epoch)] = summary
    results_path.write_text(json.dumps(all_results, indent=2))
    if plot:
        plot_results(summary, out / "success_rates.png")
    return summary


class _progress:
    """A rich progress bar with ETA and the running average length (a no-op when disabled)."""

    def __init__(self, enabled: bool, total: int, completed: int) -> None:
        self.enabled, self.total, self.completed = enabled, total, completed
        self.lengths: list[int] = []

    def __enter__(self) -> Callable[[dict[str, Any]], None]:
        if not self.enabled:
            return lambda row: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("CALVIN chains"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[avg]}"))
        self.bar.__enter__()
        self.task = self.bar.add_task("eval", total=self.total, completed=self.completed, avg="")

        def advance(row: dict[str, Any]) -> None:
            self.lengths.append(row["result"])
            self.bar.update(self.task, advance=1, avg=f"avg len (new) {np.mean(self.lengths):.2f}")

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)
