"""LoRA adapters for OpenVLA through peft: inject in place, save/load adapters, merge into a checkpoint.

Defaults: rank r = 32, α = 16, dropout 0, Gaussian init (OpenVLA's ``finetune.py``). A LoRA layer computes
``W x + (α / r) · B A x`` with A ∈ R^{r×d_in}, B ∈ R^{d_out×r}, B initialised to 0.

Target sets (`LoraSettings.target`, the recipes' ``lora.target``):

* ``linear`` (default): every ``nn.Linear`` of the vision backbone, projector and LLM, except the LM head.
* ``official``: what OpenVLA's ``finetune.py`` adapts with peft's ``target_modules="all-linear"``. The peft
  release it pins (0.11) turned that into the *last name components* of the linear layers (``q_proj``,
  ``qkv``, ``proj``, ``lm_head``, ...) and matched modules by suffix, so its exclusion of the output layer
  (a full name) never applied: the LM head is adapted too, and so are the ViTs' patch embeddings
  (``patch_embed.proj``, a ``Conv2d``, shares the suffix ``proj`` with the attention output). This set
  reproduces that; it adds r·(d + V) LM-head parameters (1.16 M at r 32 for the 7B) and two small
  convolution adapters.

The default stays ``linear`` so that existing runs, resumes and memory plans keep their numbers; choose
``official`` to match an OpenVLA fine-tune exactly.

The model keeps its class and API (`predict_action`, `forward`, ...) with adapters injected; only adapter
parameters are trainable. Adapters are saved as peft itself saves them: `adapter_config.json` (with
`base_model_name_or_path`) + `adapter_model.safetensors` with keys under ``base_model.model.``, so
``peft.PeftModel.from_pretrained(base, adapter_dir)`` loads them; `load_lora_adapter` reads those, adapters
written by peft (e.g. by OpenVLA's ``finetune.py``, whose target lists are name suffixes) and the older
files of this toolkit (keys without the prefix).
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

import torch
from torch import nn

from vla_parl.errors import CheckpointError, ConfigError
from vla_parl.models.openvla.configuration_lora import LORA_TARGETS, LoraSettings

__all__ = ["LoraSettings", "LORA_TARGETS", "lora_target_modules", "apply_lora", "save_lora_adapter",
           "load_lora_adapter", "merge_lora", "has_lora", "ADAPTER_NAME", "PEFT_KEY_PREFIX"]

ADAPTER_NAME = "default"
PEFT_KEY_PREFIX = "base_model.model."  # peft's PeftModel → LoraModel → our model
_ADAPTER_WEIGHTS = "adapter_model.safetensors"
_ADAPTER_CONFIG = "adapter_config.json"
_SETTINGS_METADATA = "vla_parl.lora_settings"  # our LoraSettings, in the safetensors header (peft ignores it)


def lora_target_modules(model: nn.Module, include_vision: bool = True, target: str = "linear") -> list[str]:
    """Full names of the layers to adapt (`target`: see the module docstring); `include_vision=False` keeps
    only the language model's."""
    if target not in LORA_TARGETS:
        raise ValueError(f"LoRA target {target!r} is not one of {LORA_TARGETS}")
    modules = list(model.named_modules())
    if target == "official":
        suffixes = {name.rsplit(".", 1)[-1] for name, m in modules if isinstance(m, nn.Linear)}
        names = [name for name, m in modules
                 if isinstance(m, (nn.Linear, nn.Conv2d)) and name.rsplit(".", 1)[-1] in suffixes]
    else:
        names = [name for name, m in modules if isinstance(m, nn.Linear) and not name.endswith("lm_head")]
    return [n for n in names if include_vision or n.startswith("language_model.")]


def has_lora(model: nn.Module) -> bool:
    from peft.tuners.lora import LoraLayer

    return any(isinstance(m, LoraLayer) for m in model.modules())


def _inject(model: nn.Module, settings: LoraSettings, target_modules: list[str]) -> nn.Module:
    """Inject adapters for `target_modules` (full names, or suffixes as peft matches them); freeze the rest."""
    from peft import LoraConfig, inject_adapter_in_model

    if has_lora(model):
        raise RuntimeError("this model already has LoRA adapters; merge_lora() it or load a fresh base model")
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=target_modules, bias="none",
                        init_lora_weights=True if settings.init == "default" else settings.init)
    inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    for name, param in model.named_parameters():
        param.requires_grad = "lora_" in name
    model._lora_settings = settings  # remembered for save_lora_adapter
    model._peft_config = config
    return model


def apply_lora(model: nn.Module, settings: LoraSettings | None = None) -> nn.Module:
    """Inject LoRA adapters in place; freeze everything else. Returns the same model object."""
    settings = settings or LoraSettings()
    if not settings.enabled:
        raise ConfigError("LoraSettings(enabled=False) asks for no adapters: fine-tune the model itself instead "
                          "of calling apply_lora (recipes: lora.enabled=false does exactly that)")
    return _inject(model, settings, lora_target_modules(model, settings.include_vision, settings.target))


def save_lora_adapter(model: nn.Module, directory: str | Path,
                      state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """Write adapter_config.json + adapter_model.safetensors (adapter weights only) as peft does, atomically.

    `state_dict`: the model's (full or gathered) state dict to take the adapter tensors from — e.g. one
    gathered from FSDP shards; default: the model's own.
    """
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from vla_parl.utils.files import atomic_path, atomic_write_text
    from vla_parl.utils.tensors import require_finite

    if not has_lora(model):
        raise RuntimeError("this model has no LoRA adapters to save; call apply_lora() first")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # adapters only: an adapted LM head is a LoRA layer, its full base weight is not part of the adapter
    state = get_peft_model_state_dict(model, state_dict=state_dict, adapter_name=ADAPTER_NAME,
                                      save_embedding_layers=False)
    require_finite(state, f"the LoRA adapter to {directory}")
    tensors = {PEFT_KEY_PREFIX + k: v.detach().contiguous().cpu() for k, v in state.items()}
    metadata = {"format": "pt", _SETTINGS_METADATA: json.dumps(asdict(model._lora_settings))}
    with atomic_path(directory / _ADAPTER_WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    config = model._peft_config.to_dict()
    config["target_modules"] = sorted(config["target_modules"])
    origin = getattr(model, "origin", None)
    config["base_model_name_or_path"] = getattr(origin, "name_or_path", None)
    config["revision"] = getattr(origin, "revision", None)
    atomic_write_text(directory / _ADAPTER_CONFIG, json.dumps(config, indent=2, default=str) + "\n")
    from vla_parl.models.openvla.model_card import write_adapter_card

    write_adapter_card(directory, config, origin)
    return directory


def _read_adapter(directory: Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, str]]:
    """(adapter_config.json, tensors with the peft prefix removed, safetensors metadata)."""
    from safetensors import safe_open

    config_path, weights_path = directory / _ADAPTER_CONFIG, directory / _ADAPTER_WEIGHTS
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CheckpointError(f"{path} not found: a LoRA adapter directory needs {_ADAPTER_CONFIG} and "
                                  f"{_ADAPTER_WEIGHTS} (written by save_lora_adapter or peft's save_pretrained)")
    try:
        saved = json.loads(config_path.read_text())
        with safe_open(str(weights_path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            state = {k.removeprefix(PEFT_KEY_PREFIX): handle.get_tensor(k) for k in handle.keys()}
    except Exception as exc:
        raise CheckpointError(f"could not read the LoRA adapter in {directory} ({type(exc).__name__}: {exc})") from exc
    if saved.get("peft_type", "LORA") != "LORA":
        raise CheckpointError(f"{config_path} holds a {saved['peft_type']} adapter; only LoRA adapters are supported")
    return saved, state, metadata


def _saved_settings(saved: dict, metadata: dict[str, str]) -> LoraSettings:
    """LoraSettings of a saved adapter: ours from the safetensors header (or, in older files, the config's
    `vla_parl` entry); peft's own fields for adapters written elsewhere."""
    ours = json.loads(metadata[_SETTINGS_METADATA]) if _SETTINGS_METADATA in metadata else saved.get("vla_parl", {})
    known = {f.name for f in fields(LoraSettings)}
    init = saved.get("init_lora_weights", "gaussian")
    settings = {"init": init if isinstance(init, str) else "default", **{k: v for k, v in ours.items() if k in known},
                "r": saved["r"], "alpha": saved["lora_alpha"], "dropout": saved.get("lora_dropout", 0.0)}
    return LoraSettings(**settings)


def load_lora_adapter(model: nn.Module, directory: str | Path, trainable: bool = False) -> nn.Module:
    """Inject the adapters saved in `directory` into a base model (in place) and load their weights.

    The adapted layers are the saved `target_modules` (full names, or suffixes as in peft's own files)."""
    from peft import set_peft_model_state_dict

    directory = Path(directory)
    saved, state, metadata = _read_adapter(directory)
    targets = saved.get("target_modules")
    if not targets:
        raise CheckpointError(f"{directory / _ADAPTER_CONFIG} has no target_modules; it is not a LoRA adapter")
    _inject(model, _saved_settings(saved, metadata), [targets] if isinstance(targets, str) else list(targets))
    result = set_peft_model_state_dict(model, state, adapter_name=ADAPTER_NAME)
    unexpected = getattr(result, "unexpected_keys", []) or []
    missing = [k for k in getattr(result, "missing_keys", []) or [] if "lora_" in k]
    if unexpected or missing:
        raise CheckpointError(f"LoRA adapter in {directory} does not fit this model: unexpected keys "
                              f"{unexpected[:5]}, missing adapter weights {missing[:5]}")
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
