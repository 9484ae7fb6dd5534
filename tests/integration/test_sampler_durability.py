"""Sessions are durable state in Redis and caches are only an accelerator: idle sessions expire (every access
refreshes the TTL), evicted caches are rebuilt to the same distribution, sessions survive a restart and move
between pods, Other draws replay exactly, and concurrent writers cannot lose an append."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import grpc
import pytest
import redis
from fixtures.sampler import (
    HF_MODEL,
    LYCEUM_MODEL,
    SAMPLER_REDIS_URL,
    RunningSampler,
    Stub,
    append,
    assert_same_distribution,
    create,
    distribution,
)
from fixtures.servers import rpc_error, tenant_channel

from lyceum_api.sampler.v1 import sampler_pb2 as pb
from lyceum_api.sampler.v1 import sampler_pb2_grpc
from lyceum_core.errors import Aborted, ResourceExhausted
from lyceum_core.identity import DEFAULT_TENANT as T
from lyceum_sampler.cache import REBUILDS
from lyceum_sampler.sessions import RedisSessionStore, SessionState

pytestmark = pytest.mark.integration

MakeSampler = Callable[..., RunningSampler]


@contextmanager
def stub_of(sampler: RunningSampler) -> Iterator[Stub]:
    with tenant_channel(sampler.address) as channel:
        yield sampler_pb2_grpc.SamplerServiceStub(channel)


def rebuilds(reason: str) -> float:
    return REBUILDS.labels(reason)._value.get()


# --- TTL -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("store", [SAMPLER_REDIS_URL, "memory://"], ids=["redis", "memory"])
def test_an_idle_session_expires_and_every_access_refreshes_it(make_sampler: MakeSampler, store: str) -> None:
    sampler = make_sampler(session_store_url=store, session_ttl_s=1.0)
    with stub_of(sampler) as stub:
        sid = create(stub).session_id
        for _ in range(3):  # 1.8 s in all, never 1 s idle
            time.sleep(0.6)
            distribution(stub, sid)
        time.sleep(1.3)
        err = rpc_error(
            lambda: stub.GetSession(pb.GetSessionRequest(session_id=sid)), grpc.StatusCode.NOT_FOUND
        )
        assert err.field == "session_id"


def test_the_session_key_carries_the_ttl(
    make_sampler: MakeSampler, sampler_redis: redis.Redis, sampler_key_prefix: str
) -> None:
    sampler = make_sampler(session_ttl_s=30.0)
    with stub_of(sampler) as stub:
        sid = create(stub).session_id
        key, live = f"{sampler_key_prefix}{T}:{sid}", sampler_key_prefix + T
        assert 29_000 < sampler_redis.pttl(key) <= 30_000
        assert 29_000 < sampler_redis.pttl(live) <= 30_000  # the tenant's live set expires with its last
        sampler_redis.pexpire(key, 5_000)
        stub.GetSession(pb.GetSessionRequest(session_id=sid))
        assert sampler_redis.pttl(key) > 29_000


# --- caches: eviction and rebuild ------------------------------------------------------------------------
@pytest.mark.parametrize("model", [LYCEUM_MODEL, HF_MODEL])
def test_an_evicted_session_is_rebuilt_to_the_same_distribution(
    make_sampler: MakeSampler, model: str
) -> None:
    sampler = make_sampler(cache_budget_bytes=1)  # one resident session at a time
    with stub_of(sampler) as stub:
        a = create(stub, model).session_id
        for token_id in (10, 20, 30):
            append(stub, a, token_id=token_id)
        before = distribution(stub, a, threshold=1e-4)
        evicted = rebuilds("evicted")
        create(stub, model)
        assert len(sampler.engine.caches) == 1
        lm = sampler.models[model]
        lm.extends.clear()
        assert_same_distribution(distribution(stub, a, threshold=1e-4), before)
        assert lm.extends == [before.context_len]  # one pass over all the session's tokens
        assert rebuilds("evicted") == evicted + 1


def test_two_sessions_are_independent(sampler_stub: Stub) -> None:
    a, b = create(sampler_stub).session_id, create(sampler_stub).session_id
    before_b = distribution(sampler_stub, b)
    append(sampler_stub, a, token_id=42)
    append(sampler_stub, a, token_id=43)
    assert distribution(sampler_stub, b) == before_b
    assert not sampler_stub.GetSession(pb.GetSessionRequest(session_id=b)).session.generated
    sampler_stub.Undo(pb.UndoRequest(session_id=a))
    assert distribution(sampler_stub, b) == before_b
    sampler_stub.DeleteSession(pb.DeleteSessionRequest(session_id=a))
    assert distribution(sampler_stub, b) == before_b


# --- restarts and pods -----------------------------------------------------------------------------------
def test_a_session_survives_a_restart(sampler: RunningSampler) -> None:
    with stub_of(sampler) as stub:
        session = create(stub, HF_MODEL)
        append(stub, session.session_id, token_id=1000)
        state = stub.GetSession(pb.GetSessionRequest(session_id=session.session_id)).session
        before = distribution(stub, session.session_id, threshold=1e-4, temperature=0.8)
    sampler.restart()
    with stub_of(sampler) as stub:
        assert stub.GetSession(pb.GetSessionRequest(session_id=session.session_id)).session == state
        assert_same_distribution(
            distribution(stub, session.session_id, threshold=1e-4, temperature=0.8), before
        )
        assert sampler.models[HF_MODEL].extends == [state.context_len]


def test_in_memory_sessions_end_with_the_process(make_sampler: MakeSampler) -> None:
    sampler = make_sampler(session_store_url="memory://")
    with stub_of(sampler) as stub:
        sid = create(stub).session_id
    sampler.restart()
    with stub_of(sampler) as stub:
        rpc_error(lambda: stub.GetSession(pb.GetSessionRequest(session_id=sid)), grpc.StatusCode.NOT_FOUND)


def test_any_pod_serves_any_session(make_sampler: MakeSampler) -> None:
    """Pod B's cache goes stale when pod A appends; B notices and rebuilds rather than answer stale."""
    pod_a, pod_b = make_sampler(), make_sampler()
    with stub_of(pod_a) as a, stub_of(pod_b) as b:
        sid = create(a).session_id
        assert_same_distribution(distribution(b, sid), distribution(a, sid))
        append(a, sid, token_id=100)
        stale = rebuilds("stale")
        assert_same_distribution(distribution(b, sid), distribution(a, sid))
        assert rebuilds("stale") == stale + 1
        append(b, sid, token_id=101)
        assert [g.token.id for g in a.GetSession(pb.GetSessionRequest(session_id=sid)).session.generated] == [
            100,
            101,
        ]
        a.Undo(pb.UndoRequest(session_id=sid))
        assert_same_distribution(distribution(b, sid), distribution(a, sid))


def test_other_draws_replay_exactly_from_the_stored_state(
    sampler: RunningSampler, sampler_redis: redis.Redis, sampler_key_prefix: str
) -> None:
    """The session RNG is (seed, draws) in the stored state: one state draws the same tokens on any pod."""
    with stub_of(sampler) as stub:
        sid = create(stub, HF_MODEL).session_id
        saved = sampler_redis.get(f"{sampler_key_prefix}{T}:{sid}")
        first = [drawn(append(stub, sid, threshold=1e-4, from_other=True)) for _ in range(3)]
    sampler.restart()
    sampler_redis.set(f"{sampler_key_prefix}{T}:{sid}", saved)  # type: ignore[arg-type]
    with stub_of(sampler) as stub:
        again = [drawn(append(stub, sid, threshold=1e-4, from_other=True)) for _ in range(3)]
    assert again == first
    assert len({e.token.id for e in first}) > 1


def drawn(response: pb.AppendTokenResponse) -> pb.HistoryEntry:
    """The appended entry, but when it was chosen (a replay happens later)."""
    entry = pb.HistoryEntry()
    entry.CopyFrom(response.appended)
    entry.ClearField("chosen_at")
    return entry


# --- the store's compare-and-set -------------------------------------------------------------------------
def test_concurrent_writers_cannot_lose_an_append(sampler: RunningSampler, sampler_key_prefix: str) -> None:
    with stub_of(sampler) as stub:
        sid = create(stub).session_id
    store = RedisSessionStore(SAMPLER_REDIS_URL, ttl_s=60, key_prefix=sampler_key_prefix)
    try:
        read_by_a, read_by_b = store.get(T, sid), store.get(T, sid)
        assert read_by_a is not None and read_by_b is not None
        store.update(read_by_a.evolve(prompt="written by a"))
        with pytest.raises(Aborted):
            store.update(read_by_b.evolve(prompt="written by b"))
        final = store.get(T, sid)
        assert final is not None and final.prompt == "written by a" and final.version == read_by_a.version + 1
        store.delete(T, sid)
        with pytest.raises(Aborted):
            store.update(final)
    finally:
        store.close()


def test_an_append_that_loses_a_race_is_aborted_and_changes_nothing(sampler: RunningSampler) -> None:
    """A write between the pod's read and its commit (another pod) makes the commit fail: ABORTED."""
    engine = sampler.engine
    with stub_of(sampler) as stub:
        sid = create(stub).session_id
        original_update = engine.store.update

        def racing_update(state):  # noqa: ANN001, ANN202
            engine.store.update = original_update  # type: ignore[method-assign]
            current = original_update.__self__.get(T, sid)  # type: ignore[attr-defined]
            original_update(current.evolve())  # another pod's write lands first
            return original_update(state)

        engine.store.update = racing_update  # type: ignore[method-assign]
        err = rpc_error(lambda: append(stub, sid, token_id=7), grpc.StatusCode.ABORTED)
        assert err.field == "session_id"
        assert not stub.GetSession(pb.GetSessionRequest(session_id=sid)).session.generated
        append(stub, sid, token_id=7)  # a retry succeeds
        assert [
            g.token.id for g in stub.GetSession(pb.GetSessionRequest(session_id=sid)).session.generated
        ] == [7]


def test_redis_keys_sessions_by_tenant_and_counts_live_ones(
    sampler_redis: redis.Redis, sampler_key_prefix: str
) -> None:
    clock = FakeClock()
    store = RedisSessionStore(SAMPLER_REDIS_URL, ttl_s=10, key_prefix=sampler_key_prefix, clock=clock)
    base = SessionState(tenant="acme", session_id="s1", model="tiny", model_key="tiny", prompt="acme's")
    try:
        store.create(base, max_live=2)
        store.create(replace(base, tenant="globex", prompt="globex's"), max_live=1)  # the same id
        assert store.get("acme", "s1").prompt == "acme's"  # type: ignore[union-attr]
        assert store.get("globex", "s1").prompt == "globex's"  # type: ignore[union-attr]
        assert store.get("default", "s1") is None
        assert sampler_redis.exists(f"{sampler_key_prefix}acme:s1", f"{sampler_key_prefix}globex:s1") == 2

        clock.now += 6
        store.create(replace(base, session_id="s2"), max_live=2)
        with pytest.raises(ResourceExhausted) as info:
            store.create(replace(base, session_id="s3"), max_live=2)
        assert info.value.field == "max_sessions"
        with pytest.raises(ResourceExhausted):
            store.create(replace(base, tenant="globex", session_id="g2"), max_live=1)
        assert (store.live_count("acme"), store.live_count("globex"), store.live_count("x")) == (2, 1, 0)
        assert store.delete("acme", "s2") and not store.delete("acme", "s2")
        store.create(replace(base, session_id="s3"), max_live=2)

        clock.now += 5  # s1 was last touched 11 s ago: it no longer counts (Redis expires it by its TTL)
        assert store.live_count("acme") == 1
        store.create(replace(base, session_id="s4"), max_live=2)
        assert store.live_count("acme") == 2
    finally:
        store.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


# --- models ----------------------------------------------------------------------------------------------
def test_models_beyond_the_budget_are_unloaded_and_reload_on_use(make_sampler: MakeSampler) -> None:
    sampler = make_sampler(model_budget_bytes=1)  # one model at a time
    with stub_of(sampler) as stub:
        tiny = create(stub, LYCEUM_MODEL).session_id
        append(stub, tiny, token_id=3)
        before = distribution(stub, tiny)
        create(stub, HF_MODEL)
        loaded = {m.name: m.loaded for m in stub.ListModels(pb.ListModelsRequest()).models}
        assert loaded[HF_MODEL] and not loaded[LYCEUM_MODEL]
        assert len(sampler.engine.caches) == 1  # the unloaded model's caches went with it
        assert_same_distribution(distribution(stub, tiny), before)
        loaded = {m.name: m.loaded for m in stub.ListModels(pb.ListModelsRequest()).models}
        assert loaded[LYCEUM_MODEL] and not loaded[HF_MODEL]
