"""Session state and the in-memory session store: JSON round trips, the replayable Other-sampling stream,
compare-and-set versions, the idle TTL, tenant-scoped keys and the per-tenant count of live sessions."""

from __future__ import annotations

import json
import time

import pytest

from lyceum_core.errors import Aborted, InvalidArgument, ResourceExhausted
from lyceum_ml.sampling import SamplingParams
from lyceum_sampler.gating import Gating
from lyceum_sampler.sessions import (
    Generated,
    MemorySessionStore,
    RedisSessionStore,
    SessionState,
    Shown,
    open_store,
)


def state(**kw: object) -> SessionState:
    fields: dict[str, object] = dict(
        tenant="default", session_id="s1", model="tiny", model_key="tiny", prompt="Hi", prompt_ids=(1, 2)
    )
    fields.update(kw)
    return SessionState(**fields)  # type: ignore[arg-type]


def test_state_round_trips_through_json() -> None:
    s = state(
        generated=(Generated(7, 0.25, "above", 0, 12.5), Generated(9, 0.001, "other", 40, 13.0, True, 0.3)),
        draws=3,
        shown=Shown(0.05, SamplingParams(temperature=0.7, top_k=5), 14.0),
        adapter="acme/tutor@2",
        adapter_uri="/registry/tutor/2",
        gating=Gating("learned", True, policy="acme/gate@1", policy_uri="/registry/gate/1", horizon=50),
    )
    text = s.to_json()
    assert json.loads(text)["schema"] == 4
    assert SessionState.from_json(text) == s
    assert SessionState.from_json(text.encode()) == s
    assert s.token_ids == [1, 2, 7, 9]


def test_schema_2_states_read_as_unadapted_ungated() -> None:
    doc = json.loads(state(draws=1).to_json())
    for name in ("adapter", "adapter_uri", "gate"):
        del doc[name]
    doc["schema"] = 2
    old = SessionState.from_json(json.dumps(doc))
    assert (old.adapter, old.adapter_uri, old.gate, old.draws) == ("", "", None, 1)


def test_schema_3_states_read_as_ungated() -> None:
    doc = json.loads(state(generated=(Generated(7, 0.25, "above", 0, 12.5),)).to_json())
    del doc["gating"], doc["generated"][0]["modulation"]
    doc["schema"] = 3
    old = SessionState.from_json(json.dumps(doc))
    assert old.gating is None and old.generated[0].modulation is None


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
    assert store.get("default", "s1") is None
    store.create(state())
    first = store.get("default", "s1")
    assert first is not None and first.version == 0
    written = store.update(first.evolve(prompt="a"))
    assert written.version == 1 and store.get("default", "s1") == written
    with pytest.raises(Aborted) as info:
        store.update(first.evolve(prompt="b"))  # read at version 0: someone else wrote since
    assert info.value.field == "session_id"
    assert store.get("default", "s1").prompt == "a"  # type: ignore[union-attr]
    assert store.delete("default", "s1") and not store.delete("default", "s1")
    with pytest.raises(Aborted):
        store.update(written)


def test_memory_store_expires_idle_sessions_and_access_refreshes() -> None:
    clock = FakeClock()
    store = MemorySessionStore(ttl_s=0.2, clock=clock)
    store.create(state())
    for _ in range(3):
        clock.now += 0.12
        assert store.get("default", "s1") is not None
    clock.now += 0.25
    assert store.get("default", "s1") is None
    assert not store.delete("default", "s1")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_store_keys_sessions_by_tenant() -> None:
    store = MemorySessionStore(ttl_s=60)
    store.create(state(tenant="acme", prompt="acme's"))
    store.create(state(tenant="globex", prompt="globex's"))  # the same id in another tenant
    assert store.get("acme", "s1").prompt == "acme's"  # type: ignore[union-attr]
    assert store.get("globex", "s1").prompt == "globex's"  # type: ignore[union-attr]
    assert store.get("default", "s1") is None
    assert store.delete("acme", "s1") and store.get("globex", "s1") is not None
    assert not store.delete("acme", "s1")


def test_memory_store_counts_live_sessions_per_tenant() -> None:
    clock = FakeClock()
    store = MemorySessionStore(ttl_s=10, clock=clock)
    store.create(state(tenant="acme", session_id="a1"), max_live=2)
    clock.now += 6
    store.create(state(tenant="acme", session_id="a2"), max_live=2)
    store.create(state(tenant="globex", session_id="g1"), max_live=1)  # another tenant's quota
    with pytest.raises(ResourceExhausted) as info:
        store.create(state(tenant="acme", session_id="a3"), max_live=2)
    assert info.value.field == "max_sessions"
    assert (store.live_count("acme"), store.live_count("globex"), store.live_count("none")) == (2, 1, 0)
    store.create(state(tenant="acme", session_id="a3"))  # 0 = no limit
    assert store.delete("acme", "a3") and store.live_count("acme") == 2
    clock.now += 5  # a1 expired (idle 11 s), a2 has 1 s left
    assert store.live_count("acme") == 1
    store.create(state(tenant="acme", session_id="a4"), max_live=2)
    assert store.get("acme", "a1") is None and store.live_count("acme") == 2


def test_open_store_by_url() -> None:
    assert isinstance(open_store("memory://", 10), MemorySessionStore)
    redis_store = open_store("redis://127.0.0.1:1/0", 10)  # connects lazily
    assert isinstance(redis_store, RedisSessionStore) and redis_store.ttl_ms == 10_000
    with pytest.raises(InvalidArgument) as info:
        open_store("postgres://x", 10)
    assert info.value.field == "session_store_url"
