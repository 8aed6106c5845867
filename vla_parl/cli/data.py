"""`vla-parl data`: dataset statistics and inspection.

    vla-parl data stats   --data-dir DIR --dataset NAME [--out FILE] [--split S] [--refresh]
    vla-parl data inspect --data-dir DIR --dataset NAME [--max-episodes N]

DIR holds ``NAME/<version>/`` (a TFDS/RLDS dataset), or is a CALVIN dataset folder (with ``training/``
and ``validation/``; NAME then only names the statistics entry). Heavy imports stay in the handlers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def _is_calvin(data_dir: Path, fmt: str) -> bool:
    if fmt != "auto":
        return fmt == "calvin"
    return any((data_dir / s / "ep_start_end_ids.npy").is_file() for s in ("training", "validation"))


def _stats(args) -> int:
    import json

    from vla_parl.data.statistics import calvin_statistics, rlds_statistics, save_statistics

    data_dir = Path(args.data_dir)
    if _is_calvin(data_dir, args.format):
        stats, cache, hit = calvin_statistics(data_dir, args.split or "training", name=args.dataset,
                                              refresh=args.refresh)
    else:
        stats, cache, hit = rlds_statistics(data_dir, args.dataset, version=args.version,
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
    if _is_calvin(data_dir, args.format):
        from vla_parl.data.calvin import CalvinReader

        reader = CalvinReader(data_dir, args.split or "training")
        title = f"CALVIN {args.dataset} / {reader.split}: {len(reader.episodes)} episodes, {len(reader)} annotated windows"
        trajs = list(islice(iter(reader), args.max_episodes))
    else:
        from vla_parl.data.rlds import iter_trajectories, resolve_dataset_dir

        ds_dir = resolve_dataset_dir(data_dir, args.dataset, args.version)
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


def register(subparsers) -> None:
    """Add the `data` command (with `stats` and `inspect`) to the main parser's sub-parsers."""
    p = subparsers.add_parser("data", help="dataset statistics and inspection (RLDS / CALVIN)",
                              description="Dataset statistics and inspection (RLDS / CALVIN).")
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--data-dir", required=True, help="folder holding NAME/<version>/ (RLDS) or a CALVIN dataset")
        sp.add_argument("--dataset", required=True, help="dataset name, e.g. bridge_orig")
        sp.add_argument("--version", default=None, help="TFDS version (default: newest)")
        sp.add_argument("--split", default=None, help="split (default: train for RLDS, training for CALVIN)")
        sp.add_argument("--format", choices=("auto", "rlds", "calvin"), default="auto")

    s = sub.add_parser("stats", help="compute (or reuse cached) normalisation statistics")
    common(s)
    s.add_argument("--out", default=None, help="write dataset_statistics.json here (default: print)")
    s.add_argument("--refresh", action="store_true", help="ignore the cache and recompute")
    s.set_defaults(handler=_stats)
    i = sub.add_parser("inspect", help="print episodes, steps, keys, shapes and a sample")
    common(i)
    i.add_argument("--max-episodes", type=int, default=20, help="episodes to read (default 20)")
    i.set_defaults(handler=_inspect)
