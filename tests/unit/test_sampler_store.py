"""Session state and the in-memory session store: JSON round trips, the replayable Other-sampling stream,
compare-and-set versions and the idle TTL."""

from __future__ import annotations

import json
import time

import pytest

from lyceum_core.errors import Aborted, InvalidArgument
from lyceum_sampler.sessions import (
    Generated,
    MemorySessionStore,
    RedisSessionStore,
    SessionState,
    open_store,
)


def state(**kw: object) -> SessionState:
    fields: dict[str, object] = dict(
        session_id="s1", model="tiny", model_key="tiny", prompt="Hi", prompt_ids=(1, 2)
    )
    fields.update(kw)
    return SessionState(**fields)  # type: ignore[arg-type]


def test_state_round_trips_through_json() -> None:
    s = state(generated=(Generated(7, 0.25, "above", 0), Generated(9, 0.001, "other", 40)), draws=3)
    text = s.to_json()
    assert json.loads(text)["schema"] == 1
    assert SessionState.from_json(text) == s
    assert SessionState.from_json(text.encode()) == s
    assert s.token_ids == [1, 2, 7, 9]


def test_the_other_stream_is_a_function_of_seed_and_draws() -> None:
    a, b = state(seed=42), state(seed=42, prompt="other fields do not matter")
    assert a.next_draw_seed() == b.next_draw_seed()
    seeds = {state(seed=42, draws=n).next_draw_seed() for n in range(100)}
    assert len(seeds) == 100 and all(0 <= s < 2**63 for s in seeds)
    assert state(seed=43).next_draw_seed() != a.next_draw_seed()
    assert state().seed != state().seed  # fresh sessions get fresh streams


def test_evolve_stamps_the_update_time() -> None:
    s = state()
    time.sleep(0.01)
    t = s.evolve(prompt="x")
    assert t.updated_at > s.updated_at and t.created_at == s.created_at and t.version == s.version


def test_memory_store_compare_and_set() -> None:
    store = MemorySessionStore(ttl_s=60)
    assert store.get("s1") is None
    store.create(state())
    first = store.get("s1")
    assert first is not None and first.version == 0
    written = store.update(first.evolve(prompt="a"))
    assert written.version == 1 and store.get("s1") == written
    with pytest.raises(Aborted) as info:
        store.update(first.evolve(prompt="b"))  # read at version 0: someone else wrote since
    assert info.value.field == "session_id"
    assert store.get("s1").prompt == "a"  # type: ignore[union-attr]
    assert store.delete("s1") and not store.delete("s1")
    with pytest.raises(Aborted):
        store.update(written)


def test_memory_store_expires_idle_sessions_and_access_refreshes() -> None:
    store = MemorySessionStore(ttl_s=0.2)
    store.create(state())
    for _ in range(3):
        time.sleep(0.12)
        assert store.get("s1") is not None
    time.sleep(0.25)
    assert store.get("s1") is None
    assert not store.delete("s1")


def test_open_store_by_url() -> None:
    assert isinstance(open_store("memory://", 10), MemorySessionStore)
    redis_store = open_store("redis://127.0.0.1:1/0", 10)  # connects lazily
    assert isinstance(redis_store, RedisSessionStore) and redis_store.ttl_ms == 10_000
    with pytest.raises(InvalidArgument) as info:
        open_store("postgres://x", 10)
    assert info.value.field == "session_store_url"
