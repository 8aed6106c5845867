"""Normalisation statistics (OpenVLA ``norm_stats`` / ``dataset_statistics.json``), cached next to data.

For one dataset, over all standardised transitions:

    mean, std (population, ddof = 0), min, max, q01 = quantile_0.01, q99 = quantile_0.99  (per dim)
    mask = [True]*6 + [False] for 7-D actions and proprio (the gripper is not normalised), else all True
    num_transitions = Σ_episodes T_e,  num_trajectories = number of episodes

Quantiles are **exact** (numpy's default linear interpolation): one streaming pass keeps only the
action and proprio vectors (7 + P floats per step — 2.3 M bridge-size steps ≈ 130 MB), never images.

Cache: the statistics depend on the dataset name, version, the reader's standardisation (name +
``version_tag``) and the content files (names, sizes, mtimes). Their SHA-256 names the cache file
``dataset_statistics_<hash16>.json`` in the dataset folder (or ``~/.cache/vla_parl/statistics/`` when
that folder is read-only). The file holds the ``{name: {...}}`` shape of ``dataset_statistics.json``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from vla_parl.data._io import atomic_write_json, to_jsonable
from vla_parl.errors import ConfigError, VLAParlError

__all__ = ["compute_statistics", "array_statistics", "cache_key", "cached_statistics",
           "rlds_statistics", "calvin_statistics", "merge_norm_stats", "load_statistics",
           "save_statistics", "STAT_FIELDS"]

STAT_FIELDS = ("mean", "std", "min", "max", "q01", "q99", "mask")


def _default_mask(dim: int) -> list[bool]:
    return [True] * 6 + [False] if dim == 7 else [True] * dim


def array_statistics(x: np.ndarray, mask: Iterable[bool] | None = None) -> dict[str, list]:
    """Per-dim statistics of x [N, D] (see module docstring) as JSON-ready lists."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise VLAParlError(f"cannot compute statistics of an array of shape {x.shape}: no transitions.")
    mask = list(mask) if mask is not None else _default_mask(x.shape[1])
    return {"mean": x.mean(0).tolist(), "std": x.std(0).tolist(), "min": x.min(0).tolist(),
            "max": x.max(0).tolist(), "q01": np.quantile(x, 0.01, axis=0).tolist(),
            "q99": np.quantile(x, 0.99, axis=0).tolist(), "mask": [bool(m) for m in mask]}


def compute_statistics(trajectories: Iterable[Mapping], action_mask: Iterable[bool] | None = None) -> dict:
    """One pass over trajectories (dicts with ``action`` [T, A] and ``proprio`` [T, P])."""
    actions, proprio, n_traj = [], [], 0
    for traj in trajectories:
        actions.append(np.asarray(traj["action"], np.float32))
        if "proprio" in traj:
            proprio.append(np.asarray(traj["proprio"], np.float32))
        n_traj += 1
    if not n_traj:
        raise VLAParlError("the dataset yielded no trajectories (empty split, or every episode skipped, "
                           "e.g. for lacking a language instruction).")
    a = np.concatenate(actions)
    out = {"action": array_statistics(a, action_mask)}
    if proprio:
        out["proprio"] = array_statistics(np.concatenate(proprio))
    out["num_transitions"] = int(len(a))
    out["num_trajectories"] = n_traj
    return out


def cache_key(identity: Mapping, files: Iterable[Path]) -> str:
    """SHA-256 of the identity dict and each file's (name, size, mtime_ns)."""
    h = hashlib.sha256(json.dumps(to_jsonable(identity), sort_keys=True).encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{Path(f).name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _cache_dirs(data_folder: Path) -> list[Path]:
    return [data_folder, Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vla_parl" / "statistics"]


def cached_statistics(name: str, data_folder: Path, identity: Mapping, files: Iterable[Path],
                      compute, *, refresh: bool = False) -> tuple[dict, Path, bool]:
    """Return ({name: stats}, cache path, hit?) — reading the cache or calling `compute()` and writing it."""
    key = cache_key(identity, files)[:16]
    fname = f"dataset_statistics_{key}.json"
    if not refresh:
        for d in _cache_dirs(data_folder):
            p = d / fname
            if p.is_file():
                try:
                    stats = json.loads(p.read_text())
                    if name in stats:
                        return stats, p, True
                except (OSError, json.JSONDecodeError):
                    pass  # unreadable cache: recompute and overwrite it
    stats = {name: compute()}
    for d in _cache_dirs(data_folder):
        try:
            atomic_write_json(d / fname, stats)
            return stats, d / fname, False
        except OSError:
            continue
    raise VLAParlError(f"could not write the statistics cache in {[str(d) for d in _cache_dirs(data_folder)]}.")


def rlds_statistics(data_dir: str | os.PathLike, name: str, *, version: str | None = None,
                    split: str = "train", config=None, refresh: bool = False) -> tuple[dict, Path, bool]:
    """Statistics of an RLDS dataset (cached); returns ({name: stats}, cache path, cache hit?)."""
    from vla_parl.data.rlds import _config_for, dataset_files, iter_trajectories, resolve_dataset_dir

    ds_dir = resolve_dataset_dir(data_dir, name, version)
    cfg = _config_for(name, config)
    identity = {"kind": "rlds", "name": name, "version": ds_dir.name, "split": split,
                "standardize": getattr(cfg.standardize, "__name__", str(cfg.standardize)),
                "tag": cfg.version_tag, "image_key": cfg.image_key, "state_keys": cfg.state_keys,
                "language_key": cfg.language_key,
                "action_key": cfg.action_key, "skip_without_language": cfg.skip_without_language,
                "mask": cfg.action_mask}
    compute = lambda: compute_statistics(  # noqa: E731
        iter_trajectories(data_dir, name, version=version, split=split, config=cfg, images=False), cfg.action_mask)
    return cached_statistics(name, ds_dir, identity, dataset_files(ds_dir), compute, refresh=refresh)


def calvin_statistics(root: str | os.PathLike, split: str = "training", *, name: str = "calvin",
                      refresh: bool = False) -> tuple[dict, Path, bool]:
    """Statistics of CALVIN's annotated windows (actions = rel_actions, proprio = robot_obs), cached."""
    from vla_parl.envs.calvin.reader import CalvinReader

    reader = CalvinReader(root, split)
    identity = {"kind": "calvin", "name": name, "split": split, "tag": "1"}
    compute = lambda: compute_statistics(reader)  # noqa: E731
    return cached_statistics(name, reader.dir, identity, reader.content_files(), compute, refresh=refresh)


def _check_entry(name: str, entry: Mapping) -> None:
    if not isinstance(entry, Mapping) or "action" not in entry:
        raise ConfigError(f"statistics for {name!r} must be a dict with an 'action' entry; got "
                          f"{type(entry).__name__} with keys {sorted(entry) if isinstance(entry, Mapping) else '-'}.")
    missing = [f for f in ("q01", "q99", "mask") if f not in entry["action"]]
    if missing:
        raise ConfigError(f"statistics for {name!r}: 'action' lacks {missing} (needed to un-normalise "
                          f"actions). Recompute them with: vla-parl data stats --dataset {name} ...")
    dims = {len(v) for k, v in entry["action"].items() if k in STAT_FIELDS}
    if len(dims) != 1:
        raise ConfigError(f"statistics for {name!r}: action fields have different lengths {sorted(dims)}.")


def merge_norm_stats(model_norm_stats: Mapping | None, dataset_stats: Mapping) -> dict:
    """Norm stats to save with a fine-tuned model: the base model's datasets plus the new one(s).

    ``dataset_stats`` is ``{name: {"action": {...}, "proprio": {...}, "num_transitions", ...}}`` (the
    ``dataset_statistics.json`` shape). Entries with the same name replace the model's — the model was
    just trained with the new statistics, so serving must un-normalise with them. Inputs are not
    modified; the result is JSON-ready (lists, not arrays).
    Raises ConfigError for a malformed entry.
    """
    if not isinstance(dataset_stats, Mapping) or not dataset_stats:
        raise ConfigError("dataset_stats must be a non-empty {dataset_name: statistics} dict "
                          "(the content of dataset_statistics.json).")
    for name, entry in dataset_stats.items():
        _check_entry(name, entry)
    merged = copy.deepcopy(to_jsonable(dict(model_norm_stats or {})))
    merged.update(copy.deepcopy(to_jsonable(dict(dataset_stats))))
    return merged


def save_statistics(path: str | os.PathLike, stats: Mapping) -> Path:
    """Write ``{name: stats}`` as JSON atomically (the ``dataset_statistics.json`` shape)."""
    for name, entry in stats.items():
        _check_entry(name, entry)
    atomic_write_json(path, stats)
    return Path(path)


def load_statistics(path: str | os.PathLike) -> dict:
    """Read a ``dataset_statistics.json``; a clear error when missing or malformed."""
    p = Path(path)
    try:
        stats = json.loads(p.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"statistics file {str(p)!r} not found. Create it with: vla-parl data stats "
                          f"--data-dir DIR --dataset NAME --out {p}") from exc
    except json.JSONDecodeError as exc:
        raise VLAParlError(f"statistics file {str(p)!r} is not valid JSON ({exc}).") from exc
    for name, entry in stats.items():
        _check_entry(name, entry)
    return stats
