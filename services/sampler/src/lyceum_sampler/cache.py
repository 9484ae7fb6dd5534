"""Resident session caches: an LRU map (tenant, session_id) -> (KV cache, last logits) under a byte budget,
with Prometheus metrics. Entries are only an accelerator: the session store holds the truth, and an entry is
used only if it holds exactly the session's current token ids (else it is rebuilt from them)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from prometheus_client import Counter, Gauge, Histogram
from torch import Tensor

from lyceum_core.lru import BudgetLRU

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


class SessionKey(NamedTuple):
    """A session as the caches and locks know it: equal ids in two tenants are two sessions."""

    tenant: str
    session_id: str


@dataclass
class Entry:
    cache: Any  # the model's KV cache, holding exactly `length` tokens
    logits: Tensor  # fp32 (vocab_size,): the next-token logits after those tokens
    length: int
    digest: bytes  # ids_digest of the tokens it holds
    model_key: str
    model_generation: int  # of the loaded model instance that built it
    adapter: str = ""  # the adapter it was built under ("" = none): never reused under another
    nbytes: int = 0  # KV + logits bytes, as last measured
    hidden: Tensor | None = None  # learned-gated sessions: the final-norm hidden state after those tokens

    def holds(
        self, token_ids: Sequence[int], model_key: str, model_generation: int, adapter: str = ""
    ) -> bool:
        return (
            self.length == len(token_ids)
            and self.model_key == model_key
            and self.model_generation == model_generation
            and self.adapter == adapter
            and self.digest == ids_digest(token_ids)
        )


class SessionCaches(BudgetLRU[SessionKey, Entry]):
    """Resident sessions' caches under a byte budget (LRU beyond it)."""

    def __init__(self, budget_bytes: int) -> None:
        super().__init__(
            budget_bytes, lambda e: e.nbytes, resident=RESIDENT, nbytes=CACHE_BYTES, evictions=EVICTIONS
        )

    def drop_model(self, model_key: str) -> None:
        """Drops every entry built by a model (it was unloaded)."""
        self.drop_where(lambda e: e.model_key == model_key)
