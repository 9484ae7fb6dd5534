"""Resident learner caches: an LRU map (tenant, learner_id) -> KV cache under a byte budget, with Prometheus
gauges.

Entries are only an accelerator: an evicted or stale learner is rebuilt from its stored history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from prometheus_client import Counter, Gauge, Histogram

from lyceum_core.lru import BudgetLRU
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


class LearnerKey(NamedTuple):
    """A learner as the caches and locks know it: equal ids in two tenants are two learners."""

    tenant: str
    learner_id: str


@dataclass
class Entry:
    kv: KVCache
    history_len: int  # events the cache holds (it holds 2 * (history_len + 1) tokens)
    created_at: datetime  # of the stored learner it was built from: a re-created learner is another one
    generation: int  # of the served model that built it


class LearnerCaches(BudgetLRU[LearnerKey, Entry]):
    """Resident learners' caches under a byte budget (LRU beyond it)."""

    def __init__(self, budget_bytes: int) -> None:
        super().__init__(
            budget_bytes, lambda e: e.kv.nbytes, resident=RESIDENT, nbytes=CACHE_BYTES, evictions=EVICTIONS
        )

    def count(self, tenant: str) -> int:
        """The tenant's resident learners: what a caller may be told (never another tenant's count)."""
        with self._lock:
            return sum(1 for key in self._entries if key.tenant == tenant)
