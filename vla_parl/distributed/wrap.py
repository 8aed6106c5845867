"""Wrap an OpenVLA for data-parallel training: FSDP2 (`fully_shard`) or DDP.

FSDP2 shards every parameter on dim 0 over the ranks (DTensor). The sharding units are each ViT block of
both featurizers (DINOv2, SigLIP), each Llama decoder layer, then the root (embeddings, projector, final
norms, LM head): a unit's full weights exist only while it runs (all-gather before, reshard after).
Frozen (LoRA base) and trainable (adapter) parameters may share a unit: only adapters get gradients and
reduce-scatters, and optimizer state exists only for the adapter shards.

Gradients are averaged over ranks in both wrappers, so with equal per-rank batches (and an equal number
of supervised tokens per sample, as with OpenVLA's 7 action tokens + EOS) one step at W ranks equals one
step on the concatenated global batch in a single process.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["fsdp_units", "wrap_fsdp", "wrap_ddp", "mixed_precision_policy"]


def fsdp_units(model: nn.Module) -> list[nn.Module]:
    """The modules `wrap_fsdp` shards separately, innermost first: ViT blocks, then Llama decoder layers."""
    units: list[nn.Module] = []
    backbone = model.vision_backbone
    for vit in (backbone.featurizer, backbone.fused_featurizer):
        if vit is not None:
            units.extend(vit.blocks)
    units.extend(model.language_model.model.layers)
    return units


def mixed_precision_policy(param_dtype: torch.dtype | str | None):
    """FSDP2 `MixedPrecisionPolicy`: compute in `param_dtype` (e.g. bf16), reduce gradients in fp32.

    None → no policy (compute in the stored dtype)."""
    if param_dtype is None:
        return None
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if isinstance(param_dtype, str):
        param_dtype = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                       "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}[param_dtype]
    return MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)


def wrap_fsdp(model: nn.Module, *, param_dtype: torch.dtype | str | None = None, reshard_after_forward: bool = True,
              mesh: Any | None = None) -> nn.Module:
    """Shard `model` in place with FSDP2 and return it (same object, class becomes `FSDP<cls>`).

    param_dtype: compute dtype for the mixed-precision policy (None: compute in the stored dtype; the
    stored, sharded parameters and the optimizer state keep their dtype, e.g. fp32 master weights).
    reshard_after_forward: free each unit's gathered weights after its forward (ZeRO-3); False keeps
    them until backward (ZeRO-2-like: less communication, more memory).
    mesh: a 1-D DeviceMesh (default: all ranks of the default group).
    """
    from torch.distributed.fsdp import fully_shard

    kwargs: dict[str, Any] = {"reshard_after_forward": reshard_after_forward}
    policy = mixed_precision_policy(param_dtype)
    if policy is not None:
        kwargs["mp_policy"] = policy
    if mesh is not None:
        kwargs["mesh"] = mesh
    for unit in fsdp_units(model):
        fully_shard(unit, **kwargs)
    fully_shard(model, **kwargs)
    return model


def wrap_ddp(model: nn.Module, *, device_ids: list[int] | None = None,
             find_unused_parameters: bool = True) -> nn.parallel.DistributedDataParallel:
    """`DistributedDataParallel(model)`; the caller keeps using `model` itself for everything but the
    training forward (see `DistributedOpenVLAPolicy(model, wrapper=ddp)`).

    find_unused_parameters defaults to True: OpenVLA reads the *penultimate* ViT block, so the last
    block of each featurizer (and its LoRA adapters) never receives a gradient.
    """
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                               find_unused_parameters=find_unused_parameters)
