"""Fault injection: hostile requests, held connections, SIGKILLs of training and of the replay writer, damaged
checkpoints and malformed configs, each counted (`vla-parl bench faults`, `python scripts/fault_injection.py`).

Every figure but `cases` must be zero:
- `5xx`: server errors answered to client mistakes;
- `tracebacks`: a raw Python traceback where an error message was due;
- `wrong`: an answer other than the right one (a bad input accepted, a 422 where 413 was due, a connection
  still open past its deadline, a damaged checkpoint loaded, exported weights that differ from an
  uninterrupted run's);
- `lost`: metric records missing, duplicated or different after kills and resumes (apart from wall-clock
  fields), or replay episodes acknowledged by the writer but gone after its SIGKILL.
Everything runs the real components: uvicorn on loopback, the `vla-parl` CLI in subprocesses, a tiny model.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run", "format_table", "kill_and_resume", "metric_records", "SFT_ARGS"]

_REPO_ROOT = Path(__file__).resolve().parents[2]
SFT_ARGS = ["optim.steps=8", "optim.batch_size=2", "data.num_episodes=2", "data.max_episode_steps=5",
            "run.checkpoint_every=3", "run.log_every=1", "run.progress=false", "run.threads=1"]
_SECTIONS = ("requests", "connections", "configs", "training kills", "checkpoints", "replay kills")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", nargs="+", choices=_SECTIONS, default=None, help="run only these sections")
    parser.add_argument("--training-trials", type=int, default=2, help="runs killed 3 times each and resumed")
    parser.add_argument("--replay-kills", type=int, default=10, help="SIGKILLs of the replay writer")
    parser.add_argument("--held", type=int, default=20, help="connections held open per kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the figures to this JSON file")


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(_REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vla_parl.cli.main", *args], capture_output=True, text=True,
                          env=_env(), cwd=_REPO_ROOT, timeout=timeout)


def _tally(cases: int = 0, server_errors: int = 0, tracebacks: int = 0, wrong: int = 0, lost: int = 0,
           notes: list[str] | None = None) -> dict[str, Any]:
    return {"cases": cases, "5xx": server_errors, "tracebacks": tracebacks, "wrong": wrong, "lost": lost,
            "notes": notes or []}


# ---- training: kills and resumes ---------------------------------------------------------------------------------
def _lines(run: Path) -> int:
    try:
        return (run / "metrics.jsonl").read_bytes().count(b"\n")
    except OSError:
        return -1


def kill_and_resume(recipe: str, run: Path, args: list[str], kill_after_records: list[int], seed: int
                    ) -> tuple[int, list[str]]:
    """Start `vla-parl run RECIPE` into `run`; SIGKILL it once it has logged n records (+ a random 0–300 ms) for
    each n of `kill_after_records`, resuming (`--resume` once `config.yaml` exists) after each kill; then let
    it finish. Returns (kills, stderr of every attempt that was not killed)."""
    rng = random.Random(seed)
    kills, errors = 0, []
    for threshold in [*kill_after_records, None]:
        resume = ["--resume"] if (run / "config.yaml").is_file() else []
        proc = subprocess.Popen([sys.executable, "-m", "vla_parl.cli.main", "run", recipe, "--output-dir", str(run),
                                 *resume, *args], env=_env(), cwd=_REPO_ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        if threshold is not None:
            deadline = time.monotonic() + 900
            while proc.poll() is None and _lines(run) < threshold and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
                proc.communicate(timeout=60)
                continue
        _, err = proc.communicate(timeout=900)
        errors.append(f"exit {proc.returncode}: {err}" if proc.returncode else err)
        if threshold is None or proc.returncode:
            break
    return kills, errors


def metric_records(run: Path) -> list[dict[str, Any]]:
    """The run's metric records without their wall-clock fields (all a resume may change)."""
    from vla_parl.training.metrics import read_metrics, without_timings

    path = run / "metrics.jsonl"
    return [without_timings(r) for r in read_metrics(path)] if path.is_file() else []


def _record_diff(want: list[dict[str, Any]], got: list[dict[str, Any]]) -> int:
    """Records missing, extra or different (position by position)."""
    return abs(len(want) - len(got)) + sum(a != b for a, b in zip(want, got))


def _training_kills(work: Path, reference: Path, trials: int, seed: int) -> dict[str, Any]:
    want = metric_records(reference)
    tally = _tally()
    for trial in range(trials):
        run = work / f"killed_{trial}"
        rng = random.Random(seed + trial)
        thresholds = sorted(rng.sample(range(0, len(want)), 3))
        kills, errors = kill_and_resume("sft", run, SFT_ARGS, thresholds, seed + trial)
        tally["cases"] += kills
        tally["tracebacks"] += sum("Traceback" in e for e in errors)
        tally["wrong"] += sum(e.startswith("exit ") for e in errors) + (not (run / "final" / "model").is_dir())
        diff = _record_diff(want, metric_records(run))
        tally["lost"] += diff
        tally["notes"].append(f"trial {trial}: killed after {thresholds} records ({kills} kills), {diff} records off")
    return tally


# ---- damaged checkpoints -----------------------------------------------------------------------------------------
def _damage(run: Path, kind: str) -> Path:
    """Damage the newest checkpoint of `run` in one way; returns the file (or folder) damaged."""
    root = run / "checkpoints"
    newest = sorted(p for p in root.glob("step_*") if p.is_dir())[-1]
    shard = next((newest / "policy").glob("*.distcp"))
    if kind == "overwrite 4 KiB of the policy shard":
        with open(shard, "r+b") as handle:
            handle.seek(max(0, shard.stat().st_size // 2 - 2048))
            handle.write(os.urandom(4096))
        return shard
    if kind == "truncate the policy shard":
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
        return shard
    if kind == "delete the policy shard":
        shard.unlink()
        return shard
    if kind == "garble the latest pointer":
        (root / "latest").write_bytes(os.urandom(24))
        return root / "latest"
    if kind == "delete the manifest":
        (newest / "manifest.json").unlink()
        return newest / "manifest.json"
    if kind == "corrupt rng.pt":
        (newest / "rng.pt").write_bytes(b"\0" * 64)
        return newest / "rng.pt"
    if kind == "truncate trainer_state.json":
        path = newest / "trainer_state.json"
        path.write_text(path.read_text()[:10])
        return path
    raise ValueError(kind)


_DAMAGES = ("overwrite 4 KiB of the policy shard", "truncate the policy shard", "delete the policy shard",
            "garble the latest pointer", "delete the manifest", "corrupt rng.pt", "truncate trainer_state.json")


def _same_weights(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file

    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return x.keys() == y.keys() and all(bool((x[k] == y[k]).all()) for k in x)


def _checkpoints(work: Path, reference: Path) -> dict[str, Any]:
    want = metric_records(reference)
    tally = _tally()
    for i, kind in enumerate(_DAMAGES):
        run = work / f"damaged_{i}"
        shutil.copytree(reference, run)
        shutil.rmtree(run / "final")
        damaged = _damage(run, kind)
        proc = _cli("run", "sft", "--output-dir", str(run), "--resume")
        tally["cases"] += 1
        tally["tracebacks"] += "Traceback" in proc.stderr
        named = damaged.name in proc.stderr
        exported = (run / "final" / "model" / "model.safetensors").is_file()
        same = exported and _same_weights(reference / "final" / "model", run / "final" / "model")
        ok = proc.returncode == 0 and named and same
        tally["wrong"] += not ok
        tally["lost"] += _record_diff(want, metric_records(run))
        tally["notes"].append(f"{kind}: exit {proc.returncode}, file named {named}, export identical {same}")
    run = work / "damaged_all"                       # nothing intact: a clear error, nothing loaded
    shutil.copytree(reference, run)
    for step in (p for p in (run / "checkpoints").glob("step_*") if p.is_dir()):
        (step / "rng.pt").write_bytes(b"x")
    proc = _cli("run", "sft", "--output-dir", str(run), "--resume")
    tally["cases"] += 1
    tally["tracebacks"] += "Traceback" in proc.stderr
    tally["wrong"] += not (proc.returncode == 2 and "no intact checkpoint" in proc.stderr)
    tally["notes"].append(f"every checkpoint damaged: exit {proc.returncode}")
    return tally


# ---- replay writer kills -----------------------------------------------------------------------------------------
_WRITER = """
import sys, numpy as np
from vla_parl.data.replay import ReplayBuffer
buf = ReplayBuffer(sys.argv[1], gamma=0.9)
rng = np.random.default_rng(int(sys.argv[2]))
while True:
    T = int(rng.integers(3, 9))
    eid = buf.add_episode({"image": rng.integers(0, 256, (T + 1, 16, 16, 3), dtype=np.uint8),
                           "proprio": rng.standard_normal((T + 1, 4)).astype(np.float32)},
                          rng.standard_normal((T, 7)).astype(np.float32), -np.ones(T, np.float32), terminal=True,
                          instruction="reach the red block")
    print(eid, flush=True)
"""


def _replay_kills(work: Path, kills: int, seed: int) -> dict[str, Any]:
    import numpy as np

    from vla_parl.data.replay import ReplayBuffer

    root = work / "replay"
    rng = random.Random(seed)
    acknowledged: set[int] = set()
    tally = _tally()
    for kill in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(root), str(seed + kill)], env=_env(),
                                cwd=_REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = proc.stdout.readline()                    # writing has started
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
        acknowledged.update(int(line) for line in (first + out).split())
        tally["cases"] += 1
        tally["tracebacks"] += "Traceback" in err
        buffer = ReplayBuffer(root, gamma=0.9, readonly=True)
        present = set(buffer.episode_ids)
        tally["lost"] += len(acknowledged - present)
        for eid in present:                               # every stored episode reads back whole
            episode = buffer.episode(eid)
            if not (np.asarray(episode["obs"]["image"]).shape[0] == len(episode["action"]) + 1):
                tally["wrong"] += 1
        buffer.close()
    tally["notes"].append(f"{len(acknowledged)} episodes acknowledged over {kills} kills")
    return tally


# ---- malformed configs -------------------------------------------------------------------------------------------
_BAD_OVERRIDES = [
    ["optim.lr=-1"], ["optim.lr=0"], ["optim.lr=.nan"], ["optim.lr=fast"], ["run.checkpoint_every=0"],
    ["run.checkpoint_every=-5"], ["run.log_every=0"], ["run.keep_checkpoints=0"], ["lora.r=0"], ["lora.alpha=0"],
    ["lora.dropout=1.5"], ["optim.batch_size=0"], ["optim.steps=-1"], ["optim.grad_accum=0"],
    ["optim.max_grad_norm=-1"], ["optim.weight_decay=-0.1"], ["data.num_episodes=0"], ["data.gamma=1.5"],
    ["data.max_episode_steps=0"], ["model.image_size=15"], ["model.image_size=0"], ["run.stop_after=-1"],
    ["run.threads=0"], ["run.mixed_precision=fp16"], ["model.dtype=float16"], ["model.load_in_4bit=true"],
    ["optimm.lr=1"], ["optim.lr"], ["optim=3"], ["run.seed=1.5"], ["data.expert_speed=[0.5]"],
]


def _configs(work: Path) -> dict[str, Any]:
    import torch

    work.mkdir(parents=True, exist_ok=True)
    tally = _tally()
    cuda = torch.cuda.is_available()
    cases: list[tuple[str, list[str]]] = [(" ".join(o), ["run", "sft", "--output-dir", str(work / "cfg"), *o])
                                          for o in _BAD_OVERRIDES
                                          if not (cuda and o[0].split("=")[0] in ("run.mixed_precision", "model.dtype",
                                                                                    "model.load_in_4bit"))]
    for name, text in (("empty", ""), ("comment only", "# nothing\n"), ("a list", "- a\n"),
                       ("binary", "\udcff\udcfe"), ("another recipe's", "recipe: critic\n")):
        path = work / f"config_{name.replace(' ', '_')}.yaml"
        path.write_text(text, errors="surrogateescape")
        cases.append((f"{name} config file", ["run", "sft", "--config", str(path), "--output-dir", str(work / "cfg")]))
    for recipe, override in (("critic", "candidate_cache_states=0"), ("parl", "parl.cache_states=0"),
                             ("parl", "critic_optim.lr=-1"), ("demo", "eval.episodes=0")):
        cases.append((f"{recipe} {override}", ["run", recipe, "--output-dir", str(work / "cfg"), override]))
    for name, args in cases:
        proc = _cli(*args)
        tally["cases"] += 1
        tally["tracebacks"] += "Traceback" in proc.stderr
        if not (proc.returncode == 2 and "error:" in proc.stderr):
            tally["wrong"] += 1
            tally["notes"].append(f"{name}: exit {proc.returncode} {proc.stderr.strip()[-200:]}")
    shard_case = _empty_shard_case(work)
    if shard_case is not None:
        proc = _cli(*shard_case)
        tally["cases"] += 1
        tally["tracebacks"] += "Traceback" in proc.stderr
        tally["wrong"] += not (proc.returncode == 2 and "0-byte" in proc.stderr)
    return tally


def _empty_shard_case(work: Path) -> list[str] | None:
    """An RLDS dataset with one 0-byte shard (None without tensorflow-datasets)."""
    try:
        from vla_parl.data.synthetic import write_tiny_rlds

        root = work / "rlds"
        write_tiny_rlds(root, "bridge_orig", episode_lengths=(4, 4), image_size=32)
    except ImportError:
        return None
    shard = sorted(root.glob("bridge_orig/*/*.tfrecord*"))[0]
    shard.write_bytes(b"")
    return ["run", "sft", "--output-dir", str(work / "rlds_run"), "data.kind=rlds", f"data.path={root}",
            "optim.steps=1", "run.progress=false"]


# ---- serving -----------------------------------------------------------------------------------------------------
def _serving(work: Path, sections: set[str], held: int) -> dict[str, dict[str, Any]]:
    from vla_parl.bench._fault_requests import hostile_requests, held_connections
    from vla_parl.models import openvla_tiny

    from serving.app import ServerConfig, ServerThread, create_app
    from serving.engine import PolicyEngine

    openvla_tiny(image_size=56).save_pretrained(work / "model")
    engine = PolicyEngine.load(work / "model")
    config = ServerConfig(max_request_bytes=16 * 1024 * 1024, max_image_pixels=1024 * 1024, max_batch_items=4,
                          header_timeout=1.0, body_timeout=1.0, timeout_keep_alive=1.0)
    out = {}
    with ServerThread(create_app(engine, config)) as url:
        if "requests" in sections:
            out["requests"] = hostile_requests(url)
        if "connections" in sections:
            out["connections"] = held_connections(url, held, deadline=config.header_timeout)
    return out


# ---- the pass ----------------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    sections = set(args.only or _SECTIONS)
    temp = None if args.workdir else tempfile.TemporaryDirectory(prefix="vla-parl-faults-")
    work = Path(args.workdir or temp.name)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    try:
        if sections & {"requests", "connections"}:
            results.update(_serving(work / "serving", sections, args.held))
        if "configs" in sections:
            results["configs"] = _configs(work / "configs")
        if sections & {"training kills", "checkpoints"}:
            reference = work / "reference"
            proc = _cli("run", "sft", "--output-dir", str(reference), *SFT_ARGS)
            if proc.returncode:
                raise RuntimeError(f"the uninterrupted reference run failed: {proc.stderr[-2000:]}")
            if "training kills" in sections:
                results["training kills"] = _training_kills(work / "kills", reference, args.training_trials, args.seed)
            if "checkpoints" in sections:
                results["checkpoints"] = _checkpoints(work / "checkpoints", reference)
        if "replay kills" in sections:
            results["replay kills"] = _replay_kills(work / "replay", args.replay_kills, args.seed)
    finally:
        if temp is not None:
            temp.cleanup()
    total = {key: sum(r[key] for r in results.values()) for key in ("cases", "5xx", "tracebacks", "wrong", "lost")}
    return {"benchmark": "faults", "sections": results, "total": total, "seconds": time.perf_counter() - started}


def format_table(result: dict[str, Any]):
    from rich.table import Table

    table = Table(title="vla-parl fault injection (every column but cases must be 0)")
    for col in ("section", "cases", "5xx", "tracebacks", "wrong", "lost"):
        table.add_column(col, justify="left" if col == "section" else "right")
    for name, row in [*result["sections"].items(), ("total", result["total"])]:
        table.add_row(name, *(str(row[k]) for k in ("cases", "5xx", "tracebacks", "wrong", "lost")))
    notes = [f"{name}: {note}" for name, row in result["sections"].items() for note in row.get("notes", [])]
    table.caption = "\n".join([*notes, f"time: {result['seconds']:.0f} s"])
    return table
