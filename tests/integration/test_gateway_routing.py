"""Learner placement across predictor replicas: rendezvous hashing, checked on its own and end to end with
two real predictors, each with its own database."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from fastapi.testclient import TestClient
from fixtures.gateway import MakeGateway
from fixtures.predictor import RunningPredictor, predictor_settings

from lyceum_api.predictor.v1 import predictor_pb2 as pb
from lyceum_api.predictor.v1 import predictor_pb2_grpc
from lyceum_gateway.routing import owner, rendezvous_score

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


def stored_on(address: str, learner_id: str) -> bool:
    with grpc.insecure_channel(address) as channel:
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
    candidates = {x: owner(addresses, x) for x in (f"student-{i}" for i in range(200))}
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
