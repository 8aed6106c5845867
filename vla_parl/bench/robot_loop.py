"""What robots see of online PA-RL: action latency with the learner idle vs training, requests during a policy swap,
episodes per minute through the loop (`vla-parl bench robot_loop`, `python scripts/bench_robot_loop.py`).

The real loop on one machine, each part its own process with one thread (OMP_NUM_THREADS=1): `vla-parl serve
--episodes E --policy-updates P` (the tiny OpenVLA + a robot-ready critic, prepared by a `parl_robot` run without
robot rounds), the learner `vla-parl run parl --config parl_robot online.env=robot` publishing v1, v2, ... into P,
and `--robots` simulated robots (the built-in tabletop behind `vla_parl_client.run_episode`, acting in `--mode`,
refined by default as PA-RL collects) running episodes back to back. Each robot times every `/v1/act` round trip.

Side by side: the learner is paused (SIGSTOP — idle, as while it waits for robots) and resumed (SIGCONT — it
trains on the backlog of episodes and publishes) in alternating windows of `--window` seconds, so drifting load on
a shared machine affects both alike. A request counts for a window when it started and ended inside it.

- latency: p50 / p99 of the robots' `/v1/act` round trips per learner state;
- swaps: version k is being swapped in from its manifest's `created` time until the first answer tagged k; the
  longest request overlapping such a span is compared with the p99 of the requests of training windows outside
  any (target: at most 2×);
- episodes per minute: episodes the robots finished (stored on the server) per minute of measured windows;
- failed requests: robot requests that raised (must be 0), and the learner's CPU use while resumed.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_arguments", "run", "format_table"]

_REPO_ROOT = Path(__file__).resolve().parents[2]
#: parl_robot.yaml with small offline data and a short offline phase: the base policy and critic in seconds
_BASE = ["data.num_episodes=6", "data.max_episode_steps=10", "parl.cache_states=32", "parl.offline_refreshes=1",
         "parl.distill_steps_per_refresh=5", "parl.critic_steps_per_refresh=5", "run.progress=false"]
_QUICK = {"duration": 24.0, "window": 4.0, "warmup": 4.0, "distill_steps": 10}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--robots", type=int, default=2, help="simulated robot processes (default 2)")
    parser.add_argument("--duration", type=float, default=120.0, help="measured seconds, idle + training windows")
    parser.add_argument("--window", type=float, default=6.0, help="seconds per idle / training window")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of robot traffic before measuring")
    parser.add_argument("--max-steps", type=int, default=10, help="steps per robot episode (reach task)")
    parser.add_argument("--mode", default="refined", choices=["refined", "greedy"], help="how robots act")
    parser.add_argument("--distill-steps", type=int, default=20,
                        help="learner distillation and critic steps per round (one round per --robots episodes)")
    parser.add_argument("--quick", action="store_true",
                        help=f"short run for `bench all --quick`: {', '.join(f'{k}={v}' for k, v in _QUICK.items())}")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the result as JSON here")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VLA_PARL_API_KEY", "VLA_PARL_QUIET")}
    pythonpath = os.pathsep.join(filter(None, [str(_REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": pythonpath}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "vla_parl.cli.main", *args]


def _wait_for_learner(process: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    """Until the learner, set up, waits for its first robot episodes."""
    deadline = time.monotonic() + timeout
    while "waiting for" not in log.read_text():
        if process.poll() is not None:
            raise RuntimeError(f"the learner exited with status {process.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the learner was not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _TimedClient:
    """A robot's `PolicyClient` that records every `/v1/act` round trip as (start, end, policy_version), in
    wall-clock seconds so that the robots' records line up with the learner's manifest times."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.requests: list[tuple[float, float, int]] = []

    def start_episode(self, *args: Any, **kwargs: Any) -> str:
        return self.client.start_episode(*args, **kwargs)

    def end_episode(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.client.end_episode(*args, **kwargs)

    def act_info(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        start = time.time()
        answer = self.client.act_info(*args, **kwargs)
        self.requests.append((start, time.time(), int(answer["policy_version"])))
        return answer


@contextmanager
def _one_thread_children() -> Iterator[None]:
    """Processes spawned inside get one BLAS/OpenMP thread (they read it at start); this one keeps its setting."""
    saved = {key: os.environ.get(key) for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _robot(url: str, index: int, mode: str, max_steps: int, stop_at: float) -> dict[str, Any]:
    """One simulated robot: episodes back to back until `stop_at` (wall clock); failed ones are counted."""
    from vla_parl.envs.tabletop_robot import TabletopRobot
    from vla_parl_client import PolicyClient, PolicyServerError, run_episode

    robot = TabletopRobot("reach", seeds=itertools.count(10_000 * index), image_size=56,
                          max_episode_steps=max_steps, targets=["red"])
    episodes, failures = [], []
    try:
        with PolicyClient(url, timeout=120) as client:
            timed = _TimedClient(client)
            while time.time() < stop_at:
                try:
                    result = run_episode(timed, robot, label=lambda: robot.success, max_steps=max_steps, mode=mode)
                    episodes.append((time.time(), result.steps, result.success))
                except PolicyServerError as exc:
                    failures.append(str(exc))
    finally:
        robot.close()
    return {"requests": timed.requests, "episodes": episodes, "failures": failures}


def _percentiles(latencies_ms: list[float]) -> dict[str, float | None]:
    if not latencies_ms:
        return {"p50_ms": None, "p99_ms": None}
    return {"p50_ms": float(np.percentile(latencies_ms, 50)), "p99_ms": float(np.percentile(latencies_ms, 99))}


def _published(publish_dir: Path) -> dict[int, float]:
    """version → its manifest's `created` time."""
    from vla_parl.models.published import list_versions

    return {v.version: float(v.manifest["created"]) for v in list_versions(publish_dir) if "created" in v.manifest}


def _analyse(requests: list[tuple[float, float, int]], episodes: list[tuple[float, int, bool]],
            windows: list[tuple[float, float, str, float | None]], published: dict[int, float]) -> dict[str, Any]:
    """The figures from the robots' records, the learner windows (start, end, state, learner CPU share) and the
    publish times (see the module docstring)."""
    first_answer: dict[int, float] = {}
    for _, end, version in sorted(requests, key=lambda r: r[1]):
        first_answer.setdefault(version, end)
    spans = [(created, first_answer[v], v) for v, created in published.items() if v in first_answer]
    in_swap = [any(start < end_s and end > start_s for start_s, end_s, _ in spans) for start, end, _ in requests]
    rows, normal_training = [], []
    for state in ("idle", "training"):
        mine = [w for w in windows if w[2] == state]
        inside = [i for i, (start, end, _) in enumerate(requests) if any(w[0] <= start and end <= w[1] for w in mine)]
        seconds = sum(w[1] - w[0] for w in mine)
        finished = sum(any(w[0] <= e[0] <= w[1] for w in mine) for e in episodes)
        cpu = [w[3] for w in mine if w[3] is not None]
        rows.append({"learner": state, "requests": len(inside), "seconds": seconds,
                     **_percentiles([1e3 * (requests[i][1] - requests[i][0]) for i in inside]),
                     "episodes": finished, "episodes_per_min": 60 * finished / seconds if seconds else None,
                     "learner_cpu": float(np.mean(cpu)) if cpu else None})
        if state == "training":
            normal_training = [1e3 * (requests[i][1] - requests[i][0]) for i in inside if not in_swap[i]]
    during = [1e3 * (end - start) for (start, end, _), swap in zip(requests, in_swap) if swap]
    normal_p99 = _percentiles(normal_training)["p99_ms"]
    longest = max(during) if during else None
    measured = sum(w[1] - w[0] for w in windows)
    finished = sum(any(w[0] <= e[0] <= w[1] for w in windows) for e in episodes)
    return {"rows": rows,
            "swaps": {"versions": [v for _, _, v in sorted(spans)], "requests": len(during), "longest_ms": longest,
                      "normal_p99_ms": normal_p99,
                      "ratio": longest / normal_p99 if longest is not None and normal_p99 else None,
                      "target_ratio": 2.0, "span_s": [end - start for start, end, _ in sorted(spans)]},
            "episodes_per_min": 60 * finished / measured if measured else None,
            "successes": sum(e[2] for e in episodes), "episodes": len(episodes)}


def _prepare(root: Path) -> tuple[Path, Path]:
    """The served base policy and its robot-ready critic (no privileged state): a parl_robot run without rounds."""
    run_dir, log = root / "base", root / "base.log"
    with open(log, "w") as out:
        done = subprocess.run(_cli("run", "parl", "--config", "parl_robot", "--output-dir", str(run_dir),
                                   "policy=random", "critic.checkpoint=fresh", *_BASE, "online.rounds=0"),
                              env=_env(), stdout=out, stderr=subprocess.STDOUT, cwd=_REPO_ROOT, timeout=1200)
    if done.returncode:
        raise RuntimeError(f"preparing the base policy failed:\n{log.read_text()[-3000:]}")
    return run_dir / "final" / "model", run_dir / "final" / "critic"


def run(args: argparse.Namespace) -> dict[str, Any]:
    from serving.process import ServerProcess

    if args.quick:
        for key, value in _QUICK.items():
            setattr(args, key, value)
    if args.robots < 1 or args.window <= 0 or args.duration < 2 * args.window:
        raise ValueError("--robots must be >= 1 and --duration at least two --window lengths")
    with tempfile.TemporaryDirectory(prefix="bench_robot_loop_") as tmp:
        root = Path(tmp)
        model, critic = _prepare(root)
        episodes_dir, publish_dir, learner_log = root / "episodes", root / "published", root / "learner.log"
        server = ServerProcess(["--checkpoint", str(model), "--critic", str(critic), "--episodes", str(episodes_dir),
                                "--policy-updates", str(publish_dir), "--policy-poll-s", "0.5", "--log-level",
                                "warning"], env={"VLA_PARL_API_KEY": None}, log_path=root / "server.log")
        url = server.start()
        with open(learner_log, "w") as out:
            learner = subprocess.Popen(_cli(
                "run", "parl", "--config", "parl_robot", "--output-dir", str(root / "learner"), f"policy={model}",
                f"critic.checkpoint={critic}", *_BASE, "parl.offline_refreshes=0", "online.rounds=100000",
                f"online.episodes_per_round={args.robots}", f"online.distill_steps_per_round={args.distill_steps}",
                f"online.critic_steps_per_round={args.distill_steps}", f"online.robot.replay_dir={episodes_dir}",
                f"online.robot.publish_dir={publish_dir}", "online.robot.poll_s=0.2", "run.threads=1"),
                env=_env(), stdout=out, stderr=subprocess.STDOUT, cwd=_REPO_ROOT)
        try:
            _wait_for_learner(learner, learner_log)
            learner.send_signal(signal.SIGSTOP)
            measure_from = time.time() + args.warmup
            n_windows = int(args.duration // args.window)
            stop_at = measure_from + n_windows * args.window
            with ProcessPoolExecutor(args.robots, mp_context=multiprocessing.get_context("spawn")) as pool:
                with _one_thread_children():       # the robot processes start on submit
                    futures = [pool.submit(_robot, url, i, args.mode, args.max_steps, stop_at)
                               for i in range(args.robots)]
                windows = []
                time.sleep(max(0.0, measure_from - time.time()))
                for w in range(n_windows):
                    state = "idle" if w % 2 == 0 else "training"
                    learner.send_signal(signal.SIGSTOP if state == "idle" else signal.SIGCONT)
                    start, cpu_start = time.time(), _cpu_seconds(learner.pid)
                    time.sleep(max(0.0, measure_from + (w + 1) * args.window - time.time()))
                    end, cpu_end = time.time(), _cpu_seconds(learner.pid)
                    share = (cpu_end - cpu_start) / (end - start) if None not in (cpu_start, cpu_end) else None
                    windows.append((start, end, state, share))
                learner.send_signal(signal.SIGCONT)
                robots = [f.result() for f in futures]
            published = _published(publish_dir)
        finally:
            if learner.poll() is None:
                learner.send_signal(signal.SIGCONT)
                learner.kill()
                learner.wait(60)
            server.stop()
    requests = [r for robot in robots for r in robot["requests"]]
    result = _analyse(requests, [e for robot in robots for e in robot["episodes"]], windows, published)
    failures = [f for robot in robots for f in robot["failures"]]
    return {"benchmark": "robot_loop", "robots": args.robots, "mode": args.mode, "max_steps": args.max_steps,
            "window_s": args.window, "duration_s": n_windows * args.window, "distill_steps": args.distill_steps,
            "threads_per_process": 1, "cpu_count": os.cpu_count(), "versions_published": len(published),
            "failed_requests": len(failures), "failures": failures[:5], **result}


def format_table(result: dict[str, Any]):
    from rich.table import Table

    table = Table(title=f"robot loop — {result['robots']} robots ({result['mode']}), server + learner on "
                        f"{result['cpu_count']} CPUs, {result['duration_s']:.0f} s in "
                        f"{result['window_s']:.0f}-s windows")
    for col in ("learner", "requests", "p50 ms", "p99 ms", "episodes/min", "learner CPU"):
        table.add_column(col, justify="right")

    def fmt(value: float | None, spec: str) -> str:
        return "—" if value is None else format(value, spec)

    for row in result["rows"]:
        table.add_row(row["learner"], str(row["requests"]), fmt(row["p50_ms"], ".1f"), fmt(row["p99_ms"], ".1f"),
                      fmt(row["episodes_per_min"], ".1f"), fmt(row["learner_cpu"], ".0%"))
    swaps = result["swaps"]
    versions = ", ".join(f"v{v}" for v in swaps["versions"]) or "none seen"
    table.caption = (f"swaps ({versions}): longest of {swaps['requests']} requests during a swap "
                     f"{fmt(swaps['longest_ms'], '.1f')} ms = {fmt(swaps['ratio'], '.2f')}× the "
                     f"p99 of the others while training ({fmt(swaps['normal_p99_ms'], '.1f')} ms; target ≤ 2×); "
                     f"{fmt(result['episodes_per_min'], '.1f')} episodes/min through the loop; "
                     f"{result['versions_published']} versions published; {result['failed_requests']} failed requests")
    return table

