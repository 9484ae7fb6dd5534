"""Typed routed clients (`lyceum_fleet.routed`): every RPC goes to the owner of its (tenant, key), equal ids
of two tenants are routed independently, and failover re-sends a call only when that is safe. The replicas
are small fakes that record each call (no network): what is under test is the routing, not the transport."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from lyceum_core.context import RequestContext
from lyceum_fleet.grpc_client import ReplicaUnreachable
from lyceum_fleet.membership import StaticSource
from lyceum_fleet.predictor import Event, PredictItem, Predictor, SearchSpec
from lyceum_fleet.routed import PredictorRouter, RoutedPredictor, RoutedSampler, SamplerRouter
from lyceum_fleet.routing import ReplicaRouter, RoutingMetrics, owner, rendezvous_order, routing_key
from lyceum_fleet.sampler import GenerateSpec, Sampler, ScoreSpec, TokenChoice

ADDRESSES = ["replica-0:1", "replica-1:1", "replica-2:1"]
ACME = RequestContext.new("acme")
GLOBEX = RequestContext.new("globex")


@dataclass
class Calls:
    """What the fake replicas saw, in order, and the failures still to inject (one per call, any replica)."""

    seen: list[tuple[str, str, tuple[Any, ...]]] = field(default_factory=list)  # (address, method, args)
    failures: list[bool] = field(default_factory=list)  # `delivered` of each ReplicaUnreachable to raise

    def addresses(self, method: str) -> list[str]:
        return [address for address, name, _ in self.seen if name == method]


class FakeReplica:
    """Any client method: records the call, then raises the next injected failure or answers its name."""

    def __init__(self, address: str, calls: Calls) -> None:
        self.address = address
        self._calls = calls

    async def __aenter__(self) -> FakeReplica:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def watch_health(self) -> AsyncIterator[bool]:
        yield True
        await asyncio.Event().wait()

    async def check(self) -> bool | None:
        return True

    async def health(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        async def call(ctx: RequestContext, *args: Any, **kwargs: Any) -> Any:
            assert isinstance(ctx, RequestContext)
            self._calls.seen.append((self.address, name, (ctx.tenant, *args)))
            if self._calls.failures:
                raise ReplicaUnreachable("gone", address=self.address, delivered=self._calls.failures.pop(0))
            if name == "predict_many":  # one answer per item: who answered it
                return [f"{self.address} {item.learner_id}" for item in args[0]]
            return name

        return call


# (method, the call, its key (None: any replica), whether a delivered call may be re-sent)
Call = Callable[[Any, RequestContext], Awaitable[Any]]


async def predict_one(p: Any, ctx: RequestContext) -> str:
    """A batch of one item (learner `ada`), answered as the method's name if it reached a replica."""
    [result] = await p.predict_many(ctx, [PredictItem("ada", ["t"])])
    return "predict_many" if result.endswith(" ada") else result


PREDICTOR_CALLS: list[tuple[str, Call, str | None, bool]] = [
    ("register_learner", lambda p, ctx: p.register_learner(ctx, "ada", [Event("t", 1.0)]), "ada", False),
    ("get_learner", lambda p, ctx: p.get_learner(ctx, "ada"), "ada", True),
    ("predict", lambda p, ctx: p.predict(ctx, "ada", ["t"]), "ada", True),
    ("append_events", lambda p, ctx: p.append_events(ctx, "ada", [Event("t", 0.0)], 1), "ada", False),
    ("forecast", lambda p, ctx: p.forecast(ctx, "ada", [["t"]]), "ada", True),
    (
        "search_curriculum",
        lambda p, ctx: p.search_curriculum(ctx, "ada", SearchSpec(["t"], ["t"], 1)),
        "ada",
        True,
    ),
    ("predict_many", predict_one, "ada", True),
    ("delete_learner", lambda p, ctx: p.delete_learner(ctx, "ada"), "ada", False),
    ("list_tasks", lambda p, ctx: p.list_tasks(ctx), None, True),
    ("get_model_info", lambda p, ctx: p.get_model_info(ctx), None, True),
    ("collect_garbage", lambda p, ctx: p.collect_garbage(ctx), None, True),
]
SAMPLER_CALLS: list[tuple[str, Call, str | None, bool]] = [
    ("create_session", lambda s, ctx: s.create_session(ctx, "lm", "hi"), None, False),
    ("get_session", lambda s, ctx: s.get_session(ctx, "s1"), "s1", True),
    ("set_prompt", lambda s, ctx: s.set_prompt(ctx, "s1", "hi"), "s1", False),
    ("get_distribution", lambda s, ctx: s.get_distribution(ctx, "s1", 0.1), "s1", True),
    ("append_token", lambda s, ctx: s.append_token(ctx, "s1", TokenChoice(token_id=3)), "s1", False),
    ("undo", lambda s, ctx: s.undo(ctx, "s1"), "s1", False),
    ("delete_session", lambda s, ctx: s.delete_session(ctx, "s1"), "s1", False),
    ("list_models", lambda s, ctx: s.list_models(ctx), None, True),
    ("score", lambda s, ctx: s.score(ctx, ScoreSpec(model="lm", prompt="hi", completion="!")), None, True),
]
ALL_CALLS = [("predictor", *c) for c in PREDICTOR_CALLS] + [("sampler", *c) for c in SAMPLER_CALLS]
IDS = [method for _, method, *_ in ALL_CALLS]


def answer(method: str) -> str | None:
    """What a routed call answers with a fake replica: the method's name, or None from a delete."""
    return None if method.startswith("delete") else method


def rpcs(protocol: type) -> set[str]:
    """The protocol's RPCs: its public methods but `health` (never routed by key, never raises)."""
    return {n for n, _ in inspect.getmembers(protocol, inspect.isfunction) if not n.startswith("_")} - {
        "health"
    }


def test_every_rpc_is_routed_explicitly_and_covered_here() -> None:
    """A new or renamed RPC must get its own routed method (with its key and retry rule) and a row above."""
    assert rpcs(RoutedPredictor) == rpcs(Predictor) == {name for name, *_ in PREDICTOR_CALLS}
    assert rpcs(RoutedSampler) == rpcs(Sampler) == {name for name, *_ in SAMPLER_CALLS} | {"generate"}


def test_equal_ids_of_two_tenants_have_independent_owners() -> None:
    assert routing_key("acme", "ada") == "acme/ada" != routing_key("globex", "ada")
    ids = [f"learner-{i}" for i in range(300)]
    acme = [owner(ADDRESSES, routing_key("acme", x)) for x in ids]
    globex = [owner(ADDRESSES, routing_key("globex", x)) for x in ids]
    differ = sum(a != b for a, b in zip(acme, globex, strict=True))
    assert 0.5 < differ / len(ids) < 0.8  # independent placements over 3 replicas differ 2/3 of the time


def run(service: str, body: Callable[[Any, Calls], Awaitable[None]]) -> Calls:
    """Runs `body(router, calls)` with a router of `service` over three fake replicas."""
    calls = Calls()

    async def main() -> None:
        kind = PredictorRouter if service == "predictor" else SamplerRouter
        router: ReplicaRouter[Any] = kind(
            StaticSource(ADDRESSES),
            lambda address: FakeReplica(address, calls),
            RoutingMetrics(CollectorRegistry()),
            watch_retry_s=0.01,
        )
        async with router:
            await body(router, calls)

    asyncio.run(main())
    return calls


def handle(router: Any, service: str, ctx: RequestContext, key: str | None) -> Any:
    if key is None:
        return router.any()
    return router.for_learner(ctx, key) if service == "predictor" else router.for_session(ctx, key)


def a_key_placed_apart() -> str:
    """A learner (session) id whose owner differs between acme and globex."""
    return next(
        x
        for x in (f"id-{i}" for i in range(100))
        if owner(ADDRESSES, routing_key("acme", x)) != owner(ADDRESSES, routing_key("globex", x))
    )


@pytest.mark.parametrize(("service", "method", "call", "key", "idempotent"), ALL_CALLS, ids=IDS)
def test_each_call_goes_to_the_owner_of_its_tenants_key(
    service: str, method: str, call: Call, key: str | None, idempotent: bool
) -> None:
    async def body(router: Any, calls: Calls) -> None:
        for ctx in (ACME, GLOBEX):
            assert await call(handle(router, service, ctx, key), ctx) == answer(method)
            # through a handle that names no key, a keyed call still goes to its owner
            assert await call(router.any(), ctx) == answer(method)

    calls = run(service, body)
    seen = calls.addresses(method)
    tenants = [args[0] for _, name, args in calls.seen if name == method]
    assert tenants == ["acme", "acme", "globex", "globex"]
    if key is None:
        assert len(set(seen)) > 1  # no key: spread over the replicas, in turn
    else:
        acme, globex = (owner(ADDRESSES, routing_key(t, key)) for t in ("acme", "globex"))
        assert seen == [acme, acme, globex, globex]


def test_two_tenants_with_the_same_learner_id_reach_different_owners() -> None:
    learner = a_key_placed_apart()

    async def body(router: PredictorRouter, calls: Calls) -> None:
        for ctx in (ACME, GLOBEX):
            await router.for_learner(ctx, learner).predict(ctx, learner, ["t"])

    seen = run("predictor", body).addresses("predict")
    assert seen == [owner(ADDRESSES, f"acme/{learner}"), owner(ADDRESSES, f"globex/{learner}")]
    assert seen[0] != seen[1]


def test_a_handle_refuses_another_key_or_tenant() -> None:
    async def body(router: Any, calls: Calls) -> None:
        with pytest.raises(ValueError, match="acme/ada"):
            await router.for_learner(ACME, "ada").predict(ACME, "bob", ["t"])
        with pytest.raises(ValueError, match="acme/ada"):
            await router.for_learner(ACME, "ada").get_learner(GLOBEX, "ada")

    assert run("predictor", body).seen == []


@pytest.mark.parametrize(("service", "method", "call", "key", "idempotent"), ALL_CALLS, ids=IDS)
def test_a_call_that_broke_in_flight_is_re_sent_only_if_it_changes_nothing(
    service: str, method: str, call: Call, key: str | None, idempotent: bool
) -> None:
    async def body(router: Any, calls: Calls) -> None:
        calls.failures = [True]  # the first replica called takes the call, then its connection breaks
        if idempotent:
            assert await call(handle(router, service, ACME, key), ACME) == answer(method)
        else:
            with pytest.raises(ReplicaUnreachable):
                await call(handle(router, service, ACME, key), ACME)

    seen = run(service, body).addresses(method)
    assert len(seen) == (2 if idempotent else 1)
    assert len(set(seen)) == len(seen)  # never twice to the same replica
    if key is not None:
        assert seen == rendezvous_order(ADDRESSES, routing_key("acme", key))[: len(seen)]


@pytest.mark.parametrize(("service", "method", "call", "key", "idempotent"), ALL_CALLS, ids=IDS)
def test_a_call_that_never_reached_a_replica_goes_to_the_next(
    service: str, method: str, call: Call, key: str | None, idempotent: bool
) -> None:
    """Writes included: a call refused before it was sent ran nowhere."""

    async def body(router: Any, calls: Calls) -> None:
        calls.failures = [False, False]  # refused twice (connection refused): it ran nowhere
        assert await call(handle(router, service, ACME, key), ACME) == answer(method)

    seen = run(service, body).addresses(method)
    assert len(set(seen)) == len(seen) == 3
    if key is not None:
        assert seen == rendezvous_order(ADDRESSES, routing_key("acme", key))


def test_a_batch_is_one_call_per_owner_answered_in_item_order() -> None:
    learners = [f"student-{i}" for i in range(30)]
    items = [PredictItem(x, ["t"]) for x in learners]

    async def body(router: PredictorRouter, calls: Calls) -> None:
        answers = await router.predict_many(ACME, items)
        owners = [owner(ADDRESSES, routing_key("acme", x)) for x in learners]
        assert answers == [f"{a} {x}" for a, x in zip(owners, learners, strict=True)]

    calls = run("predictor", body)
    batches = {address: [item.learner_id for item in args[1]] for address, _, args in calls.seen}
    assert len(calls.seen) == len(batches) == len(ADDRESSES)  # one call per replica
    for address, ids in batches.items():
        assert ids == [x for x in learners if owner(ADDRESSES, routing_key("acme", x)) == address]


def test_generation_streams_from_one_replica_and_is_not_re_sent() -> None:
    async def body(router: SamplerRouter, calls: Calls) -> None:
        spec = GenerateSpec(model="lm", prompt="hi", max_new_tokens=1)
        assert await router.any().generate(ACME, spec) == "generate"
        calls.failures = [False]
        with pytest.raises(ReplicaUnreachable):
            await router.spread().generate(ACME, spec)

    assert len(run("sampler", body).addresses("generate")) == 2
