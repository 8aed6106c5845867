"""Metric logging: one JSON object per line in `<run>/metrics.jsonl`, and wandb when enabled (offline default)."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["MetricLogger", "read_metrics"]


class MetricLogger:
    def __init__(self, run_dir: str | Path, wandb: bool = False, project: str = "vla-parl",
                 run_name: str | None = None, config: dict[str, Any] | None = None, wandb_mode: str = "offline",
                 enabled: bool = True) -> None:
        """`enabled=False` (e.g. on non-main ranks of a distributed run) makes `log` a no-op."""
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self._wandb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", buffering=1)
        if wandb:
            try:
                import wandb as wandb_module
            except ImportError as exc:
                from vla_parl.errors import MissingExtraError

                raise MissingExtraError.for_package("wandb", "wandb", "wandb logging") from exc
            os.environ.setdefault("WANDB_MODE", wandb_mode)
            self._wandb = wandb_module.init(project=project, name=run_name, config=config, dir=str(run_dir))

    def log(self, step: int, metrics: dict[str, Any], **tags: Any) -> None:
        if not self.enabled:
            return
        clean = {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
                 for k, v in metrics.items()}
        record = {"step": step, "time": time.time(), **tags,
                  **{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in clean.items()}}
        self._file.write(json.dumps(record) + "\n")
        if self._wandb is not None:
            self._wandb.log({**clean, **{f"tag/{k}": v for k, v in tags.items() if isinstance(v, (int, float))}},
                            step=step)

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl, skipping a torn last line (a run killed mid-write)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
