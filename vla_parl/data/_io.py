"""Small shared helpers: atomic file writes, lazy imports of the heavy data stack, name suggestions."""

from __future__ import annotations

import difflib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from vla_parl.errors import MissingExtraError

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_save_npy", "fsync_dir", "import_tf",
           "import_tfds", "suggest", "to_jsonable"]


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so a rename inside it survives a power loss (no-op where unsupported)."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically: temporary file in the same folder, fsync, `os.replace`.

    A reader sees either the old file or the new one, never a truncated mix.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def to_jsonable(obj: Any) -> Any:
    """Numpy arrays / scalars -> lists / Python scalars, recursively (dicts, lists, tuples)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Serialise `obj` (numpy allowed) as indented JSON and write it atomically."""
    atomic_write_bytes(path, (json.dumps(to_jsonable(obj), indent=2) + "\n").encode())


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """`np.save` to a temporary file, fsync, then rename onto `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def suggest(name: str, candidates: Iterable[str]) -> str:
    """' Did you mean "x"?' for the closest candidate (difflib), or '' when nothing is close."""
    match = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.5)
    return f' Did you mean "{match[0]}"?' if match else ""


def _load_torch_native_libraries_first() -> None:
    """Load triton's LLVM (pulled in by torchvision → torch._dynamo) before tensorflow's.

    Both bundle LLVM; whichever loads second aborts the process ("LLVM ERROR: inconsistency in registered
    CommandLine options") when triton comes after tensorflow. Loading torch's stack first is safe.
    """
    import importlib.util
    import sys

    if "tensorflow" in sys.modules or importlib.util.find_spec("torchvision") is None:
        return
    import torchvision  # noqa: F401
    import torch._dynamo  # noqa: F401


def import_tf():
    """Import tensorflow for data loading only: CPU-only (it must not take the GPU from torch), quiet."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _load_torch_native_libraries_first()
    try:
        import tensorflow as tf
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingExtraError.for_package("tensorflow", "data", "Reading RLDS/TFDS datasets") from exc
    try:
        tf.config.set_visible_devices([], "GPU")
    except (RuntimeError, ValueError):
        pass  # already initialised: devices can no longer be changed
    return tf


def import_tfds():
    """Import tensorflow-datasets, with a clear install hint when it is missing."""
    import_tf()
    try:
        import tensorflow_datasets as tfds
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingExtraError.for_package("tensorflow-datasets", "data",
                                            "Reading RLDS/TFDS datasets") from exc
    return tfds
