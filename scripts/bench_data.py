#!/usr/bin/env python
"""Benchmark the data layer on CPU: RLDS streaming into a torch DataLoader, and replay sampling.

Builds its own tiny datasets in a temporary folder (a TFDS `bridge_orig` with tensorflow-datasets'
writer, and a disk-backed replay buffer), then runs several epochs of each and reports samples/s and
resident memory (RSS) after every epoch. RSS must stay flat across epochs (no leak): the script exits
with status 1 when RSS grows by more than --max-growth-mb between the second and the last epoch.

    .venv/bin/python scripts/bench_data.py [--epochs 5] [--json out.json]
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
    off, on = ReplayBuffer(tmp / "offline", mc_gamma=0.99), ReplayBuffer(tmp / "online", mc_gamma=0.99)
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
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vla_parl_bench_") as d:
        d = Path(d)
        rlds = bench_rlds(d / "rlds", args.epochs, args.rlds_episodes, args.rlds_steps, args.rlds_image,
                          args.shuffle_buffer)
        replay = bench_replay(d / "replay", args.epochs, args.replay_episodes, args.replay_steps,
                              args.replay_image, args.batch, args.batches)
    out = {"rlds_streaming": rlds, "replay_sampling": replay, "peak_rss_mb": _rss_mb()[1]}
    ok = True
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
