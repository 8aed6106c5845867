"""`ActionTokenizer`: OpenVLA's 256-bin discretisation of normalised actions into LLM token ids.

Bins are ``linspace(-1, 1, n_bins)``; the ``n_bins - 1`` midpoints are the decoded values. A normalised
action x ∈ [-1, 1] is bucketed with ``d = digitize(clip(x, -1, 1), bins)`` ∈ {1..n_bins} and written as
token ``vocab_end - d`` (31744..31999 for OpenVLA-7B, where ``vocab_end`` = 32000). Decoding maps a token
t to ``centres[clip(vocab_end - t - 1, 0, n_bins - 2)]``. Works on numpy arrays and torch tensors.
`encode` / `decode` are bit-exact with OpenVLA's (SFT labels and `predict_action` depend on it).

The top of the range is not a fixed point: +1 (e.g. an open gripper) encodes to digit 256 (token
``vocab_end - 256`` = 31744), which decodes to the last centre 1 − 1/255 ≈ 0.99608 — the same value as digit
255 (31745) — and `encode` maps that centre to 31745. Re-tokenising a decoded action for distillation would
so turn every sampled 31744 into 31745. `retokenize` is `encode` except that values at or above the last
centre go to digit 256, so ``retokenize(decode(t)) == t`` for every action token but 31745, which decodes to
the same value as 31744 and maps to 31744 (the token +1 itself encodes to).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["ActionTokenizer"]

ArrayLike = np.ndarray | torch.Tensor


class ActionTokenizer:
    """Encode/decode normalised actions to/from the last `n_bins` ids below `vocab_end`."""

    def __init__(self, n_bins: int = 256, vocab_end: int = 32000) -> None:
        if n_bins < 2:
            raise ValueError(f"n_bins must be >= 2, got {n_bins}")
        if vocab_end < n_bins:
            raise ValueError(f"vocab_end ({vocab_end}) must be >= n_bins ({n_bins})")
        self.n_bins = n_bins
        self.vocab_end = vocab_end
        self.bins = np.linspace(-1.0, 1.0, n_bins)
        self.bin_centers = (self.bins[:-1] + self.bins[1:]) / 2.0

    # ---- token range --------------------------------------------------------------------------------
    @property
    def token_start(self) -> int:
        """Smallest action token id (inclusive)."""
        return self.vocab_end - self.n_bins

    @property
    def token_end(self) -> int:
        """One past the largest action token id."""
        return self.vocab_end

    def is_action_token(self, token_ids: ArrayLike) -> ArrayLike:
        return (token_ids >= self.token_start) & (token_ids < self.token_end)

    # ---- encode / decode --------------------------------------------------------------------------------
    def encode(self, actions: ArrayLike) -> ArrayLike:
        """Normalised actions (any shape, values clipped to [-1, 1]) → token ids of the same shape (int64)."""
        if isinstance(actions, torch.Tensor):
            bins = torch.as_tensor(self.bins, dtype=torch.float64, device=actions.device)
            x = actions.detach().to(torch.float64).clamp(-1.0, 1.0)
            # torch.bucketize(right=True) == np.digitize(right=False): bins[d-1] <= x < bins[d]
            digits = torch.bucketize(x, bins, right=True)
            return (self.vocab_end - digits).to(torch.int64)
        digits = np.digitize(np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0), self.bins)
        return (self.vocab_end - digits).astype(np.int64)

    def retokenize(self, actions: ArrayLike) -> ArrayLike:
        """`encode` for distillation targets: the same bins, but x ≥ the last bin centre → digit 256 (the token
        of +1), so decoded tokens re-encode to themselves (31745 → 31744, see the module docstring).

        The threshold is the last centre rounded to the input's own precision, so a float32 centre from
        `decode` compares equal to it whichever way the rounding went."""
        ids = self.encode(actions)
        if isinstance(actions, torch.Tensor):
            x = actions.detach()
            x = x if x.is_floating_point() else x.double()
            top = torch.tensor(self.bin_centers[-1], dtype=x.dtype, device=x.device)
            return torch.where(x >= top, self.token_start, ids)
        x = np.asarray(actions)
        x = x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)
        return np.where(x >= x.dtype.type(self.bin_centers[-1]), self.token_start, ids).astype(np.int64)

    def decode(self, token_ids: ArrayLike) -> ArrayLike:
        """Token ids → normalised actions (bin centres) of the same shape (float64 numpy / float32 torch)."""
        if isinstance(token_ids, torch.Tensor):
            centres = torch.as_tensor(self.bin_centers, dtype=torch.float32, device=token_ids.device)
            idx = (self.vocab_end - token_ids.long() - 1).clamp(0, self.n_bins - 2)
            return centres[idx]
        idx = np.clip(self.vocab_end - np.asarray(token_ids, dtype=np.int64) - 1, 0, self.n_bins - 2)
        return self.bin_centers[idx]

    def to_dict(self) -> dict[str, int]:
        return {"n_bins": self.n_bins, "vocab_end": self.vocab_end}

    def __repr__(self) -> str:
        return f"ActionTokenizer(n_bins={self.n_bins}, tokens=[{self.token_start}, {self.token_end}))"
