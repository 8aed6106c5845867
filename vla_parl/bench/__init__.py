"""Benchmarks, runnable as `vla-parl bench NAME` or `python scripts/bench_NAME.py`.

Each benchmark module defines `add_arguments(parser)`, `run(args) -> dict` (JSON-serialisable result) and
`format_table(result) -> rich Table`. Figures are ratios measured side by side in one run.
"""

BENCHMARKS = {
    "inference": "vla_parl.bench.inference",
    "sample": "vla_parl.bench.sample",
}

__all__ = ["BENCHMARKS"]
