"""LearnerCaches: an LRU of learner KV caches under a byte budget, charged by each cache's real size, keyed
by (tenant, learner id)."""

from __future__ import annotations

from datetime import UTC, datetime

import torch

from lyceum_ml.kv_cache import KVCache
from lyceum_predictor.cache import Entry, LearnerCaches, LearnerKey

CHUNK = 4


def kv(tokens: int) -> KVCache:
    """A one-layer cache holding `tokens` tokens: 2 x 1 x 1 x capacity x 2 fp32 = 16 bytes per slot."""
    cache = KVCache(1, 1, 2, chunk=CHUNK)
    if tokens:
        cache.append([(torch.zeros(1, 1, tokens, 2), torch.zeros(1, 1, tokens, 2))])
    return cache


ONE_CHUNK = kv(1).nbytes


def entry(tokens: int = 2) -> Entry:
    return Entry(kv(tokens), history_len=tokens // 2 - 1, created_at=datetime.now(UTC), generation=0)


def resident(caches: LearnerCaches, *ids: str) -> list[str]:
    return [x for x in ids if x in caches._entries]  # peeks without touching the LRU order


def test_entries_are_charged_their_cache_size() -> None:
    caches = LearnerCaches(budget_bytes=10 * ONE_CHUNK)
    caches.put("a", entry(2))
    caches.put("b", entry(6))  # two chunks
    assert ONE_CHUNK == CHUNK * 16
    assert (len(caches), caches.nbytes) == (2, 3 * ONE_CHUNK)

    caches.put("a", entry(10))  # replacing an entry swaps its charge
    assert caches.nbytes == 5 * ONE_CHUNK
    caches.drop("b")
    caches.drop("missing")
    assert (len(caches), caches.nbytes) == (1, 3 * ONE_CHUNK)
    caches.clear()
    assert (len(caches), caches.nbytes) == (0, 0)


def test_least_recently_used_entries_are_evicted_past_the_budget() -> None:
    caches = LearnerCaches(budget_bytes=2 * ONE_CHUNK)
    caches.put("a", entry())
    caches.put("b", entry())
    assert caches.get("a") is not None  # a is now the most recent
    caches.put("c", entry())

    assert resident(caches, "a", "b", "c") == ["a", "c"]
    assert caches.nbytes == 2 * ONE_CHUNK
    assert caches.get("b") is None and caches.was_evicted("b") and not caches.was_evicted("a")
    caches.put("b", entry())  # back again: no longer counted as evicted
    assert not caches.was_evicted("b") and caches.was_evicted("a")


def test_a_growing_entry_is_charged_on_resize_and_evicts_others() -> None:
    caches = LearnerCaches(budget_bytes=3 * ONE_CHUNK)
    for learner_id in ("a", "b", "c"):
        caches.put(learner_id, entry())
    grown = caches.get("c")
    assert grown is not None
    grown.kv.append([(torch.zeros(1, 1, 5, 2), torch.zeros(1, 1, 5, 2))])  # 7 tokens: two chunks
    caches.resized("c")

    assert resident(caches, "a", "b", "c") == ["b", "c"]
    assert caches.nbytes == 3 * ONE_CHUNK == grown.kv.nbytes + ONE_CHUNK
    caches.resized("gone")  # resizing a learner that is not resident is a no-op
    assert caches.nbytes == 3 * ONE_CHUNK


def test_the_most_recent_entry_stays_even_over_budget() -> None:
    caches = LearnerCaches(budget_bytes=0)
    caches.put("a", entry())
    caches.put("big", entry(30))
    assert resident(caches, "a", "big") == ["big"]
    assert caches.nbytes == 8 * ONE_CHUNK


def test_equal_learner_ids_of_two_tenants_are_two_entries() -> None:
    caches = LearnerCaches(budget_bytes=10 * ONE_CHUNK)
    acme, globex = LearnerKey("acme", "ada"), LearnerKey("globex", "ada")
    caches.put(acme, entry(2))
    caches.put(globex, entry(6))
    assert len(caches) == 2 and caches.get(acme) is not caches.get(globex)
    caches.drop(acme)
    assert caches.get(acme) is None and caches.get(globex) is not None
