"""All benchmarks in one run (`vla-parl bench all`), with each headline figure as a ratio to its baseline.

In-process: inference (batched vs batch 1), sample (prefix-shared N = 32 vs naive; action optimization
overhead), memory (7B plan), rollout (4 vs 1 env workers), train_step (2-process DDP vs 1 process),
parl_step (one PA-RL iteration with vs without gradient checkpointing), robot_loop (robot-visible
latency with the learner idle vs training, requests during policy swaps; server + learner + robots as processes).
As subprocesses with `--json`, when present: `scripts/bench_data.py` (RLDS streaming, replay sampling) and
`scripts/bench_serving.py` (dynamic batching on vs off). A missing script is reported as skipped, a failing
benchmark as failed with its error; the others still run. `--quick` shrinks every benchmark to finish in
about two minutes on a 2-core CPU machine.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

__all__ = ["add_arguments", "run", "format_table", "format_tables", "headline", "MODULES", "SCRIPTS"]

_REPO_ROOT = Path(__file__).resolve().parents[2]

# name → (module, full-run overrides, quick overrides)
MODULES: dict[str, tuple[str, list[str], list[str]]] = {
    "inference": ("vla_parl.bench.inference", ["--threads", "1"],
                  ["--threads", "1", "--image-size", "56", "--batch-sizes", "1", "8", "--repeats", "2"]),
    "sample": ("vla_parl.bench.sample", ["--threads", "1"],
               ["--threads", "1", "--image-size", "56", "--num-samples", "8", "32", "--repeats", "1",
                "--refine-steps", "3"]),
    "memory": ("vla_parl.bench.memory", [], []),
    "rollout": ("vla_parl.bench.rollout", [], ["--workers", "1", "4", "--steps", "8", "--warmup-steps", "2"]),
    "train_step": ("vla_parl.bench.train_step", [], ["--strategies", "ddp", "--steps", "3", "--batch-size", "4"]),
    "parl_step": ("vla_parl.bench.parl_step", ["--threads", "1"],
                  ["--threads", "1", "--image-size", "56", "--batch-size", "4", "--repeats", "1", "--refine-steps", "3"]),
    "robot_loop": ("vla_parl.bench.robot_loop", [], ["--quick"]),
}
# name → (script, full-run arguments, quick arguments)
SCRIPTS: dict[str, tuple[str, list[str], list[str]]] = {
    "data": ("scripts/bench_data.py", [],
             ["--epochs", "2", "--rlds-episodes", "4", "--rlds-steps", "20", "--rlds-image", "64",
              "--replay-episodes", "10", "--replay-steps", "20", "--replay-image", "64", "--batches", "5",
              "--scale-episodes", "2", "--scale-steps", "10", "--scale-image", "32"]),
    "serving": ("scripts/bench_serving.py", [], ["--concurrency", "1", "8", "--duration", "2", "--warmup", "0.5"]),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small settings: about two minutes on 2 CPU cores")
    parser.add_argument("--only", nargs="+", default=None, choices=[*MODULES, *SCRIPTS],
                        help="run just these benchmarks")
    parser.add_argument("--json", dest="json_path", default=None, help="also write every result as JSON here")


def _run_module(module_name: str, argv: list[str]) -> dict[str, Any]:
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on bad arguments; report it as this benchmark's failure
        raise ValueError(f"bad arguments {argv}") from exc
    return module.run(args)


def _run_script(script: Path, argv: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(_REPO_ROOT), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.run([sys.executable, str(script), *argv, "--json", str(out)], cwd=_REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=1800)
        if not out.is_file():
            raise RuntimeError(f"{script.name} exited {proc.returncode} without a result:\n{proc.stderr[-2000:]}")
        result = json.loads(out.read_text())
        result["exit_status"] = proc.returncode
        return result


def _median_sps(res: dict[str, Any]) -> float:
    return statistics.median(e["samples_per_s"] for e in res["epochs"])


# name → (figure, baseline, function of the result giving (ratio or None, value text))
_HEADLINES: dict[str, tuple[str, str, Callable[[dict[str, Any]], tuple[float | None, str]]]] = {
    "inference": ("batched greedy actions/s (largest batch)", "batch 1",
                  lambda r: (r["rows"][-1]["batch_speedup"],
                             f"{r['rows'][-1]['actions_per_s']:.1f} actions/s at batch {r['rows'][-1]['batch_size']}")),
    "sample": ("N=32 candidates, prefix-shared", "naive (N generations)",
               lambda r: (r.get("speedup_n32_vs_naive"), f"{1e3 * next(x['shared_s'] for x in r['rows'] if x['num_samples'] == 32):.1f} ms")),
    "action_optimization": ("re-rank + local steps on N=32 (time)", "sampling N=32",
                            lambda r: (r.get("refine_overhead_n32"), f"critic: {r['refine_critic']}, "
                                       f"{r['refine_steps']} steps")),
    "memory": ("7B per-GPU memory, 1 GPU LoRA (GC)", "1 GPU LoRA without GC",
               lambda r: (r["rows"][0]["total_gc"] / r["rows"][0]["total_no_gc"],
                          f"{r['rows'][0]['total_gc']:.1f} GiB; QLoRA {r['rows'][1]['total_gc']:.1f}; "
                          f"8-GPU FSDP full FT {r['rows'][3]['total_gc']:.1f}")),
    "rollout": ("env steps/s, most workers", "1 worker",
                lambda r: (r["rows"][-1]["speedup_vs_1"],
                           f"{r['rows'][-1]['steps_per_s']:.1f} steps/s with {r['rows'][-1]['workers']} workers")),
    "train_step": ("SFT samples/s, data-parallel", "1 process",
                   lambda r: (r["rows"][1]["speedup_vs_single"],
                              f"{r['rows'][1]['strategy']} × {r['rows'][1]['processes']}: "
                              f"{r['rows'][1]['samples_per_s']:.1f} samples/s")),
    "parl_step": ("PA-RL iteration time, gradient checkpointing on", "checkpointing off",
                  lambda r: (r["checkpointing_time_ratio"],
                             f"{1e3 * r['rows'][1]['step_s']:.0f} ms per iteration of {r['batch_size']} states "
                             f"(off); peak memory ×{r['checkpointing_memory_ratio']:.2f} with it")),
    "data": ("RLDS streaming / replay sampling", "—",
             lambda r: (None, f"{_median_sps(r['rlds_streaming']):,.0f} / {_median_sps(r['replay_sampling']):,.0f} "
                              f"samples/s; RSS flat: {r['rlds_streaming']['rss_flat'] and r['replay_sampling']['rss_flat']}"
                              + (f"; peak RSS 16x vs 1x: SFT {r['scale']['peak_rss_growth']['sft']:+.1%}, offline "
                                 f"pool {r['scale']['peak_rss_growth']['pool']:+.1%}" if "scale" in r else ""))),
    "robot_loop": ("robot p99 action latency, learner training", "learner idle",
                   lambda r: (r["rows"][1]["p99_ms"] / r["rows"][0]["p99_ms"],
                              f"p99 {r['rows'][0]['p99_ms']:.0f} → {r['rows'][1]['p99_ms']:.0f} ms; longest request "
                              f"during a swap: " + ("no swap seen" if r["swaps"]["ratio"] is None else
                                                    f"{r['swaps']['ratio']:.2f}× p99 (target ≤ 2×)") +
                              f"; {r['episodes_per_min']:.1f} episodes/min; {r['failed_requests']} failed")),
    "serving": ("req/s, dynamic batching on", "batching off (unbatched)",
                lambda r: (r["results"]["on"][-1]["rps"] / r["results"]["off"][-1]["rps"],
                           f"{r['results']['on'][-1]['rps']:.1f} req/s at {r['results']['on'][-1]['clients']} clients")),
}


def headline(name: str, result: dict[str, Any]) -> dict[str, Any]:
    figure, baseline, fn = _HEADLINES[name]
    ratio, value = fn(result)
    return {"name": name, "figure": figure, "baseline": baseline, "ratio": ratio, "value": value}


def run(args: argparse.Namespace) -> dict[str, Any]:
    selected = args.only or [*MODULES, *SCRIPTS]
    results: dict[str, Any] = {}
    status: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for name in selected:
        started = time.perf_counter()
        try:
            if name in MODULES:
                module_name, full, quick = MODULES[name]
                results[name] = _run_module(module_name, quick if args.quick else full)
            else:
                script, full, quick = SCRIPTS[name]
                path = _REPO_ROOT / script
                if not path.is_file():
                    status[name] = f"skipped: {script} not present"
                    continue
                results[name] = _run_script(path, quick if args.quick else full)
            status[name] = "ok"
        except Exception as exc:  # one broken benchmark must not hide the others
            status[name] = f"failed: {type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            seconds[name] = time.perf_counter() - started
    rows = []
    for name in selected:
        if status.get(name) != "ok":
            continue
        keys = ["sample", "action_optimization"] if name == "sample" else [name]
        for key in keys:
            try:
                rows.append(headline(key, results[name]))
            except (KeyError, IndexError, StopIteration, TypeError, ZeroDivisionError) as exc:
                rows.append({"name": key, "figure": "?", "baseline": "?", "ratio": None,
                             "value": f"result lacks the headline figure ({type(exc).__name__}: {exc})"})
    return {"benchmark": "all", "quick": bool(args.quick), "status": status, "seconds": seconds,
            "headlines": rows, "results": results}


def format_table(result: dict[str, Any]):
    from rich.table import Table

    table = Table(title="vla-parl benchmarks" + (" (--quick)" if result["quick"] else "") + " — ratios vs baselines")
    for col, justify in (("benchmark", "left"), ("figure", "left"), ("baseline", "left"), ("ratio", "right"),
                         ("value", "left")):
        table.add_column(col, justify=justify)
    for row in result["headlines"]:
        ratio = f"{row['ratio']:.2f}×" if row["ratio"] is not None else "—"
        table.add_row(row["name"], row["figure"], row["baseline"], ratio, row["value"])
    notes = [f"{name}: {state}" for name, state in result["status"].items() if state != "ok"]
    took = ", ".join(f"{k} {v:.0f}s" for k, v in result["seconds"].items())
    table.caption = "; ".join(notes + [f"time: {took}"])
    return table


def format_tables(result: dict[str, Any]) -> list:
    """Each in-process benchmark's own table, then the ratio summary (what `vla-parl bench all` prints)."""
    tables = [importlib.import_module(MODULES[name][0]).format_table(res)
              for name, res in result["results"].items() if name in MODULES]
    return [*tables, format_table(result)]
