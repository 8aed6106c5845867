"""Training-run machinery shared by recipes: atomic checkpoints with RNG state, metric logging."""

from vla_parl.training.checkpointing import CheckpointManager, capture_rng_state, restore_rng_state
from vla_parl.training.metrics import MetricLogger

__all__ = ["CheckpointManager", "MetricLogger", "capture_rng_state", "restore_rng_state"]
