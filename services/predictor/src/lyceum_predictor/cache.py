"""Resident learner caches: an LRU map learner_id -> KV cache under a byte budget, with Prometheus gauges.

Entries are only an accelerator: an evicted or stale learner is rebuilt from its stored history."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram

from lyceum_ml.kv_cache import KVCache

RESIDENT = Gauge("lyceum_predictor_resident_learners", "Learners with a KV cache in this process")
CACHE_BYTES = Gauge("lyceum_predictor_cache_bytes", "Bytes held by resident learners' KV caches")
HITS = Counter("lyceum_predictor_cache_hits_total", "Calls served from a resident, up-to-date cache")
MISSES = Counter("lyceum_predictor_cache_misses_total", "Calls that had to rebuild a learner's cache")
REBUILDS = Counter("lyceum_predictor_cache_rebuilds_total", "Cache rebuilds from stored history", ["reason"])
REBUILD_SECONDS = Histogram(
    "lyceum_predictor_cache_rebuild_seconds",
    "Time to rebuild a learner's cache (load history + prefill)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
EVICTIONS = Counter("lyceum_predictor_cache_evictions_total", "Learners evicted to stay under the budget")


@dataclass
class Entry:
    kv: KVCache
    history_len: int  # events the cache holds (it holds 2 * (history_len + 1) tokens)
    created_at: datetime  # of the stored learner it was built from: a re-created learner is another one
    generation: int  # of the served model that built it
    charged: int = 0  # bytes counted against the budget for this entry


class LearnerCaches:
    """Thread-safe LRU of learner caches bounded by `budget_bytes` (the most recent entry always stays)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._evicted: OrderedDict[str, None] = OrderedDict()  # recently evicted ids, to label rebuilds
        self._lock = threading.Lock()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, learner_id: str) -> Entry | None:
        with self._lock:
            entry = self._entries.get(learner_id)
            if entry is not None:
                self._entries.move_to_end(learner_id)
            return entry

    def was_evicted(self, learner_id: str) -> bool:
        with self._lock:
            return learner_id in self._evicted

    def put(self, learner_id: str, entry: Entry) -> None:
        with self._lock:
            self._evicted.pop(learner_id, None)
            old = self._entries.pop(learner_id, None)
            self._bytes -= old.charged if old else 0
            self._entries[learner_id] = entry
            self._charge(entry)

    def resized(self, learner_id: str) -> None:
        """Call after a resident entry's cache grew."""
        with self._lock:
            entry = self._entries.get(learner_id)
            if entry is not None:
                self._charge(entry)

    def drop(self, learner_id: str) -> None:
        with self._lock:
            entry = self._entries.pop(learner_id, None)
            self._bytes -= entry.charged if entry else 0
            self._publish()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self._publish()

    def _charge(self, entry: Entry) -> None:
        self._bytes += entry.kv.nbytes - entry.charged
        entry.charged = entry.kv.nbytes
        while self._bytes > self.budget_bytes and len(self._entries) > 1:
            learner_id, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.charged
            self._evicted[learner_id] = None
            if len(self._evicted) > 100_000:
                self._evicted.popitem(last=False)
            EVICTIONS.inc()
        self._publish()

    def _publish(self) -> None:
        RESIDENT.set(len(self._entries))
        CACHE_BYTES.set(self._bytes)
