"""`LoraSettings`: OpenVLA's LoRA adapters, torch-free (the recipes' `lora:` YAML section as is).

Saved with every adapter (`save_lora_adapter` writes it into the safetensors header) and read back by
`load_lora_adapter`; `vla_parl.models.openvla.lora` applies it. Defaults: OpenVLA's ``finetune.py``
(r = 32, α = 16, dropout 0, Gaussian init); the target sets are explained in that module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vla_parl.config.schema import check_range
from vla_parl.errors import ConfigError

__all__ = ["LoraSettings", "LORA_TARGETS"]

LORA_TARGETS = ("linear", "official")


@dataclass
class LoraSettings:
    enabled: bool = True             # recipes: false = full fine-tune (no adapters; the tiny demo model)
    r: int = 32
    alpha: int = 16
    dropout: float = 0.0
    init: str = "gaussian"           # peft's init_lora_weights: gaussian (official) | default (Kaiming) | ...
    include_vision: bool = True      # also adapt the vision backbone and projector (false: the LLM only)
    # linear: every linear layer but the LM head; official: OpenVLA finetune.py's set (adds the LM head and
    # the ViT patch embeddings; see vla_parl.models.openvla.lora)
    target: Literal["linear", "official"] = "linear"

    def __post_init__(self) -> None:
        check_range("r", self.r, low=1)
        check_range("alpha", self.alpha, low=0, low_open=True)
        check_range("dropout", self.dropout, low=0, high=1, high_open=True)
        if self.target not in LORA_TARGETS:
            raise ConfigError(f"LoRA target {self.target!r} is not one of {LORA_TARGETS} (see vla_parl.models."
                              "openvla.lora: 'official' is OpenVLA finetune.py's set, 'linear' leaves out the LM head)")
