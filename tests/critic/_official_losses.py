"""Hand references for the critic losses, written straight from the equations with explicit loops over
heads and states on Python floats (math.exp / math.log), so they share no code with the implementation.

official_cql: the official PA-RL convention (`vla_parl.critic.objectives.cql`):
    L = 1/(E B) Σ_i Σ_b (Q_i − y_b)²
        + α · 1/(|H| B) Σ_{i∈H} Σ_b [ log Σ_{a'∈μ} exp Q̃_i(s_b, a') − log|μ| − Q_i(s_b, a_b) ]
half_sum_cql: the former form, Σ_i [ ½ mean_b (Q_i − y)² + α mean_b (log Σ_μ exp Q_i − Q_i(s, a)) ].
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _push_down_set(i: int, b: int, q_data: Sequence, q_random: Sequence, q_policy: Sequence,
                   v_mu: Sequence[float] | None, include_data: bool) -> list[float]:
    policy = [max(q, v_mu[b]) if v_mu is not None else q for q in q_policy[i][b]]   # Cal-QL: policy actions only
    return list(q_random[i][b]) + policy + ([q_data[i][b]] if include_data else [])


def official_cql(q_data: Sequence, y: Sequence[float], q_random: Sequence, q_policy: Sequence, alpha: float,
                 heads: Sequence[int], *, v_mu: Sequence[float] | None = None,
                 include_data: bool = True) -> tuple[float, float, float]:
    """(L, TD term, conservative gap) from nested lists q_data [E][B], q_random [E][B][Nr], q_policy [E][B][Np]."""
    E, B = len(q_data), len(y)
    td = 0.0
    for i in range(E):
        for b in range(B):
            td += (q_data[i][b] - y[b]) ** 2
    td /= E * B
    gap = 0.0
    for i in heads:
        for b in range(B):
            mu = _push_down_set(i, b, q_data, q_random, q_policy, v_mu, include_data)
            log_mean_exp = math.log(sum(math.exp(v) for v in mu)) - (math.log(len(mu)) if include_data else 0.0)
            gap += log_mean_exp - q_data[i][b]
    gap /= len(heads) * B
    return td + alpha * gap, td, gap


def half_sum_cql(q_data: Sequence, y: Sequence[float], q_random: Sequence, q_policy: Sequence, alpha: float,
                 *, v_mu: Sequence[float] | None = None) -> float:
    """The former loss: ½·MSE and α·gap per head, summed over all heads; μ without the data action."""
    E, B = len(q_data), len(y)
    total = 0.0
    for i in range(E):
        td = sum((q_data[i][b] - y[b]) ** 2 for b in range(B)) / B
        gap = sum(math.log(sum(math.exp(v) for v in _push_down_set(i, b, q_data, q_random, q_policy, v_mu, False)))
                  - q_data[i][b] for b in range(B)) / B
        total += 0.5 * td + alpha * gap
    return total
