"""Small shared helpers: atomic file writes, lazy imports of the heavy data stack, name suggestions."""

from __future__ import annotations

import difflib
import os
from typing import Iterable

import numpy as np

from vla_parl.errors import MissingExtraError
from vla_parl.utils.files import atomic_path, atomic_write_bytes, atomic_write_json, fsync_dir, to_jsonable

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_save_npy", "fsync_dir", "import_tf",
           "import_tfds", "suggest", "to_jsonable"]


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """`np.save` to a temporary file, fsync, then rename onto `path`."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


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
