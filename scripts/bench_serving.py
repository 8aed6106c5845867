"""Benchmark the policy server: latency p50/p99 and requests/s at 1, 8 and 32 concurrent clients, with
dynamic batching on and off (off = --max-batch-size 1), side by side in one run.

    OMP_NUM_THREADS=1 python scripts/bench_serving.py [--checkpoint DIR] [--duration 5] [--json out.json]

Without --checkpoint it saves the tiny OpenVLA (`openvla_tiny(image_size=56)`) to a temp dir. Each
configuration runs as its own `vla-parl serve` process on 127.0.0.1 (free port; both up at once, levels
interleaved so drifting load on a shared machine affects both alike). Clients are threads that POST
OpenVLA-style `/act` requests (json_numpy, a 224×224 camera frame), pre-encoded and sent over http.client
keep-alive connections so the client side costs little. A default run takes about a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


def _start_server(checkpoint: str, max_batch_size: int, max_wait_ms: float, threads: int,
                  extra_args: tuple[str, ...] = (), start_timeout: float = 120) -> tuple[Any, str]:
    """A running `vla-parl serve` process (`serving.process.ServerProcess`; plus `extra_args`, e.g. --critic DIR
    --device cuda) and its URL, once healthy."""
    from serving.process import ServerProcess

    server = ServerProcess(["--checkpoint", checkpoint, "--max-batch-size", str(max_batch_size), "--max-wait-ms",
                            str(max_wait_ms), "--log-level", "warning", *extra_args], threads=threads,
                           start_timeout=start_timeout)
    return server, server.start()


def _load(url: str, body: bytes, clients: int, duration: float, path: str = "/act") -> dict[str, Any]:
    """`clients` threads posting back-to-back for `duration` seconds (http.client keep-alive connections: a
    light load generator, so the 2-core machine's time goes to the server rather than to the clients)."""
    import http.client
    from urllib.parse import urlsplit

    import requests

    host, port = urlsplit(url).hostname, urlsplit(url).port
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop_at = time.perf_counter() + duration
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}

    def client(i: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=60)
                ok = False
            if ok:
                latencies[i].append(time.perf_counter() - t0)
            else:
                errors[i] += 1
        connection.close()

    stats_before = requests.get(url + "/health", timeout=10).json()["batching"]
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    stats_after = requests.get(url + "/health", timeout=10).json()["batching"]
    flat = np.array([x for per in latencies for x in per]) * 1e3
    batches = stats_after["batches"] - stats_before["batches"]
    rows = stats_after["rows"] - stats_before["rows"]
    return {"clients": clients, "requests": int(flat.size), "errors": sum(errors), "seconds": elapsed,
            "rps": flat.size / elapsed, "p50_ms": float(np.percentile(flat, 50)) if flat.size else None,
            "p99_ms": float(np.percentile(flat, 99)) if flat.size else None,
            "mean_batch": rows / batches if batches else 0.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="default: the tiny model saved to a temp dir")
    parser.add_argument("--image-size", type=int, default=56, help="tiny model's input size (no --checkpoint)")
    parser.add_argument("--camera", type=int, default=224, help="side of the camera frame clients send")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per concurrency level")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--max-batch-size", type=int, default=32, help="the 'on' configuration")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--server-threads", type=int, default=1, help="OMP/torch threads of each server")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)

    import json_numpy

    loads = [os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        if checkpoint is None:
            from vla_parl.models import openvla_tiny

            checkpoint = str(openvla_tiny(image_size=args.image_size).save_pretrained(Path(tmp) / "tiny"))
        image = np.random.default_rng(0).integers(0, 256, (args.camera, args.camera, 3), dtype=np.uint8)
        body = json.dumps({"image": image, "instruction": "pick up the red block"},
                          default=json_numpy.default).encode()
        configs = {"on": args.max_batch_size, "off": 1}
        servers = {}
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
        try:
            for name, batch_size in configs.items():
                servers[name] = _start_server(checkpoint, batch_size, args.max_wait_ms, args.server_threads)
            for name, (_, url) in servers.items():
                _load(url, body, max(args.concurrency), args.warmup)
            # levels interleaved (on, off, on, off, ...) so drifting load on a shared machine hits both alike
            for clients in args.concurrency:
                for name, (_, url) in servers.items():
                    row = _load(url, body, clients, args.duration)
                    results[name].append(row)
                    print(f"  batching {name:3s} clients {clients:3d}: {row['rps']:7.1f} req/s  p50 "
                          f"{row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  mean batch {row['mean_batch']:5.1f}"
                          f"  errors {row['errors']}", flush=True)
                    loads.append(os.getloadavg())
        finally:
            for server, _ in servers.values():
                server.stop()

    print(f"\n{'clients':>7} | {'batching on: req/s   p50    p99':>32} | {'batching off: req/s   p50    p99':>33} | "
          f"{'speed-up':>8}")
    for on, off in zip(results["on"], results["off"]):
        print(f"{on['clients']:7d} | {on['rps']:12.1f} {on['p50_ms']:7.1f} {on['p99_ms']:7.1f} ms | "
              f"{off['rps']:13.1f} {off['p50_ms']:7.1f} {off['p99_ms']:7.1f} ms | {on['rps'] / off['rps']:7.2f}x")
    load = [round(x, 2) for x in max(loads, key=lambda v: v[0])]
    print(f"load average (1/5/15 min, highest seen): {load}; cores: {os.cpu_count()}")
    if args.json:
        report = {"config": vars(args), "checkpoint": args.checkpoint or f"openvla_tiny(image_size={args.image_size})",
                  "results": results, "load_average_max": load, "load_averages": loads, "cpu_count": os.cpu_count()}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    errors = sum(r["errors"] for rows in results.values() for r in rows)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
