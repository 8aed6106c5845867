"""The critic's observation encoder: images (ResNet-18), instruction (embedding bag), proprio, state.

`ObservationEncoder(obs) -> features [B, F]` concatenates, in this order, whichever parts are enabled:

- image: uint8 [B, H, W, 3] → resize to `image_size`² → random shift (pad `shift_pad`, training mode
  only) → timm `resnet18` (random init, GroupNorm, global average pool) → Linear → LayerNorm → tanh →
  `image_feature_dim`. `image_width` is the ResNet-18's base width: its four stages have w, 2w, 4w, 8w
  channels after the 64-channel stem (standard: 64, so 512-d features); 32 trains ≈ 3× faster on a CPU.
- instruction: a learned `nn.EmbeddingBag` (mean) over token ids → `instruction_dim`. Token ids come
  from either
    * a custom `tokenize: Callable[[list[str]], list[list[int]]]` with its `vocab_size` (for example the
      VLA's tokenizer: ``lambda texts: hf_tokenizer(texts)["input_ids"]``); a callable is not saved with
      the weights, so pass it again to `load`; or
    * the built-in `HashingTokenizer` (default): lower-cased words hashed (stable CRC-32) into
      `vocab_size` buckets, so the critic conditions on language with no VLA tokenizer at all.
- proprio: float [B, P] as is.    - state: float [B, S] as is (state tasks and toy MDPs).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from functools import partial
from math import gcd
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vla_parl.errors import ConfigError
from vla_parl.policy.base import Observation

__all__ = ["HashingTokenizer", "InstructionEncoder", "ImageEncoder", "ObservationEncoder", "random_shift"]

Tokenize = Callable[[list[str]], list[list[int]]]


class HashingTokenizer:
    """Words → ids in [0, vocab_size): `crc32(word.lower()) % vocab_size`; stable across processes."""

    _word = re.compile(r"[a-z0-9]+")

    def __init__(self, vocab_size: int) -> None:
        if vocab_size < 1:
            raise ConfigError(f"vocab_size must be >= 1, got {vocab_size}")
        self.vocab_size = vocab_size

    def __call__(self, texts: list[str]) -> list[list[int]]:
        return [[zlib.crc32(w.encode()) % self.vocab_size for w in self._word.findall(t.lower())] for t in texts]


class InstructionEncoder(nn.Module):
    """Instructions (B strings) → mean of learned token embeddings [B, embed_dim] (zeros if no tokens)."""

    def __init__(self, vocab_size: int, embed_dim: int, tokenize: Tokenize | None = None) -> None:
        super().__init__()
        if vocab_size < 1 or embed_dim < 1:
            raise ConfigError(f"vocab_size and embed_dim must be >= 1, got {vocab_size}, {embed_dim}")
        self.vocab_size = vocab_size
        self.tokenize: Tokenize = tokenize if tokenize is not None else HashingTokenizer(vocab_size)
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean")

    def forward(self, instructions: list[str]) -> torch.Tensor:
        token_lists = self.tokenize(list(instructions))
        if len(token_lists) != len(instructions):
            raise ValueError(f"tokenize returned {len(token_lists)} token lists for {len(instructions)} texts")
        device = self.embedding.weight.device
        flat = torch.tensor([t for ids in token_lists for t in ids], dtype=torch.long, device=device)
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}); got [{int(flat.min())}, "
                             f"{int(flat.max())}]: set the critic's vocab_size to the tokenizer's vocabulary size")
        lengths = torch.tensor([0] + [len(ids) for ids in token_lists[:-1]], dtype=torch.long, device=device)
        return self.embedding(flat, torch.cumsum(lengths, 0))


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-image random translation by up to ±pad pixels (replicate padding): float [B, C, H, W] → same."""
    B, _, H, W = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    shifts = torch.randint(0, 2 * pad + 1, (B, 2), generator=generator).to(images.device)
    rows = torch.arange(H, device=images.device)[None, :] + shifts[:, :1]        # [B, H]
    cols = torch.arange(W, device=images.device)[None, :] + shifts[:, 1:]        # [B, W]
    batch = torch.arange(B, device=images.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2)


class ImageEncoder(nn.Module):
    """uint8 [B, H, W, 3] → [B, out_dim] with a from-scratch ResNet-18 of base width `width` (random shift in
    training mode). GroupNorm with gcd(32, width) groups: 32 at the standard width."""

    def __init__(self, image_size: int = 112, out_dim: int = 256, shift_pad: int = 4, width: int = 64) -> None:
        super().__init__()
        import timm
        from timm.layers import GroupNorm

        if image_size < 32:
            raise ConfigError(f"image_size must be >= 32 for a ResNet-18, got {image_size}")
        if shift_pad < 0:
            raise ConfigError(f"shift_pad must be >= 0, got {shift_pad}")
        if width < 8:
            raise ConfigError(f"the ResNet-18 base width must be >= 8 (standard: 64), got {width}")
        self.image_size = image_size
        self.shift_pad = shift_pad
        channels = (width, 2 * width, 4 * width, 8 * width)
        self.backbone = timm.create_model("resnet18", pretrained=False, num_classes=0, channels=channels,
                                          norm_layer=partial(GroupNorm, num_groups=gcd(32, width)))
        self.projection = nn.Sequential(nn.Linear(self.backbone.num_features, out_dim), nn.LayerNorm(out_dim),
                                        nn.Tanh())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 [B, H, W, 3], got dtype {images.dtype}")
        x = images.permute(0, 3, 1, 2).float() / 255.0
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                              align_corners=False)
        if self.training and self.shift_pad > 0:
            x = random_shift(x, self.shift_pad)
        return self.projection(self.backbone((x - 0.5) / 0.5))


class ObservationEncoder(nn.Module):
    """Observation → features [B, output_dim]; each part is on when its size argument is > 0."""

    def __init__(self, *, image_size: int = 0, image_feature_dim: int = 256, shift_pad: int = 4,
                 image_width: int = 64, vocab_size: int = 0, instruction_dim: int = 64, proprio_dim: int = 0,
                 state_dim: int = 0, tokenize: Tokenize | None = None, custom_tokenizer: bool = False) -> None:
        super().__init__()
        if custom_tokenizer and tokenize is None:
            raise ConfigError("this encoder was built with a custom tokenize callable, which is not saved; "
                              "pass tokenize=... (the same tokenizer) when loading it")
        if tokenize is not None and vocab_size < 1:
            raise ConfigError("a custom tokenize callable needs vocab_size >= 1 (the tokenizer's vocabulary size)")
        self._config = dict(image_size=image_size, image_feature_dim=image_feature_dim, shift_pad=shift_pad,
                            image_width=image_width, vocab_size=vocab_size, instruction_dim=instruction_dim,
                            proprio_dim=proprio_dim, state_dim=state_dim, custom_tokenizer=tokenize is not None)
        self.image = ImageEncoder(image_size, image_feature_dim, shift_pad, image_width) if image_size > 0 else None
        self.instruction = InstructionEncoder(vocab_size, instruction_dim, tokenize) if vocab_size > 0 else None
        self.proprio_dim = proprio_dim
        self.state_dim = state_dim
        self.output_dim = ((image_feature_dim if self.image else 0) + (instruction_dim if self.instruction else 0)
                           + proprio_dim + state_dim)
        if self.output_dim == 0:
            raise ConfigError("the observation encoder reads nothing: set at least one of image_size, "
                              "vocab_size, proprio_dim, state_dim > 0")

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    @staticmethod
    def _need(value: Any, name: str, flag: str) -> Any:
        if value is None:
            raise ValueError(f"the critic encoder reads Observation.{name} ({flag} > 0) but obs.{name} is None; "
                             f"pass it, or build the encoder with {flag}=0")
        return value

    def _vector(self, value: torch.Tensor | None, name: str, dim: int) -> torch.Tensor:
        value = self._need(value, name, f"{name}_dim")
        if value.ndim != 2 or value.shape[1] != dim:
            raise ValueError(f"Observation.{name} must be [B, {dim}], got {tuple(value.shape)}")
        return value.float()

    def forward(self, obs: Observation) -> torch.Tensor:
        parts: list[torch.Tensor] = []
        if self.image is not None:
            parts.append(self.image(self._need(obs.images, "images", "image_size")))
        if self.instruction is not None:
            parts.append(self.instruction(self._need(obs.instructions, "instructions", "vocab_size")))
        if self.proprio_dim:
            parts.append(self._vector(obs.proprio, "proprio", self.proprio_dim))
        if self.state_dim:
            parts.append(self._vector(obs.state, "state", self.state_dim))
        device = parts[0].device
        return torch.cat([p.to(device) for p in parts], dim=-1)
