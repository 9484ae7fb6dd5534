"""Dynamic batching (Triton's dynamic batcher, at our scale): calls from many threads are queued and one
thread runs them in batches, so concurrent calls for different learners share one forward pass.

A batch closes when it holds `max_rows` calls or `max_delay_s` after its first call arrived, whichever comes
first; with a delay of 0 it takes whatever queued while the previous batch ran (continuous batching: no
added latency when idle, large batches under load). The runner may hand calls back (`defer`): they run first
in the next batch, in order (a later call for a learner whose earlier call is in this batch waits its turn).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Generic, TypeVar

from prometheus_client import Histogram

log = logging.getLogger(__name__)
BATCH_ROWS = Histogram(
    "lyceum_predictor_batch_rows",
    "Calls run together in one batch",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
BATCH_SECONDS = Histogram(
    "lyceum_predictor_batch_seconds",
    "Time to run one batch (forward passes, commit)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
QUEUE_SECONDS = Histogram(
    "lyceum_predictor_queue_seconds",
    "Time a call waited for its batch to start",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1),
)


class Work:
    """A queued call: the runner resolves `future` with the call's result or error."""

    __slots__ = ("future", "queued_at")

    def __init__(self) -> None:
        self.future: Future = Future()
        self.queued_at = time.perf_counter()


W = TypeVar("W", bound=Work)


class Batcher(Generic[W]):
    def __init__(
        self, run: Callable[[list[W]], None], *, max_rows: int, max_delay_s: float, name: str = "batcher"
    ) -> None:
        if max_rows < 1 or max_delay_s < 0:
            raise ValueError("max_rows must be >= 1 and max_delay_s >= 0")
        self._run, self.max_rows, self.max_delay_s = run, max_rows, max_delay_s
        self._queue: queue.SimpleQueue[W | None] = queue.SimpleQueue()
        self._deferred: deque[W] = deque()
        self._parked: list[tuple[float, int, W]] = []  # (ready at, tie-break, call): deferred with a delay
        self._tie = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, work: W) -> Future:
        if self._closed:
            raise RuntimeError("batcher is closed")
        self._queue.put(work)
        return work.future

    def defer(self, works: Iterable[W], delay_s: float = 0.0) -> None:
        """Called by the runner: these calls run first in the next batch (in this order), or in the first
        batch after `delay_s`."""
        if delay_s <= 0:
            self._deferred.extend(works)
            return
        ready = time.perf_counter() + delay_s
        for work in works:
            heapq.heappush(self._parked, (ready, next(self._tie), work))

    def close(self) -> None:
        """Stops taking calls; queued calls still run. Returns once the thread is done."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()

    def _gather(self) -> list[W] | None:
        batch: list[W] = []
        delay = self.max_delay_s
        while not batch:
            now = time.perf_counter()
            while self._parked and self._parked[0][0] <= now:
                self._deferred.append(heapq.heappop(self._parked)[2])
            while self._deferred and len(batch) < self.max_rows:
                batch.append(self._deferred.popleft())
            if batch:  # calls already late: take what is queued, wait for no more
                delay = 0.0
                break
            delay = self.max_delay_s
            wait = self._parked[0][0] - now if self._parked else None
            try:
                first = self._queue.get(timeout=wait)
            except queue.Empty:
                continue
            if first is None:
                return None
            batch.append(first)
        deadline = time.perf_counter() + delay
        while len(batch) < self.max_rows:
            try:
                work = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    work = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if work is None:  # closing: run what we have, then stop
                self._queue.put(None)
                break
            batch.append(work)
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._gather()
            if batch is None:
                break
            start = time.perf_counter()
            for work in batch:
                QUEUE_SECONDS.observe(start - work.queued_at)
            try:
                self._run(batch)
            except BaseException as exc:  # noqa: BLE001 - the runner failed as a whole: fail its calls, go on
                log.exception("batch of %d calls failed", len(batch))
                for work in batch:
                    if not work.future.done():
                        work.future.set_exception(exc)
            BATCH_ROWS.observe(len(batch))
            BATCH_SECONDS.observe(time.perf_counter() - start)
        for work in [*self._deferred, *(parked[2] for parked in self._parked)]:
            if not work.future.done():
                work.future.set_exception(RuntimeError("predictor is shutting down"))
