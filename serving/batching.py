"""Dynamic batching: concurrent requests are grouped into one batched model call on one worker thread.

    batcher = DynamicBatcher(process, max_batch_size=16, max_wait_ms=5)
    result = await batcher.submit(item)          # from any number of concurrent request handlers

The collector task takes the first waiting item, then keeps collecting until `max_batch_size` items or
`max_wait_ms` have passed, and runs ``process(items) -> list[result | Exception]`` in a single-thread
executor (the model never runs on the event loop, and never on two threads at once). While a batch runs,
new requests queue up, so under load batches fill without waiting. `max_batch_size=1` turns batching off.

A lone request does not wait: the collector waits for company only when there is some to expect — other
requests announced as on their way (`announce`: parsed, still being preprocessed) or a previous batch of
more than one row (clients are running concurrently).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

__all__ = ["DynamicBatcher", "QueueFullError"]

T = TypeVar("T")
R = TypeVar("R")


class QueueFullError(RuntimeError):
    """More requests are waiting than `max_queue_size`; the client should retry later (HTTP 503)."""


class DynamicBatcher(Generic[T, R]):
    """Group items submitted concurrently and hand them to `process` as one list."""

    def __init__(self, process: Callable[[list[T]], Sequence[R | BaseException]], max_batch_size: int = 16,
                 max_wait_ms: float = 5.0, max_queue_size: int = 1024) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.process = process
        self.max_batch_size = int(max_batch_size)
        self.max_wait_ms = float(max_wait_ms)
        self.max_queue_size = int(max_queue_size)
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[tuple[R, float, float, int]], float]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.batches = 0
        self.rows = 0
        self.failures = 0
        self.largest_batch = 0
        self.histogram: Counter[int] = Counter()
        self._incoming = 0          # announced requests not yet queued
        self._last_batch = 0

    # ---- lifecycle ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is not None:
            return
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vla-parl-model")
        self._task = asyncio.create_task(self._run(), name="vla-parl-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._queue is not None:
            while not self._queue.empty():
                _, future, _ = self._queue.get_nowait()
                if not future.done():
                    future.set_exception(RuntimeError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    # ---- submitting ----------------------------------------------------------------------------------------
    def announce(self, count: int) -> None:
        """`count` requests are on their way (being decoded); a batch being collected may wait for them.
        Pass ``announced=True`` when submitting them, or `withdraw` them if they fail before that."""
        self._incoming += count

    def withdraw(self, count: int) -> None:
        self._incoming = max(0, self._incoming - count)

    async def submit(self, item: T) -> tuple[R, float, float, int]:
        """Queue one item; returns (result, queue_seconds, batch_seconds, batch_size) or raises its error."""
        if self._queue is None:
            raise RuntimeError("DynamicBatcher.start() has not been awaited")
        if self._queue.qsize() >= self.max_queue_size:
            raise QueueFullError(f"{self._queue.qsize()} requests are already waiting (limit {self.max_queue_size}); "
                                 "retry shortly")
        future: asyncio.Future[tuple[R, float, float, int]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future, time.perf_counter()))
        return await future

    async def submit_many(self, items: Sequence[T], announced: bool = False) -> list[tuple[R, float, float, int]]:
        """Queue several items at once (they may share a batch with each other and with other clients)."""
        try:
            if self._queue is not None and self._queue.qsize() + len(items) > self.max_queue_size:
                raise QueueFullError(f"{self._queue.qsize()} requests are already waiting and {len(items)} more "
                                     f"would exceed the limit {self.max_queue_size}; retry shortly")
            pending = [asyncio.ensure_future(self.submit(item)) for item in items]
            await asyncio.sleep(0)          # let every submit enqueue its item
        finally:
            if announced:
                self.withdraw(len(items))
        return list(await asyncio.gather(*pending))

    # ---- collecting and running --------------------------------------------------------------------------
    async def _collect(self) -> list[tuple[T, asyncio.Future[Any], float]]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = time.perf_counter() + self.max_wait_ms / 1000.0
        while len(batch) < self.max_batch_size:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or (self._incoming == 0 and self._last_batch <= 1):
                break                       # out of time, or nobody to wait for
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), timeout=remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = [entry for entry in batch if not entry[1].done()]  # drop requests whose client went away
            if not live:
                continue
            items = [item for item, _, _ in live]
            start = time.perf_counter()
            try:
                results: Sequence[Any] = await loop.run_in_executor(self._executor, self.process, items)
                if len(results) != len(items):
                    raise RuntimeError(f"batch processor returned {len(results)} results for {len(items)} items")
            except Exception as exc:  # noqa: BLE001 - one failed batch must not stop the server
                self.failures += 1
                results = [exc] * len(items)
            elapsed = time.perf_counter() - start
            self.batches += 1
            self.rows += len(items)
            self.largest_batch = max(self.largest_batch, len(items))
            self._last_batch = len(items)
            self.histogram[len(items)] += 1
            for (_, future, queued_at), result in zip(live, results):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result((result, start - queued_at, elapsed, len(items)))

    def stats(self) -> dict[str, Any]:
        return {
            "max_batch_size": self.max_batch_size, "max_wait_ms": self.max_wait_ms, "batches": self.batches,
            "rows": self.rows, "mean_batch_size": self.rows / self.batches if self.batches else 0.0,
            "largest_batch": self.largest_batch,
            "histogram": {str(k): v for k, v in sorted(self.histogram.items())},
            "queue_depth": self.queue_depth, "failures": self.failures,
        }
