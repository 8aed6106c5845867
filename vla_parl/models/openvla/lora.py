"""LoRA adapters for OpenVLA through peft: inject in place, save/load adapters, merge into a checkpoint.

Defaults are the official fine-tuning ones: rank r = 32, α = 16, dropout 0, Gaussian init, on every
linear layer (vision backbone, projector and LLM) except the LM head. A LoRA layer computes
``W x + (α / r) · B A x`` with A ∈ R^{r×d_in}, B ∈ R^{d_out×r}, B initialised to 0.

The model keeps its class and API (`predict_action`, `forward`, ...) with adapters injected; only adapter
parameters are trainable. Adapters are saved in peft's format (`adapter_config.json` +
`adapter_model.safetensors`), so peft users can read them too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from vla_parl.errors import CheckpointError

__all__ = ["LoraSettings", "lora_target_modules", "apply_lora", "save_lora_adapter", "load_lora_adapter",
           "merge_lora", "has_lora", "ADAPTER_NAME"]

ADAPTER_NAME = "default"
_ADAPTER_WEIGHTS = "adapter_model.safetensors"
_ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class LoraSettings:
    r: int = 32
    alpha: int = 16
    dropout: float = 0.0
    init: str = "gaussian"  # peft's init_lora_weights: "gaussian" (official) or "default" (Kaiming)
    include_vision: bool = True  # also adapt the vision backbone and projector ("all-linear")

    def __post_init__(self) -> None:
        if self.r <= 0 or self.alpha <= 0:
            raise ValueError(f"LoRA rank and alpha must be positive, got r={self.r}, alpha={self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")


def lora_target_modules(model: nn.Module, include_vision: bool = True) -> list[str]:
    """Full names of the linear layers to adapt: all of them except the LM head."""
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or name.endswith("lm_head"):
            continue
        if not include_vision and not name.startswith("language_model."):
            continue
        names.append(name)
    return names


def has_lora(model: nn.Module) -> bool:
    from peft.tuners.lora import LoraLayer

    return any(isinstance(m, LoraLayer) for m in model.modules())


def _peft_config(model: nn.Module, settings: LoraSettings):
    from peft import LoraConfig

    return LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=lora_target_modules(model, settings.include_vision),
                      init_lora_weights=True if settings.init == "default" else settings.init, bias="none")


def apply_lora(model: nn.Module, settings: LoraSettings | None = None) -> nn.Module:
    """Inject LoRA adapters in place; freeze everything else. Returns the same model object."""
    from peft import inject_adapter_in_model

    if has_lora(model):
        raise RuntimeError("this model already has LoRA adapters; merge_lora() it or load a fresh base model")
    settings = settings or LoraSettings()
    config = _peft_config(model, settings)
    inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    for name, param in model.named_parameters():
        param.requires_grad = "lora_" in name
    model._lora_settings = settings  # remembered for save_lora_adapter
    model._peft_config = config
    return model


def save_lora_adapter(model: nn.Module, directory: str | Path,
                      state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """Write adapter_config.json + adapter_model.safetensors (adapter weights only), atomically.

    `state_dict`: the model's (full or gathered) state dict to take the adapter tensors from — e.g. one
    gathered from FSDP shards; default: the model's own.
    """
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from vla_parl.utils.files import atomic_path, atomic_write_text

    if not has_lora(model):
        raise RuntimeError("this model has no LoRA adapters to save; call apply_lora() first")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = get_peft_model_state_dict(model, state_dict=state_dict, adapter_name=ADAPTER_NAME)
    with atomic_path(directory / _ADAPTER_WEIGHTS) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp), metadata={"format": "pt"})
    config = model._peft_config.to_dict()
    config["target_modules"] = sorted(config["target_modules"])
    config["vla_parl"] = asdict(model._lora_settings)
    atomic_write_text(directory / _ADAPTER_CONFIG, json.dumps(config, indent=2, default=str) + "\n")
    return directory


def load_lora_adapter(model: nn.Module, directory: str | Path, trainable: bool = False) -> nn.Module:
    """Inject the adapters saved in `directory` into a base model (in place) and load their weights."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    directory = Path(directory)
    config_path, weights_path = directory / _ADAPTER_CONFIG, directory / _ADAPTER_WEIGHTS
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CheckpointError(f"{path} not found: a LoRA adapter directory needs {_ADAPTER_CONFIG} and "
                                  f"{_ADAPTER_WEIGHTS} (written by save_lora_adapter)")
    try:
        saved = json.loads(config_path.read_text())
        state = load_file(str(weights_path))
    except Exception as exc:
        raise CheckpointError(f"could not read the LoRA adapter in {directory} ({type(exc).__name__}: {exc})") from exc
    ours = saved.get("vla_parl", {})
    settings = LoraSettings(r=saved["r"], alpha=saved["lora_alpha"], dropout=saved.get("lora_dropout", 0.0),
                            init=ours.get("init", "gaussian"), include_vision=ours.get("include_vision", True))
    apply_lora(model, settings)
    result = set_peft_model_state_dict(model, state, adapter_name=ADAPTER_NAME)
    unexpected = getattr(result, "unexpected_keys", []) or []
    if unexpected:
        raise CheckpointError(f"LoRA adapter in {directory} does not fit this model: unexpected keys {unexpected[:5]}")
    for name, param in model.named_parameters():
        param.requires_grad = trainable and "lora_" in name
    return model


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight (W ← W + (α/r) B A) and remove the LoRA layers, in place."""
    from peft.tuners.lora import LoraLayer

    if not has_lora(model):
        raise RuntimeError("this model has no LoRA adapters to merge")
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
    for param in model.parameters():
        param.requires_grad = True
    for attr in ("_lora_settings", "_peft_config"):
        if hasattr(model, attr):
            delattr(model, attr)
    return model
