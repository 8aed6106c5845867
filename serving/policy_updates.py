"""Hot policy updates: pick up the versions a learner publishes and swap them into a running server.

The learner publishes `<publish_dir>/v<k>/` (see `vla_parl.models.published`): `model/` (a whole
`OpenVLA.from_pretrained` directory: weights, processor, statistics) or `adapter/` (a peft LoRA adapter for
the served base checkpoint). `PolicyUpdates` watches that directory from its own thread (every `poll_s`
seconds) and answers `reload()` calls (the server's `POST /v1/admin/reload`). Either way:

1. the newest version k newer than the served one is read and loaded here, in the caller's thread — never
   inside a batch — on the served model's device and dtype (`adapter/`: a fresh load of the base checkpoint,
   the adapter applied and merged into it);
2. `PolicyEngine.swap(model, k)` makes it the policy of the next batch; requests keep being answered by the
   old version meanwhile, and a batch that already started finishes on it. The critic stays.

A version that cannot be served — no or unreadable manifest.json, a manifest naming another version, missing
or corrupt weights, other datasets / action dims / image transform than the served model — is refused with a
log line on the "vla_parl.serving" logger and remembered, so it is not loaded again on every poll (only once
its files change); the next older valid version newer than the served one is tried instead, and the old
policy keeps serving. One load at a time: concurrent `reload()` calls wait for each other.

    updates = PolicyUpdates(engine, "runs/publish", poll_s=2.0)
    updates.start()            # watch in the background
    updates.reload()           # or check now: {"policy_version": 2, "loaded": True, "message": "..."}
    updates.stop()
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from serving.engine import PolicyEngine
from vla_parl.errors import ConfigError, VLAParlError
from vla_parl.models.published import PublishedVersion, read_version, version_dirs

__all__ = ["PolicyUpdates", "load_published_model"]

logger = logging.getLogger("vla_parl.serving")

_Fingerprint = tuple[tuple[str, int, int], ...]


def load_published_model(engine: PolicyEngine, published: PublishedVersion) -> Any:
    """The model of a published version, on the served model's device and dtype (not yet swapped in).

    `model`: `OpenVLA.from_pretrained(v<k>/model)`. `adapter`: the engine's base checkpoint loaded afresh,
    the LoRA adapter applied and merged (so serving costs the same as before)."""
    from vla_parl.models import OpenVLA
    from vla_parl.models.openvla.lora import load_lora_adapter, merge_lora

    served = engine.model
    if published.kind == "model":
        return OpenVLA.from_pretrained(published.weights, device=served.device, torch_dtype=served.dtype)
    if engine.checkpoint is None:
        raise VLAParlError("an adapter version is applied to the served base checkpoint, but this server was "
                           "started from a model without a checkpoint path; publish model/ versions instead")
    base = published.manifest.get("base")
    if isinstance(base, str) and Path(base).exists() and Path(base).resolve() != Path(engine.checkpoint).resolve():
        logger.warning("policy version v%d was trained on base %s but this server's base is %s; applying its "
                       "adapter to the served base", published.version, base, engine.checkpoint)
    model = OpenVLA.from_pretrained(engine.checkpoint, device=served.device, torch_dtype=served.dtype)
    return merge_lora(load_lora_adapter(model, published.weights))


def _fingerprint(path: Path) -> _Fingerprint:
    """(relative path, size, mtime) of every file under `path`: a refused version is retried once it changes."""
    files = []
    for root, _, names in os.walk(path):
        for name in names:
            try:
                stat = os.stat(os.path.join(root, name))
            except OSError:
                continue
            files.append((os.path.relpath(os.path.join(root, name), path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(files))


class PolicyUpdates:
    """Watch `publish_dir` for new policy versions and hot-swap them into `engine` (see the module docstring).

    publish_dir: the learner's publish directory (it may not exist yet); None: nothing to watch, `reload()`
    says so. poll_s: seconds between checks of the watcher thread that `start()` runs."""

    def __init__(self, engine: PolicyEngine, publish_dir: str | os.PathLike | None, *, poll_s: float = 2.0) -> None:
        if not poll_s > 0:
            raise ConfigError(f"poll_s must be a positive number of seconds, got {poll_s!r}")
        self.engine = engine
        self.publish_dir = Path(publish_dir) if publish_dir is not None else None
        self.poll_s = float(poll_s)
        self._refused: dict[int, tuple[_Fingerprint, str]] = {}   # version → (its files when refused, why)
        self._lock = threading.Lock()                    # one load at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- watching ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Check now and then every `poll_s` seconds, in a daemon thread (no-op without a publish_dir)."""
        if self.publish_dir is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="vla-parl-policy-updates", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop the watcher (a load in progress finishes first, up to `timeout` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> "PolicyUpdates":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self.reload()
            except Exception:  # noqa: BLE001 - the watcher outlives any one failure; it is logged
                logger.exception("checking %s for policy updates failed; retrying in %.1f s",
                                 self.publish_dir, self.poll_s)
            self._stop.wait(self.poll_s)

    # ---- loading -----------------------------------------------------------------------------------------
    def reload(self) -> dict[str, Any]:
        """Load and swap in the newest servable version newer than the served one, if there is one.

        Returns {"policy_version": the version served now, "loaded": whether this call swapped one in,
        "message": what happened, naming refused versions and why}."""
        if self.publish_dir is None:
            return self._answer(False, "no publish directory to load policy versions from; start the server "
                                       "with --policy-updates DIR")
        with self._lock:
            served = self.engine.policy_version
            refused = []
            for version, path in reversed(version_dirs(self.publish_dir)):
                if version <= served:
                    break
                fingerprint = _fingerprint(path)
                known = self._refused.get(version)
                if known is not None and known[0] == fingerprint:
                    refused.append(f"v{version}: {known[1]}")
                    continue
                try:
                    published, seconds = self._load(path)
                except Exception as exc:  # noqa: BLE001 - any broken version is refused, the old one serves on
                    reason = str(exc) if isinstance(exc, VLAParlError) else f"{type(exc).__name__}: {exc}"
                    self._refused[version] = (fingerprint, reason)
                    logger.error("refused policy version v%d (%s): %s; still serving v%d",
                                 version, path, reason, served)
                    refused.append(f"v{version}: {reason}")
                    continue
                self._refused.pop(version, None)
                message = (f"now serving v{version} ({published.kind}) from {path}, loaded in {seconds:.2f} s "
                           f"(was v{served})")
                logger.info("policy update: %s", message)
                return self._answer(True, message + "".join(f"; refused {r}" for r in refused))
            message = f"no servable version newer than v{served} in {self.publish_dir}"
            return self._answer(False, message + "".join(f"; refused {r}" for r in refused))

    def _load(self, path: Path) -> tuple[PublishedVersion, float]:
        """Read, load and swap in the version at `path`: (it, the seconds that took). Raises when it is broken."""
        started = time.perf_counter()
        published = read_version(path)
        model = load_published_model(self.engine, published)
        self.engine.swap(model, published.version)
        return published, time.perf_counter() - started

    def _answer(self, loaded: bool, message: str) -> dict[str, Any]:
        return {"policy_version": self.engine.policy_version, "loaded": loaded, "message": message}
