"""The (fused) timm ViT vision backbone of OpenVLA.

Each ViT is built by `timm.create_model(id, pretrained=False, num_classes=0, img_size=S, act_layer=...)`
(+ optional `timm_model_kwargs`). Its features are the output of the **second-to-last block**, patch
tokens only (CLS/register tokens dropped), no final norm. With the fused DINOv2 + SigLIP pair, input
pixel_values are `[B, 6, S, S]`: channels 0-2 feed `featurizer`, 3-5 feed `fused_featurizer`, and the
two patch-feature maps are concatenated on the feature dim: `[B, P, D_dino + D_siglip]`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["VisionBackbone", "LAYERSCALE_RENAMES"]

# The published checkpoints store timm's LayerScale `gamma` as `scale_factor` (HF's loader renames
# parameters containing "gamma"); (ours, checkpoint) pairs applied to key suffixes on load/save.
LAYERSCALE_RENAMES = ((".ls1.gamma", ".ls1.scale_factor"), (".ls2.gamma", ".ls2.scale_factor"))


def _create_vit(model_id: str, image_size: int, act_layer: str | None, kwargs: dict[str, Any]) -> nn.Module:
    import timm

    extra = dict(kwargs)
    if act_layer is not None:
        extra["act_layer"] = act_layer
    model = timm.create_model(model_id, pretrained=False, num_classes=0, img_size=image_size, **extra)
    if not hasattr(model, "blocks") or len(model.blocks) < 2:
        raise ValueError(f"timm model {model_id!r} is not a ViT with at least 2 blocks")
    return model


class VisionBackbone(nn.Module):
    """One or two timm ViTs returning penultimate-block patch features."""

    def __init__(self, timm_model_ids: Sequence[str], image_sizes: Sequence[int],
                 timm_model_kwargs: Sequence[dict[str, Any]], act_layers: Sequence[str | None]) -> None:
        super().__init__()
        self.featurizer = _create_vit(timm_model_ids[0], image_sizes[0], act_layers[0], timm_model_kwargs[0])
        self.fused_featurizer = (_create_vit(timm_model_ids[1], image_sizes[1], act_layers[1], timm_model_kwargs[1])
                                 if len(timm_model_ids) > 1 else None)
        self.gradient_checkpointing = False

    @property
    def embed_dim(self) -> int:
        dims = self.featurizer.embed_dim
        return dims + (self.fused_featurizer.embed_dim if self.fused_featurizer is not None else 0)

    def num_patches(self) -> int:
        return self.featurizer.patch_embed.num_patches

    def _penultimate_patch_features(self, vit: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        x = vit.patch_embed(pixels)
        x = vit._pos_embed(x)
        x = vit.patch_drop(x)
        x = vit.norm_pre(x)
        for block in vit.blocks[:-1]:
            x = checkpoint(block, x, use_reentrant=False) if self.gradient_checkpointing and self.training else block(x)
        return x[:, vit.num_prefix_tokens:]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values `[B, 3·n, S, S]` → patch features `[B, P, embed_dim]`."""
        if self.fused_featurizer is None:
            return self._penultimate_patch_features(self.featurizer, pixel_values)
        if pixel_values.shape[1] != 6:
            raise ValueError(f"a fused vision backbone needs pixel_values with 6 channels, got {tuple(pixel_values.shape)}")
        img, img_fused = torch.split(pixel_values, [3, 3], dim=1)
        return torch.cat([self._penultimate_patch_features(self.featurizer, img),
                          self._penultimate_patch_features(self.fused_featurizer, img_fused)], dim=2)
