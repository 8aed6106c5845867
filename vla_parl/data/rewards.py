"""Sparse success rewards, Monte-Carlo returns-to-go (for Cal-QL) and done masks.

Conventions (spec/parl.md): PA-RL labels r_t = −1 on every step and 0 on success steps, i.e. the 0/1
success indicator plus ``reward_bias = −1``; CALVIN uses (completed subtasks − 4).

Cal-QL's Monte-Carlo returns (`mc_returns`) follow the official rule: plain truncated sums for simulated
and offline trajectories, −1/(1 − γ) at every step of a failed real-robot episode.
"""

from __future__ import annotations

import numpy as np

from vla_parl.errors import ConfigError

__all__ = ["success_labels", "sparse_rewards", "MC_TAILS", "mc_returns", "done_masks", "n_step_returns"]


def success_labels(num_steps: int, success: bool, num_success_steps: int = 1) -> np.ndarray:
    """bool [T]: the last `num_success_steps` steps of a successful episode are success steps."""
    out = np.zeros(num_steps, bool)
    if success and num_steps:
        out[-max(1, num_success_steps):] = True
    return out


def sparse_rewards(success: np.ndarray, *, scale: float = 1.0, bias: float = -1.0) -> np.ndarray:
    """r_t = scale · 1[success_t] + bias. Defaults give PA-RL's −1 / 0; ``bias=0`` gives 0 / 1."""
    return (scale * np.asarray(success, dtype=np.float32) + bias).astype(np.float32)


#: The two end-of-trajectory rules of Cal-QL's V^μ (see `mc_returns`).
MC_TAILS = ("truncated", "failure")


def mc_returns(rewards: np.ndarray, gamma: float, *, tail: str, failure_reward: float = -1.0) -> np.ndarray:
    """Discounted Monte-Carlo return-to-go V^μ(s_t) of one trajectory, for Cal-QL (spec/parl.md, Cal-QL).

        G_t = Σ_{k=t}^{T−1} γ^{k−t} r_k          (the plain sum, nothing after the last step)

    `tail` says how a trajectory that ends without success is valued; a successful (terminal) trajectory
    always gets the plain sum, whichever rule:

    * ``"truncated"``: the plain sum for every trajectory. The official rule for **simulated and offline**
      data: an episode cut by a time limit, or a dataset window, is not assumed to fail for ever.
    * ``"failure"``: the official rule for **real-robot** episodes with PA-RL's −1/0 sparse reward. An episode
      that never succeeded — every reward equals `failure_reward` (−1: no step was a success step) — is
      valued as failing for ever, G_t = failure_reward / (1 − γ) at every step (−100 at γ = 0.99). Any other
      episode (one that reached a success step, or a robot's own non-constant rewards) gets the plain sum.

    Args:
        rewards: float [T].
        gamma: discount in [0, 1).
        tail: ``"truncated"`` or ``"failure"``, chosen where the episode is stored (offline stores and
            simulated rollouts: truncated; `vla_parl.rollout.RobotEpisodes.to_learner` and the policy
            server's episode store: failure).
        failure_reward: the reward of a non-success step under the ``"failure"`` rule.
    Returns:
        float32 [T].
    """
    if not 0.0 <= gamma < 1.0:
        raise ConfigError(f"gamma must be in [0, 1); got {gamma}.")
    if tail not in MC_TAILS:
        raise ConfigError(f"mc tail must be one of {MC_TAILS} ('truncated' for simulated and offline data, "
                          f"'failure' for real-robot episodes); got {tail!r}.")
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if tail == "failure" and r.size and bool(np.all(r == failure_reward)):
        return np.full(r.size, failure_reward / (1.0 - gamma), np.float32)
    out = np.empty_like(r)
    g = 0.0
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
