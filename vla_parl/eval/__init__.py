"""Evaluation of checkpoints: the tabletop simulator, BridgeData V2 offline metrics, and an OpenVLA checkpoint as
a CALVIN policy (`vla_parl.eval.calvin_vla`; the CALVIN protocol itself is `vla_parl.envs.calvin.protocol`)."""

from __future__ import annotations

__all__: list[str] = []
