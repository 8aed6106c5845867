"""Data parallelism in the recipes: the policy under FSDP2 or DDP, one global batch per step, rank-0 exports.

    accelerate launch --config_file configs/accelerate/fsdp.yaml -m vla_parl.recipes.sft ...   # FSDP2
    torchrun --nproc_per_node 8 -m vla_parl.recipes.sft ... run.distributed=fsdp                # the same

**Who shards.** When the launch asks for FSDP (an Accelerate config with `distributed_type: FSDP`, which
sets `ACCELERATE_USE_FSDP=true`, or `run.distributed=fsdp`), the policy is sharded by
`vla_parl.distributed.wrap_fsdp` — FSDP2 `fully_shard` on each ViT block and Llama decoder layer, the
units of the config's `TRANSFORMER_BASED_WRAP` on `LlamaDecoderLayer,Block` — and never passed to
`accelerator.prepare`. Accelerate (≤ 1.15) enables its FSDP plugin only for accelerator devices: on CPU
it silently falls back to DDP (`DistributedType.MULTI_CPU`), so its FSDP2 path cannot run (or be tested)
there. Its FSDP2 `prepare` also accepts a single model and wraps every prepared module by layer class,
which fails for PA-RL's small critic. One code path on CPU and GPU instead: the critic stays replicated
(DDP, `prepare_replicated`), and Accelerate still provides the process group, gradient accumulation,
autocast and `main_process_first`. Mixed precision `bf16` becomes FSDP2's `MixedPrecisionPolicy`;
`fsdp_reshard_after_forward` is honoured; `fsdp_version` must be 2.

**One global batch per step.** Every rank draws with the same seeded generator (the one a single process
uses), so all draw the same global batch of `batch_size × world_size` rows and each keeps its contiguous
share (`local_rows`). Gradients are averaged over ranks, and every sample carries the same number of
supervised tokens, so a step at W ranks equals one step of a single process on the global batch.

**Checkpoints** hold the policy's trainable weights and optimizer as DCP shards (`save_policy_state`),
written by every rank into the checkpoint directory that `CheckpointManager` publishes atomically; they
load at any world size, also in a plain single process. **Exports** gather only what is needed on rank 0:
with LoRA the adapters alone, merged once into a base that rank 0 rebuilds from its source
(`export_policy`); a fully fine-tuned model is gathered whole into rank 0's CPU memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from vla_parl.errors import ConfigError

__all__ = ["fsdp_requested", "prepare_policy", "prepare_replicated", "world", "local_rows", "check_global_batch",
           "take_rows", "mean_over_ranks", "broadcast_generator", "all_gather_rows", "all_gather_batch",
           "refresh_candidates", "save_policy_state", "load_policy_state", "export_policy"]


def fsdp_requested(run: Any) -> bool:
    """`run.distributed=fsdp`, or an Accelerate FSDP launch config (`ACCELERATE_USE_FSDP=true`)."""
    return run.distributed == "fsdp" or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def _fsdp_param_dtype(accelerator: Any) -> str | None:
    precision = str(accelerator.mixed_precision)
    if precision == "fp16":
        raise ConfigError("FSDP2 in the recipes computes in bf16 or fp32: set run.mixed_precision=bf16 or no "
                          "(fp16 would need a sharded gradient scaler)")
    return "bf16" if precision == "bf16" else None


def _check_fsdp_launch() -> None:
    version = os.environ.get("FSDP_VERSION", "2")
    if version != "2":
        raise ConfigError(f"the Accelerate config asks for FSDP version {version}; the recipes shard with FSDP2: "
                          "set fsdp_config.fsdp_version: 2 (see configs/accelerate/fsdp.yaml)")
    if os.environ.get("FSDP_OFFLOAD_PARAMS", "false").lower() == "true":
        raise ConfigError("fsdp_offload_params is not supported by the recipes' FSDP2 path: set it to false")


def prepare_policy(accelerator: Any, model: nn.Module, run: Any,
                   make_optimizer: Callable[[], torch.optim.Optimizer]) -> tuple[nn.Module, Any, bool]:
    """Wrap the policy for this launch; `make_optimizer()` is called after wrapping (FSDP2 replaces the
    parameters by sharded DTensors). Returns (module to run forwards through, optimizer, sharded)."""
    if accelerator.num_processes > 1 and fsdp_requested(run):
        from vla_parl.distributed import wrap_fsdp

        _check_fsdp_launch()
        reshard = os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() != "false"
        wrap_fsdp(model.to(accelerator.device), param_dtype=_fsdp_param_dtype(accelerator),
                  reshard_after_forward=reshard)
        # prepare_optimizer, not prepare: the optimizer still steps only when gradients are synchronised
        return model, accelerator.prepare_optimizer(make_optimizer(), device_placement=False), True
    prepared, optimizer = accelerator.prepare(model, make_optimizer())
    return prepared, optimizer, False


def prepare_replicated(accelerator: Any, module: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[Any, Any]:
    """A small model (the critic) as one replica per rank with averaged gradients (DDP), whatever the launch.

    `accelerator.prepare` does that, except under Accelerate's own FSDP (GPU launches of an FSDP config),
    where it would shard the module by layer class (and reject a second model): there it is wrapped here."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.FSDP:
        return accelerator.prepare(module, optimizer)
    from vla_parl.distributed import wrap_ddp

    device = accelerator.device
    wrapped = wrap_ddp(module.to(device), device_ids=[device.index] if device.type == "cuda" else None)
    return wrapped, accelerator.prepare_optimizer(optimizer, device_placement=False)


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without a process group."""
    from vla_parl.distributed import dist_info

    info = dist_info()
    return info.rank, info.world_size


def local_rows(global_size: int) -> slice | None:
    """This rank's contiguous rows of a global batch; None in a single process (all rows)."""
    from vla_parl.distributed import shard_range

    rank, size = world()
    if size == 1:
        return None
    rows = shard_range(global_size, rank, size)
    return slice(rows.start, rows.stop)


def check_global_batch(saved: dict[str, Any], global_batch: int, option: str) -> None:
    """Warn (main rank) when a resumed run's global batch differs from the checkpoint's: `option` is the
    per-process batch size that sets it, e.g. after a resume at another world size."""
    rank, size = world()
    before = saved.get("global_batch")
    if rank == 0 and before is not None and before != global_batch:
        import warnings

        fix = f"set {option}={before // size} to continue it exactly" if before % size == 0 else \
            f"no per-process {option} reproduces it at {size} process(es)"
        warnings.warn(f"resuming a run trained on global batches of {before} with {global_batch} "
                      f"({size} process(es) × {option}={global_batch // size}): {fix}", stacklevel=2)


def take_rows(batch: Any, rows: slice | None) -> Any:
    """Rows of a replay batch (nested dicts of arrays and lists)."""
    if rows is None:
        return batch
    if isinstance(batch, dict):
        return {k: take_rows(v, rows) for k, v in batch.items()}
    return batch[rows]


def mean_over_ranks(stats: dict[str, float]) -> dict[str, float]:
    """Each float averaged over ranks (one all-reduce; every rank must pass the same keys)."""
    import torch.distributed as dist

    if world()[1] == 1 or not stats:
        return stats
    keys = sorted(stats)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    values = torch.tensor([float(stats[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(values)
    values /= dist.get_world_size()
    return dict(zip(keys, values.tolist()))


def broadcast_generator(generator: torch.Generator) -> None:
    """Give every rank rank 0's generator state (after rank-local work, e.g. online episodes of different
    lengths, drew different numbers of samples from it): the replicated steps need identical draws."""
    import torch.distributed as dist

    if world()[1] == 1:
        return
    state = [generator.get_state()]
    dist.broadcast_object_list(state, src=0)
    generator.set_state(state[0])


def all_gather_rows(local: torch.Tensor, global_size: int) -> torch.Tensor:
    """Concatenate every rank's `local` rows (rank r holds `shard_range(global_size, r, W)`) on every rank."""
    import torch.distributed as dist

    from vla_parl.distributed import shard_range

    rank, size = world()
    if size == 1:
        return local
    sizes = [len(shard_range(global_size, r, size)) for r in range(size)]
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    padded = local.new_zeros((max(sizes), *local.shape[1:])).to(device)
    padded[:len(local)] = local.to(device)
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)]).to(local.device)


def refresh_candidates(cache: Any, states: Any, *, generator: torch.Generator, per_state_seeds: bool) -> None:
    """`CandidateCache.refresh`, spread over ranks.

    per_state_seeds=False (one process): the cache samples all states in batches from `generator`.
    True: one seed s is drawn from `generator`, state i is sampled with its own generator seeded from
    (s, i) (`DistributedOpenVLAPolicy`), each rank samples only its share of the states (under FSDP2 with
    the weights gathered once) and the candidates are all-gathered, so every rank holds the same cache
    [S, N, A] whatever the world size."""
    if not per_state_seeds:
        cache.refresh(states, generator=generator)
        return
    from vla_parl.distributed import shard_observation

    rank, size = world()
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    part = shard_observation(states, rank, size, seed=seed)       # this rank's rows, each with its seed
    if len(part):
        local = cache.policy.sample_actions(part, cache.num_candidates).actions
    else:   # more ranks than states: still join the weight gathering and the all-gather
        from vla_parl.distributed import gathered_weights

        with gathered_weights(cache.policy.module):
            local = torch.zeros(0, cache.num_candidates, cache.action_dim)
    cache.candidates = all_gather_rows(local, len(states))
    cache.states = states


def save_policy_state(directory: Path, model: nn.Module, optimizer: Any) -> None:
    """Collective: the trainable weights and the optimizer as DCP shards (also in a single process)."""
    from vla_parl.distributed import save_state

    save_state(directory, model, optimizer)


def load_policy_state(directory: Path, model: nn.Module, optimizer: Any) -> None:
    """Load `save_policy_state`'s shards at any world size (collective with a process group)."""
    from vla_parl.distributed import load_state

    load_state(directory, model, optimizer)


def export_policy(model: nn.Module, directory: Path, *, sharded: bool, is_main: bool,
                  rebuild_base: Callable[[], nn.Module] | None, adapter_dir: Path | None = None,
                  in_place: bool = True) -> Path:
    """The servable model at `directory` (`OpenVLA.from_pretrained`-loadable); with LoRA also the peft-format
    adapter at `adapter_dir`. Every rank calls it.

    Unsharded (one process, DDP): the main process merges the adapters into the live model (in place, or
    into a copy with `in_place=False`).
    Sharded (FSDP2) with LoRA: only the adapters are gathered, to rank 0, which rebuilds the frozen base
    with `rebuild_base()` (e.g. from the base checkpoint), loads the adapters and merges once; the other
    ranks hold and merge nothing. Without `rebuild_base`, or without LoRA, the whole model is gathered
    into rank 0's CPU memory instead."""
    from vla_parl.distributed import barrier, gather_trainable_state_dict, save_full_distributed
    from vla_parl.distributed.checkpoint import save_merged_distributed
    from vla_parl.models.openvla.lora import apply_lora, has_lora, merge_lora, save_lora_adapter

    module = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    lora = has_lora(module)
    if not sharded:
        if is_main:
            if lora:
                if adapter_dir is not None:
                    save_lora_adapter(module, adapter_dir)
                if not in_place:
                    import copy

                    module = copy.deepcopy(module)
                merge_lora(module)
            module.save_pretrained(directory)
        barrier()
        return directory
    if not lora:
        return save_full_distributed(module, directory)
    if rebuild_base is None:
        return save_merged_distributed(module, directory)
    adapters = gather_trainable_state_dict(module)      # rank 0: the full adapter tensors; others: {}
    if is_main:
        with torch.random.fork_rng(devices=[]):         # LoRA's random init of the rebuilt model: overwritten
            base = apply_lora(rebuild_base(), module._lora_settings)
        result = base.load_state_dict(adapters, strict=False)
        missing = [k for k in result.missing_keys if "lora_" in k]
        if result.unexpected_keys or missing:
            raise RuntimeError(f"gathered adapters do not fit the rebuilt base: unexpected "
                               f"{result.unexpected_keys[:3]}, missing {missing[:3]}")
        if adapter_dir is not None:
            save_lora_adapter(base, adapter_dir)
        merge_lora(base).save_pretrained(directory)
    barrier()
    return directory


def _replay_concat(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in parts[0].items():
        if isinstance(value, dict):
            out[key] = _replay_concat([p[key] for p in parts])
        elif isinstance(value, list):
            out[key] = [x for p in parts for x in p[key]]
        else:
            out[key] = np.concatenate([p[key] for p in parts])
    return out


def all_gather_batch(local: dict[str, Any]) -> dict[str, Any]:
    """Every rank's replay batch concatenated in rank order, on every rank (pickled through the process group)."""
    import torch.distributed as dist

    if world()[1] == 1:
        return local
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    return _replay_concat(parts)
