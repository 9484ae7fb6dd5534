"""A thread-safe LRU map bounded by a byte budget, for per-pod caches that can always be rebuilt (learner KV
caches in the predictor, session KV caches in the sampler). Publishes its size to Prometheus."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from prometheus_client import Counter, Gauge

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
EVICTED_MEMORY = 100_000  # how many evicted keys are remembered (to label their rebuilds "evicted")


class BudgetLRU(Generic[K, V]):
    """Keeps entries while their sizes sum to at most `budget_bytes`, evicting the least recently used; the
    most recent entry always stays, even alone over budget. `size(value)` is measured on put/resized."""

    def __init__(
        self,
        budget_bytes: int,
        size: Callable[[V], int],
        *,
        resident: Gauge,
        nbytes: Gauge,
        evictions: Counter,
    ) -> None:
        self.budget_bytes, self._size = budget_bytes, size
        self._resident, self._nbytes, self._evictions = resident, nbytes, evictions
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._charged: dict[K, int] = {}  # bytes counted against the budget per key
        self._evicted: OrderedDict[K, None] = OrderedDict()
        self._lock = threading.Lock()
        self._bytes = 0

    def __contains__(self, key: object) -> bool:
        """Whether `key` is resident (without touching its recency)."""
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def items(self) -> list[tuple[K, V]]:
        """A snapshot of the resident entries (recency untouched)."""
        with self._lock:
            return list(self._entries.items())

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def was_evicted(self, key: K) -> bool:
        with self._lock:
            return key in self._evicted

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._evicted.pop(key, None)
            self._remove(key)
            self._entries[key] = value
            self._charge(key)

    def resized(self, key: K) -> None:
        """Call after a resident value grew or shrank."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self._charge(key)

    def drop(self, key: K) -> None:
        with self._lock:
            self._remove(key)
            self._publish()

    def drop_where(self, predicate: Callable[[V], bool]) -> None:
        with self._lock:
            for key in [k for k, v in self._entries.items() if predicate(v)]:
                self._remove(key)
            self._publish()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._charged.clear()
            self._bytes = 0
            self._publish()

    def _remove(self, key: K) -> None:
        if self._entries.pop(key, None) is not None:
            self._bytes -= self._charged.pop(key, 0)

    def _charge(self, key: K) -> None:
        size = self._size(self._entries[key])
        self._bytes += size - self._charged.get(key, 0)
        self._charged[key] = size
        while self._bytes > self.budget_bytes and len(self._entries) > 1:
            evicted, _ = self._entries.popitem(last=False)
            self._bytes -= self._charged.pop(evicted, 0)
            self._evicted[evicted] = None
            if len(self._evicted) > EVICTED_MEMORY:
                self._evicted.popitem(last=False)
            self._evictions.inc()
        self._publish()

    def _publish(self) -> None:
        self._resident.set(len(self._entries))
        self._nbytes.set(self._bytes)
