"""Reading published policy versions (`vla_parl.models.published`): what counts as a whole version, what is
refused as broken and with which message, and which directories a reader lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vla_parl.errors import VLAParlError
from vla_parl.models.published import list_versions, read_version, version_dirs


def _version(root: Path, name: str, manifest: object | None, folders: tuple[str, ...] = ("model",)) -> Path:
    path = root / name
    for folder in folders:
        (path / folder).mkdir(parents=True)
    path.mkdir(parents=True, exist_ok=True)
    if manifest is not None:
        (path / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    return path


def test_a_whole_version_is_read_with_its_kind(tmp_path):
    model = read_version(_version(tmp_path, "v3", {"version": 3, "kind": "model", "episodes": ["a"]}))
    assert (model.version, model.kind, model.weights) == (3, "model", tmp_path / "v3" / "model")
    assert model.manifest["episodes"] == ["a"]
    adapter = read_version(_version(tmp_path, "v4", {"version": 4}, folders=("adapter",)))   # kind from the folder
    assert (adapter.kind, adapter.weights) == ("adapter", tmp_path / "v4" / "adapter")


@pytest.mark.parametrize("name, manifest, folders, message", [
    ("v1", None, ("model",), "has no manifest.json"),
    ("v1", '{"version": 1', ("model",), "is not readable JSON"),
    ("v1", "[1]", ("model",), "must hold a JSON object, got list"),
    ("v1", {"version": 2}, ("model",), "says version 2 but its directory is v1"),
    ("v1", {"version": True}, ("model",), "says version True"),
    ("v1", {"version": 1, "kind": "weights"}, ("model",), "'kind' must be one of ['model', 'adapter']"),
    ("v1", {"version": 1, "kind": "adapter"}, ("model",), "says kind 'adapter' but"),
    ("v1", {"version": 1}, (), "has neither model/ nor adapter/"),
    ("v01", {"version": 1}, ("model",), "its name must be 'v' followed by the version number"),
])
def test_a_broken_version_is_refused_with_what_is_wrong(tmp_path, name, manifest, folders, message):
    with pytest.raises(VLAParlError) as error:
        read_version(_version(tmp_path, name, manifest, folders))
    assert message in str(error.value)


def test_listing_skips_temporary_and_broken_directories_in_version_order(tmp_path):
    assert list_versions(tmp_path / "not-yet") == [] and version_dirs(tmp_path / "not-yet") == []
    for k in (2, 10, 1):
        _version(tmp_path, f"v{k}", {"version": k})
    _version(tmp_path, "v11", None)                            # broken: no manifest
    _version(tmp_path, ".tmp-v12-x1y2", {"version": 12})      # being written
    (tmp_path / "v13").write_text("a file, not a version")
    assert [k for k, _ in version_dirs(tmp_path)] == [1, 2, 10, 11]
    assert [v.version for v in list_versions(tmp_path)] == [1, 2, 10]
