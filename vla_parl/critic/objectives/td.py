"""The PA-RL TD target shared by CQL and Cal-QL, and the random subset of ensemble heads it (and the
conservative term) uses.

    y = r + γ (1 − d) min_{i ∈ pair} Q̄_i(s', a'*),    a'* = action_optimization(s')  (argmax choice)

`pair` is a random subset of `pair_size` (default 2) of the E target heads, drawn once per update
(all heads when E ≤ pair_size). The conservative term of CQL / Cal-QL averages over a random subset of
`conservative_heads` online heads drawn the same way (`random_head_subset`).
"""

from __future__ import annotations

import torch

__all__ = ["random_head_subset", "min_over_random_subset", "td_target"]


def random_head_subset(q: torch.Tensor, subset_size: int = 2,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """q [E, ...] → q[subset] [S, ...]: `subset_size` heads of the leading (ensemble) axis drawn at random
    without replacement, S = min(E, subset_size).

    When E ≤ subset_size every head is returned, in order, and nothing is drawn from `generator` (so a
    2-head critic's random stream does not depend on this call)."""
    if subset_size < 1:
        raise ValueError(f"subset_size must be >= 1, got {subset_size}")
    num_heads = q.shape[0]
    if subset_size >= num_heads:
        return q
    device = generator.device if generator is not None else torch.device("cpu")
    idx = torch.randperm(num_heads, generator=generator, device=device)[:subset_size].to(q.device)
    return q.index_select(0, idx)


def min_over_random_subset(q: torch.Tensor, subset_size: int = 2,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """min_{i ∈ subset} q_i for a random subset of the leading (ensemble) axis: q [E, ...] → [...]."""
    return random_head_subset(q, subset_size, generator).min(dim=0).values


def td_target(r: torch.Tensor, d: torch.Tensor, next_q: torch.Tensor, gamma: float) -> torch.Tensor:
    """y = r + γ (1 − d) next_q for r, d, next_q [B] (next_q = min over the target pair at a'*)."""
    if not (r.shape == d.shape == next_q.shape) or r.ndim != 1:
        raise ValueError(f"r, d, next_q must all be [B]; got {tuple(r.shape)}, {tuple(d.shape)}, "
                         f"{tuple(next_q.shape)}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    return r + gamma * (1.0 - d.to(r.dtype)) * next_q
