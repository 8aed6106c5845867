"""The `vla-parl` console command, run for real in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import GOLDEN_DIR


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vla_parl.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def test_help_lists_commands():
    result = _cli("--help")
    assert result.returncode == 0
    assert "quickstart" in result.stdout and "bench" in result.stdout


def test_quickstart_prints_an_action():
    result = _cli("quickstart", "--instruction", "push the blue block")
    assert result.returncode == 0, result.stderr
    line = next(l for l in result.stdout.splitlines() if l.startswith("action:"))
    assert len(line.split("[")[1].split("]")[0].split(",")) == 7


def test_quickstart_with_checkpoint_reports_unnorm_key_problem_cleanly():
    result = _cli("quickstart", "--checkpoint", str(GOLDEN_DIR))
    assert result.returncode == 2
    assert "Available keys: ['bridge_orig', 'toy_two']" in result.stderr
    assert "Traceback" not in result.stderr
    ok = _cli("quickstart", "--checkpoint", str(GOLDEN_DIR), "--unnorm-key", "bridge_orig")
    assert ok.returncode == 0, ok.stderr


def test_bench_inference_json(tmp_path):
    out = tmp_path / "bench.json"
    result = _cli("bench", "inference", "--image-size", "56", "--batch-sizes", "1", "4", "--repeats", "1",
                  "--json", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert [r["batch_size"] for r in data["rows"]] == [1, 4]
    assert all(r["actions_per_s"] > 0 and r["peak_memory_mb"] > 0 for r in data["rows"])
    assert data["rows"][0]["batch_speedup"] == 1.0


def test_bench_sample_json(tmp_path):
    out = tmp_path / "sample.json"
    result = _cli("bench", "sample", "--image-size", "56", "--num-samples", "1", "32", "--repeats", "1",
                  "--refine-steps", "2", "--json", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert {"ratio_n32_vs_greedy", "speedup_n32_vs_naive", "refine_overhead_n32"} <= data.keys()
    assert [r["num_samples"] for r in data["rows"]] == [1, 32]
    assert data["speedup_n32_vs_naive"] > 1.0  # one prefill instead of 32, measured side by side
