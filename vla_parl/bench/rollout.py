"""Parallel rollouts: environment steps/s with 1, 2 and 4 env workers and one batched policy call per step.

For each worker count N the tabletop env runs in N subprocesses (`AsyncVectorEnv`; in-process for N = 1,
or for every N with `--vector sync`)
and the policy (the tiny OpenVLA's greedy `predict_action` by default) is called once per step for all N
environments. Timed after a warm-up; reported per N: env steps/s, the share of time in the policy and
in `env.step`, and `speedup_vs_1` = steps/s(N) / steps/s(1), all measured side by side in one run.
`--policy random` replaces the model with uniform random actions (the simulator-bound ceiling).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

__all__ = ["add_arguments", "run", "format_table"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="env worker counts")
    parser.add_argument("--task", default="lift")
    parser.add_argument("--env-image-size", type=int, default=64, help="camera frame side")
    parser.add_argument("--model-image-size", type=int, default=56, help="tiny model input side")
    parser.add_argument("--policy", choices=["tiny", "random"], default="tiny")
    parser.add_argument("--steps", type=int, default=40, help="vector steps timed per worker count")
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--vector", choices=["async", "sync"], default="async",
                        help="async: one subprocess per env (N > 1); sync: envs stepped in-process, policy batched")
    parser.add_argument("--context", default=None, help="multiprocessing start method (default: the platform's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the policy process")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the result as JSON here")


def _random_policy(seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return lambda obs: rng.uniform(-1, 1, size=(len(obs["image"]), 7)).astype(np.float32)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from vla_parl.rollout import ParallelRollout, make_rollout_env

    torch.set_num_threads(args.threads)
    if args.policy == "tiny":
        from vla_parl.models import openvla_tiny

        source: Any = openvla_tiny(image_size=args.model_image_size)
    else:
        source = _random_policy()
    rows = []
    for workers in args.workers:
        env = make_rollout_env(workers, args.task, asynchronous=args.vector == "async" and workers > 1,
                               context=args.context, image_size=args.env_image_size)
        runner = ParallelRollout(env, source)
        try:
            runner.collect(num_steps=args.warmup_steps * workers, seed=0)
            _, stats = runner.collect(num_steps=args.steps * workers, seed=1)
        finally:
            runner.close()
        rows.append({"workers": workers, **stats.as_dict(),
                     "policy_share": stats.policy_s / stats.wall_s, "env_share": stats.env_s / stats.wall_s})
    base = rows[0]["steps_per_s"]
    for row in rows:
        row["speedup_vs_1"] = row["steps_per_s"] / base
    return {"benchmark": "rollout", "policy": args.policy, "vector": args.vector, "task": args.task, "env_image_size": args.env_image_size,
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "rows": rows}


def format_table(result: dict[str, Any]):
    from rich.table import Table

    table = Table(title=f"parallel rollouts ({result['vector']}) — {result['policy']} policy, {result['task']} task, "
                        f"{result['cpu_count']} CPUs")
    for col in ("workers", "env steps/s", "speed-up vs 1", "policy share", "env share", "steps"):
        table.add_column(col, justify="right")
    for r in result["rows"]:
        table.add_row(str(r["workers"]), f"{r['steps_per_s']:.1f}", f"{r['speedup_vs_1']:.2f}×",
                      f"{100 * r['policy_share']:.0f}%", f"{100 * r['env_share']:.0f}%", str(r["env_steps"]))
    return table
