"""The per-pod LRU of session caches: validity by exact token ids, byte budget, eviction order."""

from __future__ import annotations

import torch

from lyceum_sampler.cache import Entry, SessionCaches, ids_digest


def entry(ids: list[int], nbytes: int = 40, model_key: str = "m", generation: int = 1) -> Entry:
    e = Entry(None, torch.zeros(4), len(ids), ids_digest(ids), model_key, generation)
    e.nbytes = nbytes
    return e


def test_an_entry_holds_exactly_its_tokens_of_its_model() -> None:
    e = entry([1, 2, 3])
    assert e.holds([1, 2, 3], "m", 1)
    assert not e.holds([1, 2], "m", 1)
    assert not e.holds([1, 2, 4], "m", 1)
    assert not e.holds([3, 2, 1], "m", 1)
    assert not e.holds([1, 2, 3], "other", 1)
    assert not e.holds([1, 2, 3], "m", 2)  # built by another load of the model
    assert ids_digest([1, 2]) != ids_digest([1, 2, 0]) != ids_digest([])


def test_least_recently_used_sessions_go_first() -> None:
    caches = SessionCaches(budget_bytes=100)
    for sid in "abc":
        caches.put(sid, entry([1]))
        caches.get("a")  # keep touching a
    assert caches.get("b") is None and caches.was_evicted("b")
    assert caches.get("a") is not None and caches.get("c") is not None
    assert (len(caches), caches.nbytes) == (2, 80)
    caches.put("b", entry([1]))
    assert not caches.was_evicted("b") and caches.get("a") is None


def test_the_newest_entry_stays_even_over_budget() -> None:
    caches = SessionCaches(budget_bytes=1)
    caches.put("a", entry([1]))
    assert caches.get("a") is not None and caches.nbytes == 40
    caches.put("b", entry([1]))
    assert caches.get("a") is None and caches.get("b") is not None


def test_growth_is_charged_and_drops_release() -> None:
    caches = SessionCaches(budget_bytes=100)
    a = entry([1])
    caches.put("a", a)
    caches.put("b", entry([1], model_key="n"))
    a.nbytes = 50
    caches.resized("a")
    assert caches.nbytes == 90
    caches.put("c", entry([1], nbytes=5, model_key="n"))
    assert caches.nbytes == 95
    caches.drop_model("n")
    assert (len(caches), caches.nbytes) == (1, 50)
    caches.drop("a")
    caches.drop("never-there")
    assert (len(caches), caches.nbytes) == (0, 0)
    caches.put("x", entry([1]))
    caches.clear()
    assert (len(caches), caches.nbytes) == (0, 0)
