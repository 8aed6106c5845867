"""PA-RL candidate generation inside the training step, spread over ranks.

Each rank takes its contiguous shard of the global batch (`shard_observation`) and samples the N
candidates of *its* states with the prefix-shared sampler (`OpenVLAPolicy.sample_actions`): one prefill
per state, the KV cache shared by the N continuations. Nothing is cached between steps and no worker
polls files (the official code's "caching workers"); the candidates always come from the current weights.

Under FSDP2 the model's weights are gathered once before sampling and freed after it, so decoding costs
no communication per token and ranks may hold different numbers of states. Under DDP the sampler runs
the unwrapped module and only the distillation forward goes through the DDP wrapper (gradient all-reduce).

Reproducibility across world sizes: `shard_observation(..., seed=s)` gives each state its own sampling
seed, hash(s, global row index); the policy then samples state by state with those seeds, so candidates —
and losses — do not depend on how many ranks share the batch (a 2-process run, its 1-process replay and
a resumed run agree). Without seeds the shard is sampled in one batched call with the given generator.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from vla_parl.models.openvla.modeling import OpenVLA
from vla_parl.policy.base import CandidateActions, Observation
from vla_parl.policy.openvla import OpenVLAPolicy, SamplingSettings

__all__ = ["DistributedOpenVLAPolicy", "gathered_weights", "shard_observation", "shard_range", "SAMPLE_SEEDS_KEY"]

SAMPLE_SEEDS_KEY = "sample_seeds"
_SEED_STRIDE = 1_000_003  # a prime > any batch size: seed(s, i) = s · stride + i is unique per (step, row)


def shard_range(batch_size: int, rank: int, world_size: int) -> range:
    """Rows of a batch of `batch_size` owned by `rank`: contiguous, sizes differ by at most one."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    base, extra = divmod(batch_size, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def shard_observation(obs: Observation, rank: int, world_size: int, seed: int | None = None) -> Observation:
    """This rank's rows of a global batch; with `seed`, each row carries its sampling seed in
    `extras["sample_seeds"]` (a function of `seed` and the *global* row index only)."""
    rows = shard_range(len(obs), rank, world_size)
    local = obs.index(slice(rows.start, rows.stop))
    extras = dict(obs.extras)
    if seed is not None:
        extras[SAMPLE_SEEDS_KEY] = [int(seed) * _SEED_STRIDE + i for i in rows]
    return replace(local, extras=extras)


class _ForwardThrough:
    """An OpenVLA whose *calls* go through a wrapper (DDP) and whose attributes are the module's own."""

    def __init__(self, module: OpenVLA, wrapper: nn.Module) -> None:
        self._module = module
        self._wrapper = wrapper

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def _fsdp_modules(model: nn.Module) -> list[nn.Module]:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


@contextlib.contextmanager
def gathered_weights(model: nn.Module) -> Iterator[None]:
    """Inside the block every FSDP2 unit of `model` holds its full weights (one all-gather per unit);
    on exit they are resharded. A no-op for unsharded models.

    Collective on entry and exit only: inside, forwards communicate nothing, so ranks may run different
    numbers of them (e.g. online episodes of different lengths). Re-entrant: a nested block (a sampling
    call inside a collection loop that holds the weights already) neither gathers nor reshards."""
    units = _fsdp_modules(model)
    if not units or getattr(model, "_vla_parl_gathered", 0):
        yield
        return
    # FSDP2 picks its root on the first root forward; sampling before any forward (e.g. right after a
    # resume) must fix the root first, else every unit would become its own root.
    units[0]._get_fsdp_state()._lazy_init()
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
        unit.unshard()
    model._vla_parl_gathered = 1
    try:
        yield
    finally:
        model._vla_parl_gathered = 0
        for unit in units:
            unit.set_reshard_after_forward(True, recurse=False)
            unit.reshard()


class DistributedOpenVLAPolicy(OpenVLAPolicy):
    """`OpenVLAPolicy` for a DDP- or FSDP2-wrapped OpenVLA (and for one process too).

    model: the OpenVLA (after `wrap_fsdp`, the same object). wrapper: the DDP module, if any; the
    distillation forward then runs through it so its gradients are all-reduced.
    """

    def __init__(self, model: OpenVLA, wrapper: nn.Module | None = None, sampling: SamplingSettings | None = None,
                 action_dim: int | None = None, unnorm_key: str | None = None) -> None:
        super().__init__(model, sampling=sampling, action_dim=action_dim, unnorm_key=unnorm_key)
        self.module = model
        if wrapper is not None:
            self.model = _ForwardThrough(model, wrapper)  # type: ignore[assignment]

    def sample_actions(self, obs: Observation, num_samples: int, *,
                       generator: torch.Generator | None = None) -> CandidateActions:
        """Candidates [B_local, N, A] for this rank's states (per-state seeds when the shard carries them)."""
        seeds = obs.extras.get(SAMPLE_SEEDS_KEY)
        with gathered_weights(self.module):
            if seeds is None:
                return super().sample_actions(obs, num_samples, generator=generator)
            if len(seeds) != len(obs):
                raise ValueError(f"{len(seeds)} sample seeds for {len(obs)} states")
            parts = [super(DistributedOpenVLAPolicy, self).sample_actions(
                obs.index([i]), num_samples, generator=torch.Generator(self.module.device).manual_seed(seed))
                for i, seed in enumerate(seeds)]
        return CandidateActions(actions=torch.cat([p.actions for p in parts]),
                                log_probs=torch.cat([p.log_probs for p in parts]),
                                tokens=torch.cat([p.tokens for p in parts]))
