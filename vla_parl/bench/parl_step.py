"""One PA-RL iteration on a batch of states, with and without gradient checkpointing.

An iteration is what `PolicyUpdate.step` does for B states: sample N candidates from the policy (one
prefill, the KV cache shared by the N continuations), re-rank them with the critic (top-k) and run T local
gradient steps on the action, take the argmax, re-tokenize it and take one LoRA distillation step
(token cross-entropy, AdamW). The policy gets LoRA adapters (r = 32 on every linear layer, as the official
OpenVLA run); the critic is the PA-RL image preset (`critic_resnet18`) for the 7B and a scaled-down one for
the tiny model.

Both settings run side by side on the same model, critic and states (and then, without checkpointing, the
distillation loss over the full vocabulary vs the 256 action tokens, `model.loss_vocab`: key
`action_token_loss_distill_ratio` = distill time with action_tokens / with full; and the recipes' AdamW,
fused where torch has the kernel, against torch's default AdamW: `recipe_optimizer_step_ratio` = the optimiser
step alone and `recipe_optimizer_distill_ratio` = distill time, the recipes' / torch's default); reported per
setting: the median iteration time, its split into `improve` (sample + optimize, timed inside the same step)
and `distill` (the rest of that step: forward, backward, optimizer step), and the peak memory (CUDA:
`max_memory_allocated`; CPU: the process's peak RSS, which can only grow, so the checkpointed setting runs
first). Keys: `checkpointing_time_ratio` = t(with) / t(without) and `checkpointing_memory_ratio` =
peak(with) / peak(without).

    vla-parl bench parl_step --model 7b --device cuda --batch-size 16          # the real architecture, bf16
    vla-parl bench parl_step --threads 1                                       # tiny model on CPU
"""

from __future__ import annotations

import argparse
from typing import Any

from vla_parl.bench.models import add_model_arguments, build_benchmark_model, sample_images

__all__ = ["add_arguments", "run", "format_table"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=16, help="states per iteration (B)")
    parser.add_argument("--num-samples", type=int, default=8, help="candidates per state (N; official OpenVLA run: 8)")
    parser.add_argument("--top-k", type=int, default=4, help="candidates kept for the local step (OpenVLA run: 4)")
    parser.add_argument("--refine-steps", type=int, default=10, help="local gradient steps (T)")
    parser.add_argument("--lora-rank", type=int, default=32)
    parser.add_argument("--full-finetune", action="store_true",
                        help="train every weight, LM head included (the demo's tiny model), instead of LoRA adapters")
    parser.add_argument("--lr", type=float, default=2e-5, help="AdamW learning rate of the LoRA weights")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    from vla_parl.bench.timing import peak_memory_mb, reset_peak_memory
    from vla_parl.critic import critic_resnet18
    from vla_parl.models.openvla.lora import LoraSettings, apply_lora
    from vla_parl.parl import ImprovementConfig, PolicyUpdate
    from vla_parl.policy.base import Observation
    from vla_parl.policy.openvla import OpenVLAPolicy
    from vla_parl.training.optimizers import adamw

    if args.batch_size < 1 or args.num_samples < 1 or not 1 <= args.top_k <= args.num_samples:
        from vla_parl.errors import ConfigError   # a failure the suite reports, not a SystemExit that ends it

        raise ConfigError(f"--batch-size ({args.batch_size}) and --num-samples ({args.num_samples}) must be >= 1 "
                          f"and --top-k ({args.top_k}) in [1, --num-samples]")
    model, device = build_benchmark_model(args)
    if args.full_finetune:
        model.requires_grad_(True)
    else:
        apply_lora(model, LoraSettings(r=args.lora_rank))
    model.train()   # as in the recipes: checkpointing acts in training mode (sampling switches to eval itself)
    policy = OpenVLAPolicy(model, action_dim=7)
    critic = (critic_resnet18(action_dim=7) if args.model != "tiny" else
              critic_resnet18(action_dim=7, image_size=64, hidden_dims=(256, 256), num_q_heads=2)).to(device)
    images = torch.from_numpy(np.stack(sample_images(args.batch_size, size=224)))
    obs = Observation(images=images, instructions=["pick up the red block"] * args.batch_size)
    optimizer = adamw(policy.trainable_parameters(), lr=args.lr)
    update = PolicyUpdate(policy, optimizer, critic, ImprovementConfig(num_samples=args.num_samples,
                                                                       top_k=args.top_k, num_steps=args.refine_steps),
                          generator=torch.Generator(device=device).manual_seed(0))

    rows = []
    for checkpointing in (True, False):   # checkpointed first: a CPU process's peak RSS only grows
        _set_gradient_checkpointing(model, checkpointing)
        reset_peak_memory(device)
        timed = _time_step(update, obs, device, args.repeats)
        rows.append({"gradient_checkpointing": checkpointing, **timed,
                     "states_per_s": args.batch_size / timed["step_s"], "peak_memory_mb": peak_memory_mb(device)})
    with_ckpt, without = rows
    # the distillation loss's softmax (`model.loss_vocab`), without checkpointing: the same candidates' work
    vocab_rows = []
    for vocab in ("full", "action_tokens"):
        model.loss_vocab = vocab
        timed = _time_step(update, obs, device, args.repeats)
        vocab_rows.append({"loss_vocab": vocab, "step_s": timed["step_s"], "distill_s": timed["distill_s"]})
    model.loss_vocab = "full"
    # the optimiser step (`vla_parl.training.optimizers`): the recipes' AdamW (fused where torch has the kernel)
    # against torch's default AdamW (a for-loop over the parameters on a CPU), on the same candidates' work
    optimizer_rows = []
    for name, optim in (("recipes", optimizer), ("torch default", torch.optim.AdamW(policy.trainable_parameters(),
                                                                                    lr=args.lr))):
        update.optimizer = optim
        timed = _time_step(update, obs, device, args.repeats)
        optimizer_rows.append({"optimizer": name, "fused": bool(optim.param_groups[0]["fused"]),
                               "step_s": timed["step_s"], "distill_s": timed["distill_s"],
                               "optimizer_step_s": _optimizer_step_s(optim, policy, device, args.repeats)})
    update.optimizer = optimizer
    return {"benchmark": "parl_step", "model": args.model, "device": str(device), "dtype": str(model.dtype),
            "batch_size": args.batch_size, "num_samples": args.num_samples, "top_k": args.top_k,
            "refine_steps": args.refine_steps, "lora_rank": None if args.full_finetune else args.lora_rank,
            "trainable_params": sum(p.numel() for p in policy.trainable_parameters()),
            "threads": torch.get_num_threads(), "rows": rows,
            "checkpointing_time_ratio": with_ckpt["step_s"] / without["step_s"],
            "checkpointing_memory_ratio": with_ckpt["peak_memory_mb"] / without["peak_memory_mb"],
            "loss_vocab_rows": vocab_rows,
            "action_token_loss_distill_ratio": vocab_rows[1]["distill_s"] / max(vocab_rows[0]["distill_s"], 1e-9),
            "optimizer_rows": optimizer_rows,
            "recipe_optimizer_distill_ratio": (optimizer_rows[0]["distill_s"]
                                               / max(optimizer_rows[1]["distill_s"], 1e-9)),
            "recipe_optimizer_step_ratio": (optimizer_rows[0]["optimizer_step_s"]
                                            / max(optimizer_rows[1]["optimizer_step_s"], 1e-9))}


def _time_step(update: Any, obs: Any, device: Any, repeats: int) -> dict[str, float]:
    """Medians over `repeats` timed `update.step(obs)` calls (`time_call`, one untimed first): the step, its own
    `improve` call (sample + optimize) and the rest of the same step, `distill` (forward, backward, optimizer step)."""
    import statistics
    import time

    from vla_parl.bench.timing import synchronize, time_call

    improve, improves = update.improve, []

    def timed_improve(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = improve(*args, **kwargs)
        synchronize(device)
        improves.append(time.perf_counter() - start)
        return out

    update.improve = timed_improve
    try:
        steps = time_call(lambda: update.step(obs), device, repeats=repeats)["times_s"]
    finally:
        del update.improve
    improves = improves[-repeats:]     # each timed step's own call (the untimed one came first)
    return {"step_s": statistics.median(steps), "improve_s": statistics.median(improves),
            "distill_s": statistics.median(s - i for s, i in zip(steps, improves))}


def _optimizer_step_s(optimizer: Any, policy: Any, device: Any, repeats: int) -> float:
    """The median time of `optimizer.step()` alone, on gradients of the trainable weights' shapes (the step's cost
    does not depend on their values); the gradients are dropped afterwards."""
    import torch

    from vla_parl.bench.timing import time_call

    params = list(policy.trainable_parameters())
    generator = torch.Generator().manual_seed(0)
    for p in params:
        p.grad = (1e-3 * torch.randn(p.shape, generator=generator)).to(p)
    seconds = time_call(optimizer.step, device, repeats=max(repeats, 5))["median_s"]
    for p in params:
        p.grad = None
    return seconds


def _set_gradient_checkpointing(model: Any, enabled: bool) -> None:
    if enabled:
        model.enable_gradient_checkpointing()
    else:
        model.disable_gradient_checkpointing()


def format_table(result: dict[str, Any]):
    from rich.table import Table

    table = Table(title=f"one PA-RL iteration — {result['model']} on {result['device']} ({result['dtype']}), "
                        f"B = {result['batch_size']}, N = {result['num_samples']}, top-{result['top_k']}, "
                        f"T = {result['refine_steps']}, "
                        + (f"LoRA r = {result['lora_rank']}" if result["lora_rank"] else "full fine-tune"))
    for col in ("gradient checkpointing", "iteration ms", "sample + optimize ms", "distill ms", "states/s",
                "peak MiB"):
        table.add_column(col, justify="right")
    for r in result["rows"]:
        table.add_row("on" if r["gradient_checkpointing"] else "off", f"{1e3 * r['step_s']:.1f}",
                      f"{1e3 * r['improve_s']:.1f}", f"{1e3 * r['distill_s']:.1f}", f"{r['states_per_s']:.2f}",
                      f"{r['peak_memory_mb']:.0f}")
    table.caption = (f"with / without checkpointing: time ×{result['checkpointing_time_ratio']:.2f}, "
                     f"peak memory ×{result['checkpointing_memory_ratio']:.2f}; distillation with the loss over the "
                     f"256 action tokens / the full vocabulary (model.loss_vocab): time "
                     f"×{result['action_token_loss_distill_ratio']:.2f}; the recipes' AdamW "
                     f"({'fused' if result['optimizer_rows'][0]['fused'] else 'not fused'}) / torch's default: "
                     f"optimizer step ×{result['recipe_optimizer_step_ratio']:.2f}, distillation time "
                     f"×{result['recipe_optimizer_distill_ratio']:.2f}")
    return table
