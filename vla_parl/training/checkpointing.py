"""Atomic, resumable training checkpoints.

A checkpoint is a directory `<run>/checkpoints/step_<N>/` that a recipe fills (adapter, critic,
optimizers, replay position, ...) plus `trainer_state.json` and `rng.pt` (Python, NumPy, torch and CUDA
RNG states). It is written under a temporary name and renamed into place only when complete, then the
`latest` pointer file is replaced atomically: a run killed at any moment resumes from the last complete
checkpoint and never sees a partial one.

In a multi-process run the main process writes everything, except a `sharded` part that every rank
writes into the same temporary directory (e.g. FSDP2 shards of the policy and its optimizer with
`vla_parl.distributed.save_state`); the directory is published only after all ranks have finished.
The RNG states are the main process's: the recipes seed every rank alike, so they are the same on all.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vla_parl.errors import CheckpointError

__all__ = ["CheckpointManager", "capture_rng_state", "restore_rng_state"]


def capture_rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointManager:
    """Writes `step_<N>` checkpoints atomically under `run_dir/checkpoints`, keeping the newest `keep`."""

    def __init__(self, run_dir: str | Path, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.root = Path(run_dir) / "checkpoints"
        self.keep = keep

    def save(self, step: int, write: Callable[[Path], None], trainer_state: dict[str, Any],
             extra_generators: dict[str, torch.Generator] | None = None,
             sharded: Callable[[Path], None] | None = None) -> Path:
        """Create the checkpoint for `step`: `write(tmp_dir)` fills it, then it is published atomically.

        Without `sharded`, only the main process calls this. With it, every process calls it (collective):
        all run `sharded(tmp_dir)`, the main process alone runs `write` and publishes the directory."""
        from vla_parl.distributed.env import barrier, dist_info

        main = dist_info().is_main if sharded is not None else True
        final = self.root / f"step_{step:08d}"
        tmp = self.root / f".step_{step:08d}.tmp"
        if main:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
        if sharded is not None:
            barrier()
            sharded(tmp)
            barrier()
        if main:
            self._publish(step, tmp, final, write, trainer_state, extra_generators)
        if sharded is not None:
            barrier()
        return final

    def _publish(self, step: int, tmp: Path, final: Path, write: Callable[[Path], None], trainer_state: dict[str, Any],
                 extra_generators: dict[str, torch.Generator] | None) -> None:
        write(tmp)
        rng = capture_rng_state()
        rng["generators"] = {name: g.get_state() for name, g in (extra_generators or {}).items()}
        torch.save(rng, tmp / "rng.pt")
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **trainer_state}, indent=2) + "\n")
        for path in tmp.rglob("*"):
            if path.is_file():
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        pointer_tmp = self.root / ".latest.tmp"
        pointer_tmp.write_text(final.name + "\n")
        os.replace(pointer_tmp, self.root / "latest")
        self._prune()

    def _prune(self) -> None:
        done = sorted(p for p in self.root.glob("step_*") if p.is_dir())
        for old in done[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)

    def latest(self) -> Path | None:
        pointer = self.root / "latest"
        if not pointer.is_file():
            return None
        path = self.root / pointer.read_text().strip()
        if not (path / "trainer_state.json").is_file():
            raise CheckpointError(f"{pointer} points to {path}, which is not a complete checkpoint")
        return path

    def load(self, path: Path, extra_generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
        """Restore RNG states (global and named generators) and return the trainer state."""
        try:
            state = json.loads((path / "trainer_state.json").read_text())
            rng = torch.load(path / "rng.pt", weights_only=False)
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"cannot read checkpoint {path} ({exc})") from exc
        restore_rng_state(rng)
        for name, generator in (extra_generators or {}).items():
            if name in rng.get("generators", {}):
                generator.set_state(rng["generators"][name])
        return state
