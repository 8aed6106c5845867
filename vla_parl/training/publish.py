"""Versioned policy publishing, the learner's side: `PolicyPublisher` writes `<publish_dir>/v<k>/` (model/ or
adapter/ + manifest.json) by one atomic rename; the policy server reads it with the torch-free helpers of
`vla_parl.models.published` (re-exported here: `PublishedVersion`, `read_version`, `list_versions`), where the
directory format is described.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from vla_parl.errors import VLAParlError
from vla_parl.models.published import (KINDS, MANIFEST, PublishedVersion, list_versions, read_version,
                                       version_dirs)

__all__ = ["PublishedVersion", "read_version", "list_versions", "version_dirs", "PolicyPublisher", "MANIFEST", "KINDS"]


class PolicyPublisher:
    """Writes `<publish_dir>/v<k>/` atomically (see the module doc); a version, once published, is never rewritten.

    Every rank calls `publish` (gathering FSDP2 shards is collective); the main process writes, the others
    take part in the gathers and wait at a barrier.

    Args:
        publish_dir: the folder the policy server watches (`vla-parl serve --policy-updates DIR`).
    """

    def __init__(self, publish_dir: str | Path) -> None:
        self.publish_dir = Path(publish_dir)

    def latest_version(self) -> int:
        """The newest valid version published here (0 when none)."""
        versions = list_versions(self.publish_dir)
        return versions[-1].version if versions else 0

    def publish(self, model: Any, *, version: int, kind: str, base: str, episodes: list[str],
                metrics: dict[str, float], sharded: bool = False, is_main: bool = True,
                rebuild_base: Callable[[], Any] | None = None) -> Path:
        """Write `model` as version `version` and return `<publish_dir>/v<version>`.

        kind "model": the whole servable policy (LoRA merged into a copy; `export_policy`, whose `sharded` and
        `rebuild_base` these are); kind "adapter": only the peft-format LoRA adapter, which the server applies
        to the base it serves. `base` (the checkpoint the policy started from), `episodes` (the server episode
        ids trained on) and `metrics` go into manifest.json. A version that exists is refused (VLAParlError)."""
        import shutil
        import time

        from vla_parl.data._io import atomic_dir
        from vla_parl.distributed import barrier
        from vla_parl.utils.files import atomic_write_json

        if kind not in KINDS:
            raise VLAParlError(f"kind must be one of {list(KINDS)}, got {kind!r}")
        final = self.publish_dir / f"v{version}"
        if not is_main:
            _write_weights(model, None, kind, sharded=sharded, rebuild_base=rebuild_base)
            barrier()
            return final
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise VLAParlError(f"a published version is an int >= 1, got {version!r}")
        if final.exists():
            raise VLAParlError(f"{final} already exists and a published version is never rewritten: publish "
                               f"v{self.latest_version() + 1}, or point the learner at an empty publish folder")
        self.publish_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.publish_dir.glob(f".tmp-v{version}-*"):     # a publisher killed while writing it
            shutil.rmtree(stale, ignore_errors=True)
        manifest = {"version": version, "kind": kind, "base": base, "episodes": list(episodes),
                    "metrics": dict(metrics), "created": time.time()}
        with atomic_dir(final, f".tmp-v{version}-") as tmp:
            _write_weights(model, tmp, kind, sharded=sharded, rebuild_base=rebuild_base)
            atomic_write_json(tmp / MANIFEST, manifest)
        barrier()
        return final


def _write_weights(model: Any, tmp: Path | None, kind: str, *, sharded: bool,
                   rebuild_base: Callable[[], Any] | None) -> None:
    """`tmp/model` or `tmp/adapter` on the main process; `tmp` is None on the others, which write nothing and
    only take part in the collective gathers."""
    from torch import nn

    from vla_parl.models.openvla.lora import has_lora, save_lora_adapter
    from vla_parl.training.parallel import export_policy

    is_main = tmp is not None
    target = tmp if tmp is not None else Path(".")
    if kind == "model":
        export_policy(model, target / "model", sharded=sharded, is_main=is_main, rebuild_base=rebuild_base,
                      in_place=False)
        return
    module = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    if not has_lora(module):
        raise VLAParlError("kind 'adapter' publishes a LoRA adapter, but this policy has none: publish kind "
                           "'model' (online.robot.publish=model)")
    if sharded:
        from vla_parl.distributed.checkpoint import save_lora_adapter_distributed

        save_lora_adapter_distributed(module, target / "adapter")
    elif is_main:
        save_lora_adapter(module, target / "adapter")
