"""Run the real `vla-parl` CLI in a subprocess (what users run), with one thread per process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "vla_parl.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO_ROOT)
    return proc, time.perf_counter() - start


def last_values(metrics_path: Path, key: str) -> dict[int, float]:
    """step → value of `key` (the last record of each step wins, as after a resume)."""
    from vla_parl.training.metrics import read_metrics

    return {r["step"]: r[key] for r in read_metrics(metrics_path) if r.get(key) is not None}
