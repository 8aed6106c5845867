"""Atomic, resumable training checkpoints.

A checkpoint is a directory `<run>/checkpoints/step_<N>/` that a recipe fills (adapter, critic,
optimizers, replay position, ...) plus `trainer_state.json` and `rng.pt` (Python, NumPy, torch and CUDA
RNG states). It is written under a temporary name and renamed into place only when complete, then the
`latest` pointer file is replaced atomically: a run killed at any moment resumes from the last complete
checkpoint and never sees a partial one. The last file written is `manifest.json` (a SHA-256 per file,
`vla_parl.utils.manifest`); a resume takes the newest checkpoint whose files still match it, so a
checkpoint damaged after it was written (a truncated or overwritten shard) is skipped, with the file named.

In a multi-process run the main process writes everything, except a `sharded` part that every rank
writes into the same temporary directory (e.g. FSDP2 shards of the policy and its optimizer with
`vla_parl.distributed.save_state`); the directory is published only after all ranks have finished.
The RNG states are the main process's: the recipes seed every rank alike, so they are the same on all.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vla_parl.errors import CheckpointError
from vla_parl.utils.manifest import verify_manifest, write_manifest
from vla_parl.utils.files import fsync_dir

__all__ = ["CheckpointManager", "capture_rng_state", "restore_rng_state", "rng_state", "set_rng_state",
           "METRICS_RECORDS"]

METRICS_RECORDS = "metrics_records"     # trainer_state key: metric records written when the checkpoint was taken
_STEP_DIR = re.compile(r"step_(\d+)")


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


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """A recipe's own sampler generator as JSON-ready data (for `trainer_state.json`)."""
    return json.loads(json.dumps(rng.bit_generator.state))


def set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    """Put a generator back in the state `rng_state` returned."""
    rng.bit_generator.state = state


class CheckpointManager:
    """Writes `step_<N>` checkpoints atomically under `run_dir/checkpoints`, keeping the newest `keep`.

    Every checkpoint ends with a `manifest.json` (a SHA-256 per file, written last); `latest()` returns
    the newest checkpoint whose files all match it, saying on stderr which newer ones it skipped and why.
    With `metrics` attached (a `MetricLogger`), each checkpoint records how many metric records had been
    written, so a resume can cut the log back to exactly that point.
    """

    def __init__(self, run_dir: str | Path, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.root = Path(run_dir) / "checkpoints"
        self.keep = keep
        self.metrics: Any = None
        self.skipped: list[tuple[Path, str]] = []   # what the last `latest()` passed over, and why

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
        if self.metrics is not None:
            trainer_state = {**trainer_state, METRICS_RECORDS: self.metrics.sync()}
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **trainer_state}, indent=2) + "\n")
        for path in tmp.rglob("*"):
            if path.is_file():
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
        write_manifest(tmp)                 # last: a checkpoint with a matching manifest is complete
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        pointer_tmp = self.root / ".latest.tmp"
        pointer_tmp.write_text(final.name + "\n")
        os.replace(pointer_tmp, self.root / "latest")
        fsync_dir(self.root)
        self._prune(step)

    def _published(self) -> list[tuple[int, Path]]:
        """(step, directory) of every published checkpoint, newest first."""
        found = [(int(m.group(1)), p) for p in self.root.glob("step_*")
                 if p.is_dir() and (m := _STEP_DIR.fullmatch(p.name))]
        return sorted(found, reverse=True)

    def _prune(self, step: int) -> None:
        """Keep the newest `keep` checkpoints up to `step`; later ones belong to a timeline this run abandoned
        (a resume from an older checkpoint because they were damaged) and are removed."""
        done = self._published()
        newer = [p for s, p in done if s > step]
        older = [p for s, p in done if s <= step]
        for old in newer + older[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)

    def latest(self) -> Path | None:
        """The newest checkpoint that verifies against its manifest, or None when there is no checkpoint.

        Damaged or incomplete ones (a truncated or altered file, a missing manifest) are skipped: each is
        reported on stderr (main process) with the file at fault, and kept in `self.skipped`. A garbled
        `latest` pointer is reported and ignored (the directories themselves are the record). Raises
        `CheckpointError` when checkpoints exist but none verifies: nothing damaged is ever loaded."""
        from vla_parl.distributed.env import dist_info

        self.skipped = []
        pointer = self.root / "latest"
        if pointer.is_file():
            try:
                named = pointer.read_text().strip()
            except (OSError, UnicodeDecodeError):
                named = ""
            if not (_STEP_DIR.fullmatch(named) and (self.root / named).is_dir()):
                self.skipped.append((pointer, f"{pointer} names {named[:80]!r}, which is not a checkpoint in "
                                              f"{self.root}; using the checkpoint directories instead"))
        chosen = None
        for _, path in self._published():
            try:
                verify_manifest(path)
            except CheckpointError as exc:
                self.skipped.append((path, str(exc)))
                continue
            chosen = path
            break
        if dist_info().is_main:
            for path, reason in self.skipped:
                what = "skipping checkpoint" if path.name != "latest" else "ignoring"
                print(f"vla-parl: {what} {path.name}: {reason}", file=sys.stderr, flush=True)
            if chosen is not None and self.skipped:
                print(f"vla-parl: resuming from {chosen}", file=sys.stderr, flush=True)
        if chosen is None and any(path.name != "latest" for path, _ in self.skipped):
            reasons = "; ".join(f"{path.name}: {reason}" for path, reason in self.skipped)
            raise CheckpointError(f"no intact checkpoint in {self.root} ({reasons}). Nothing was loaded: restore "
                                  f"the damaged file(s), or delete {self.root} to start the run over")
        return chosen

    def trainer_state(self, path: Path) -> dict[str, Any]:
        """The `trainer_state.json` of checkpoint `path` (step, metric record count, recipe fields)."""
        try:
            return json.loads((path / "trainer_state.json").read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"cannot read {path / 'trainer_state.json'} ({exc})") from exc

    def load(self, path: Path, extra_generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
        """Restore RNG states (global and named generators) and return the trainer state."""
        state = self.trainer_state(path)
        try:
            rng = torch.load(path / "rng.pt", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means the file cannot be used
            raise CheckpointError(f"cannot read {path / 'rng.pt'} ({type(exc).__name__}: {exc})") from exc
        restore_rng_state(rng)
        for name, generator in (extra_generators or {}).items():
            if name in rng.get("generators", {}):
                generator.set_state(rng["generators"][name])
        return state
