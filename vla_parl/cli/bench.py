"""`vla-parl bench NAME`: run one benchmark, print a table, optionally write JSON."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

__all__ = ["register", "run_benchmark"]


def register(subparsers: argparse._SubParsersAction) -> None:
    from vla_parl.bench import BENCHMARKS

    parser = subparsers.add_parser("bench", help="run a benchmark (speed/memory ratios measured side by side)",
                                   description="Run a benchmark and print its table; --json FILE saves the figures.")
    names = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for name, module_name in BENCHMARKS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        sub = names.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0],
                               description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(handler=lambda args, m=module: run_benchmark(m, args))


def run_benchmark(module, args: argparse.Namespace) -> int:
    from rich.console import Console

    result = module.run(args)
    console = Console()
    # `bench all` (vla_parl.bench.suite) prints every benchmark's table, then its summary of ratios
    for table in (module.format_tables(result) if hasattr(module, "format_tables") else [module.format_table(result)]):
        console.print(table)
    if getattr(args, "json_path", None):
        Path(args.json_path).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json_path}")
    return 0
