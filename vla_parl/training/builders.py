"""What several recipes build the same way: the policy model, the critic, the accelerator.

All take the typed config sections of `vla_parl.recipes._configs` (flat arguments, no magic).

Policy classes (`policy.type`): an OpenVLA is built by `build_model` (and acted with through `OpenVLAPolicy`);
a diffusion or Gaussian policy by `build_bc_policy` (its observation encoder is the critic's
`ObservationEncoder`: a from-scratch ResNet-18 on the image, proprio, optionally hashed instruction words).
The critic and parl recipes start from `policy=DIR`: `load_start_policy` reads which class a directory holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from vla_parl.errors import ConfigError

__all__ = ["make_accelerator", "threads_per_process", "build_model", "build_critic", "build_bc_policy",
           "load_bc_policy", "load_start_policy", "as_policy", "instruction_tokenizer", "is_openvla", "trim_metrics",
           "resume_and_open_logger", "HASHED_VOCAB"]

HASHED_VOCAB = 4096   # hashing-tokenizer buckets of the instruction, for policies without a tokenizer of their own
_BC_CLASSES = ("DiffusionPolicy", "GaussianPolicy")

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def make_accelerator(run: Any, grad_accum: int = 1) -> Any:
    """The run's Accelerator. Under DDP, unused parameters are allowed: OpenVLA reads its ViTs' penultimate
    block, so the last block, final norm and pooling head never get gradients (nor a CQL critic's V head).

    Several processes on a machine without GPUs (`accelerate launch` of a multi-GPU or FSDP config, or
    torchrun) run on CPU with gloo: Accelerate would otherwise treat each process as a lone single-process
    run (they would race on the run directory), or fall back to one process under `--cpu`."""
    import os

    from accelerate import Accelerator, DistributedDataParallelKwargs

    on_cpu = not _has_gpu()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and on_cpu:
        os.environ["ACCELERATE_USE_CPU"] = "true"
    if run.threads:
        torch.set_num_threads(threads_per_process(run.threads, on_cpu=on_cpu))
    return Accelerator(gradient_accumulation_steps=grad_accum, mixed_precision=run.mixed_precision,
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


def threads_per_process(requested: int, *, on_cpu: bool) -> int:
    """`run.threads`, lowered so that the processes launched on this machine ask for no more threads than it has
    cores.

    Several CPU processes (torchrun, `accelerate launch`) that each spin `run.threads` threads on fewer cores
    than they ask for in all run many times slower than with one thread each (gloo's waits spin, and every
    matmul's threads fight for the cores): 3 steps of the tabletop critic under 2 processes on 2 cores take
    42.2 s at `run.threads=2` and 5.9 s at 1. Each process gets at most its share of the cores it may run on;
    with GPUs, or one process, the request stands."""
    import os
    import warnings

    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if not on_cpu or local <= 1:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = max(1, cores // local)
    if requested > share:
        warnings.warn(f"run.threads={requested} lowered to {share} per process: {local} processes share this "
                      f"machine's {cores} CPU cores (set run.threads<={share} to silence this)", stacklevel=3)
        return share
    return requested


def _has_gpu() -> bool:
    accelerator = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    return accelerator is not None and accelerator.type != "mps"


def build_model(model: Any, *, source: str = "", norm_stats: dict[str, Any] | None = None,
                device: Any = "cpu") -> Any:
    """`source` (a checkpoint dir/hub id) if given, else `model.name`: tiny | openvla_7b | dir | hub id.

    `norm_stats` ({key: statistics}) are merged into the model's, so serving un-normalises correctly.
    """
    from vla_parl.data import merge_norm_stats
    from vla_parl.models import OpenVLA, openvla_tiny

    name = source or model.name
    if name == "tiny":
        if norm_stats is None:   # a fresh tiny model: identity-like statistics under the configured key
            from vla_parl.models.openvla.presets import default_norm_stats

            norm_stats = default_norm_stats(model.unnorm_key)
        built = openvla_tiny(image_size=model.image_size, seed=model.seed, norm_stats=norm_stats,
                             vision=model.vision)
    else:
        hub_id = "openvla/openvla-7b" if name == "openvla_7b" else name
        built = OpenVLA.from_pretrained(hub_id, torch_dtype=_DTYPES[model.dtype], device=device,
                                        load_in_4bit=model.load_in_4bit)
        if norm_stats:
            built.config.norm_stats = merge_norm_stats(built.norm_stats, norm_stats)
    if model.gradient_checkpointing:
        built.enable_gradient_checkpointing()
    built.loss_vocab = model.loss_vocab
    return built


def build_bc_policy(policy: Any, *, action_dim: int, proprio_dim: int, norm_stats: dict[str, Any],
                    unnorm_key: str) -> Any:
    """A new `DiffusionPolicy` / `GaussianPolicy` from the `policy:` section (`vla_parl.policy.PolicyConfig`):
    the encoder reads the image (always), proprio when `policy.proprio` and the data has it (`proprio_dim`),
    the instruction when `policy.instruction`; `norm_stats[unnorm_key]` are saved with it."""
    from dataclasses import replace

    from vla_parl.critic.encoders import ObservationEncoder
    from vla_parl.policy import DiffusionPolicy, GaussianPolicy

    encoder = ObservationEncoder(image_size=policy.image_size, image_feature_dim=policy.image_feature_dim,
                                 shift_pad=policy.shift_pad, image_width=policy.image_width,
                                 vocab_size=HASHED_VOCAB if policy.instruction else 0,
                                 instruction_dim=policy.instruction_dim,
                                 proprio_dim=proprio_dim if policy.proprio else 0)
    cls, config = (DiffusionPolicy, policy.diffusion) if policy.type == "diffusion" else (GaussianPolicy, policy.gaussian)
    if config.action_dim and config.action_dim != action_dim:
        raise ConfigError(f"policy.{policy.type}.action_dim={config.action_dim}, but the data's actions have "
                          f"{action_dim} dims: leave it at 0 (filled in from the data)")
    built = cls(replace(config, action_dim=action_dim), encoder)
    built.norm_stats, built.unnorm_key = norm_stats, unnorm_key
    return built


def is_openvla(model: Any) -> bool:
    """Whether a start policy is an OpenVLA model (else a diffusion/Gaussian `Policy` module)."""
    return type(model).__name__ not in _BC_CLASSES


def load_bc_policy(source: str, *, device: Any = "cpu") -> Any | None:
    """The diffusion/Gaussian policy saved in directory `source` (its class read from the checkpoint), or None
    when `source` holds none (an OpenVLA directory, a hub id)."""
    from vla_parl.policy._common import checkpoint_kind

    kind = checkpoint_kind(source) if source else None
    if kind not in _BC_CLASSES:
        return None
    from vla_parl import policy as policies

    return getattr(policies, kind).load(source, map_location=device)


def load_start_policy(model: Any, source: str, *, device: Any = "cpu") -> Any:
    """What the critic and parl recipes start from: the diffusion/Gaussian policy saved in directory `source`
    (`load_bc_policy`), else the OpenVLA `build_model(model, source=source)` builds."""
    bc = load_bc_policy(source, device=device)
    return bc if bc is not None else build_model(model, source=source, device=device)


def as_policy(model: Any, unnorm_key: str) -> Any:
    """The `Policy` PA-RL sees: `OpenVLAPolicy` around an OpenVLA; a diffusion/Gaussian policy is one already."""
    if not is_openvla(model):
        return model
    from vla_parl.policy.openvla import OpenVLAPolicy

    return OpenVLAPolicy(model, unnorm_key=unnorm_key)


def instruction_tokenizer(model: Any) -> Any:
    """The tokenizer a new critic embeds instructions with: the VLA's; None (hashed words) for other classes."""
    return model.processor.tokenizer if is_openvla(model) else None


def build_critic(config: Any, tokenizer: Any, *, action_dim: int, proprio_dim: int, state_dim: int) -> Any:
    """A `QCritic` from a `vla_parl.critic.CriticConfig` (the recipes' `critic:` section), or loaded from its
    `checkpoint`; a new one gets its shapes from the policy (`action_dim`), its tokenizer and the data.
    `tokenizer` None: the critic hashes the instruction's words into `HASHED_VOCAB` buckets (its own, saved)."""
    from vla_parl.critic import QCritic

    def tokenize(texts: list[str]) -> list[list[int]]:
        return tokenizer.encode_batch(texts)

    custom = config.instruction and tokenizer is not None
    if config.checkpoint:
        return QCritic.load(config.checkpoint, tokenize=tokenize if custom else None)
    config = config.with_shapes(action_dim=action_dim,
                                vocab_size=tokenizer.vocab_size if tokenizer is not None else HASHED_VOCAB,
                                proprio_dim=proprio_dim, state_dim=state_dim)
    return QCritic(config, tokenize=tokenize if custom else None)


def trim_metrics(run_dir: Path, step: int) -> None:
    """After a resume from `step` of a checkpoint without a record count (written before counts were kept),
    drop the logged records of later steps (they will be logged again)."""
    from vla_parl.training.metrics import read_metrics, truncate_metrics

    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return
    records = read_metrics(path)
    keep = next((i for i, record in enumerate(records) if record.get("step", 0) > step), len(records))
    truncate_metrics(path, keep)


def resume_and_open_logger(accelerator: Any, checkpoints: Any, run_dir: Path, cfg: Any, resume: bool,
                           load: Callable[[Path], int]) -> tuple[Any, bool]:
    """A recipe's last set-up step: resume when asked, then open its metric logger.

    With `resume`, the newest intact checkpoint of `checkpoints` (damaged ones are skipped and reported) is
    loaded by `load(path)`, which returns the step it resumes at; the main rank then cuts `metrics.jsonl`
    back to the records written when that checkpoint was taken. Starting without a checkpoint (a fresh run,
    or a resume of a run killed before its first checkpoint) empties it: the log then holds exactly what an
    uninterrupted run writes. The logger is attached to `checkpoints` so every checkpoint records its count.
    Returns `(logger, resumed)`; the logger writes on the main rank only.
    """
    from vla_parl.config.schema import to_dict
    from vla_parl.training import MetricLogger
    from vla_parl.training.checkpointing import METRICS_RECORDS
    from vla_parl.training.metrics import truncate_metrics

    latest = checkpoints.latest() if resume else None
    records = 0
    if latest is not None:
        step = load(latest)
        records = checkpoints.trainer_state(latest).get(METRICS_RECORDS)
    if accelerator.is_main_process:
        if records is None:
            trim_metrics(run_dir, step)
        else:
            truncate_metrics(Path(run_dir) / "metrics.jsonl", records)
    accelerator.wait_for_everyone()
    logger = MetricLogger(run_dir, wandb=cfg.run.wandb, enabled=accelerator.is_main_process,
                          run_name=Path(run_dir).name, config=to_dict(cfg))
    checkpoints.metrics = logger
    return logger, latest is not None
