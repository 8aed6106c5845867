"""Pieces shared by the non-VLA policies: the observation-feature hook, an MLP, and checkpoint I/O.

The observation hook: a policy turns an `Observation` into a feature vector [B, F] with an
`obs_encoder` — any `nn.Module` with an integer attribute `output_dim` and `forward(obs) -> [B, F]`.
The default, `StateEncoder`, reads `Observation.state`. Image tasks plug in an image encoder (for
example `vla_parl.critic.ObservationEncoder`, which reads images, instructions, proprio and state).
To be restorable by `Policy.load`, an encoder also implements `config() -> dict` (JSON-able keyword
arguments of its constructor); the checkpoint then records its import path (only `vla_parl.*`
classes are re-imported on load).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vla_parl.errors import CheckpointError, ConfigError
from vla_parl.policy.base import Observation

__all__ = ["StateEncoder", "mlp", "encoder_spec", "build_encoder", "write_checkpoint", "read_checkpoint", "randn",
           "CheckpointedPolicyMixin", "checkpoint_kind"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class StateEncoder(nn.Module):
    """The identity feature map on `Observation.state`: [B, S] → [B, S] (float32)."""

    def __init__(self, state_dim: int) -> None:
        super().__init__()
        if state_dim < 1:
            raise ValueError(f"state_dim must be >= 1, got {state_dim}")
        self.state_dim = state_dim
        self.output_dim = state_dim

    def forward(self, obs: Observation) -> torch.Tensor:
        if obs.state is None:
            raise ValueError("this policy reads Observation.state, but obs.state is None; pass "
                             "Observation(state=...) or build the policy with an image obs_encoder")
        if obs.state.ndim != 2 or obs.state.shape[1] != self.state_dim:
            raise ValueError(f"Observation.state must be [B, {self.state_dim}], got {tuple(obs.state.shape)}")
        return obs.state.float()

    def config(self) -> dict[str, Any]:
        return {"state_dim": self.state_dim}


def mlp(in_dim: int, hidden_dims: tuple[int, ...] | list[int], out_dim: int,
        activation: type[nn.Module] = nn.Mish, layer_norm: bool = True) -> nn.Sequential:
    """Linear → (LayerNorm) → activation for each hidden width, then a final Linear to `out_dim`."""
    layers: list[nn.Module] = []
    width = in_dim
    for hidden in hidden_dims:
        layers.append(nn.Linear(width, hidden))
        if layer_norm:
            layers.append(nn.LayerNorm(hidden))
        layers.append(activation())
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def encoder_spec(encoder: nn.Module) -> dict[str, Any]:
    """The `{"class": "module:Name", "kwargs": {...}}` record that `build_encoder` restores."""
    config = getattr(encoder, "config", None)
    if not callable(config):
        raise TypeError(f"{type(encoder).__name__} has no config() method, so a checkpoint cannot rebuild "
                        "it; add `def config(self) -> dict` returning its constructor's keyword arguments")
    cls = type(encoder)
    return {"class": f"{cls.__module__}:{cls.__qualname__}", "kwargs": config()}


def build_encoder(spec: dict[str, Any], **extra_kwargs: Any) -> nn.Module:
    """Rebuild an observation encoder from `encoder_spec` output (only `vla_parl.*` classes)."""
    module_name, _, name = spec["class"].partition(":")
    if not module_name.startswith("vla_parl."):
        raise CheckpointError(f"refusing to import encoder class {spec['class']!r} from a checkpoint: only "
                              "vla_parl.* classes are restored; rebuild the policy by hand and load_state_dict")
    cls = getattr(importlib.import_module(module_name), name)
    return cls(**spec["kwargs"], **extra_kwargs)


def write_checkpoint(path: str | Path, config: dict[str, Any], module: nn.Module) -> None:
    """Write `config.json` and `model.safetensors` (the module's state dict) into directory `path`."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    from vla_parl.utils.tensors import require_finite

    require_finite(state, f"the {config.get('kind', 'model')} weights to {path}")
    save_file(state, str(path / WEIGHTS_FILE))


def read_checkpoint(path: str | Path, kind: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read what `write_checkpoint` wrote; `kind` must match `config["kind"]`."""
    from safetensors.torch import load_file

    path = Path(path)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise CheckpointError(f"{path} is not a {kind} checkpoint: {name} is missing "
                                  f"(write one with {kind}.save(path))")
    config = json.loads((path / CONFIG_FILE).read_text())
    if config.get("kind") != kind:
        raise CheckpointError(f"{path} holds a {config.get('kind')!r} checkpoint, not a {kind!r} one")
    return config, load_file(str(path / WEIGHTS_FILE))


def check_target_actions(target_actions: torch.Tensor, batch_size: int, action_dim: int) -> None:
    if target_actions.ndim != 2 or target_actions.shape != (batch_size, action_dim):
        raise ValueError(f"target_actions must be [B, A] = [{batch_size}, {action_dim}], "
                         f"got {tuple(target_actions.shape)}")


def randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device,
          dtype: torch.dtype) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device (so a CPU generator works for CUDA policies)."""
    draw_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=draw_device, dtype=dtype).to(device)


def check_num_samples(num_samples: int) -> None:
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")


class CheckpointedPolicyMixin:
    """What the nn.Module policies built as `cls(config, obs_encoder)` from a dataclass `config` (its type in
    `config_class`) share: `trainable_parameters`, `save` / `load` (with a `manifest.json`), the action
    normalisation statistics they were trained with (`norm_stats`, `unnorm_key`: `unnormalize` maps their
    [-1, 1] actions to robot units), `forward(obs, target_actions)` = the supervised loss (what a DDP
    wrapper runs), and `sampling()`: eval mode (no dropout, no augmentation) while sampling."""

    config_class: type

    def _init_policy(self, config: Any, obs_encoder: nn.Module) -> None:
        """Check the encoder and keep config, action_dim and obs_encoder (call after nn.Module.__init__)."""
        if not isinstance(getattr(obs_encoder, "output_dim", None), int):
            raise TypeError("obs_encoder needs an integer `output_dim` attribute (the feature size F)")
        if config.action_dim < 1:
            raise ConfigError(f"action_dim must be >= 1, got {config.action_dim} (a recipe fills it in from the data)")
        self.config = config
        self.action_dim = config.action_dim
        self.obs_encoder = obs_encoder
        self.norm_stats: dict[str, Any] | None = None
        self.unnorm_key: str | None = None

    def encode(self, obs: Observation) -> torch.Tensor:
        """φ(s) [B, F]: the observation moved to the policy's device, through `obs_encoder`."""
        device = next(self.parameters()).device  # type: ignore[attr-defined]
        return self.obs_encoder(obs.to(device))  # type: ignore[attr-defined]

    def forward(self, obs: Observation, target_actions: torch.Tensor) -> Any:
        """The supervised loss (`supervised_loss`), so a DDP-wrapped policy trains through its forward."""
        return self.supervised_loss(obs, target_actions)  # type: ignore[attr-defined]

    @contextmanager
    def sampling(self) -> Iterator[None]:
        """Eval mode inside (no dropout, no random shift), the previous mode restored after."""
        was_training = self.training  # type: ignore[attr-defined]
        self.eval()  # type: ignore[attr-defined]
        try:
            yield
        finally:
            self.train(was_training)  # type: ignore[attr-defined]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]  # type: ignore[attr-defined]

    def action_normalizer(self, unnorm_key: str | None = None) -> Any:
        """The `ActionNormalizer` of the statistics under `unnorm_key` (default: the policy's own key)."""
        from vla_parl.models.openvla.normalization import ActionNormalizer

        return ActionNormalizer.from_norm_stats(self.norm_stats, unnorm_key or self.unnorm_key)

    def unnormalize(self, actions: torch.Tensor | np.ndarray) -> np.ndarray:
        """Normalised actions [..., A] → robot units, with the statistics the policy was trained with."""
        array = actions.detach().cpu().numpy() if isinstance(actions, torch.Tensor) else np.asarray(actions)
        return self.action_normalizer().unnormalize(array)

    def save(self, path: str | Path) -> None:
        """`config.json` (class, config, encoder, statistics), `model.safetensors`, then `manifest.json`,
        written beside `path` and moved onto it once complete (a directory already there is replaced)."""
        import os
        import shutil
        from dataclasses import asdict

        from vla_parl.utils.manifest import write_manifest

        path = Path(path)
        tmp = path.parent / f".{path.name}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        config = {"kind": type(self).__name__, "config": asdict(self.config),  # type: ignore[attr-defined]
                  "obs_encoder": encoder_spec(self.obs_encoder),  # type: ignore[attr-defined]
                  "norm_stats": self.norm_stats, "unnorm_key": self.unnorm_key}
        write_checkpoint(tmp, config, self)  # type: ignore[arg-type]
        write_manifest(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu", **encoder_kwargs: Any):
        """Restore from `save`; `encoder_kwargs` go to the encoder (e.g. `tokenize=` for a custom tokenizer)."""
        from vla_parl.utils.manifest import MANIFEST, verify_manifest

        if (Path(path) / MANIFEST).is_file():
            verify_manifest(path)
        config, state = read_checkpoint(path, cls.__name__)
        policy = cls(cls.config_class(**config["config"]), build_encoder(config["obs_encoder"], **encoder_kwargs))
        policy.load_state_dict(state)  # type: ignore[attr-defined]
        policy.norm_stats, policy.unnorm_key = config.get("norm_stats"), config.get("unnorm_key")
        return policy.to(map_location)  # type: ignore[attr-defined]


def checkpoint_kind(path: str | Path) -> str | None:
    """The policy class a directory holds (`config.json`'s "kind", e.g. "DiffusionPolicy"), or None when it is
    not a `CheckpointedPolicyMixin` checkpoint (an OpenVLA model directory, a hub id, a missing path)."""
    file = Path(path).expanduser() / CONFIG_FILE
    if not file.is_file():
        return None
    try:
        kind = json.loads(file.read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None
