"""Published policy versions, the reading side: the directory format a learner publishes and a server reads.

Layout of one published version (k = 1, 2, ...; the directory is named exactly `v` + the decimal k)::

    <publish_dir>/v<k>/
        manifest.json   {"version": k, "kind": "model" | "adapter", "base": ..., "episodes": [...],
                         "metrics": {...}, "created": <unix time>}
        model/          an `OpenVLA.from_pretrained` directory (replaces the served model whole), or
        adapter/        a peft-format LoRA adapter (applied to the served base checkpoint)

A version is written into a hidden `.tmp-v<k>-<random>/` directory and renamed to `v<k>` in one step
(`vla_parl.training.publish.PolicyPublisher`), so a reader sees either nothing or a whole version. These
helpers are torch-free and sit below both the learner (training) and the policy server (serving), which
polls them. A `v<k>` without a readable manifest, whose manifest names another version, or without the
folder its kind needs is "broken": `read_version` raises `VLAParlError` saying so.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_parl.errors import VLAParlError

__all__ = ["PublishedVersion", "read_version", "list_versions", "version_dirs", "MANIFEST", "KINDS"]

MANIFEST = "manifest.json"
KINDS = ("model", "adapter")
_VERSION_DIR = re.compile(r"v([1-9][0-9]*)")


@dataclass(frozen=True)
class PublishedVersion:
    """One published policy: `path` is `<publish_dir>/v<version>`; its weights are in `path / kind`."""

    version: int
    kind: str
    path: Path
    manifest: dict[str, Any]

    @property
    def weights(self) -> Path:
        """The folder to load: `v<k>/model` or `v<k>/adapter`."""
        return self.path / self.kind


def _dir_version(path: Path) -> int | None:
    match = _VERSION_DIR.fullmatch(path.name)
    return int(match.group(1)) if match else None


def read_version(path: str | Path) -> PublishedVersion:
    """Read and check `<publish_dir>/v<k>`; `VLAParlError` naming the problem when it is broken.

    Checks: the directory name is `v<k>`; manifest.json is a readable JSON object whose "version" is k;
    "kind" (when given) is "model" or "adapter" and that folder exists (without "kind": model/, then
    adapter/). Whether the weights themselves load is for the loader to find out."""
    path = Path(path)
    version = _dir_version(path)
    if version is None:
        raise VLAParlError(f"{path} is not a published version: its name must be 'v' followed by the version "
                           "number (v1, v2, ...)")
    manifest_path = path / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise VLAParlError(f"published version {path} has no {MANIFEST}; it is incomplete — publish it again "
                           "(versions are written to a temporary directory and renamed when whole)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VLAParlError(f"{manifest_path} is not readable JSON ({exc}); publish that version again") from exc
    if not isinstance(manifest, dict):
        raise VLAParlError(f"{manifest_path} must hold a JSON object, got {type(manifest).__name__}")
    if manifest.get("version") != version or isinstance(manifest.get("version"), bool):
        raise VLAParlError(f"{manifest_path} says version {manifest.get('version')!r} but its directory is "
                           f"{path.name}; a manifest must name its own directory's version")
    kind = manifest.get("kind")
    if kind is None:
        kind = next((k for k in KINDS if (path / k).is_dir()), None)
        if kind is None:
            raise VLAParlError(f"published version {path} has neither model/ nor adapter/")
    elif kind not in KINDS:
        raise VLAParlError(f"{manifest_path}: 'kind' must be one of {list(KINDS)}, got {kind!r}")
    elif not (path / kind).is_dir():
        raise VLAParlError(f"{manifest_path} says kind {kind!r} but {path / kind} does not exist")
    return PublishedVersion(version=version, kind=kind, path=path, manifest=manifest)


def version_dirs(publish_dir: str | Path) -> list[tuple[int, Path]]:
    """(k, path) of every `v<k>` directory under `publish_dir`, oldest first, valid or not ([] when the
    directory does not exist yet); temporary `.tmp-v<k>-...` directories being written are not listed."""
    publish_dir = Path(publish_dir)
    if not publish_dir.is_dir():
        return []
    found = [(version, child) for child in publish_dir.iterdir()
             if (version := _dir_version(child)) is not None and child.is_dir()]
    return sorted(found)


def list_versions(publish_dir: str | Path) -> list[PublishedVersion]:
    """The valid versions under `publish_dir`, oldest first; broken ones are skipped (`read_version` on one
    says why it is broken)."""
    found = []
    for _, path in version_dirs(publish_dir):
        try:
            found.append(read_version(path))
        except VLAParlError:
            continue
    return found
