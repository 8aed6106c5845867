#!/usr/bin/env python
"""Benchmark the data layer on CPU: RLDS streaming into a torch DataLoader, and replay sampling.

Builds its own tiny datasets in a temporary folder (a TFDS `bridge_orig` with tensorflow-datasets'
writer, and a disk-backed replay buffer), then runs several epochs of each and reports samples/s and
resident memory (RSS) after every epoch. RSS must stay flat across epochs (no leak): the script exits
with status 1 when RSS grows by more than --max-growth-mb between the second and the last epoch.

    .venv/bin/python scripts/bench_data.py [--epochs 5] [--json out.json]
    .venv/bin/python scripts/bench_data.py --scale-only [--scale-episodes 8] [--json out.json]

It also (``--no-scale`` skips it) measures what the recipes do with data on disk, at 1×, 4× and 16× a base
dataset, each in a fresh
process (so its peak RSS is its own): SFT streaming (`StepStream` through a DataLoader, a full epoch) and the
critic/PA-RL offline pool (building the transition store once, then sampling pools from it), on a LeRobot v3
dataset; plus SFT streaming samples/s of the same episodes as RLDS. Printed side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

for _k in ("OMP_NUM_THREADS", "TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS"):
    os.environ.setdefault(_k, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def _rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB, from /proc/self/status."""
    vals = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":")
                vals[k] = int(v.split()[0]) / 1024
    return vals.get("VmRSS", float("nan")), vals.get("VmHWM", float("nan"))


def bench_rlds(tmp: Path, epochs: int, episodes: int, steps: int, image: int, shuffle: int) -> dict:
    import torch

    from vla_parl.data.loader import RLDSStepDataset
    from vla_parl.data.synthetic import write_tiny_rlds

    t0 = time.perf_counter()
    write_tiny_rlds(tmp, "bridge_orig", episode_lengths=(steps,) * episodes, image_size=image)
    build_s = time.perf_counter() - t0
    ds = RLDSStepDataset(tmp, "bridge_orig", shuffle_buffer=shuffle, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=32, num_workers=0)
    per_epoch = []
    for _ in range(epochs):
        t, n = time.perf_counter(), 0
        for batch in loader:
            n += len(batch["action"])
        dt = time.perf_counter() - t
        per_epoch.append({"samples": n, "samples_per_s": n / dt, "rss_mb": _rss_mb()[0]})
    return {"build_s": build_s, "episodes": episodes, "raw_steps_per_episode": steps, "image": image,
            "shuffle_buffer": shuffle, "epochs": per_epoch}


def bench_replay(tmp: Path, epochs: int, episodes: int, steps: int, image: int, batch: int, batches: int) -> dict:
    from vla_parl.data.replay import ReplayBuffer, sample_mixed

    rng = np.random.default_rng(0)
    off = ReplayBuffer(tmp / "offline", mc_gamma=0.99, mc_tail="truncated")
    on = ReplayBuffer(tmp / "online", mc_gamma=0.99, mc_tail="truncated")
    t0 = time.perf_counter()
    for e in range(episodes):
        buf = off if e % 2 == 0 else on
        buf.add_episode({"image": rng.integers(0, 255, (steps + 1, image, image, 3), dtype=np.uint8),
                         "proprio": rng.normal(size=(steps + 1, 7)).astype(np.float32)},
                        rng.normal(size=(steps, 7)), -np.ones(steps), terminal=bool(e % 3 == 0),
                        instruction=f"task {e % 5}")
    append_s = time.perf_counter() - t0
    per_epoch = []
    for _ in range(epochs):
        t = time.perf_counter()
        for _ in range(batches):
            sample_mixed(off, on, batch, online_fraction=0.5, rng=rng)
        dt = time.perf_counter() - t
        per_epoch.append({"samples": batch * batches, "samples_per_s": batch * batches / dt,
                          "rss_mb": _rss_mb()[0]})
    size_mb = sum(f.stat().st_size for f in tmp.rglob("*.npy")) / 2 ** 20
    return {"episodes": episodes, "steps_per_episode": steps, "image": image, "batch": batch,
            "append_episodes_per_s": episodes / append_s, "buffer_mb_on_disk": size_mb, "epochs": per_epoch}


def _scale_episodes(n: int, steps: int, image: int):
    rng = np.random.default_rng(0)
    for e in range(n):
        img = rng.integers(0, 255, (steps, image, image, 3), dtype=np.uint8)
        yield {"image": img, "proprio": rng.normal(size=(steps, 7)).astype(np.float32),
               "action": rng.normal(size=(steps, 7)).astype(np.float32), "instruction": f"task {e % 4}",
               "success": e % 2 == 0}


def scale_worker(phase: str, folder: Path, store_dir: Path) -> dict:
    """One measurement in this (fresh) process: phase sft_lerobot | sft_rlds | pool_lerobot."""
    import torch

    from vla_parl.data.loader import StepStream, collate_steps
    from vla_parl.data.sources import OfflineSource
    from vla_parl.recipes._configs import DataSection

    if phase == "sft_rlds":
        data = DataSection(kind="rlds", path=str(folder), dataset_name="bridge_orig")
    else:
        data = DataSection(kind="lerobot", path=str(folder), store_dir=str(store_dir))
    base_rss = _rss_mb()[0]
    t0 = time.perf_counter()
    if phase.startswith("sft"):
        loader = torch.utils.data.DataLoader(StepStream(OfflineSource(data), shuffle_buffer=64), batch_size=32,
                                             collate_fn=collate_steps)
        n, first, t_first = 0, 0, None
        for b in loader:   # steady state: from the first batch on (the readers' start-up is reported apart)
            if t_first is None:
                t_first, first = time.perf_counter(), len(b["action"])
            n += len(b["action"])
        dt = time.perf_counter() - (t_first or t0)
        return {"samples": n, "samples_per_s": (n - first) / dt if n > first else 0.0,
                "first_batch_s": (t_first or t0) - t0, "rss_before_mb": base_rss, "peak_rss_mb": _rss_mb()[1]}
    from vla_parl.data.transition_store import build_store, open_store, store_path
    from vla_parl.training.data import _standard_to_episode

    src = OfflineSource(data)
    path = store_path(store_dir, src.name, src.identity(), src.files(), 0.99)
    record = build_store(path, lambda: (_standard_to_episode(t) for t in src.trajectories()), 0.99)
    build_s = time.perf_counter() - t0
    store = open_store(path, 0.99)
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for _ in range(20):
        store.sample(256, rng)
    pool_s = time.perf_counter() - t
    disk = sum(f.stat().st_size for f in path.rglob("*.npy")) / 2 ** 20
    return {"store_build_s": build_s, "store_mb": disk, "transitions": record["transitions"],
            "pool_samples_per_s": 20 * 256 / pool_s, "rss_before_mb": base_rss, "peak_rss_mb": _rss_mb()[1]}


def bench_scale(tmp: Path, base_episodes: int, steps: int, image: int, factors=(1, 4, 16)) -> dict:
    """Peak RSS of SFT streaming and of the offline pool at each size, samples/s RLDS vs LeRobot, store cost."""
    import subprocess

    from vla_parl.data.lerobot_write import write_lerobot
    from vla_parl.data.synthetic import write_tiny_rlds

    def run(phase: str, folder: Path) -> dict:
        out = tmp / f"{phase}-{folder.name}.json"
        subprocess.run([sys.executable, __file__, "--worker", phase, str(folder), str(tmp / "stores"), str(out)],
                       check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return json.loads(out.read_text())

    rows = {}
    for f in factors:
        folder = tmp / f"lerobot_x{f}"
        t = time.perf_counter()
        write_lerobot(_scale_episodes(base_episodes * f, steps, image), folder, episodes_per_file=64)
        rows[f] = {"episodes": base_episodes * f, "write_s": time.perf_counter() - t,
                   "sft": run("sft_lerobot", folder), "pool": run("pool_lerobot", folder)}
    rlds_factor = factors[len(factors) // 2]
    # bridge_orig drops 2 raw steps per episode and skips episode 1 (no instruction): (steps + 2) raw steps each
    write_tiny_rlds(tmp / "rlds", "bridge_orig", episode_lengths=(steps + 2,) * (base_episodes * rlds_factor),
                    image_size=image)
    rlds = run("sft_rlds", tmp / "rlds")
    print(f"{'size':>5} {'episodes':>8} {'SFT peak RSS':>13} {'pool peak RSS':>14} {'store build':>12} "
          f"{'store MiB':>10} {'SFT samples/s':>14}")
    for f, r in rows.items():
        sft, pool = r["sft"], r["pool"]
        print(f"{f:>4}x {r['episodes']:>8} {sft['peak_rss_mb']:>10.0f} MiB {pool['peak_rss_mb']:>11.0f} MiB "
              f"{pool['store_build_s']:>10.2f} s {pool['store_mb']:>10.1f} {sft['samples_per_s']:>14,.0f}")
    lo, hi = rows[factors[0]], rows[factors[-1]]
    growth = {k: hi[k]["peak_rss_mb"] / lo[k]["peak_rss_mb"] - 1 for k in ("sft", "pool")}
    within = all(g <= 0.10 for g in growth.values())
    print(f"peak RSS {factors[-1]}x vs {factors[0]}x: SFT {growth['sft']:+.1%}, pool {growth['pool']:+.1%} "
          f"(target within 10 %: {'met' if within else 'NOT met'})")
    ms = hi["pool"]["store_build_s"] / hi["pool"]["transitions"] * 1e3
    same = rows[rlds_factor]["sft"]
    print(f"SFT streaming of the same {base_episodes * rlds_factor} episodes after the first batch: LeRobot "
          f"{same['samples_per_s']:,.0f} samples/s, RLDS {rlds['samples_per_s']:,.0f} samples/s (first batch after "
          f"{same['first_batch_s']:.1f} s / {rlds['first_batch_s']:.1f} s)")
    print(f"transition store: built once in {hi['pool']['store_build_s']:.2f} s at {factors[-1]}x ({ms:.2f} ms per "
          f"transition), {hi['pool']['store_mb']:.1f} MiB on disk")
    return {"rows": {str(k): v for k, v in rows.items()}, "rlds_sft": rlds, "peak_rss_growth": growth,
            "within_10_percent": within}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--rlds-episodes", type=int, default=12)
    p.add_argument("--rlds-steps", type=int, default=40)
    p.add_argument("--rlds-image", type=int, default=128)
    p.add_argument("--shuffle-buffer", type=int, default=200)
    p.add_argument("--replay-episodes", type=int, default=60)
    p.add_argument("--replay-steps", type=int, default=50)
    p.add_argument("--replay-image", type=int, default=128)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--max-growth-mb", type=float, default=50.0)
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--scale-only", action="store_true", help="only the 1x/4x/16x table (peak RSS, RLDS vs "
                                                              "LeRobot samples/s, store build cost)")
    p.add_argument("--no-scale", action="store_true", help="skip the 1x/4x/16x table")
    p.add_argument("--scale-episodes", type=int, default=8, help="episodes of the 1x dataset (--scale)")
    p.add_argument("--scale-steps", type=int, default=30)
    p.add_argument("--scale-image", type=int, default=64)
    p.add_argument("--worker", nargs=4, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        phase, folder, stores, out = args.worker
        Path(out).write_text(json.dumps(scale_worker(phase, Path(folder), Path(stores))))
        return 0
    if args.scale_only:
        with tempfile.TemporaryDirectory(prefix="vla_parl_bench_") as d:
            res = bench_scale(Path(d), args.scale_episodes, args.scale_steps, args.scale_image)
        if args.json:
            from vla_parl.data._io import atomic_write_json

            atomic_write_json(args.json, res)
        return 0
    with tempfile.TemporaryDirectory(prefix="vla_parl_bench_") as d:
        d = Path(d)
        rlds = bench_rlds(d / "rlds", args.epochs, args.rlds_episodes, args.rlds_steps, args.rlds_image,
                          args.shuffle_buffer)
        replay = bench_replay(d / "replay", args.epochs, args.replay_episodes, args.replay_steps,
                              args.replay_image, args.batch, args.batches)
    out = {"rlds_streaming": rlds, "replay_sampling": replay, "peak_rss_mb": _rss_mb()[1]}
    ok = True
    if not args.no_scale:
        with tempfile.TemporaryDirectory(prefix="vla_parl_bench_") as d:
            out["scale"] = bench_scale(Path(d), args.scale_episodes, args.scale_steps, args.scale_image)
    for name, res in (("rlds_streaming", rlds), ("replay_sampling", replay)):
        rss = [e["rss_mb"] for e in res["epochs"]]
        growth = rss[-1] - rss[min(1, len(rss) - 1)]
        res["rss_growth_mb_after_epoch_1"] = growth
        tail = rss[1:] if len(rss) > 2 else rss
        res["rss_slope_mb_per_epoch"] = float(np.polyfit(np.arange(len(tail)), tail, 1)[0]) if len(tail) > 1 else 0.0
        res["rss_flat"] = growth <= args.max_growth_mb
        ok &= res["rss_flat"]
        sps = [e["samples_per_s"] for e in res["epochs"]]
        print(f"{name}: {np.median(sps):,.0f} samples/s (median of {len(sps)} epochs); RSS per epoch "
              f"{', '.join(f'{r:.0f}' for r in rss)} MiB; growth after epoch 1 {growth:+.1f} MiB "
              f"({'flat' if res['rss_flat'] else 'GROWING'}; fitted slope {res['rss_slope_mb_per_epoch']:+.2f} MiB/epoch)")
    print(f"replay: {replay['append_episodes_per_s']:.1f} episodes/s appended (fsync'ed), "
          f"{replay['buffer_mb_on_disk']:.0f} MiB on disk; peak RSS {out['peak_rss_mb']:.0f} MiB")
    if args.json:
        from vla_parl.data._io import atomic_write_json

        atomic_write_json(args.json, out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
