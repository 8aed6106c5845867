"""The demo's online phase through the robot loop (`vla-parl run demo online.env=robot`).

Instead of collecting its episodes in-process, the learner (the demo's `ParlRecipe` with `online.env=robot`)
trains on episodes that simulated robots record through a real policy server, as a lab's robots would:

    vla-parl serve --checkpoint <offline policy> --critic <critic> --episodes E --policy-updates P   (a process)
    vla-parl robot sim --url ... --episodes rounds×episodes_per_round --processes R --mode sample    (a process)
    learner: waits for new episodes in E, trains, publishes P/v<k>; the server hot-swaps to v<k>

The server starts when the offline stage ends, serving the policy and critic that stage produced; the robots
see the built-in tabletop with the demo's settings (task, targets, image size, episode length), and reset
their scenes with the seeds the in-process online phase would use. Robots act as `online.collect_with` says:
with the improvement operator (`mode=refined`, the default, as PA-RL collects) or the policy sampled at
temperature 1 (`mode=sample`). Logs: `<dir>/server.log`, `<dir>/robots.log`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["RobotLoop"]


class RobotLoop:
    """A policy server with episode sessions and policy updates, plus simulated robots, as child processes.

    checkpoint/critic: what the server serves first (policy version 0). episodes_dir/publish_dir: the server's
    `--episodes` and `--policy-updates` (the learner's `online.robot.replay_dir` / `publish_dir`).
    robot_args: the `vla-parl robot sim` flags beyond --url (task, episodes, processes, mode, seed, ...).
    """

    def __init__(self, workdir: str | os.PathLike, *, checkpoint: str | os.PathLike, critic: str | os.PathLike,
                 episodes_dir: str | os.PathLike, publish_dir: str | os.PathLike, robot_args: list[str],
                 threads: int = 1, poll_s: float = 1.0) -> None:
        self.workdir = Path(workdir)
        self.server_args = ["--checkpoint", str(checkpoint), "--critic", str(critic), "--episodes",
                            str(episodes_dir), "--policy-updates", str(publish_dir), "--policy-poll-s", str(poll_s),
                            "--log-level", "warning"]
        self.robot_args, self.threads = list(robot_args), threads
        self.server: Any = None
        self.robots: subprocess.Popen | None = None
        self._robot_log: Any = None

    def start(self) -> str:
        """Start the server (wait until healthy), then the robots; returns the server URL."""
        from serving.process import ServerProcess

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.server = ServerProcess(self.server_args, threads=self.threads, log_path=self.workdir / "server.log")
        url = self.server.start()
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        env.pop("VLA_PARL_QUIET", None)
        self._robot_log = open(self.workdir / "robots.log", "ab")
        self.robots = subprocess.Popen([sys.executable, "-m", "vla_parl.cli.main", "robot", "sim", "--url", url,
                                        *self.robot_args], env=env, stdout=self._robot_log,
                                       stderr=subprocess.STDOUT)
        return url

    def robots_failed(self) -> str | None:
        """The end of the robots' log if they exited with an error (the server refused them), else None."""
        if self.robots is None or self.robots.poll() in (None, 0):
            return None
        self._robot_log.flush()
        tail = (self.workdir / "robots.log").read_text(errors="replace")[-2000:]
        return f"the simulated robots exited with status {self.robots.returncode}:\n{tail}"

    def stop(self) -> None:
        """Stop the robots (they may still be running an episode the learner no longer needs), then the server."""
        if self.robots is not None and self.robots.poll() is None:
            self.robots.terminate()
            try:
                self.robots.wait(30)
            except subprocess.TimeoutExpired:
                self.robots.kill()
                self.robots.wait()
        if self._robot_log is not None:
            self._robot_log.close()
            self._robot_log = None
        if self.server is not None:
            self.server.stop()

    def __enter__(self) -> "RobotLoop":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
