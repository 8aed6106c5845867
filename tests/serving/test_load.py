"""Load: 32 concurrent robot clients × 50 requests, zero errors, and the batcher really grouped them."""

from __future__ import annotations

import json
import threading
import time

import json_numpy
import numpy as np
import requests

from tests.serving._helpers import INSTRUCTION, scene

CLIENTS, REQUESTS_EACH = 32, 50


def test_32_clients_x_50_requests_without_errors(server_url, reference_model):
    inputs = [(scene(100 + i, 48), INSTRUCTION if i % 2 else "push the blue block left", "default" if i < 2 else
               "bridge_orig") for i in range(4)]
    bodies = [json.dumps({"image": im, "instruction": ins, "unnorm_key": key}, default=json_numpy.default)
              for im, ins, key in inputs]
    expected = [reference_model.predict_action(im, ins, unnorm_key=key) for im, ins, key in inputs]
    before = requests.get(server_url + "/health", timeout=10).json()["batching"]
    errors: list[str] = []
    wrong: list[int] = []
    done = [0] * CLIENTS
    deadline = time.monotonic() + 150

    def client(index: int) -> None:
        with requests.Session() as session:
            for n in range(REQUESTS_EACH):
                if time.monotonic() > deadline:
                    errors.append(f"client {index}: out of time after {n} requests")
                    return
                which = (index + n) % len(bodies)
                try:
                    response = session.post(server_url + "/act", data=bodies[which], timeout=60,
                                            headers={"Content-Type": "application/json"})
                except requests.RequestException as exc:
                    errors.append(f"client {index}: {exc}")
                    continue
                if response.status_code != 200:
                    errors.append(f"client {index}: HTTP {response.status_code} {response.text[:200]}")
                    continue
                if not np.allclose(json_numpy.loads(response.text), expected[which], atol=1e-9):
                    wrong.append(which)
                done[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    elapsed = time.perf_counter() - start
    after = requests.get(server_url + "/health", timeout=10).json()["batching"]
    assert not errors, errors[:5]
    assert sum(done) == CLIENTS * REQUESTS_EACH
    assert not wrong, f"{len(wrong)} answers differ from predict_action (inputs {sorted(set(wrong))})"
    rows, batches = after["rows"] - before["rows"], after["batches"] - before["batches"]
    assert rows == CLIENTS * REQUESTS_EACH
    mean_batch = rows / batches
    print(f"\n{rows} requests in {elapsed:.1f} s ({rows / elapsed:.0f} req/s); {batches} model calls, "
          f"mean batch {mean_batch:.1f}, largest {after['largest_batch']}")
    assert mean_batch > 2.0 and after["largest_batch"] > 4   # concurrent requests shared model calls
    assert after["largest_batch"] <= 16                      # and never beyond max_batch_size
