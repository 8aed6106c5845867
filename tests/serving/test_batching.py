"""`DynamicBatcher` on its own: grouping, the size cap, per-item errors, failed batches, queue limit."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from serving.batching import DynamicBatcher, QueueFullError


def _run(coro):
    return asyncio.run(coro)


def test_concurrent_items_are_grouped_and_capped():
    seen: list[list[int]] = []
    threads: set[str] = set()

    def process(items: list[int]) -> list[int]:
        seen.append(list(items))
        threads.add(threading.current_thread().name)
        time.sleep(0.01)
        return [x * 10 for x in items]

    async def main():
        batcher = DynamicBatcher(process, max_batch_size=8, max_wait_ms=20)
        await batcher.start()
        try:
            outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
        finally:
            await batcher.stop()
        return outcomes, batcher.stats()

    outcomes, stats = _run(main())
    assert [o[0] for o in outcomes] == [i * 10 for i in range(20)]
    assert [len(b) for b in seen] == [8, 8, 4]                       # grouped, capped at 8
    assert sorted(x for b in seen for x in b) == list(range(20))
    assert all(o[3] == len(b) for b in seen for o in outcomes if o[0] // 10 in b)
    assert stats["batches"] == 3 and stats["rows"] == 20 and stats["histogram"] == {"4": 1, "8": 2}
    assert threads == {threads.copy().pop()} and threading.main_thread().name not in threads  # one worker thread


def test_batch_size_one_means_no_grouping():
    sizes: list[int] = []

    async def main():
        batcher = DynamicBatcher(lambda items: sizes.append(len(items)) or list(items), max_batch_size=1,
                                 max_wait_ms=50)
        await batcher.start()
        await asyncio.gather(*(batcher.submit(i) for i in range(5)))
        await batcher.stop()

    start = time.perf_counter()
    _run(main())
    assert sizes == [1] * 5
    assert time.perf_counter() - start < 1.0  # a full batch of 1 does not wait max_wait_ms


def test_per_item_errors_and_failed_batches_do_not_stop_the_batcher():
    def process(items: list[int]):
        if -1 in items:
            raise RuntimeError("boom")
        return [ValueError(f"bad {x}") if x % 2 else x for x in items]

    async def main():
        batcher = DynamicBatcher(process, max_batch_size=4, max_wait_ms=1)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
        failed = await asyncio.gather(batcher.submit(-1), return_exceptions=True)
        after = await batcher.submit(2)
        await batcher.stop()
        return results, failed, after, batcher.stats()

    results, failed, after, stats = _run(main())
    assert [r[0] if isinstance(r, tuple) else str(r) for r in results] == [0, "bad 1", 2, "bad 3"]
    assert isinstance(failed[0], RuntimeError) and str(failed[0]) == "boom"
    assert after[0] == 2 and stats["failures"] == 1


def test_queue_limit_raises_queue_full():
    release = threading.Event()

    def process(items):
        release.wait(5)
        return list(items)

    async def main():
        batcher = DynamicBatcher(process, max_batch_size=1, max_wait_ms=0, max_queue_size=2)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.05)                       # item 0 is in the worker; the queue is empty
        queued = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFullError, match="limit 2"):
            await batcher.submit(3)
        release.set()
        await asyncio.gather(first, *queued)
        await batcher.stop()

    _run(main())


def test_invalid_settings():
    with pytest.raises(ValueError, match="max_batch_size"):
        DynamicBatcher(list, max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        DynamicBatcher(list, max_wait_ms=-1)


def test_a_lone_request_does_not_wait_but_announced_ones_are_awaited():
    sizes: list[int] = []

    async def main():
        batcher = DynamicBatcher(lambda items: sizes.append(len(items)) or list(items), max_batch_size=8,
                                 max_wait_ms=300)
        await batcher.start()
        start = time.perf_counter()
        await batcher.submit(0)                              # nobody else around: runs at once
        lone = time.perf_counter() - start
        batcher.announce(1)                                  # a second request is being decoded ...
        first = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(batcher.submit_many([2], announced=True))   # ... and arrives 50 ms later
        await asyncio.gather(first, second)
        await batcher.stop()
        return lone

    lone = _run(main())
    assert lone < 0.15
    assert sizes == [1, 2]                                   # the announced request joined the waiting one
