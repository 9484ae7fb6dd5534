"""Learner placement across predictor replicas: rendezvous hashing over (tenant, learner id), checked on its
own and end to end with two real predictors, each with its own database: through the gateway, and through
the fleet's routed client for two tenants that both have a learner of the same id."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import grpc
import pytest
from fastapi.testclient import TestClient
from fixtures.fleet import owner_of
from fixtures.gateway import MakeGateway
from fixtures.predictor import RunningPredictor, predictor_settings
from fixtures.servers import tenant_channel
from prometheus_client import CollectorRegistry

from lyceum_api.predictor.v1 import predictor_pb2 as pb
from lyceum_api.predictor.v1 import predictor_pb2_grpc
from lyceum_core.context import RequestContext
from lyceum_core.errors import NotFound
from lyceum_core.identity import DEFAULT_TENANT
from lyceum_fleet.membership import source_for
from lyceum_fleet.predictor import Event, GrpcPredictor
from lyceum_fleet.routed import PredictorRouter
from lyceum_fleet.routing import RoutingMetrics, owner, rendezvous_score, routing_key

ADDRESSES = ["predictor-0.predictor:50051", "predictor-1.predictor:50051", "predictor-2.predictor:50051"]
LEARNERS = [f"learner-{i}" for i in range(600)]


def test_owner_is_the_highest_blake2b_score() -> None:
    for learner_id in LEARNERS[:20]:
        scores = {address: rendezvous_score(address, learner_id) for address in ADDRESSES}
        assert owner(ADDRESSES, learner_id) == max(scores, key=scores.__getitem__)


def test_owner_does_not_depend_on_address_order() -> None:
    shuffled = [ADDRESSES[2], ADDRESSES[0], ADDRESSES[1]]
    assert [owner(ADDRESSES, x) for x in LEARNERS] == [owner(shuffled, x) for x in LEARNERS]


def test_learners_spread_over_every_replica() -> None:
    counts = Counter(owner(ADDRESSES, x) for x in LEARNERS)
    assert set(counts) == set(ADDRESSES)
    assert min(counts.values()) > len(LEARNERS) / len(ADDRESSES) / 2


def test_removing_a_replica_moves_only_its_own_learners() -> None:
    before = {x: owner(ADDRESSES, x) for x in LEARNERS}
    after = {x: owner(ADDRESSES[:2], x) for x in LEARNERS}

    moved = {x for x in LEARNERS if before[x] != after[x]}

    assert moved == {x for x in LEARNERS if before[x] == ADDRESSES[2]}


@pytest.fixture
def second_predictor(test_checkpoint: Path, tmp_path: Path) -> Iterator[RunningPredictor]:
    running = RunningPredictor(predictor_settings(test_checkpoint, f"sqlite:///{tmp_path / 'second.db'}"))
    yield running
    running.close()


def stored_on(address: str, learner_id: str, tenant: str = DEFAULT_TENANT) -> bool:
    """Whether the predictor at `address` has `tenant`'s learner in its database (asked directly)."""
    with tenant_channel(address, tenant) as channel:
        stub = predictor_pb2_grpc.PredictorServiceStub(channel)
        try:
            stub.GetLearner(pb.GetLearnerRequest(learner_id=learner_id), timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND
            return False
        return True


@pytest.mark.integration
def test_each_learner_lives_on_its_owner_only(
    predictor_address: str, second_predictor: RunningPredictor, make_gateway: MakeGateway
) -> None:
    addresses = [predictor_address, second_predictor.address]
    gateway: TestClient = make_gateway(addresses)
    # six learners per replica (ports are random, so pick by owner rather than by name)
    candidates = {x: owner_of(addresses, x) for x in (f"student-{i}" for i in range(200))}
    learners = [x for address in addresses for x in [y for y, a in candidates.items() if a == address][:6]]
    owners = {x: candidates[x] for x in learners}
    assert len(learners) == 12

    for learner_id in learners:
        body = {"learner_id": learner_id, "history": [{"task": "t01", "outcome": 1.0}]}
        assert gateway.post("/v1/learners", json=body).status_code == 201
        appended = gateway.post(
            f"/v1/learners/{learner_id}/events", json={"events": [{"task": "t02", "outcome": 0}]}
        )
        assert appended.json()["learner"]["history_len"] == 2

    for learner_id in learners:
        assert gateway.get(f"/v1/learners/{learner_id}").json()["history_len"] == 2
        assert [stored_on(a, learner_id) for a in addresses] == [a == owners[learner_id] for a in addresses]
    health = gateway.get("/dfm-server/health").json()
    assert health == {"status": "ok", "learner_count": len(learners)}  # summed over both replicas


@pytest.mark.integration
def test_equal_learner_ids_of_two_tenants_are_routed_and_stored_apart(
    predictor_address: str, second_predictor: RunningPredictor
) -> None:
    addresses = [predictor_address, second_predictor.address]
    acme, globex = RequestContext.new("acme"), RequestContext.new("globex")
    # an id whose owner differs between the tenants (ports are random, so pick by owner)
    learner = next(
        x
        for x in (f"twin-{i}" for i in range(100))
        if owner(addresses, routing_key("acme", x)) != owner(addresses, routing_key("globex", x))
    )
    owners = {ctx.tenant: owner(addresses, routing_key(ctx.tenant, learner)) for ctx in (acme, globex)}

    async def main() -> tuple[int, int]:
        connect = partial(GrpcPredictor, timeout_s=10)
        router = PredictorRouter(source_for(addresses), connect, RoutingMetrics(CollectorRegistry()))
        async with router as fleet:
            await fleet.for_learner(acme, learner).register_learner(acme, learner, [Event("t01", 1.0)])
            with pytest.raises(NotFound):  # globex has no such learner, whatever acme has
                await fleet.for_learner(globex, learner).get_learner(globex, learner)
            history = [Event("t01", 0.0), Event("t02", 1.0)]
            await fleet.for_learner(globex, learner).register_learner(globex, learner, history)
            a = await fleet.for_learner(acme, learner).predict(acme, learner, ["t01"])
            g = await fleet.for_learner(globex, learner).predict(globex, learner, ["t01"])
            return a.history_len, g.history_len

    assert asyncio.run(main()) == (1, 2)
    for tenant, address in owners.items():
        assert [stored_on(a, learner, tenant) for a in addresses] == [a == address for a in addresses]
