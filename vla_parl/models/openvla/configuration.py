"""`OpenVLAConfig`: the `config.json` of a Prismatic/OpenVLA checkpoint as a typed dataclass.

Reads and writes the published layout (model_type ``openvla``) field for field; fields we do not
model (``architectures``, ``auto_map``, ...) are kept in ``extra`` so a load/save round trip is lossless.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vla_parl.errors import CheckpointError

__all__ = ["OpenVLAConfig", "LLAMA2_7B_TEXT_DEFAULTS"]

# transformers' LlamaConfig defaults (= Llama-2-7B shapes), which the published `text_config` relies on.
# Spelled out so that a change of defaults in a future transformers release cannot change our model.
LLAMA2_7B_TEXT_DEFAULTS: dict[str, Any] = {
    "model_type": "llama",
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "hidden_act": "silu",
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "attention_bias": False,
    "mlp_bias": False,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
}

GREEDY_ACTION_TOKENS_KEY = "vla_parl_greedy_action_tokens_only"
_REQUIRED_KEYS = ("timm_model_ids", "image_sizes", "use_fused_vision_backbone", "arch_specifier", "text_config")
_RESIZE_STRATEGIES = ("resize-naive", "letterbox", "resize-crop")
_ARCH_SPECIFIERS = ("no-align+fused-gelu-mlp", "no-align+gelu-mlp", "gelu-mlp", "fused-gelu-mlp")


@dataclass
class OpenVLAConfig:
    """Architecture and metadata of an OpenVLA checkpoint (see `spec/openvla.md`)."""

    timm_model_ids: list[str]
    image_sizes: list[int]
    text_config: dict[str, Any]
    use_fused_vision_backbone: bool = True
    arch_specifier: str = "no-align+fused-gelu-mlp"
    timm_model_kwargs: list[dict[str, Any]] | None = None
    timm_override_act_layers: list[str | None] | None = None
    vision_backbone_id: str = "dinosiglip-vit-so-224px"
    image_resize_strategy: str = "resize-naive"
    llm_backbone_id: str = "llama2-7b-pure"
    hf_llm_id: str = "meta-llama/Llama-2-7b-hf"
    llm_max_length: int = 2048
    pad_token_id: int = 32000
    pad_to_multiple_of: int = 64
    n_action_bins: int = 256
    output_projector_states: bool = False
    norm_stats: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.timm_model_ids)
        expected = 2 if self.use_fused_vision_backbone else 1
        if n != expected:
            raise ValueError(f"use_fused_vision_backbone={self.use_fused_vision_backbone} needs {expected} "
                             f"timm_model_ids, got {n}: {self.timm_model_ids}")
        if len(self.image_sizes) != n:
            raise ValueError(f"image_sizes must have one entry per timm model ({n}), got {self.image_sizes}")
        if self.timm_model_kwargs is None:
            self.timm_model_kwargs = [{} for _ in range(n)]
        if self.timm_override_act_layers is None:
            self.timm_override_act_layers = [None] * n
        if len(self.timm_model_kwargs) != n or len(self.timm_override_act_layers) != n:
            raise ValueError("timm_model_kwargs and timm_override_act_layers must be parallel to timm_model_ids")
        if self.image_resize_strategy not in _RESIZE_STRATEGIES:
            raise ValueError(f"image_resize_strategy {self.image_resize_strategy!r} is not one of {_RESIZE_STRATEGIES}")
        if self.arch_specifier not in _ARCH_SPECIFIERS:
            raise ValueError(f"arch_specifier {self.arch_specifier!r} is not one of {_ARCH_SPECIFIERS}")

    # ---- derived values -------------------------------------------------------------------------
    @property
    def llama_config_dict(self) -> dict[str, Any]:
        """The full Llama config: published `text_config` over explicit Llama-2-7B defaults."""
        merged = {**LLAMA2_7B_TEXT_DEFAULTS, **self.text_config}
        merged.setdefault("num_key_value_heads", merged["num_attention_heads"])
        merged.setdefault("pad_token_id", self.pad_token_id)
        return merged

    @property
    def text_vocab_size(self) -> int:
        """Rows of the LLM embedding (32064 for OpenVLA-7B: 32000 + <PAD>, padded to a multiple of 64)."""
        return int(self.llama_config_dict["vocab_size"])

    @property
    def action_vocab_end(self) -> int:
        """`vocab_size - pad_to_multiple_of` (32000): action tokens are the ids just below it."""
        return self.text_vocab_size - self.pad_to_multiple_of

    @property
    def fused_projector(self) -> bool:
        return "fused" in self.arch_specifier

    @property
    def greedy_action_tokens_only(self) -> bool:
        """vla-parl: greedy decoding takes the argmax over the 256 action tokens only. Set (in `extra`, so a
        checkpoint without it reads exactly as before) on a model trained with the action-token loss
        (`OpenVLA.loss_vocab = "action_tokens"`), whose other logits were never trained."""
        return bool(self.extra.get(GREEDY_ACTION_TOKENS_KEY, False))

    # ---- (de)serialisation ----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config.json") -> "OpenVLAConfig":
        missing = [k for k in _REQUIRED_KEYS if k not in data]
        if missing:
            raise CheckpointError(f"{source} is missing required key(s) {missing}; an OpenVLA config.json must "
                                  f"define {list(_REQUIRED_KEYS)} (see spec/openvla.md)")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: copy.deepcopy(v) for k, v in data.items() if k in names}
        extra = {k: copy.deepcopy(v) for k, v in data.items() if k not in names}
        try:
            return cls(**known, extra=extra)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: invalid OpenVLA config: {exc}") from exc

    @classmethod
    def from_json_file(cls, path: str | Path) -> "OpenVLAConfig":
        from vla_parl.models.openvla.checkpoint import read_checkpoint_json

        path = Path(path)
        data = read_checkpoint_json(path, "an OpenVLA checkpoint directory needs a config.json")
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model_type": "openvla", "architectures": ["OpenVLAForActionPrediction"]}
        out.update(copy.deepcopy(self.extra))
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.name == "norm_stats" and value is None:
                continue
            out[f.name] = copy.deepcopy(value)
        if all(not kw for kw in out["timm_model_kwargs"]):
            out.pop("timm_model_kwargs")  # keep published checkpoints byte-compatible
        return out
