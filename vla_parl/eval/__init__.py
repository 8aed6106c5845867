"""Evaluation protocols. `vla_parl.eval.calvin`: CALVIN's long-horizon benchmark (imports pybullet-free
numpy code only; simulators live in `vla_parl.envs`)."""

from __future__ import annotations

__all__: list[str] = []
