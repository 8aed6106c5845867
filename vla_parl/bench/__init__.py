"""Benchmarks, runnable as `vla-parl bench NAME` or `python scripts/bench_NAME.py`.

Each benchmark module defines `add_arguments(parser)`, `run(args) -> dict` (JSON-serialisable result) and
`format_table(result) -> rich Table`. Figures are ratios measured side by side in one run.
"""

BENCHMARKS = {
    "inference": "vla_parl.bench.inference",
    "sample": "vla_parl.bench.sample",
    "memory": "vla_parl.bench.memory",
    "rollout": "vla_parl.bench.rollout",
    "train_step": "vla_parl.bench.train_step",
    "parl_step": "vla_parl.bench.parl_step",
    "gpu": "vla_parl.bench.gpu",
    "faults": "vla_parl.bench.faults",
    "robot_loop": "vla_parl.bench.robot_loop",
    "all": "vla_parl.bench.suite",
}

__all__ = ["BENCHMARKS"]
