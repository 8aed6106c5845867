"""Training-step time: SFT steps of the tiny OpenVLA (LoRA, AdamW) in 1 process vs 2-process DDP / FSDP2.

Each configuration runs the distributed self-test worker (`vla_parl.distributed._selftest`) with the same
global batch: in one plain process, and under `torchrun --standalone --nproc_per_node 2` (gloo on CPU,
nccl on CUDA). Reported: median step time after the first (warm-up) step, samples/s and
`speedup_vs_single` = samples/s ÷ samples/s of the single process, measured side by side in one run.
On a CPU machine the processes share the cores, so this measures the overhead/scaling of the data-parallel
path, not GPU scaling.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run", "format_table"]

_REPO_ROOT = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategies", nargs="+", default=["ddp", "fsdp"], choices=["ddp", "fsdp"])
    parser.add_argument("--nproc", type=int, default=2, help="processes of the distributed runs")
    parser.add_argument("--batch-size", type=int, default=8, help="global batch per step")
    parser.add_argument("--steps", type=int, default=6, help="SFT steps per run (the first is warm-up)")
    parser.add_argument("--image-size", type=int, default=56)
    parser.add_argument("--json", dest="json_path", default=None, help="also write the result as JSON here")


def _launch(strategy: str, nproc: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    worker = ["-m", "vla_parl.distributed._selftest", "--strategy", strategy, "--sft-steps", str(args.steps),
              "--parl-steps", "0", "--batch-size", str(args.batch_size), "--image-size", str(args.image_size),
              "--out", str(out)]
    launcher = [] if strategy == "single" else ["-m", "torch.distributed.run", "--standalone",
                                                "--nproc_per_node", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(_REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, *launcher, *worker], env=env, capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{strategy} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.steps < 2:
        raise ValueError("--steps must be >= 2 (the first step is warm-up)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in ["single", *args.strategies]:
            nproc = 1 if strategy == "single" else args.nproc
            result = _launch(strategy, nproc, args, Path(tmp) / f"{strategy}.json")
            step = statistics.median(result["step_s"][1:])
            rows.append({"strategy": strategy, "processes": nproc, "step_s": step,
                         "samples_per_s": args.batch_size / step, "final_loss": list(result["losses"].values())[-1]})
    base = rows[0]["samples_per_s"]
    for row in rows:
        row["speedup_vs_single"] = row["samples_per_s"] / base
    return {"benchmark": "train_step", "model": "tiny (LoRA r=4)", "batch_size": args.batch_size,
            "steps": args.steps, "cpu_count": os.cpu_count(), "rows": rows}


def format_table(result: dict[str, Any]):
    from rich.table import Table

    table = Table(title=f"SFT step — tiny OpenVLA, global batch {result['batch_size']}, {result['cpu_count']} CPUs")
    for col in ("strategy", "processes", "step ms", "samples/s", "speed-up vs 1 process", "final loss"):
        table.add_column(col, justify="right")
    for r in result["rows"]:
        table.add_row(r["strategy"], str(r["processes"]), f"{1e3 * r['step_s']:.0f}", f"{r['samples_per_s']:.1f}",
                      f"{r['speedup_vs_single']:.2f}×", f"{r['final_loss']:.4f}")
    return table
