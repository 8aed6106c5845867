"""The few HF Accelerate calls the update steps make, with a plain-torch fallback (accelerator=None)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["AcceleratorShim"]


class AcceleratorShim:
    """`accelerate.Accelerator` when given one, else plain single-process torch (no accumulation)."""

    def __init__(self, accelerator: Any | None) -> None:
        self.accelerator = accelerator

    def unwrap(self, model: Any) -> Any:
        if self.accelerator is None or not isinstance(model, torch.nn.Module):
            return model
        return self.accelerator.unwrap_model(model)

    @contextlib.contextmanager
    def train_context(self, *models: Any) -> Iterator[None]:
        """`accumulate(*models)` + `autocast()` under Accelerate; nothing otherwise."""
        if self.accelerator is None:
            yield
            return
        modules = [m for m in models if isinstance(m, torch.nn.Module)]
        with self.accelerator.accumulate(*modules), self.accelerator.autocast():
            yield

    def backward(self, loss: torch.Tensor) -> None:
        if self.accelerator is None:
            loss.backward()
        else:
            self.accelerator.backward(loss)

    @property
    def sync_gradients(self) -> bool:
        return True if self.accelerator is None else bool(self.accelerator.sync_gradients)

    def clip_grad_norm_(self, parameters: list[torch.nn.Parameter], max_norm: float | None) -> float | None:
        if max_norm is None or not self.sync_gradients:
            return None
        if self.accelerator is None:
            return float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))
        return float(self.accelerator.clip_grad_norm_(parameters, max_norm))
