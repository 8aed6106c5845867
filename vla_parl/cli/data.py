"""`vla-parl data`: dataset statistics and inspection.

    vla-parl data stats   --data-dir DIR --dataset NAME [--out FILE] [--split S] [--refresh]
    vla-parl data inspect --data-dir DIR --dataset NAME [--max-episodes N]
    vla-parl data stats   --data-dir DIR_OR_REPO_ID --format lerobot [--out FILE]
    vla-parl data export-lerobot REPLAY_DIR OUT [--fps 10] [--version v3.0]

DIR holds ``NAME/<version>/`` (a TFDS/RLDS dataset), is a CALVIN dataset folder (with ``training/``
and ``validation/``; NAME then only names the statistics entry), or is a LeRobotDataset (``meta/info.json``;
or a Hub repo id in the HF cache; NAME defaults to its folder/repo name). Heavy imports stay in the handlers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def _is_calvin(data_dir: Path, fmt: str) -> bool:
    if fmt != "auto":
        return fmt == "calvin"
    return any((data_dir / s / "ep_start_end_ids.npy").is_file() for s in ("training", "validation"))


def _is_lerobot(data_dir: str, fmt: str) -> bool:
    from vla_parl.data.lerobot import is_lerobot_dir

    return fmt == "lerobot" or (fmt == "auto" and is_lerobot_dir(data_dir))


def _need_dataset(args) -> str:
    if not args.dataset:
        from vla_parl.errors import ConfigError

        raise ConfigError("--dataset NAME is required for RLDS and CALVIN data (only LeRobot datasets take their "
                          "name from the folder or repo id)")
    return args.dataset


def _stats(args) -> int:
    import json

    from vla_parl.data.statistics import calvin_statistics, rlds_statistics, save_statistics

    data_dir = Path(args.data_dir)
    if _is_lerobot(args.data_dir, args.format):
        from vla_parl.data.lerobot import lerobot_name, lerobot_statistics

        args.dataset = args.dataset or lerobot_name(args.data_dir)
        stats, cache, hit = lerobot_statistics(args.data_dir, name=args.dataset, camera_key=args.camera_key,
                                               refresh=args.refresh)
    elif _is_calvin(data_dir, args.format) and _need_dataset(args):
        stats, cache, hit = calvin_statistics(data_dir, args.split or "training", name=args.dataset,
                                              refresh=args.refresh)
    else:
        stats, cache, hit = rlds_statistics(data_dir, _need_dataset(args), version=args.version,
                                            split=args.split or "train", refresh=args.refresh)
    entry = stats[args.dataset]
    print(f"{'reused cached' if hit else 'computed'} statistics for {args.dataset!r}: "
          f"{entry['num_trajectories']} trajectories, {entry['num_transitions']} transitions (cache: {cache})")
    if args.out:
        save_statistics(args.out, stats)
        print(f"wrote {args.out}")
    else:
        print(json.dumps(stats, indent=2))
    return 0


def _fmt(x) -> str:
    import numpy as np

    if isinstance(x, np.ndarray):
        if x.size <= 8:
            return np.array2string(x, precision=4, suppress_small=True)
        return f"{x.dtype}{list(x.shape)} min {x.min():.4g} max {x.max():.4g}"
    return repr(x)


def _inspect(args) -> int:
    from itertools import islice

    import numpy as np
    from rich.console import Console
    from rich.table import Table

    console = Console()
    data_dir = Path(args.data_dir)
    if _is_lerobot(args.data_dir, args.format):
        from vla_parl.data.lerobot import LeRobotSource

        src = LeRobotSource(args.data_dir, camera_key=args.camera_key)
        total = sum(e["length"] for e in src.episodes)
        title = (f"LeRobot {src.name} ({src.version}, {src.fps:g} fps): {len(src)} episodes, {total} frames; "
                 f"cameras {src.camera_keys} (reading {src.camera_key!r})")
        trajs = list(src.iter_trajectories(max_episodes=args.max_episodes))
    elif _is_calvin(data_dir, args.format) and _need_dataset(args):
        from vla_parl.envs.calvin.reader import CalvinReader

        reader = CalvinReader(data_dir, args.split or "training")
        title = (f"CALVIN {args.dataset} / {reader.split}: {len(reader.episodes)} episodes, "
                 f"{len(reader)} annotated windows")
        trajs = list(islice(iter(reader), args.max_episodes))
    else:
        from vla_parl.data.rlds import iter_trajectories, resolve_dataset_dir

        ds_dir = resolve_dataset_dir(data_dir, _need_dataset(args), args.version)
        info = __import__("json").loads((ds_dir / "dataset_info.json").read_text())
        n = {s.get("name"): sum(int(x) for x in s.get("shardLengths", [])) for s in info.get("splits", [])}
        title = f"RLDS {args.dataset} {ds_dir.name}: raw episodes per split {n}"
        trajs = list(islice(iter_trajectories(data_dir, args.dataset, version=args.version,
                                              split=args.split or "train"), args.max_episodes))
    console.print(f"[bold]{title}[/bold]")
    if not trajs:
        console.print("no (standardised) episodes to show")
        return 0
    lens = [len(t["action"]) for t in trajs]
    console.print(f"first {len(trajs)} standardised episodes: {sum(lens)} steps "
                  f"(min {min(lens)}, max {max(lens)} per episode)")
    table = Table(title="step keys")
    for col in ("key", "dtype", "shape per step"):
        table.add_column(col)
    for k, v in trajs[0].items():
        if isinstance(v, np.ndarray):
            table.add_row(k, str(v.dtype), str(tuple(v.shape[1:])))
        else:
            table.add_row(k, type(v).__name__, "per episode")
    console.print(table)
    sample = Table(title=f"sample: episode {trajs[0].get('episode_id', 0)!s}, step 0")
    sample.add_column("key")
    sample.add_column("value")
    for k, v in trajs[0].items():
        sample.add_row(k, _fmt(v[0]) if isinstance(v, np.ndarray) else repr(v))
    console.print(sample)
    return 0


def _export_lerobot(args) -> int:
    from vla_parl.data.lerobot_write import replay_episodes, write_lerobot
    from vla_parl.data.replay import ReplayBuffer

    with ReplayBuffer(args.replay_dir, readonly=True) as buffer:
        out = write_lerobot(replay_episodes(buffer), args.out, fps=args.fps, version=args.version, codec=args.codec)
        print(f"wrote {buffer.num_episodes} episodes to {out} (LeRobotDataset {args.version}); actions as stored in "
              f"the buffer (normalised to [-1, 1] in vla-parl runs)")
    return 0


def register(subparsers) -> None:
    """Add the `data` command (with `stats` and `inspect`) to the main parser's sub-parsers."""
    p = subparsers.add_parser("data", help="dataset statistics and inspection (RLDS / CALVIN)",
                              description="Dataset statistics and inspection (RLDS / CALVIN).")
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--data-dir", required=True, help="folder holding NAME/<version>/ (RLDS), a CALVIN dataset, or "
                                                          "a LeRobotDataset folder / Hub repo id in the HF cache")
        sp.add_argument("--dataset", default=None, help="dataset name, e.g. bridge_orig (LeRobot: default the "
                                                        "folder or repo name)")
        sp.add_argument("--version", default=None, help="TFDS version (default: newest)")
        sp.add_argument("--split", default=None, help="split (default: train for RLDS, training for CALVIN)")
        sp.add_argument("--format", choices=("auto", "rlds", "calvin", "lerobot"), default="auto")
        sp.add_argument("--camera-key", default=None, help="LeRobot: camera feature to read (default: the first)")

    s = sub.add_parser("stats", help="compute (or reuse cached) normalisation statistics")
    common(s)
    s.add_argument("--out", default=None, help="write dataset_statistics.json here (default: print)")
    s.add_argument("--refresh", action="store_true", help="ignore the cache and recompute")
    s.set_defaults(handler=_stats)
    i = sub.add_parser("inspect", help="print episodes, steps, keys, shapes and a sample")
    common(i)
    i.add_argument("--max-episodes", type=int, default=20, help="episodes to read (default 20)")
    i.set_defaults(handler=_inspect)
    x = sub.add_parser("export-lerobot", help="write a replay buffer's episodes as a LeRobotDataset (v3.0)")
    x.add_argument("replay_dir", help="replay buffer folder (buffer.json), e.g. <run>/replay/online")
    x.add_argument("out", help="output dataset folder (must not exist)")
    x.add_argument("--fps", type=int, default=10, help="frames per second recorded in the dataset (default 10)")
    x.add_argument("--version", choices=("v3.0", "v2.1"), default="v3.0")
    x.add_argument("--codec", default="auto", help="video encoder: auto (AV1 if available, else h264), libx264, ...")
    x.set_defaults(handler=_export_lerobot)
