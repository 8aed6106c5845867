"""`EnsembleQ`: E Q-heads evaluated together with batched matmuls, the action fed to every layer.

For head i and hidden widths H_1..H_L:

    h_1 = relu(W_1^i [f; a] + b_1^i),   h_{l+1} = relu(W_{l+1}^i [h_l; a] + b_{l+1}^i),
    Q_i(s, a) = W_out^i [h_L; a] + b_out^i

Weights are stored as [E, in, out]. The state features f [B, F] are multiplied once per state and
broadcast over the N candidate actions (f W_f + a W_a), so scoring N candidates costs one feature
product, not N.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["EnsembleQ"]


class EnsembleQ(nn.Module):
    """features [B, F], actions [B, N, A] → Q [E, B, N]."""

    def __init__(self, feature_dim: int, action_dim: int, hidden_dims: tuple[int, ...], num_heads: int) -> None:
        super().__init__()
        if num_heads < 1:
            raise ValueError(f"num_heads must be >= 1, got {num_heads}")
        if not hidden_dims or min(hidden_dims) < 1:
            raise ValueError(f"hidden_dims must be a non-empty tuple of positive widths, got {hidden_dims}")
        self.feature_dim, self.action_dim, self.num_heads = feature_dim, action_dim, num_heads
        widths = [feature_dim, *hidden_dims, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            bound = 1.0 / math.sqrt(fan_in + action_dim)   # nn.Linear's default init, per head
            weight = torch.empty(num_heads, fan_in + action_dim, fan_out).uniform_(-bound, bound)
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(torch.empty(num_heads, 1, 1, fan_out).uniform_(-bound, bound)))

    def forward(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if features.ndim != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(f"features must be [B, {self.feature_dim}], got {tuple(features.shape)}")
        if actions.ndim != 3 or actions.shape[0] != features.shape[0] or actions.shape[2] != self.action_dim:
            raise ValueError(f"actions must be [B, N, A] = [{features.shape[0]}, N, {self.action_dim}], "
                             f"got {tuple(actions.shape)} (add a candidate axis for one action: a[:, None])")
        E, B, N, A = self.num_heads, *actions.shape
        F_ = self.feature_dim
        a = actions.to(features.dtype).reshape(1, B * N, A).expand(E, B * N, A)        # [E, B·N, A]
        w0 = self.weights[0]
        h_s = torch.bmm(features.expand(E, B, F_), w0[:, :F_])                          # [E, B, H] once per state
        h = torch.bmm(a, w0[:, F_:]).view(E, B, N, -1) + h_s[:, :, None] + self.biases[0]
        h = h.view(E, B * N, -1)
        # list(...)[1:], not self.weights[1:]: slicing a ParameterList builds a new one, re-registering every
        # parameter — under another thread's `init_empty_weights` (a server loading a policy version) that
        # global hook would move them to the meta device mid-request
        for w, b in zip(list(self.weights)[1:], list(self.biases)[1:]):
            h = torch.baddbmm(b.view(E, 1, -1), torch.cat([torch.relu(h), a], dim=-1), w)
        return h.view(E, B, N)
