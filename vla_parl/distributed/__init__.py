"""Multi-process training of OpenVLA: DDP / FSDP2 wrapping, rank-local candidate sampling, sharded checkpoints.

    torchrun --nproc_per_node 8 my_train.py      # each process: init_distributed() → wrap → train

- `init_distributed()` / `DistInfo`: the process group from torchrun's environment (nccl on CUDA, gloo on CPU).
- `wrap_fsdp(model)`: FSDP2 `fully_shard` per ViT block and per Llama decoder layer, then the root;
  `wrap_ddp(model)`: DistributedDataParallel. Both keep LoRA's "only adapters are trainable".
- `DistributedOpenVLAPolicy` + `shard_observation`: PA-RL candidates are generated inside the training
  step, each rank sampling for its own shard of the batch with the prefix-shared sampler.
- `save_checkpoint` / `load_checkpoint`: resumable sharded checkpoints (`torch.distributed.checkpoint`) of
  model + optimizer; a checkpoint written by W processes loads at any other world size (or without a
  process group). `save_lora_adapter_distributed` / `save_merged_distributed` gather on rank 0 only.

The worker `python -m vla_parl.distributed._selftest` (under torchrun) exercises all of it on the tiny model.
"""

from vla_parl.distributed.checkpoint import (gather_lora_state_dict, gather_trainable_state_dict, load_checkpoint,
                                             load_state, save_checkpoint, save_full_distributed,
                                             save_lora_adapter_distributed, save_merged_distributed, save_state)
from vla_parl.distributed.env import DistInfo, all_reduce_mean, barrier, dist_info, init_distributed
from vla_parl.distributed.policy import DistributedOpenVLAPolicy, gathered_weights, shard_observation, shard_range
from vla_parl.distributed.wrap import fsdp_units, wrap_ddp, wrap_fsdp

__all__ = [
    "DistInfo", "dist_info", "init_distributed", "barrier", "all_reduce_mean",
    "wrap_fsdp", "wrap_ddp", "fsdp_units",
    "DistributedOpenVLAPolicy", "gathered_weights", "shard_observation", "shard_range",
    "save_checkpoint", "load_checkpoint", "save_state", "load_state", "gather_trainable_state_dict",
    "gather_lora_state_dict", "save_lora_adapter_distributed", "save_merged_distributed", "save_full_distributed",
]
