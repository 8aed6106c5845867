"""Sparse success rewards, Monte-Carlo returns-to-go (for Cal-QL) and done masks.

Conventions (spec/parl.md): PA-RL labels r_t = −1 on every step and 0 on success steps, i.e. the 0/1
success indicator plus ``reward_bias = −1``; CALVIN uses (completed subtasks − 4).
"""

from __future__ import annotations

import numpy as np

from vla_parl.errors import ConfigError

__all__ = ["success_labels", "sparse_rewards", "mc_returns", "done_masks", "n_step_returns"]


def success_labels(num_steps: int, success: bool, num_success_steps: int = 1) -> np.ndarray:
    """bool [T]: the last `num_success_steps` steps of a successful episode are success steps."""
    out = np.zeros(num_steps, bool)
    if success and num_steps:
        out[-max(1, num_success_steps):] = True
    return out


def sparse_rewards(success: np.ndarray, *, scale: float = 1.0, bias: float = -1.0) -> np.ndarray:
    """r_t = scale · 1[success_t] + bias. Defaults give PA-RL's −1 / 0; ``bias=0`` gives 0 / 1."""
    return (scale * np.asarray(success, dtype=np.float32) + bias).astype(np.float32)


def mc_returns(rewards: np.ndarray, gamma: float, *, terminal: bool,
               failure_tail: str = "repeat_last") -> np.ndarray:
    """Discounted Monte-Carlo return-to-go V^μ(s_t) of one trajectory, for Cal-QL.

        G_{T−1} = r_{T−1} + γ · G_T,     G_t = r_t + γ · G_{t+1}

    with G_T = 0 when the trajectory ended in a terminal state (`terminal=True`, e.g. success).
    A trajectory that did not terminate (failed, or cut by a time limit) is treated as if its last
    reward repeated for ever (``failure_tail="repeat_last"``): G_T = r_{T−1} / (1 − γ). With PA-RL's
    −1/0 rewards a never-successful trajectory then has G_t = −1/(1 − γ) at every step, Cal-QL's value
    for failures. ``failure_tail="zero"`` gives the plain truncated sum instead.

    Args:
        rewards: float [T].
    Returns:
        float32 [T].
    """
    if not 0.0 <= gamma < 1.0:
        raise ConfigError(f"gamma must be in [0, 1); got {gamma}.")
    if failure_tail not in ("repeat_last", "zero"):
        raise ConfigError(f"failure_tail must be 'repeat_last' or 'zero'; got {failure_tail!r}.")
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    out = np.empty_like(r)
    g = 0.0 if (terminal or failure_tail == "zero" or r.size == 0) else r[-1] / (1.0 - gamma)
    for t in range(r.size - 1, -1, -1):
        g = r[t] + gamma * g
        out[t] = g
    return out.astype(np.float32)


def done_masks(is_terminal: np.ndarray) -> np.ndarray:
    """float32 [T]: 1 − d_t, the bootstrap mask of the TD target y = r + γ (1 − d) Q(s', a')."""
    return 1.0 - np.asarray(is_terminal, dtype=np.float32)


def n_step_returns(rewards: np.ndarray, is_terminal: np.ndarray, gamma: float, n: int,
                   has_final_obs: bool) -> tuple[np.ndarray, ...]:
    """n-step targets of one trajectory: for each start t,

        m_t = min(n, T − t, (first terminal index ≥ t) − t + 1)
        R_t = Σ_{i<m_t} γ^i r_{t+i},   discount_t = γ^{m_t},   done_t = terminal within the m_t steps,
        next index = t + m_t.

    A start is `valid` when done_t or observation t + m_t exists (index < T, or = T with a final obs).
    Returns (R float32 [T], discount float32 [T], done bool [T], next index int64 [T], valid bool [T]).
    """
    if n < 1:
        raise ConfigError(f"n_step must be >= 1; got {n}.")
    r = np.asarray(rewards, np.float64)
    term = np.asarray(is_terminal, bool)
    T = len(r)
    R, disc = np.zeros(T, np.float32), np.zeros(T, np.float32)
    done, valid, nxt = np.zeros(T, bool), np.zeros(T, bool), np.zeros(T, np.int64)
    num_obs = T + 1 if has_final_obs else T
    for t in range(T):
        acc, m = 0.0, 0
        while m < n and t + m < T:
            acc += gamma ** m * r[t + m]
            m += 1
            if term[t + m - 1]:
                done[t] = True
                break
        R[t], disc[t], nxt[t] = acc, gamma ** m, t + m
        valid[t] = done[t] or t + m < num_obs
    return R, disc, done, nxt, valid
