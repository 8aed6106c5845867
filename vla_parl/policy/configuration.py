"""The policy configs, torch-free: the recipes' `policy:` section and the non-VLA policy classes' own configs.

`PolicyConfig` is the `policy:` section of the `sft` recipe (`vla-parl run sft policy.type=diffusion`):

- `type`: `openvla` (the VLA of `model:`, the default), `diffusion` (`DiffusionPolicy`, DDPM ε-prediction)
  or `gaussian` (`GaussianPolicy`, NLL);
- for diffusion/Gaussian, what the observation encoder reads — the camera image through a ResNet-18
  trained from scratch at `image_size` px with random-shift augmentation (the official PA-RL CALVIN setting:
  100 px), the robot's proprioception when the data has it, the instruction (hashed word embeddings) when
  `instruction` is on (off by default: the official diffusion policy is single-task, no language) — and the
  class's network (`diffusion:` / `gaussian:`).

A checkpoint of a diffusion/Gaussian policy records its class, so the `critic` and `parl` recipes load one
with `policy=DIR` and need no `policy.type`.

`DiffusionPolicyConfig` defaults are the official PA-RL diffusion actor (the IDQL DDPM it builds on; the
spec's "5 cosine steps, MLP-ResNet ε-net with LayerNorm and dropout"): K = 5 denoising steps on a cosine
β schedule; ε_θ an MLP-ResNet of 3 blocks of width 256 (each: dropout 0.1 → LayerNorm → Linear 4·256 →
Mish → Linear 256, plus the skip), with a 64-d sinusoidal step embedding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vla_parl.config.schema import OutOfRangeError, check_range
from vla_parl.errors import ConfigError

__all__ = ["PolicyConfig", "DiffusionPolicyConfig", "GaussianPolicyConfig", "POLICY_TYPES", "BETA_SCHEDULES"]

POLICY_TYPES = ("openvla", "diffusion", "gaussian")
BETA_SCHEDULES = ("cosine", "linear")


@dataclass
class DiffusionPolicyConfig:
    """DDPM policy: K steps, the β schedule, and the MLP-ResNet ε-net. `action_dim` 0 in a recipe's YAML:
    filled in from the data when the policy is built."""

    action_dim: int = 0
    num_diffusion_steps: int = 5       # K (official: 5)
    beta_schedule: str = "cosine"      # cosine | linear
    hidden_dim: int = 256              # width of the residual stream
    num_blocks: int = 3                # MLP-ResNet blocks
    dropout: float = 0.1               # in every block (training mode only)
    layer_norm: bool = True
    time_embed_dim: int = 64

    def __post_init__(self) -> None:
        check_range("action_dim", self.action_dim, low=0)
        check_range("num_diffusion_steps", self.num_diffusion_steps, low=1)
        check_range("hidden_dim", self.hidden_dim, low=1)
        check_range("num_blocks", self.num_blocks, low=1)
        check_range("dropout", self.dropout, low=0, high=1, high_open=True)
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ConfigError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}")
        if self.time_embed_dim < 2 or self.time_embed_dim % 2:
            raise ConfigError(f"time_embed_dim must be an even number >= 2, got {self.time_embed_dim}")


@dataclass
class GaussianPolicyConfig:
    """Gaussian MLP policy: the MLP widths and the bounds of log σ. `action_dim` as for diffusion."""

    action_dim: int = 0
    hidden_dims: tuple[int, ...] = (256, 256)
    log_std_min: float = -5.0
    log_std_max: float = 1.0

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(int(h) for h in self.hidden_dims)
        check_range("action_dim", self.action_dim, low=0)
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise OutOfRangeError("hidden_dims", list(self.hidden_dims), "one or more layer widths >= 1, e.g. [256, 256]")
        if not self.log_std_min < self.log_std_max:
            raise ConfigError(f"log_std_min ({self.log_std_min}) must be < log_std_max ({self.log_std_max})")


@dataclass
class PolicyConfig:
    """The `policy:` section: which class, what a diffusion/Gaussian policy reads, and its network."""

    type: Literal["openvla", "diffusion", "gaussian"] = "openvla"
    image_size: int = 100              # the ResNet-18's input (official CALVIN: 100 px); >= 32
    image_width: int = 64              # the ResNet-18's base width (stages w, 2w, 4w, 8w; standard and official: 64)
    image_feature_dim: int = 256
    shift_pad: int = 4                 # random-shift augmentation while training (pixels)
    proprio: bool = True               # read the robot's proprioception when the data has it
    instruction: bool = False          # condition on the instruction (hashed words; the official policy: no)
    instruction_dim: int = 32
    diffusion: DiffusionPolicyConfig = field(default_factory=DiffusionPolicyConfig)
    gaussian: GaussianPolicyConfig = field(default_factory=GaussianPolicyConfig)

    def __post_init__(self) -> None:
        if self.type not in POLICY_TYPES:
            raise ConfigError(f"policy.type must be one of {POLICY_TYPES}, got {self.type!r}")
        if self.image_size < 32:
            raise OutOfRangeError("image_size", self.image_size, ">= 32 (the ResNet-18 image encoder)")
        check_range("image_width", self.image_width, low=8)
        check_range("image_feature_dim", self.image_feature_dim, low=1)
        check_range("shift_pad", self.shift_pad, low=0)
        check_range("instruction_dim", self.instruction_dim, low=1)
