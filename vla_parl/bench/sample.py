"""Candidate sampling: N candidates with a shared prefix vs N independent generations, and refinement cost.

Per N: `shared` (one prefill, KV cache shared by N continuations), `naive` (N separate generations, one
prefill each — how the official PA-RL code sampled), and `batched_unshared` (one batch of N rows that
prefills the same prefix N times). `greedy` is one greedy action. `refine` is the critic's re-ranking
(top-k) + T local gradient steps on the N = 32 candidates, measured for two critics: `official` (the
PA-RL image preset: ResNet-18 at 112 px, 10 Q heads of 512-512-512) and `scaled` (ResNet-18 at 64 px,
2 heads of 256-256, sized like the tiny VLA's demo critic). On the tiny CPU model the official critic is
larger than the VLA itself, so its overhead says little about the 7B, where sampling dominates.

Keys: `ratio_n32_vs_greedy` = t(shared, N=32) / t(greedy); `speedup_n32_vs_naive` = t(naive, 32) /
t(shared, 32); `refine_overhead_n32` = t(refine) / t(shared, 32) with the critic matched to the model
(scaled for tiny, official otherwise); `refine_overhead_n32_<critic>` for each critic.
"""

from __future__ import annotations

import argparse
from typing import Any

from vla_parl.bench.models import add_model_arguments, build_benchmark_model, sample_images

__all__ = ["add_arguments", "run", "format_table"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--num-samples", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--batch-size", type=int, default=1, help="observations per call")
    parser.add_argument("--refine-steps", type=int, default=10, help="local gradient steps (T)")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--skip-naive-above", type=int, default=64,
                        help="skip the naive baseline for N above this (it is N× slower)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    from vla_parl.bench.timing import peak_memory_mb, reset_peak_memory, time_call
    from vla_parl.critic import critic_resnet18
    from vla_parl.parl import ImprovementConfig, ImprovementOperator
    from vla_parl.policy.base import Observation
    from vla_parl.policy.openvla import OpenVLAPolicy

    model, device = build_benchmark_model(args)
    policy = OpenVLAPolicy(model, action_dim=7)
    images = sample_images(args.batch_size)
    instructions = ["pick up the red block"] * args.batch_size
    pixel_values, prompts = model.prepare_inputs(images, instructions)
    pixel_values = pixel_values.to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    timed = lambda fn: time_call(fn, device, repeats=args.repeats)["median_s"]  # noqa: E731

    greedy = timed(lambda: model.generate_action_tokens(pixel_values, prompts, 7))
    rows = []
    for n in args.num_samples:
        reset_peak_memory(device)
        shared = timed(lambda: policy.sample_tokens(pixel_values, prompts, n, generator=gen))
        shared_mem = peak_memory_mb(device)
        unshared = timed(lambda: policy.sample_tokens(pixel_values, prompts, n, generator=gen, share_prefix=False))
        naive = None
        if n <= args.skip_naive_above:
            naive = time_call(lambda: [policy.sample_tokens(pixel_values, prompts, 1, generator=gen) for _ in range(n)],
                              device, warmup=0, repeats=1)["median_s"]
        rows.append({"num_samples": n, "shared_s": shared, "batched_unshared_s": unshared, "naive_s": naive,
                     "shared_vs_greedy": shared / greedy, "speedup_vs_naive": naive / shared if naive else None,
                     "peak_memory_mb": shared_mem})

    # critic re-ranking + local steps on the N = 32 candidates
    critics = {"official": critic_resnet18(action_dim=7),
               "scaled": critic_resnet18(action_dim=7, image_size=64, hidden_dims=(256, 256), num_q_heads=2)}
    settings = ImprovementConfig(top_k=args.top_k, num_steps=args.refine_steps)
    obs = Observation(images=torch.from_numpy(np.stack(images)).to(device), instructions=instructions)
    candidates = model.action_tokenizer.decode(policy.sample_tokens(pixel_values, prompts, 32, generator=gen)[0])
    refine = {name: timed(lambda c=critic.to(device).eval(): ImprovementOperator(c, config=settings).improve(
                  obs, candidates=candidates))
              for name, critic in critics.items()}
    matched = "scaled" if args.model == "tiny" else "official"
    by_n = {r["num_samples"]: r for r in rows}
    result: dict[str, Any] = {"benchmark": "sample", "model": args.model, "device": str(device),
                              "dtype": str(model.dtype), "batch_size": args.batch_size, "greedy_s": greedy,
                              "rows": rows, "refine_s_n32": refine, "refine_critic": matched,
                              "refine_steps": args.refine_steps, "top_k": args.top_k,
                              "threads": torch.get_num_threads()}
    if 32 in by_n:
        result["ratio_n32_vs_greedy"] = by_n[32]["shared_s"] / greedy
        result["speedup_n32_vs_naive"] = by_n[32]["speedup_vs_naive"]
        for name, seconds in refine.items():
            result[f"refine_overhead_n32_{name}"] = seconds / by_n[32]["shared_s"]
        result["refine_overhead_n32"] = result[f"refine_overhead_n32_{matched}"]
    return result


def format_table(result: dict[str, Any]):
    from rich.table import Table

    table = Table(title=f"candidate sampling — {result['model']} on {result['device']} ({result['dtype']}), "
                        f"greedy action {1e3 * result['greedy_s']:.1f} ms")
    for col in ("N", "shared ms", "× greedy", "naive ms", "shared speed-up vs naive", "batched unshared ms",
                "peak MiB"):
        table.add_column(col, justify="right")
    for r in result["rows"]:
        naive = f"{1e3 * r['naive_s']:.1f}" if r["naive_s"] else "—"
        speedup = f"{r['speedup_vs_naive']:.1f}×" if r["speedup_vs_naive"] else "—"
        table.add_row(str(r["num_samples"]), f"{1e3 * r['shared_s']:.1f}", f"{r['shared_vs_greedy']:.2f}×", naive,
                      speedup, f"{1e3 * r['batched_unshared_s']:.1f}", f"{r['peak_memory_mb']:.0f}")
    if "refine_overhead_n32" in result:
        parts = [f"{name} critic {1e3 * sec:.1f} ms = {100 * result[f'refine_overhead_n32_{name}']:.0f}%"
                 for name, sec in result["refine_s_n32"].items()]
        table.caption = (f"re-rank top-{result['top_k']} + {result['refine_steps']} local steps on N = 32, "
                         f"relative to sampling: " + "; ".join(parts))
    return table
