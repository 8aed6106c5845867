"""Worker that exercises the distributed training paths on the tiny OpenVLA (CPU + gloo or CUDA + nccl).

    torchrun --nproc_per_node 2 -m vla_parl.distributed._selftest --strategy fsdp --out run.json
    python -m vla_parl.distributed._selftest --strategy single --out ref.json     # the 1-process reference

Steps 0 .. sft_steps-1 are SFT (OpenVLA's CE on given actions), the rest PA-RL `PolicyUpdate` steps
(N candidates per state sampled on each rank for its shard, re-ranked and refined by a fixed small critic,
distilled). Step t always uses the same global batch of `batch_size` states (built from seed t), split
over the ranks; per-state sampling seeds make the candidates independent of the world size. Rank 0
writes the per-step losses (averaged over ranks) to --out. `--save DIR --save-after K` writes a sharded
checkpoint after step K; `--resume DIR` loads one and continues from the step after it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

__all__ = ["main"]


def _global_batch(step: int, batch_size: int, image_size: int):
    from vla_parl.policy.base import Observation

    g = torch.Generator().manual_seed(1000 + step)
    images = torch.randint(0, 256, (batch_size, image_size, image_size, 3), dtype=torch.uint8, generator=g)
    words = ["pick up the red block", "push the blue block left", "reach the green block"]
    obs = Observation(images=images, instructions=[words[(step + i) % len(words)] for i in range(batch_size)])
    targets = torch.rand(batch_size, 7, generator=g) * 2 - 1
    targets[:, -1] = (targets[:, -1] > 0).float()
    return obs, targets


def _small_critic(model):
    from vla_parl.critic import QCritic
    from vla_parl.critic.critic import CriticConfig

    tokenizer = model.processor.tokenizer
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        critic = QCritic(CriticConfig(action_dim=7, hidden_dims=(32, 32), num_q_heads=2, image_size=32,
                                      image_feature_dim=16, vocab_size=tokenizer.vocab_size, instruction_dim=8),
                         tokenize=lambda texts: tokenizer.encode_batch(texts))
    return critic.eval().requires_grad_(False)


def _build(args, info):
    from vla_parl.distributed import DistributedOpenVLAPolicy, wrap_ddp, wrap_fsdp
    from vla_parl.models import openvla_tiny
    from vla_parl.models.openvla.lora import LoraSettings, apply_lora

    model = openvla_tiny(image_size=args.image_size, seed=0).to(info.device)
    if args.lora:
        torch.manual_seed(0)
        apply_lora(model, LoraSettings(r=4, alpha=8))
    model.train()
    wrapper = None
    if args.strategy == "fsdp":
        wrap_fsdp(model)
    elif args.strategy == "ddp":
        wrapper = wrap_ddp(model, device_ids=[info.local_rank] if info.device.type == "cuda" else None)
    policy = DistributedOpenVLAPolicy(model, wrapper=wrapper, action_dim=7)
    optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=args.lr, weight_decay=0.0)
    return model, policy, optimizer


def main(argv: list[str] | None = None) -> int:
    from vla_parl.distributed import all_reduce_mean, init_distributed, load_checkpoint, save_checkpoint
    from vla_parl.distributed.checkpoint import save_lora_adapter_distributed, save_merged_distributed
    from vla_parl.distributed.policy import shard_observation, shard_range
    from vla_parl.parl import ImprovementConfig
    from vla_parl.parl.policy_update import PolicyUpdate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", choices=["single", "ddp", "fsdp"], default="fsdp")
    parser.add_argument("--sft-steps", type=int, default=2)
    parser.add_argument("--parl-steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4, help="global batch (states per step)")
    parser.add_argument("--num-samples", type=int, default=8, help="PA-RL candidates per state")
    parser.add_argument("--image-size", type=int, default=56)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--no-lora", dest="lora", action="store_false", help="full fine-tuning")
    parser.add_argument("--save", default=None, help="sharded checkpoint directory")
    parser.add_argument("--save-after", type=int, default=None, help="save after this step")
    parser.add_argument("--resume", default=None, help="resume from this sharded checkpoint")
    parser.add_argument("--export", default=None, help="at the end: write adapter/ and merged/ here (LoRA)")
    parser.add_argument("--out", required=True, help="JSON result (rank 0)")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    info = init_distributed()
    if args.strategy != "single" and not info.distributed:
        parser.error(f"--strategy {args.strategy} needs torchrun (WORLD_SIZE unset)")
    model, policy, optimizer = _build(args, info)
    update = PolicyUpdate(policy, optimizer, _small_critic(model).to(info.device),
                          ImprovementConfig(num_samples=args.num_samples, top_k=4, num_steps=3, step_size=0.05))
    start = 0
    if args.resume:
        start = load_checkpoint(args.resume, model, optimizer)["step"] + 1
    total = args.sft_steps + args.parl_steps
    losses: dict[int, float] = {}
    step_s: list[float] = []
    started = time.perf_counter()
    for step in range(start, total):
        step_start = time.perf_counter()
        obs, targets = _global_batch(step, args.batch_size, args.image_size)
        local = shard_observation(obs, info.rank, info.world_size, seed=step).to(info.device)
        if step < args.sft_steps:
            rows = shard_range(len(obs), info.rank, info.world_size)
            loss = policy.supervised_loss(local, targets[rows.start: rows.stop].to(info.device)).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            value = float(loss.detach())
        else:
            value = update.step(local)["policy/loss"]
        losses[step] = all_reduce_mean(value)
        step_s.append(time.perf_counter() - step_start)
        if args.save and args.save_after == step:
            save_checkpoint(args.save, model, optimizer, step=step)
    elapsed = time.perf_counter() - started
    if args.export and args.lora:
        save_lora_adapter_distributed(model, Path(args.export) / "adapter")
        save_merged_distributed(model, Path(args.export) / "merged")
    if info.is_main:
        Path(args.out).write_text(json.dumps({"strategy": args.strategy, "world_size": info.world_size,
                                              "start_step": start, "losses": {str(k): v for k, v in losses.items()},
                                              "train_s": elapsed, "step_s": step_s,
                                              "batch_size": args.batch_size}, indent=2) + "\n")
    if info.distributed:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
