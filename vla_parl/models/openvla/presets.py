"""Model builders: the published OpenVLA-7B architecture and tiny variants on the same code path.

Presets build from flat arguments (no config objects to assemble by hand). `openvla_7b()` has the
parameter names and shapes of `openvla/openvla-7b`; build it under `torch.device("meta")` to inspect it
without memory. `openvla_tiny()` keeps the DINOv2 + SigLIP structure and weight names with tiny widths
(via `timm_model_kwargs`), a 2-layer Llama and a locally built tokenizer, for tests and the CPU demo;
`vision="siglip"` builds it with the SigLIP tower alone (OpenVLA's single-backbone configuration), which costs
about half the vision compute of the fused pair.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from vla_parl.models.openvla.configuration import OpenVLAConfig
from vla_parl.models.openvla.image_transforms import ImageTransform
from vla_parl.models.openvla.modeling import OpenVLA
from vla_parl.models.openvla.processor import OpenVLAProcessor
from vla_parl.models.openvla.tokenizer import PromptTokenizer

__all__ = ["openvla_7b", "openvla_tiny", "default_norm_stats", "DINOSIGLIP_MEANS", "DINOSIGLIP_STDS"]

DINO_ID = "vit_large_patch14_reg4_dinov2.lvd142m"
SIGLIP_ID = "vit_so400m_patch14_siglip_224"
# ImageNet (DINOv2) and SigLIP statistics, bf16-rounded as in the published preprocessor_config.json
DINOSIGLIP_MEANS = ((0.484375, 0.455078125, 0.40625), (0.5, 0.5, 0.5))
DINOSIGLIP_STDS = ((0.228515625, 0.2236328125, 0.224609375), (0.5, 0.5, 0.5))
# which of the (DINOv2, SigLIP) towers a tiny model keeps
_TOWERS = {"dinosiglip": slice(0, 2), "siglip": slice(1, 2)}


def default_norm_stats(name: str = "default", action_dim: int = 7) -> dict[str, Any]:
    """Identity-like statistics: movement dims normalised from [-1, 1], the last (gripper) dim left as is."""
    ones, zeros = [1.0] * action_dim, [0.0] * action_dim
    action = {"mean": zeros, "std": ones, "min": [-1.0] * action_dim, "max": ones, "q01": [-1.0] * action_dim,
              "q99": ones, "mask": [True] * (action_dim - 1) + [False]}
    proprio = {k: zeros for k in ("mean", "std", "min", "max", "q01", "q99")}
    return {name: {"action": action, "proprio": proprio, "num_transitions": 0, "num_trajectories": 0}}


def _processor(image_sizes: list[int], strategy: str, tokenizer: PromptTokenizer | None,
               towers: slice = slice(None)) -> OpenVLAProcessor:
    if tokenizer is None:
        from vla_parl.models.openvla.tiny_tokenizer import build_tiny_tokenizer

        tokenizer = PromptTokenizer(build_tiny_tokenizer())
    transform = ImageTransform.build(strategy, image_sizes, DINOSIGLIP_MEANS[towers], DINOSIGLIP_STDS[towers])
    return OpenVLAProcessor(transform, tokenizer)


def openvla_7b(norm_stats: Mapping[str, Any] | None = None, tokenizer: PromptTokenizer | None = None,
               attn_implementation: str = "sdpa", image_resize_strategy: str = "resize-naive") -> OpenVLA:
    """The published OpenVLA-7B architecture (random init; ~7.5B parameters).

    Without `tokenizer`, a locally built stand-in with Llama-2's id layout is used (enough for benchmarks on
    random weights); real checkpoints load their own tokenizer with `OpenVLA.from_pretrained`.
    """
    config = OpenVLAConfig(
        timm_model_ids=[DINO_ID, SIGLIP_ID], image_sizes=[224, 224],
        text_config={"model_type": "llama", "pad_token_id": 32000, "torch_dtype": "bfloat16", "vocab_size": 32064},
        image_resize_strategy=image_resize_strategy,
        norm_stats=dict(norm_stats) if norm_stats is not None else default_norm_stats())
    return OpenVLA(config, _processor([224, 224], image_resize_strategy, tokenizer), attn_implementation)


def openvla_tiny(image_size: int = 224, vision_dims: tuple[int, int] = (64, 72), vision_depth: int = 4,
                 vision_heads: int = 4, llm_dim: int = 64, llm_layers: int = 2, llm_heads: int = 4,
                 llm_intermediate: int = 160, norm_stats: Mapping[str, Any] | None = None,
                 image_resize_strategy: str = "resize-naive", attn_implementation: str = "sdpa",
                 seed: int | None = 0, vision: str = "dinosiglip") -> OpenVLA:
    """A tiny OpenVLA with the real structure: DINOv2-reg4 + SigLIP (tiny widths), 2-layer Llama, 32064 vocab.

    `image_size` must be a multiple of the patch size 14 (e.g. 56, 112, 224). `vision="siglip"` keeps only
    the SigLIP tower (width `vision_dims[1]`, SigLIP's image statistics), unfused.
    """
    if image_size % 14:
        raise ValueError(f"image_size must be a multiple of the ViT patch size 14, got {image_size}")
    if vision not in _TOWERS:
        raise ValueError(f"vision must be one of {sorted(_TOWERS)}, got {vision!r}")
    towers = _TOWERS[vision]
    ids, dims = [DINO_ID, SIGLIP_ID][towers], list(vision_dims)[towers]
    config = OpenVLAConfig(
        timm_model_ids=ids, image_sizes=[image_size] * len(ids), use_fused_vision_backbone=len(ids) == 2,
        timm_model_kwargs=[{"embed_dim": d, "depth": vision_depth, "num_heads": vision_heads} for d in dims],
        text_config={"model_type": "llama", "hidden_size": llm_dim, "intermediate_size": llm_intermediate,
                     "num_hidden_layers": llm_layers, "num_attention_heads": llm_heads,
                     "num_key_value_heads": llm_heads, "pad_token_id": 32000, "vocab_size": 32064},
        image_resize_strategy=image_resize_strategy,
        norm_stats=dict(norm_stats) if norm_stats is not None else default_norm_stats())
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = OpenVLA(config, _processor([image_size] * len(ids), image_resize_strategy, None, towers),
                        attn_implementation)
    return model.eval()
