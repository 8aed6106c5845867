"""Greedy action inference: latency, actions/s and peak memory at several batch sizes.

Two timings per batch size: `end_to_end` (predict_action: image preprocessing + prefill + 7 decode steps +
un-normalisation) and `model_only` (prefill + decode on preprocessed inputs). `batch_speedup` is the
actions/s at each batch size over the actions/s at batch 1, measured in the same run.
"""

from __future__ import annotations

import argparse
from typing import Any

from vla_parl.bench.models import add_model_arguments, build_benchmark_model, sample_images

__all__ = ["add_arguments", "run", "format_table"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from vla_parl.bench.timing import peak_memory_mb, reset_peak_memory, time_call
    model, device = build_benchmark_model(args)
    unnorm_key = sorted(model.norm_stats)[0]
    action_dim = model.get_action_dim(unnorm_key)
    rows = []
    for batch in args.batch_sizes:
        images = sample_images(batch)
        instructions = ["pick up the red block"] * batch
        pixel_values, prompts = model.prepare_inputs(images, instructions)
        pixel_values = pixel_values.to(device)
        reset_peak_memory(device)
        e2e = time_call(lambda: model.predict_action(images, instructions, unnorm_key=unnorm_key), device,
                        repeats=args.repeats)
        core = time_call(lambda: model.generate_action_tokens(pixel_values, prompts, action_dim), device,
                         repeats=args.repeats)
        rows.append({"batch_size": batch, "latency_s": e2e["median_s"], "actions_per_s": batch / e2e["median_s"],
                     "model_only_latency_s": core["median_s"], "model_only_actions_per_s": batch / core["median_s"],
                     "peak_memory_mb": peak_memory_mb(device)})
    base = rows[0]["actions_per_s"]
    for row in rows:
        row["batch_speedup"] = row["actions_per_s"] / base
    return {"benchmark": "inference", "model": args.model, "device": str(device), "dtype": str(model.dtype),
            "attn": model.attn_implementation, "threads": torch.get_num_threads(), "rows": rows}


def format_table(result: dict[str, Any]):
    from rich.table import Table

    table = Table(title=f"greedy inference — {result['model']} on {result['device']} ({result['dtype']}, "
                        f"{result['attn']})")
    for col in ("batch", "latency (ms)", "actions/s", "model-only ms", "speed-up vs batch 1", "peak MiB"):
        table.add_column(col, justify="right")
    for r in result["rows"]:
        table.add_row(str(r["batch_size"]), f"{1e3 * r['latency_s']:.1f}", f"{r['actions_per_s']:.1f}",
                      f"{1e3 * r['model_only_latency_s']:.1f}", f"{r['batch_speedup']:.2f}×",
                      f"{r['peak_memory_mb']:.0f}")
    return table
