"""The MLP that projects vision patch features into the LLM embedding space.

fused (``*fused-gelu-mlp``): fc1 (D_v → 4·D_v), GELU, fc2 (4·D_v → D_llm), GELU, fc3 (D_llm → D_llm)
plain (``*gelu-mlp``):       fc1 (D_v → D_llm), GELU, fc2 (D_llm → D_llm)
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Projector"]


class Projector(nn.Module):
    def __init__(self, vision_dim: int, llm_dim: int, fused: bool) -> None:
        super().__init__()
        self.fused = fused
        self.act = nn.GELU()
        if fused:
            self.fc1 = nn.Linear(vision_dim, 4 * vision_dim, bias=True)
            self.fc2 = nn.Linear(4 * vision_dim, llm_dim, bias=True)
            self.fc3 = nn.Linear(llm_dim, llm_dim, bias=True)
        else:
            self.fc1 = nn.Linear(vision_dim, llm_dim, bias=True)
            self.fc2 = nn.Linear(llm_dim, llm_dim, bias=True)

    def forward(self, patch_features: torch.Tensor) -> torch.Tensor:
        x = self.fc2(self.act(self.fc1(patch_features)))
        return self.fc3(self.act(x)) if self.fused else x
