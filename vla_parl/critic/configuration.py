"""`CriticConfig`: what the PA-RL critic reads and its network, torch-free (the recipes' `critic:` section as is).

Two kinds of fields, as in LeRobot's configs (whose input/output features are filled in from the dataset):

- knobs a user sets: the network (`hidden_dims`, `num_q_heads`, `target_pair_size`, `value_head`, the image
  encoder's `image_size` / `image_feature_dim` / `shift_pad`, `instruction_dim`), which inputs to read
  (`instruction`, `proprio`, `privileged_state`), and, for the recipes, a saved critic to start from
  (`checkpoint`);
- shapes the built critic has (`action_dim`, `vocab_size`, `proprio_dim`, `state_dim`, `custom_tokenizer`):
  0 in a recipe's YAML, filled in from the policy, its tokenizer and the data when the critic is built
  (`with_shapes`), and saved with the weights.

`QCritic(config)` reads only the shapes and the network knobs; it records which inputs it reads in the
booleans, so a saved config always describes the saved network.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from vla_parl.config.schema import OutOfRangeError, check_range
from vla_parl.errors import ConfigError

__all__ = ["CriticConfig"]


@dataclass
class CriticConfig:
    """The critic: a saved one to start from, or the inputs to read and the network to build."""

    checkpoint: Optional[str] = None   # recipes: start from a saved critic (the critic recipe's final/critic); parl:
                                       # required, or "fresh" to train a new critic from scratch
    hidden_dims: tuple[int, ...] = (256, 256)
    num_q_heads: int = 2
    target_pair_size: int = 2          # the TD target is the min over this many randomly chosen target heads
    value_head: bool = False           # V(s), which IQL needs
    image_size: int = 0                # > 0: ResNet-18 image encoder at this size (>= 32); 0: no image
    image_width: int = 64              # the ResNet-18's base width (stages w, 2w, 4w, 8w; standard: 64)
    image_feature_dim: int = 64
    shift_pad: int = 4                 # random-shift augmentation of the images (pixels)
    instruction: bool = True           # condition on the instruction (the policy's tokenizer)
    instruction_dim: int = 16
    proprio: bool = True               # the robot's proprioception, when the data has it
    privileged_state: bool = True      # the simulator's target-block position (asymmetric critic), when recorded
    # the built critic's shapes: 0 until it is built (from the policy, its tokenizer and the data)
    action_dim: int = 0
    vocab_size: int = 0                # instruction token ids in [0, vocab_size); 0: no instruction
    proprio_dim: int = 0
    state_dim: int = 0
    custom_tokenizer: bool = False     # set when the critic is built with a `tokenize` callable

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(int(h) for h in self.hidden_dims)
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise OutOfRangeError("hidden_dims", list(self.hidden_dims),
                                  "one or more layer widths >= 1, e.g. [256, 256]")
        check_range("target_pair_size", self.target_pair_size, low=1)
        check_range("num_q_heads", self.num_q_heads, low=self.target_pair_size)
        check_range("image_width", self.image_width, low=8)
        check_range("image_feature_dim", self.image_feature_dim, low=1)
        check_range("instruction_dim", self.instruction_dim, low=1)
        check_range("shift_pad", self.shift_pad, low=0)
        if 0 < self.image_size < 32 or self.image_size < 0:
            raise OutOfRangeError("image_size", self.image_size, "0 (no image) or >= 32")
        for name in ("action_dim", "vocab_size", "proprio_dim", "state_dim"):
            check_range(name, getattr(self, name), low=0)

    def with_shapes(self, *, action_dim: int, vocab_size: int, proprio_dim: int, state_dim: int) -> "CriticConfig":
        """The config of the critic to build: the shapes of what it reads, for the inputs it is asked to read
        (`vocab_size` when `instruction`, `proprio_dim` when `proprio`, `state_dim` when `privileged_state`);
        a shape already set must agree. No checkpoint: the result describes a new network."""
        shapes = {"action_dim": action_dim, "vocab_size": vocab_size if self.instruction else 0,
                  "proprio_dim": proprio_dim if self.proprio else 0,
                  "state_dim": state_dim if self.privileged_state else 0}
        for name, value in shapes.items():
            given = getattr(self, name)
            if given and given != value:
                raise ConfigError(f"critic.{name}={given}, but the policy and data give {value}: leave "
                                  f"critic.{name} at 0 (it is filled in when the critic is built)")
        if not any((self.image_size, shapes["vocab_size"], shapes["proprio_dim"], shapes["state_dim"])):
            raise ConfigError("the critic reads nothing: enable one of critic.image_size, critic.instruction, "
                              "critic.proprio, critic.privileged_state (with data that has it)")
        return replace(self, checkpoint=None, **shapes)

    def described(self, *, custom_tokenizer: bool) -> "CriticConfig":
        """This config as the description of a built network: the input booleans say what it reads."""
        return replace(self, instruction=self.vocab_size > 0, proprio=self.proprio_dim > 0,
                       privileged_state=self.state_dim > 0, custom_tokenizer=custom_tokenizer)
