"""Typed configs of the recipes: every YAML under `configs/` maps 1:1 onto one of these dataclasses.

This module imports no torch: `vla-parl run` validates a config (unknown keys, wrong types, missing dataset
paths) in well under a second, before any heavy import. Sections are shared between recipes so the same
YAML block means the same thing everywhere. The PA-RL components' sections are the library's own
(torch-free) configs, used as they are: `critic` is `vla_parl.critic.CriticConfig`, `objective` is
`vla_parl.parl.CriticUpdateConfig`, `action_optimizer` is `vla_parl.parl.ImprovementConfig`, and `lora` is
`vla_parl.models.openvla.configuration_lora.LoraSettings`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Optional

from vla_parl.config.schema import check_range
from vla_parl.errors import ConfigError
from vla_parl.critic.configuration import CriticConfig
from vla_parl.models.openvla.configuration_lora import LoraSettings
from vla_parl.parl.configuration import CriticUpdateConfig, ImprovementConfig
from vla_parl.policy.configuration import PolicyConfig

__all__ = ["ModelSection", "RLDSSection", "DataSection", "AdamSection", "OptimSection", "CriticOptimSection",
           "ParlCriticOptimSection", "PolicyOptimSection", "RunSection", "SFTRecipeConfig",
           "CriticRecipeConfig", "ParlSection", "CalvinOnlineSection", "RobotOnlineSection", "OnlineSection",
           "ParlRecipeConfig", "EvalSection", "DemoRecipeConfig", "RECIPE_CONFIGS", "DEFAULT_CONFIGS",
           "RANDOM_POLICY", "FRESH_CRITIC", "policy_source", "critic_source", "check_required_inputs"]


def _has_cuda() -> bool:
    """Whether torch sees a CUDA GPU. Imports torch, so only asked when a setting needs one."""
    import torch

    return torch.cuda.is_available()


@dataclass
class ModelSection:
    name: str = "tiny"                 # tiny | openvla_7b | <checkpoint dir or hub id>
    image_size: int = 56               # tiny only: 56 | 84 | 112 | 224
    # tiny only: dinosiglip = OpenVLA's fused DINOv2 + SigLIP towers; siglip = the SigLIP tower alone (about half
    # the vision compute, so a CPU can afford a larger image)
    vision: Literal["dinosiglip", "siglip"] = "dinosiglip"
    seed: int = 0                      # tiny only: weight init seed
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    load_in_4bit: bool = False         # QLoRA (CUDA + bitsandbytes)
    gradient_checkpointing: bool = False
    unnorm_key: str = "tabletop"       # name of the dataset statistics written into the model
    # the training cross-entropy's softmax: full = the whole 32064-token vocabulary (official OpenVLA);
    # action_tokens = the 256 action-token logits only, the distribution the sampler draws from (half the step
    # time of the tiny model on a CPU; the EOS position goes unsupervised)
    loss_vocab: Literal["full", "action_tokens"] = "full"

    def __post_init__(self) -> None:
        check_range("image_size", self.image_size, low=14)
        if self.name == "tiny" and self.image_size % 14:
            raise ConfigError(f"model.image_size must be a multiple of 14 (56, 112, 224), got {self.image_size}")
        if self.name != "tiny" and self.vision != "dinosiglip":
            raise ConfigError(f"model.vision={self.vision} builds a tiny model's towers, but model.name={self.name} "
                              "brings its own vision backbone: drop model.vision (or set model.name=tiny)")
        if self.dtype == "float16" and not _has_cuda():
            raise ConfigError("model.dtype=float16 needs a CUDA GPU, and none is available: use model.dtype=float32 "
                              "(or bfloat16) on a CPU")
        if self.load_in_4bit and not _has_cuda():
            raise ConfigError("model.load_in_4bit=true (QLoRA) needs a CUDA GPU and bitsandbytes, and no CUDA GPU is "
                              "available: set model.load_in_4bit=false")


@dataclass
class RLDSSection:
    """data.rlds: an RLDS dataset described in the config instead of registered in Python (see vla_parl.data.oxe).
    Leave image_key null to use the built-in / registered layout of data.dataset_name."""
    image_key: Optional[str] = None    # observation key of the primary camera
    wrist_image_key: Optional[str] = None
    state_keys: list[str] = field(default_factory=list)   # concatenated into proprio; "key[a:b]" slices
    state_encoding: Literal["pos_euler", "pos_quat", "joint", "none"] = "none"
    action_keys: list[str] = field(default_factory=lambda: ["action"])   # parts of the 7-D action; "zeros:N"
    # last action dim → 1 = open, 0 = closed
    gripper: Literal["as_is", "clip", "clip_invert", "invert", "relative", "binarize"] = "as_is"
    language_key: str = "language_instruction"   # or observation/<key>
    skip_without_language: bool = True


@dataclass
class DataSection:
    RETIRED_KEYS: ClassVar[dict[str, str]] = {
        "privileged_state": "nothing read it; whether the critic reads the simulator's target-block position is "
                            "critic.privileged_state"}
    kind: Literal["tabletop", "rlds", "lerobot", "calvin"] = "tabletop"
    # rlds: folder holding <dataset_name>/<version>/; lerobot: dataset folder (meta/info.json) or a Hub repo id
    # already in the HF cache; calvin: task_D_D folder
    path: Optional[str] = None
    dataset_name: str = "bridge_orig"  # rlds only
    rlds: RLDSSection = field(default_factory=RLDSSection)   # rlds: describe a dataset not built in
    # lerobot: camera feature read as the image (null: the first camera in meta/info.json), optional wrist camera,
    # state feature (proprio) and action feature
    camera_key: Optional[str] = None
    wrist_camera_key: Optional[str] = None
    state_key: str = "observation.state"
    action_key: str = "action"
    # datasets on disk: SFT streams steps through `num_workers` DataLoader workers per process, mixing them in a
    # buffer of `shuffle_buffer` steps (the memory knob: ~ shuffle_buffer × one step's bytes per worker); the
    # critic and PA-RL sample a transition store built once per dataset in `store_dir` (null: ~/.cache/vla_parl)
    shuffle_buffer: int = 1000
    num_workers: int = 0
    store_dir: Optional[str] = None
    # sft: OpenVLA's fine-tuning image augmentation (random resized crop at 90 % area, brightness ±0.2, contrast
    # and saturation ×[0.8, 1.2], hue ±0.05); the model records it and predict_action/eval/serve centre-crop
    image_aug: bool = False
    split: str = "train"               # rlds: TFDS split; calvin: training | validation
    max_episodes: Optional[int] = None  # rlds/calvin: read at most this many trajectories
    # calvin: sparse (−1 per step, 0 at the annotated window's last frame) | parl (PA-RL's 4 target subtasks
    # completed since the window's first frame − 4, as online.env=calvin_parl rewards)
    reward: Literal["sparse", "parl"] = "sparse"
    # tabletop (the built-in simulator): scripted noisy-expert demonstrations
    task: Literal["reach", "push", "lift"] = "reach"
    num_episodes: int = 60
    expert_noise: float = 1.0
    expert_speed: list[float] = field(default_factory=lambda: [1.0, 1.0])  # per-episode operator speed range
    targets: Optional[list[str]] = None  # target block colours to draw from (default: all; the rest are distractors)
    max_episode_steps: int = 25
    env_image_size: int = 56
    seed: int = 0                      # reset seeds seed .. seed + num_episodes - 1
    # rewards: PA-RL's sparse -1 per step, 0 on success
    gamma: float = 0.95

    def __post_init__(self) -> None:
        if self.kind != "tabletop":
            if self.path is None:
                example = {"rlds": "/data/oxe", "lerobot": "lerobot/pusht"}.get(self.kind, "/data/calvin/task_D_D")
                raise ConfigError(f"data.path is required for data.kind={self.kind}: add data.path={example}")
            hub_id = self.kind == "lerobot" and re.match(r"^[\w.-]+/[\w.-]+$", self.path) is not None
            if not hub_id and not Path(self.path).expanduser().exists():
                raise ConfigError(f"data.path {self.path!r} does not exist: point data.path at the "
                                  + {"rlds": "folder holding <dataset_name>/<version>/",
                                     "lerobot": "LeRobotDataset folder (holding meta/info.json) or a Hub repo id"}
                                  .get(self.kind, "CALVIN folder holding training/ and validation/"))
        if len(self.expert_speed) != 2 or not 0 < self.expert_speed[0] <= self.expert_speed[1] <= 1:
            raise ConfigError(f"data.expert_speed must be [low, high] with 0 < low <= high <= 1 (e.g. [0.3, 1.0]), "
                              f"got {self.expert_speed}")
        if self.targets is not None:
            from vla_parl.envs.tabletop import BLOCK_COLORS

            unknown = [c for c in self.targets if c not in BLOCK_COLORS] or ([] if self.targets else ["(empty)"])
            if unknown:
                raise ConfigError(f"data.targets has {', '.join(map(repr, unknown))}: use block colours from "
                                  f"{list(BLOCK_COLORS)} (e.g. data.targets=[red]) or null for all")
        if self.reward == "parl" and self.kind != "calvin":
            raise ConfigError(f"data.reward=parl labels CALVIN data with PA-RL's subtask rewards; "
                              f"data.kind={self.kind} takes data.reward=sparse")
        check_range("num_episodes", self.num_episodes, low=1)
        check_range("max_episodes", self.max_episodes, low=1, optional=True)
        check_range("expert_noise", self.expert_noise, low=0)
        check_range("max_episode_steps", self.max_episode_steps, low=1)
        check_range("env_image_size", self.env_image_size, low=1)
        check_range("shuffle_buffer", self.shuffle_buffer, low=0)
        check_range("num_workers", self.num_workers, low=0)
        check_range("gamma", self.gamma, low=0, high=1, high_open=True)


@dataclass
class AdamSection:
    """What every optimiser section holds. Each recipe's section adds the keys that recipe reads and no others;
    keys the sections once shared but a recipe never read are retired (ignored, with a warning naming the key
    that does the job)."""
    lr: float = 5e-4
    weight_decay: float = 0.0          # policies: AdamW's decoupled decay; critics: Adam's L2 penalty
    batch_size: int = 16               # per process

    def __post_init__(self) -> None:
        check_range("lr", self.lr, low=0, low_open=True)
        check_range("weight_decay", self.weight_decay, low=0)
        check_range("batch_size", self.batch_size, low=1)


_CRITIC_CLIP = "the critic's gradient clipping is objective.max_grad_norm"
_NO_ACCUMULATION = "this recipe does not accumulate gradients: raise batch_size instead"
_PARL_CRITIC_STEPS = ("the parl recipe's critic steps are parl.critic_steps_per_refresh (offline) and "
                      "online.critic_steps_per_round")
_PARL_POLICY_STEPS = ("the parl recipe's distillation steps are parl.distill_steps_per_refresh per refresh "
                      "(offline) and online.distill_steps_per_round")


@dataclass
class OptimSection(AdamSection):
    """sft's `optim` (the demo's `sft`): AdamW over the policy."""
    steps: int = 1000                  # optimiser steps
    grad_accum: int = 1
    max_grad_norm: Optional[float] = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("steps", self.steps, low=0)
        check_range("grad_accum", self.grad_accum, low=1)
        check_range("max_grad_norm", self.max_grad_norm, low=0, low_open=True, optional=True)


@dataclass
class ParlCriticOptimSection(AdamSection):
    """parl's `critic_optim`: Adam over the critic."""
    RETIRED_KEYS: ClassVar[dict[str, str]] = {"max_grad_norm": _CRITIC_CLIP, "steps": _PARL_CRITIC_STEPS,
                                              "grad_accum": _NO_ACCUMULATION}
    lr: float = 3e-4
    batch_size: int = 64


@dataclass
class CriticOptimSection(ParlCriticOptimSection):
    """critic's `optim` (the demo's `critic_optim`, whose parl phase trains the critic with the same lr,
    weight_decay and batch_size): Adam over the critic for `steps` steps."""
    RETIRED_KEYS: ClassVar[dict[str, str]] = {"max_grad_norm": _CRITIC_CLIP, "grad_accum": _NO_ACCUMULATION}
    steps: int = 500                   # optimiser steps

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("steps", self.steps, low=0)


@dataclass
class PolicyOptimSection(AdamSection):
    """parl's (and the demo's) `policy_optim`: AdamW over the policy for the distillation steps."""
    RETIRED_KEYS: ClassVar[dict[str, str]] = {"steps": _PARL_POLICY_STEPS, "grad_accum": _NO_ACCUMULATION}
    lr: float = 2e-5
    max_grad_norm: Optional[float] = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("max_grad_norm", self.max_grad_norm, low=0, low_open=True, optional=True)


@dataclass
class RunSection:
    seed: int = 0
    checkpoint_every: int = 100        # optimiser steps between checkpoints
    keep_checkpoints: int = 2
    log_every: int = 10
    stop_after: Optional[int] = None   # stop (as if killed) after this many steps: for resume tests
    wandb: bool = False                # offline mode unless WANDB_MODE is set
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    progress: bool = True
    threads: Optional[int] = None      # torch CPU threads (None: leave torch's default)
    # multi-process: "auto" follows the launch (an Accelerate FSDP config → FSDP2, else DDP); "fsdp" shards
    # the policy with FSDP2 under any launcher (plain torchrun too). Single-process runs ignore it.
    distributed: Literal["auto", "fsdp"] = "auto"

    def __post_init__(self) -> None:
        check_range("checkpoint_every", self.checkpoint_every, low=1)
        check_range("keep_checkpoints", self.keep_checkpoints, low=1)
        check_range("log_every", self.log_every, low=1)
        check_range("stop_after", self.stop_after, low=0, optional=True)
        check_range("threads", self.threads, low=1, optional=True)
        if self.mixed_precision == "fp16" and not _has_cuda():
            raise ConfigError("run.mixed_precision=fp16 needs a CUDA GPU, and none is available: set "
                              "run.mixed_precision=no on a CPU")
        if self.mixed_precision == "bf16" and not _has_cuda():
            import warnings

            warnings.warn("run.mixed_precision=bf16 has no effect without a CUDA GPU (Accelerate does not autocast "
                          "on a CPU): running in float32 (run.mixed_precision=no)", stacklevel=1)
            self.mixed_precision = "no"
        if self.wandb:
            from importlib.util import find_spec

            if find_spec("wandb") is None:
                raise ConfigError("run.wandb=true needs the 'wandb' package: pip install 'vla-parl[wandb]', "
                                  "or set run.wandb=false")


@dataclass
class SFTRecipeConfig:
    recipe: Literal["sft"] = "sft"
    # the policy class: openvla (model:, lora:) | diffusion | gaussian (BC with their own encoder and network)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    model: ModelSection = field(default_factory=ModelSection)
    lora: LoraSettings = field(default_factory=LoraSettings)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    run: RunSection = field(default_factory=RunSection)

    def __post_init__(self) -> None:
        if self.policy.type != "openvla" and self.data.image_aug:
            raise ConfigError(f"data.image_aug is OpenVLA's augmentation; a {self.policy.type} policy augments its "
                              f"images by random shifts (policy.shift_pad): set data.image_aug=false")


@dataclass
class CriticRecipeConfig:
    recipe: Literal["critic"] = "critic"
    policy: str = ""                   # required: the SFT policy (sft's final/model dir or a hub id), or "random"
                                       # for model.name's own weights (tiny: random; a smoke test)
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    critic: CriticConfig = field(default_factory=CriticConfig)
    objective: CriticUpdateConfig = field(default_factory=CriticUpdateConfig)
    # the operator saved with the critic (what eval and serve act with; the TD target uses objective.num_samples)
    action_optimizer: ImprovementConfig = field(default_factory=ImprovementConfig)
    optim: CriticOptimSection = field(default_factory=CriticOptimSection)
    candidate_cache_states: int = 512  # the frozen policy's candidates are sampled once for this many states
    run: RunSection = field(default_factory=RunSection)

    def __post_init__(self) -> None:
        check_range("candidate_cache_states", self.candidate_cache_states, low=1)


@dataclass
class ParlSection:
    # N candidates per state for the distillation targets and the choice rule: action_optimizer.num_samples,
    # action_optimizer.choice (the operator's settings, saved with the critic)
    distill_steps_per_refresh: int = 20  # offline: distillation steps between candidate-cache refreshes
    cache_states: int = 128            # states whose candidates are sampled per refresh
    offline_refreshes: int = 2
    critic_steps_per_refresh: int = 0  # offline critic steps (fresh policy samples) per refresh
    # candidates drawn state by state, each with its own seed (a function of the refresh and the state's
    # row): what a multi-process run always does (ranks sample their share of the states), so a 1-process
    # run with true reproduces it; null = true with > 1 process, else false (one batched generator)
    per_state_seeds: Optional[bool] = None
    # optimiser states reset at the offline→online switch: official PA-RL resets the critic's ([critic]); add
    # policy to also restart the distillation optimiser (our offline stage distils, the official one does not)
    reset_at_switch: list[Literal["critic", "policy"]] = field(default_factory=lambda: ["critic"])

    def __post_init__(self) -> None:
        unknown = sorted(set(self.reset_at_switch) - {"critic", "policy"})
        if unknown:
            raise ConfigError(f"parl.reset_at_switch may hold critic and/or policy, got {unknown}: e.g. "
                              "parl.reset_at_switch=[critic]")
        check_range("distill_steps_per_refresh", self.distill_steps_per_refresh, low=0)
        check_range("cache_states", self.cache_states, low=1)
        check_range("offline_refreshes", self.offline_refreshes, low=0)
        check_range("critic_steps_per_refresh", self.critic_steps_per_refresh, low=0)


@dataclass
class CalvinOnlineSection:            # online.env=calvin_parl: vla_parl.rollout.CalvinParlAdapter
    assets: Optional[str] = None       # CALVIN scene assets (calvin_env checkout); None: $CALVIN_ENV_DATA, ...
    image_size: int = 200              # rgb_static resized to this; must match the offline data's images
    max_steps: int = 360               # episode length (PA-RL: 360)
    instruction: Optional[str] = None  # None: the official sentences of the four subtasks, joined

    def __post_init__(self) -> None:
        check_range("image_size", self.image_size, low=1)
        check_range("max_steps", self.max_steps, low=1)
        if self.assets is not None and not Path(self.assets).expanduser().exists():
            raise ConfigError(f"online.calvin.assets {self.assets!r} does not exist: point it at a calvin_env "
                              "checkout (git clone https://github.com/mees/calvin_env) or set it to null to search "
                              "$CALVIN_ENV_DATA")


@dataclass
class RobotOnlineSection:             # online.env=robot: vla_parl.rollout.RobotEpisodes
    # the policy server's episode store (`vla-parl serve --episodes DIR`); read-only for the learner
    replay_dir: Optional[str] = None
    publish_dir: Optional[str] = None  # where v1, v2, ... are published (null: <run>/published); the server's
                                       # --policy-updates DIR
    episodes_per_round: Optional[int] = None  # new finished episodes per round (null: online.episodes_per_round)
    wait_timeout_s: float = 3600.0     # give up (the last round's checkpoint kept) after waiting this long
    poll_s: float = 2.0                # how often the store is checked for new episodes
    # what each version holds: adapter (LoRA, applied to the served base) | model (the whole merged policy);
    # null: adapter when lora.enabled, else model
    publish: Optional[Literal["model", "adapter"]] = None

    def __post_init__(self) -> None:
        check_range("episodes_per_round", self.episodes_per_round, low=1, optional=True)
        check_range("wait_timeout_s", self.wait_timeout_s, low=0, low_open=True)
        check_range("poll_s", self.poll_s, low=0, low_open=True)


@dataclass
class OnlineSection:
    # where online episodes are collected: tabletop (the built-in simulator; task, image size and episode
    # length from data.*) | calvin_parl (PA-RL's 4-task CALVIN setting on our CALVIN scene; see `calvin`) |
    # robot (episodes robots finish through the policy server; each round publishes a version; see `robot`)
    env: Literal["tabletop", "calvin_parl", "robot"] = "tabletop"
    rounds: int = 3
    episodes_per_round: int = 16
    distill_steps_per_round: int = 15
    critic_steps_per_round: int = 10
    # critic learning rate for the online rounds (null = critic_optim.lr): fine-tuning a pre-trained critic on
    # the first online data is steadier at a lower rate than its pre-training
    critic_lr: Optional[float] = None
    online_fraction: float = 0.5       # critic/distillation batches: half online replay, half offline data
    explore_temperature: float = 1.0   # policy sampling temperature when collecting (0 = greedy)
    # how collected episodes act: operator (PA-RL's improvement operator over policy samples drawn at
    # explore_temperature: N → top-k → local steps → action_optimizer.choice, as the official code collects) |
    # policy (one policy sample at explore_temperature)
    collect_with: Literal["operator", "policy"] = "operator"
    # UTD: when set, a round takes round(updates_per_env_step × env steps collected in it) critic steps and as
    # many distillation steps (official PA-RL: 1), instead of critic_steps_per_round / distill_steps_per_round
    updates_per_env_step: Optional[float] = None
    calvin: CalvinOnlineSection = field(default_factory=CalvinOnlineSection)
    robot: RobotOnlineSection = field(default_factory=RobotOnlineSection)

    def __post_init__(self) -> None:
        check_range("rounds", self.rounds, low=0)
        check_range("episodes_per_round", self.episodes_per_round, low=1)
        check_range("distill_steps_per_round", self.distill_steps_per_round, low=0)
        check_range("critic_steps_per_round", self.critic_steps_per_round, low=0)
        check_range("explore_temperature", self.explore_temperature, low=0)
        check_range("online_fraction", self.online_fraction, low=0, high=1)
        check_range("critic_lr", self.critic_lr, low=0, low_open=True, optional=True)   # null: critic_optim.lr
        check_range("updates_per_env_step", self.updates_per_env_step, low=0, low_open=True, optional=True)


# PA-RL's N and choice rule moved from `parl` into the operator's own section (vla_parl.config.schema)
_PARL_MOVED_KEYS = {"parl.num_samples": "action_optimizer.num_samples", "parl.choice": "action_optimizer.choice",
                    "online.actor": "online.collect_with"}


@dataclass
class ParlRecipeConfig:
    MOVED_KEYS: ClassVar[dict[str, str]] = _PARL_MOVED_KEYS
    recipe: Literal["parl"] = "parl"
    policy: str = ""                   # required: start policy (sft's final/model dir or hub id), or "random"
    model: ModelSection = field(default_factory=ModelSection)
    lora: LoraSettings = field(default_factory=LoraSettings)
    data: DataSection = field(default_factory=DataSection)
    critic: CriticConfig = field(default_factory=CriticConfig)
    objective: CriticUpdateConfig = field(default_factory=CriticUpdateConfig)
    action_optimizer: ImprovementConfig = field(default_factory=ImprovementConfig)   # distillation targets
    parl: ParlSection = field(default_factory=ParlSection)
    online: OnlineSection = field(default_factory=OnlineSection)
    policy_optim: PolicyOptimSection = field(default_factory=PolicyOptimSection)
    critic_optim: ParlCriticOptimSection = field(default_factory=ParlCriticOptimSection)
    run: RunSection = field(default_factory=RunSection)

    def __post_init__(self) -> None:
        if self.online.rounds <= 0:
            return
        env, kind = self.online.env, self.data.kind
        if env == "tabletop" and kind != "tabletop":
            fix = ("set online.env=calvin_parl (PA-RL's CALVIN setting)" if kind == "calvin"
                   else "no simulator goes with it: set online.rounds=0 (offline PA-RL only)")
            raise ConfigError(f"online.env=tabletop collects in the built-in simulator, whose episodes do not mix "
                              f"with data.kind={kind}: {fix}")
        if env == "calvin_parl" and kind != "calvin":
            other = "online.env=tabletop" if kind == "tabletop" else "online.rounds=0 (offline PA-RL only)"
            raise ConfigError(f"online.env=calvin_parl mixes CALVIN-scene episodes with CALVIN offline data: set "
                              f"data.kind=calvin (and data.path), or {other} for data.kind={kind}")
        if env == "calvin_parl" and self.data.reward != "parl":
            raise ConfigError("online.env=calvin_parl rewards (subtasks completed − 4) per step; label the offline "
                              "data the same way: set data.reward=parl")
        if env == "robot":
            _check_robot_online(self)


def _check_robot_online(cfg: ParlRecipeConfig) -> None:
    """online.env=robot: the store is named and what a version holds fits the policy. (What the critic reads,
    the robots must send: a critic that reads `state` needs episodes that carry one, checked as they arrive.)"""
    robot = cfg.online.robot
    if robot.replay_dir is None:
        raise ConfigError("online.env=robot needs online.robot.replay_dir: set it to the policy server's "
                          "--episodes DIR (e.g. online.robot.replay_dir=runs/robot/episodes)")
    if robot.publish == "adapter" and not cfg.lora.enabled:
        raise ConfigError("online.robot.publish=adapter publishes LoRA adapters, but lora.enabled=false: set "
                          "online.robot.publish=model (or null), or lora.enabled=true")


@dataclass
class EvalSection:
    episodes: int = 40                 # fixed seeded episodes per row
    seed: int = 10_000                 # reset seeds seed .. seed + episodes - 1 (disjoint from the demos)
    vgps_num_samples: int = 16         # V-GPS ablation: candidates re-ranked at every step
    gif_episodes: int = 2

    def __post_init__(self) -> None:
        check_range("episodes", self.episodes, low=1)
        check_range("vgps_num_samples", self.vgps_num_samples, low=1)
        check_range("gif_episodes", self.gif_episodes, low=0)


@dataclass
class DemoBCPolicySection:
    """A non-VLA policy class in the demo (`policies: [openvla, diffusion]`): its `policy:` section as the sft
    recipe takes it, its behaviour-cloning optimiser, its distillation optimiser, its state pool and its
    ablations (the top-level `ablations` are OpenVLA's). The critic, objective, operator, the rest of the PA-RL
    schedule and evaluation are the demo's shared sections."""

    policy: PolicyConfig = field(default_factory=lambda: PolicyConfig(type="diffusion", image_size=56,
                                                                     image_feature_dim=128))
    sft: OptimSection = field(default_factory=lambda: OptimSection(lr=1e-3, batch_size=32, steps=1000))
    policy_optim: PolicyOptimSection = field(default_factory=lambda: PolicyOptimSection(lr=3e-4, batch_size=32))
    # its own parl.cache_states (states whose candidates are sampled per refresh and online round);
    # null: parl.cache_states
    parl_cache_states: Optional[int] = None
    ablations: list[Literal["vgps", "no_local_steps"]] = field(default_factory=lambda: ["vgps"])

    def __post_init__(self) -> None:
        check_range("parl_cache_states", self.parl_cache_states, low=1, optional=True)


DEMO_POLICIES = ("openvla", "diffusion")


@dataclass
class DemoRecipeConfig:
    MOVED_KEYS: ClassVar[dict[str, str]] = _PARL_MOVED_KEYS
    recipe: Literal["demo"] = "demo"
    seeds: list[int] = field(default_factory=lambda: [0])
    # the policy classes trained by the same recipes on the same task: openvla (model:, lora:, sft:,
    # policy_optim:) and diffusion (diffusion:)
    policies: list[Literal["openvla", "diffusion"]] = field(default_factory=lambda: ["openvla"])
    # run the classes after the first at the same time, each in its own process (one core each with run.threads=1)
    parallel_policies: bool = True
    diffusion: DemoBCPolicySection = field(default_factory=DemoBCPolicySection)
    model: ModelSection = field(default_factory=ModelSection)
    lora: LoraSettings = field(default_factory=lambda: LoraSettings(enabled=False))
    data: DataSection = field(default_factory=DataSection)
    sft: OptimSection = field(default_factory=lambda: OptimSection(lr=1e-3, batch_size=32, steps=150))
    critic: CriticConfig = field(default_factory=CriticConfig)
    critic_optim: CriticOptimSection = field(
        default_factory=lambda: CriticOptimSection(lr=1e-3, batch_size=128, steps=400))
    candidate_cache_states: int = 512
    objective: CriticUpdateConfig = field(default_factory=CriticUpdateConfig)
    action_optimizer: ImprovementConfig = field(default_factory=lambda: ImprovementConfig(step_size=0.05))
    parl: ParlSection = field(default_factory=ParlSection)
    online: OnlineSection = field(default_factory=OnlineSection)
    policy_optim: PolicyOptimSection = field(default_factory=lambda: PolicyOptimSection(lr=3e-4, batch_size=32))
    eval: EvalSection = field(default_factory=EvalSection)
    ablations: list[Literal["vgps", "no_local_steps"]] = field(default_factory=lambda: ["vgps", "no_local_steps"])
    # online.env=robot: simulated robot processes feeding the policy server (vla_parl.demo.robot_loop)
    robot_processes: int = 2
    run: RunSection = field(default_factory=lambda: RunSection(threads=1))

    def __post_init__(self) -> None:
        check_range("robot_processes", self.robot_processes, low=1)
        if not self.seeds:
            raise ConfigError("seeds must list at least one seed, e.g. seeds=[0,1,2]")
        if not self.policies or len(set(self.policies)) != len(self.policies):
            raise ConfigError(f"policies must list each policy class once, from {list(DEMO_POLICIES)}; got "
                              f"{self.policies}")
        if self.diffusion.policy.type != "diffusion":
            raise ConfigError(f"diffusion.policy.type must be diffusion (the section of the demo's diffusion policy), "
                              f"got {self.diffusion.policy.type!r}")

        check_range("candidate_cache_states", self.candidate_cache_states, low=1)
        if self.data.kind != "tabletop":
            raise ConfigError("the demo runs on the built-in simulator: data.kind must be tabletop")
        if self.online.env not in ("tabletop", "robot"):
            raise ConfigError("the demo runs on the built-in simulator: online.env must be tabletop (in-process "
                              "episodes) or robot (simulated robots through a policy server)")
        robot = self.online.robot
        if self.online.env == "robot" and (robot.replay_dir is not None or robot.publish_dir is not None):
            raise ConfigError("online.env=robot in the demo: each seed's episode store and publish folder live in "
                              "its run dir (seed_<s>/robot/); leave online.robot.replay_dir and publish_dir unset")


RANDOM_POLICY = "random"   # `policy: random`: start from model.name's own weights (tiny: randomly initialised)
FRESH_CRITIC = "fresh"     # parl `critic.checkpoint: fresh`: a new, untrained critic


def policy_source(policy: str) -> str:
    """The `build_model` source of a `policy` value: "" (model.name) for `random`, else the value."""
    return "" if policy == RANDOM_POLICY else policy


def critic_source(section: CriticConfig) -> CriticConfig:
    """The section `build_critic` reads: `checkpoint: fresh` means no checkpoint (a new critic)."""
    from dataclasses import replace

    return replace(section, checkpoint=None) if section.checkpoint == FRESH_CRITIC else section


def check_required_inputs(cfg: object) -> None:
    """What a recipe starts from must be said, not defaulted: `policy` (critic, parl) and `critic.checkpoint`
    (parl). Raises a `ConfigError` naming the key and the fix; torch-free, so it fails in well under a second.

    A local-looking path that does not exist is reported as a missing directory (not tried as a hub id).
    """
    from vla_parl.cli._paths import check_model_source

    recipe = getattr(cfg, "recipe", "")
    if recipe not in ("critic", "parl"):
        return
    policy = cfg.policy  # type: ignore[attr-defined]
    if not policy:
        raise ConfigError(f"policy is required for the {recipe} recipe: add policy=runs/sft/final/model (the sft "
                          f"recipe's output, or a hub id), or policy={RANDOM_POLICY} to start from model.name's own "
                          f"weights (tiny: random; a smoke test)")
    check_model_source(policy, "policy", "point policy= at the sft recipe's final/model directory")
    checkpoint = cfg.critic.checkpoint  # type: ignore[attr-defined]
    if recipe == "parl" and not checkpoint:
        raise ConfigError(f"critic.checkpoint is required for the parl recipe: add "
                          f"critic.checkpoint=runs/critic/final/critic (the critic recipe's output), or "
                          f"critic.checkpoint={FRESH_CRITIC} to train a new critic from scratch")
    if checkpoint and checkpoint != FRESH_CRITIC:
        check_model_source(checkpoint, "critic.checkpoint", "point it at the critic recipe's final/critic directory")


RECIPE_CONFIGS = {"sft": SFTRecipeConfig, "critic": CriticRecipeConfig, "parl": ParlRecipeConfig,
                  "demo": DemoRecipeConfig}
DEFAULT_CONFIGS = {"sft": "sft_tabletop", "critic": "critic_tabletop", "parl": "parl_tabletop", "demo": "demo"}
