"""Resident learner caches: an LRU map (tenant, learner_id) -> KV cache under a byte budget, with Prometheus
gauges.

Entries are only an accelerator: an evicted or stale learner is rebuilt from its stored history."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
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
CLAIMS = Counter(
    "lyceum_predictor_lease_claims_total",
    "Learners checked against the database (a lease taken or renewed: owned; another process's: held)",
    ["result"],
)
RENEWALS = Counter(
    "lyceum_predictor_lease_renewals_total", "Leases on learners in use renewed ahead of time (in bulk)"
)
EVICTIONS = Counter("lyceum_predictor_cache_evictions_total", "Learners evicted to stay under the budget")


class LearnerKey(NamedTuple):
    """A learner as the caches and locks know it: equal ids in two tenants are two learners."""

    tenant: str
    learner_id: str


@dataclass(eq=False)
class Entry:
    """A learner's cache over the events in its context, history[start:history_len], each a (task row,
    outcome) kept beside the keys and values so the window can move without a database read."""

    kv: KVCache
    history_len: int  # events stored; the cache holds 2 * (history_len - start + 1) tokens
    created_at: datetime  # of the stored learner it was built from: a re-created learner is another one
    generation: int  # of the served model that built it
    start: int = 0  # first event in context (the context policy's window start)
    tasks: array = field(default_factory=lambda: array("l"))  # task rows of the events in context
    outcomes: array = field(default_factory=lambda: array("d"))
    epoch: int = 0  # ownership epoch the lease was granted under
    lease_deadline: float = 0.0  # monotonic time until which this process holds the learner's lease
    lease_term: int = 0  # the leasing term (`Leases.term`) it was granted in
    used_at: float = 0.0  # monotonic time of its last call (the lease renewer renews what is in use)

    @property
    def nbytes(self) -> int:
        """What the entry is charged against the budget: its keys and values. The raw events beside them
        (16 bytes an event) are under 2% of that even for the smallest model, and go uncharged."""
        return self.kv.nbytes

    def leased(self, now: float) -> bool:
        """Whether the cache is current without asking the database: this process holds the lease."""
        return now < self.lease_deadline


class LearnerCaches(BudgetLRU[LearnerKey, Entry]):
    """Resident learners' caches under a byte budget (LRU beyond it)."""

    def __init__(self, budget_bytes: int) -> None:
        super().__init__(
            budget_bytes, lambda e: e.nbytes, resident=RESIDENT, nbytes=CACHE_BYTES, evictions=EVICTIONS
        )

    def count(self, tenant: str) -> int:
        """The tenant's resident learners: what a caller may be told (never another tenant's count)."""
        with self._lock:
            return sum(1 for key in self._entries if key.tenant == tenant)
