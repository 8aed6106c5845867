"""OpenVLA: model, processor, action tokenizer, presets, LoRA.

Importing this package is torch-free: the names below load from their modules on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["ActionNormalizer", "ActionTokenizer", "ImageTransform", "OpenVLA", "OpenVLAConfig", "OpenVLAOutput",
           "OpenVLAProcessor", "PrefixState", "PromptTokenizer", "TrainingBatch", "build_prompt",
           "default_norm_stats", "openvla_7b", "openvla_tiny", "resolve_unnorm_key"]

_MODULES = {
    "ActionTokenizer": "action_tokenizer", "OpenVLAConfig": "configuration", "ImageTransform": "image_transforms",
    "OpenVLA": "modeling", "OpenVLAOutput": "modeling", "PrefixState": "modeling",
    "ActionNormalizer": "normalization", "resolve_unnorm_key": "normalization",
    "default_norm_stats": "presets", "openvla_7b": "presets", "openvla_tiny": "presets",
    "OpenVLAProcessor": "processor", "TrainingBatch": "processor", "build_prompt": "processor",
    "PromptTokenizer": "tokenizer",
}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(import_module(f"vla_parl.models.openvla.{_MODULES[name]}"), name)
    raise AttributeError(f"module 'vla_parl.models.openvla' has no attribute {name!r}")
