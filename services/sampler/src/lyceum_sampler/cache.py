"""Resident session caches: an LRU map session_id -> (KV cache, last logits) under a byte budget, with
Prometheus metrics. Entries are only an accelerator: the session store holds the truth, and an entry is
used only if it holds exactly the session's current token ids (else it is rebuilt from them)."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from torch import Tensor

RESIDENT = Gauge("lyceum_sampler_resident_sessions", "Sessions with a KV cache in this process")
CACHE_BYTES = Gauge("lyceum_sampler_cache_bytes", "Bytes held by resident sessions' KV caches")
HITS = Counter("lyceum_sampler_cache_hits_total", "Calls served from a resident, up-to-date cache")
MISSES = Counter("lyceum_sampler_cache_misses_total", "Calls that had to rebuild a session's cache")
REBUILDS = Counter(
    "lyceum_sampler_cache_rebuilds_total", "Cache rebuilds from the session's token ids", ["reason"]
)
REBUILD_SECONDS = Histogram(
    "lyceum_sampler_cache_rebuild_seconds",
    "Time to rebuild a session's cache (one forward over its tokens)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
EVICTIONS = Counter("lyceum_sampler_cache_evictions_total", "Sessions evicted to stay under the budget")


def ids_digest(token_ids: Sequence[int]) -> bytes:
    """A fingerprint of a token sequence (with its length, the cache's validity check)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(b"".join(i.to_bytes(4, "little", signed=True) for i in token_ids))
    return h.digest()


@dataclass
class Entry:
    cache: Any  # the model's KV cache, holding exactly `length` tokens
    logits: Tensor  # fp32 (vocab_size,): the next-token logits after those tokens
    length: int
    digest: bytes  # ids_digest of the tokens it holds
    model_key: str
    model_generation: int  # of the loaded model instance that built it
    nbytes: int = 0  # KV + logits bytes, as last measured
    charged: int = 0  # bytes counted against the budget for this entry

    def holds(self, token_ids: Sequence[int], model_key: str, model_generation: int) -> bool:
        return (
            self.length == len(token_ids)
            and self.model_key == model_key
            and self.model_generation == model_generation
            and self.digest == ids_digest(token_ids)
        )


class SessionCaches:
    """Thread-safe LRU of session caches bounded by `budget_bytes` (the most recent entry always stays)."""

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

    def get(self, session_id: str) -> Entry | None:
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is not None:
                self._entries.move_to_end(session_id)
            return entry

    def was_evicted(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._evicted

    def put(self, session_id: str, entry: Entry) -> None:
        with self._lock:
            self._evicted.pop(session_id, None)
            old = self._entries.pop(session_id, None)
            self._bytes -= old.charged if old else 0
            self._entries[session_id] = entry
            self._charge(entry)

    def resized(self, session_id: str) -> None:
        """Call after a resident entry's `nbytes` changed."""
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is not None:
                self._charge(entry)

    def drop(self, session_id: str) -> None:
        with self._lock:
            entry = self._entries.pop(session_id, None)
            self._bytes -= entry.charged if entry else 0
            self._publish()

    def drop_model(self, model_key: str) -> None:
        """Drops every entry built by a model (it was unloaded)."""
        with self._lock:
            for session_id in [k for k, e in self._entries.items() if e.model_key == model_key]:
                self._bytes -= self._entries.pop(session_id).charged
            self._publish()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self._publish()

    def _charge(self, entry: Entry) -> None:
        self._bytes += entry.nbytes - entry.charged
        entry.charged = entry.nbytes
        while self._bytes > self.budget_bytes and len(self._entries) > 1:
            session_id, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.charged
            self._evicted[session_id] = None
            if len(self._evicted) > 100_000:
                self._evicted.popitem(last=False)
            EVICTIONS.inc()
        self._publish()

    def _publish(self) -> None:
        RESIDENT.set(len(self._entries))
        CACHE_BYTES.set(self._bytes)
