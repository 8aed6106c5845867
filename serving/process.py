"""`vla-parl serve` as a child process: start it on a free loopback port and wait until it answers `/health`.

    with ServerProcess(["--checkpoint", "runs/sft/final/model", "--episodes", "runs/episodes"]) as server:
        client = PolicyClient(server.url)
        ...

Benchmarks, the demo's robot loop and tests run the real server this way (its own interpreter, its own
torch threads), so what they measure or exercise is what a lab runs. `stop()` asks it to shut down (SIGTERM,
then SIGKILL after `stop_timeout`); `kill()` is the SIGKILL of a crash. Its stderr goes to `log_path` (or is
discarded), so a server that exits during start-up is reported with the end of that log.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Sequence

__all__ = ["ServerProcess", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`vla-parl serve ARGS --host 127.0.0.1 --port P` as a child process (`python -m vla_parl.cli.main serve`).

    args: the `vla-parl serve` flags (without --port/--host: the server binds 127.0.0.1 on a free port).
    threads: OMP/torch threads of the server process. env: environment changes (a None value unsets the
    variable, e.g. VLA_PARL_API_KEY); VLA_PARL_QUIET, which in-process CLI calls set, is never passed on.
    log_path: where its stdout+stderr go (appended); None discards them.
    """

    def __init__(self, args: Sequence[str], *, threads: int = 1, env: dict[str, str | None] | None = None,
                 log_path: str | os.PathLike | None = None, start_timeout: float = 180.0,
                 stop_timeout: float = 15.0) -> None:
        self.args, self.threads, self.extra_env = list(args), threads, dict(env or {})
        self.log_path = Path(log_path) if log_path is not None else None
        self.start_timeout, self.stop_timeout = start_timeout, stop_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self._log: Any = None

    def start(self) -> str:
        """Launch it and wait until `/health` answers 200; returns the URL. Raises RuntimeError (with the end of
        the server's log) if it exits or is not healthy within `start_timeout` seconds."""
        repo = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads),
               "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
        env.pop("VLA_PARL_QUIET", None)
        for name, value in self.extra_env.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")
        out = self._log if self._log is not None else subprocess.DEVNULL
        self.process = subprocess.Popen([sys.executable, "-m", "vla_parl.cli.main", "serve", *self.args, "--host",
                                         "127.0.0.1", "--port", str(self.port)], env=env, stdout=out, stderr=out)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"vla-parl serve exited with status {self.process.returncode} during start-up"
                                   + self._log_tail())
            if self.healthy():
                return self.url
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"vla-parl serve was not healthy within {self.start_timeout:.0f} s"
                                   + self._log_tail())
            time.sleep(0.2)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def get_json(self, path: str, api_key: str | None = None) -> dict[str, Any]:
        """GET `path` and decode the JSON answer (e.g. "/v1/metadata")."""
        request = urllib.request.Request(self.url + path, headers={"X-API-Key": api_key} if api_key else {})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def log_text(self) -> str:
        """Everything the server wrote so far ("" without a log_path)."""
        if self.log_path is None or not self.log_path.is_file():
            return ""
        if self._log is not None:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def _log_tail(self, chars: int = 3000) -> str:
        text = self.log_text()
        return ":\n" + text[-chars:] if text else " (no log: pass log_path to keep the server's output)"

    def stop(self) -> None:
        """SIGTERM (uvicorn's graceful shutdown), SIGKILL if it has not exited within `stop_timeout` seconds."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL: what a crash or a power cut does to the server."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "ServerProcess":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
