"""Health-aware routing through the gateway over two real predictors sharing one database: a draining or
dead owner's learners are served by the next replica in rendezvous order (which rebuilds them from their
stored history), a returning owner rebuilds what it missed instead of answering stale, writes that never
reached a dead replica are re-sent, and an owner overloaded beyond its bounded share overflows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from fixtures.fleet import owner_of
from fixtures.gateway import MakeGateway, gateway_settings, serve
from fixtures.predictor import TEST_TASKS, RunningPredictor, predictor_settings
from fleet import wait_until
from prometheus_client import REGISTRY

from lyceum_core.grpc.server import NOT_SERVING, SERVING
from lyceum_core.identity import DEFAULT_TENANT
from lyceum_gateway.main import create_app
from lyceum_predictor.cache import LearnerKey

pytestmark = pytest.mark.integration
TOL = 1e-5


@pytest.fixture
def pair(test_checkpoint: Path, tmp_path: Path) -> Iterator[list[RunningPredictor]]:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first = RunningPredictor(predictor_settings(test_checkpoint, url))
    second = RunningPredictor(predictor_settings(test_checkpoint, url, migrate_on_start=False))
    yield [first, second]
    for running in (first, second):
        running.close()


def set_health(running: RunningPredictor, status: int) -> None:
    """What a drain (and its end) reports: NOT_SERVING hands the predictor's learner leases over."""
    grpc_server = running.server.grpc
    running._call(grpc_server.set_serving() if status == SERVING else grpc_server.set_not_serving())


def rebuilds(reason: str) -> float:
    """Cache rebuilds by reason, summed over the in-process predictors (they share the default registry)."""
    return REGISTRY.get_sample_value("lyceum_predictor_cache_rebuilds_total", {"reason": reason}) or 0.0


def gateway_metric(client: TestClient | httpx.Client, name: str, **labels: str) -> float:
    text = client.get("/metrics").text
    selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{name}\{{{selector}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def learner_owned_by(addresses: list[str], address: str, prefix: str = "learner") -> str:
    return next(x for x in (f"{prefix}-{i}" for i in range(1000)) if owner_of(addresses, x) == address)


def predict(client: TestClient, learner_id: str) -> tuple[int, list[float]]:
    """(history length, probabilities) of the learner on the test tasks."""
    response = client.post(f"/v1/learners/{learner_id}/predictions", json={"tasks": TEST_TASKS})
    assert response.status_code == 200, response.text
    body = response.json()
    return body["history_len"], [p["probability"] for p in body["predictions"]]


def replicas(client: TestClient, state: str) -> float:
    return gateway_metric(client, "lyceum_gateway_replicas", service="predictor", state=state)


def test_a_draining_owner_hands_its_learners_over_and_rebuilds_what_it_missed(
    pair: list[RunningPredictor], make_gateway: MakeGateway
) -> None:
    addresses = [p.address for p in pair]
    gateway = make_gateway(addresses)
    wait_until(lambda: replicas(gateway, "serving") == 2)
    home = pair[1]
    learner = learner_owned_by(addresses, home.address)
    body = {"learner_id": learner, "history": [{"task": "t01", "outcome": 1.0}]}
    assert gateway.post("/v1/learners", json=body).status_code == 201
    predict(gateway, learner)  # warm on its owner
    assert LearnerKey(DEFAULT_TENANT, learner) in home.engine.caches

    set_health(home, NOT_SERVING)
    wait_until(lambda: replicas(gateway, "draining") == 1)
    failovers_before = rebuilds("failover")
    appended = gateway.post(
        f"/v1/learners/{learner}/events", json={"events": [{"task": "t02", "outcome": 0}]}
    )
    assert appended.status_code == 200 and appended.json()["learner"]["history_len"] == 2
    _, during = predict(gateway, learner)
    assert rebuilds("failover") == failovers_before + 1  # the stand-in built it once, from stored history
    assert (
        gateway_metric(gateway, "lyceum_gateway_rebinds_total", service="predictor", reason="draining") >= 2
    )

    set_health(home, SERVING)
    wait_until(lambda: replicas(gateway, "serving") == 2)
    stale_before = rebuilds("stale")
    history_len, after = predict(gateway, learner)
    assert rebuilds("stale") == stale_before + 1  # its old cache held 1 event; the store holds 2
    assert history_len == 2
    assert max(abs(a - b) for a, b in zip(after, during, strict=True)) < TOL


def test_writes_to_a_dead_owner_are_resent_to_the_next_replica(
    pair: list[RunningPredictor], make_gateway: MakeGateway
) -> None:
    addresses = [p.address for p in pair]
    gateway = make_gateway(addresses)
    learners = [learner_owned_by(addresses, pair[1].address, prefix=f"dead-{i}") for i in range(3)]
    for learner in learners:
        assert gateway.post("/v1/learners", json={"learner_id": learner}).status_code == 201

    pair[1].stop()  # gone without a word: no NOT_SERVING first

    for learner in learners:
        body = {"events": [{"task": "t03", "outcome": 1.0}], "expected_history_len": 0}
        response = gateway.post(f"/v1/learners/{learner}/events", json=body)
        assert response.status_code == 200, response.text  # never reached the dead one: re-sent, applied once
        assert gateway.get(f"/v1/learners/{learner}").json()["history_len"] == 1
    assert (
        gateway_metric(gateway, "lyceum_gateway_rebinds_total", service="predictor", reason="pod_down") >= 3
    )
    assert gateway_metric(
        gateway, "lyceum_gateway_routed_requests_total", service="predictor", target="other"
    )


def test_with_no_replica_serving_calls_fail_cleanly_and_change_nothing(
    pair: list[RunningPredictor], make_gateway: MakeGateway
) -> None:
    gateway = make_gateway([p.address for p in pair])
    assert gateway.post("/v1/learners", json={"learner_id": "kept"}).status_code == 201
    for running in pair:
        set_health(running, NOT_SERVING)
    wait_until(lambda: replicas(gateway, "draining") == 2)

    response = gateway.post("/v1/learners/kept/events", json={"events": [{"task": "t01", "outcome": 1.0}]})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "UNAVAILABLE"
    assert gateway.get("/readyz").status_code == 503
    for running in pair:
        set_health(running, SERVING)
    wait_until(lambda: replicas(gateway, "serving") == 2)
    assert gateway.get("/v1/learners/kept").json()["history_len"] == 0


def test_an_overloaded_owner_overflows_to_the_next_replica(
    pair: list[RunningPredictor], gateway_state: dict
) -> None:
    addresses = [p.address for p in pair]
    settings = gateway_settings(addresses, overflow_factor=1.0, overflow_min_inflight=1, **gateway_state)
    learner = "hot-learner"
    plans = {"task_sequences": [TEST_TASKS] * 64}
    with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert client.post("/v1/learners", json={"learner_id": learner}).status_code == 201
        results: list[list] = []

        def forecast(_: int) -> list:
            response = client.post(f"/v1/learners/{learner}/forecasts", json=plans)
            assert response.status_code == 200, response.text
            return response.json()["predictions"]

        with ThreadPoolExecutor(8) as pool:
            for _ in range(5):  # concurrency is up to the scheduler: a few bursts make an overlap certain
                results += pool.map(forecast, range(16))
                if gateway_metric(
                    client, "lyceum_gateway_rebinds_total", service="predictor", reason="overload"
                ):
                    break
        assert (
            gateway_metric(client, "lyceum_gateway_rebinds_total", service="predictor", reason="overload") > 0
        )
        first = results[0]
        for other in results[1:]:  # wherever they ran, the answers are the same
            assert all(
                max(abs(a - b) for a, b in zip(x, y, strict=True)) < TOL
                for x, y in zip(first, other, strict=True)
            )
