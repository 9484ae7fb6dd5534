"""`POST /v1/predictions:batch` end to end: items fanned out to each learner's owner (real predictors over
gRPC, in-process with a database each, and a fleet of predictor processes behind a gateway process),
answered in item order, each exactly as the single-learner call would answer it; an item's failure (unknown
learner, another tenant's, a bad id, too many tasks) or its replica's (none serving, a hung one) fails that
item only; the batch itself is bounded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from fixtures.fleet import owner_of, wait_replicas
from fixtures.gateway import ACME, ACME_KEY, GLOBEX, GLOBEX_KEY, MakeGateway
from fixtures.predictor import TEST_TASKS, RunningPredictor, predictor_settings
from fleet import Fleet, Process, wait_until

from lyceum_core.grpc.server import NOT_SERVING

pytestmark = pytest.mark.integration

BATCH = "/v1/predictions:batch"
TOL = 1e-5  # a batched and a single forward may differ in the last bits
HISTORIES = [
    [("t01", 1.0), ("t02", 0.0)],
    [("t03", 1.0)],
    [("t04", 0.0), ("t05", 1.0), ("t06", 1.0)],
]


def history_of(i: int) -> list[dict[str, Any]]:
    return [{"task": t, "outcome": o} for t, o in HISTORIES[i % len(HISTORIES)]]


def tasks_of(i: int) -> list[str]:
    """Candidate tasks of the i-th item: a different number and mix per item."""
    return TEST_TASKS[i % 5 : i % 5 + 1 + i % 4]


def register(client: TestClient | httpx.Client, learner_id: str, i: int, **kw: Any) -> None:
    body = {"learner_id": learner_id, "history": history_of(i)}
    response = client.post("/v1/learners", json=body, **kw)
    assert response.status_code == 201, response.text


def single(client: TestClient | httpx.Client, learner_id: str, tasks: Sequence[str], **kw: Any) -> dict:
    """The single-learner call's answer, as a batch item's: status, and probabilities or the error."""
    response = client.post(f"/v1/learners/{learner_id}/predictions", json={"tasks": list(tasks)}, **kw)
    body = response.json()
    if response.status_code != 200:
        error = {k: body["error"][k] for k in ("code", "message", "field")}
        return {"learner_id": learner_id, "status": response.status_code, "error": error}
    probabilities = [p["probability"] for p in body["predictions"]]
    return {
        "learner_id": learner_id,
        "status": 200,
        "probabilities": probabilities,
        "history_len": body["history_len"],
    }


def batch(client: TestClient | httpx.Client, items: Sequence[tuple[str, Sequence[str]]], **kw: Any) -> list:
    body = {"items": [{"learner_id": x, "tasks": list(t)} for x, t in items]}
    response = client.post(BATCH, json=body, **kw)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["learner_id"] for r in results] == [x for x, _ in items]
    return results


def assert_same(got: dict, expected: dict) -> None:
    """A batch item's answer equals the single call's (probabilities within `TOL`)."""
    assert set(got) == set(expected), (got, expected)
    assert {k: v for k, v in got.items() if k != "probabilities"} == {
        k: v for k, v in expected.items() if k != "probabilities"
    }
    if "probabilities" in expected:
        pairs = zip(got["probabilities"], expected["probabilities"], strict=True)
        assert max(abs(a - b) for a, b in pairs) < TOL


def owned(addresses: Sequence[str], prefix: str, per_owner: int) -> dict[str, str]:
    """`per_owner` learner ids per replica, each with its owner (ports are random: pick by owner)."""
    chosen: dict[str, str] = {}
    for learner_id in (f"{prefix}{i:03d}" for i in range(1000)):
        address = owner_of(addresses, learner_id)
        if sum(a == address for a in chosen.values()) < per_owner:
            chosen[learner_id] = address
        if len(chosen) == per_owner * len(addresses):
            return chosen
    raise AssertionError("not enough learners per owner")


# --- two predictors, each with its own database: a misrouted item could only answer 404 --------------------


@pytest.fixture
def pair(predictor: RunningPredictor, test_checkpoint: Path, tmp_path: Path) -> Iterator[list[str]]:
    second = RunningPredictor(predictor_settings(test_checkpoint, f"sqlite:///{tmp_path / 'second.db'}"))
    yield [predictor.address, second.address]
    second.close()


def test_items_on_two_predictors_are_answered_in_order_like_single_calls(
    pair: list[str], make_gateway: MakeGateway
) -> None:
    gateway = make_gateway(pair)
    learners = list(owned(pair, "pupil-", per_owner=3))
    for i, learner_id in enumerate(learners):
        register(gateway, learner_id, i)
    ghost = next(x for x in (f"ghost-{i}" for i in range(100)) if owner_of(pair, x) == pair[1])
    items = [(x, tasks_of(i)) for i, x in enumerate(learners)]
    items.insert(2, (ghost, ["t01"]))
    items.append((learners[0], ["t01", "t01"]))  # a learner twice: answered twice

    results = batch(gateway, items)

    for (learner_id, tasks), result in zip(items, results, strict=True):
        assert_same(result, single(gateway, learner_id, tasks))
    assert [r["status"] for r in results].count(200) == len(items) - 1
    assert results[2]["status"] == 404
    assert results[2]["error"] == {
        "code": "NOT_FOUND",
        "message": f"learner {ghost!r} not found",
        "field": "learner_id",
    }
    assert "error" not in results[0] and "probabilities" not in results[2]


def test_another_tenants_learner_fails_its_item_like_a_missing_one(
    predictor_address: str, make_gateway: MakeGateway
) -> None:
    gateway = make_gateway([predictor_address], api_keys=[f"acme:{ACME_KEY}", f"globex:{GLOBEX_KEY}"])
    register(gateway, "ada", 0, headers=ACME)
    register(gateway, "bob", 1, headers=GLOBEX)
    items = [("ada", ["t01"]), ("bob", ["t01"]), ("nobody", ["t01"])]

    results = batch(gateway, items, headers=ACME)

    assert [r["status"] for r in results] == [200, 404, 404]
    theirs, missing = results[1]["error"], results[2]["error"]
    assert theirs["message"].replace("bob", "X") == missing["message"].replace("nobody", "X")
    assert batch(gateway, items, headers=GLOBEX)[1]["status"] == 200  # bob is globex's
    assert gateway.post(BATCH, json={"items": [{"learner_id": "ada", "tasks": ["t01"]}]}).status_code == 401


def test_bad_items_fail_alone_with_the_single_calls_status(
    predictor_address: str, make_gateway: MakeGateway
) -> None:
    gateway = make_gateway([predictor_address], max_tasks_per_request=4, max_learner_id_len=10)
    register(gateway, "ada", 0)
    items = [
        ("ada", ["t01"]),
        ("bad id!", ["t01"]),  # not an id
        ("a" * 11, ["t01"]),  # longer than this deployment allows
        ("ada", TEST_TASKS[:5]),  # more tasks than allowed
        ("ada", ["zz"]),  # unknown task
        ("ada", []),  # no task
        ("ada", ["t02"]),
    ]

    results = batch(gateway, items)

    assert [r["status"] for r in results] == [200, 400, 400, 400, 400, 400, 200]
    fields = [r["error"]["field"] for r in results if r["status"] != 200]
    assert fields == ["learner_id", "learner_id", "tasks", "tasks", "tasks"]
    assert "zz" in results[4]["error"]["message"]
    assert all(r["error"]["code"] == "INVALID_ARGUMENT" for r in results if r["status"] == 400)
    for (learner_id, tasks), result in zip(items, results, strict=True):
        if result["status"] == 200:
            assert_same(result, single(gateway, learner_id, tasks))


def test_the_batch_is_bounded_and_a_malformed_body_is_422(
    predictor_address: str, make_gateway: MakeGateway
) -> None:
    gateway = make_gateway([predictor_address], max_batch_items=3)
    register(gateway, "ada", 0)
    items = [{"learner_id": "ada", "tasks": ["t01"]}] * 4

    response = gateway.post(BATCH, json={"items": items})

    assert response.status_code == 400
    assert response.json()["error"] | {"request_id": None} == {
        "code": "INVALID_ARGUMENT",
        "message": "items has 4 items; at most 3 are allowed",
        "field": "items",
        "request_id": None,
    }
    assert gateway.post(BATCH, json={"items": items[:3]}).status_code == 200
    for body in (
        {"items": []},
        {},
        {"items": [{"learner_id": "ada"}]},
        {"items": [{"learner_id": "ada", "tasks": "t01"}]},
        {"items": [{"learner_id": 7, "tasks": ["t01"]}]},
        {"items": [{"learner_id": "ada", "tasks": ["t01"], "extra": 1}]},
    ):
        response = gateway.post(BATCH, json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "INVALID_ARGUMENT"


def test_with_no_predictor_serving_every_item_is_503_and_the_batch_200(
    predictor: RunningPredictor, make_gateway: MakeGateway
) -> None:
    gateway = make_gateway([predictor.address])
    register(gateway, "ada", 0)
    predictor._call(predictor.server.grpc._set_all(NOT_SERVING))
    wait_until(lambda: gateway.get("/readyz").status_code == 503)

    results = batch(gateway, [("ada", ["t01"]), ("bob", ["t02"])])

    assert [(r["status"], r["error"]["code"]) for r in results] == [(503, "UNAVAILABLE")] * 2


def test_the_document_lists_the_batch_route(predictor_address: str, make_gateway: MakeGateway) -> None:
    operation = make_gateway([predictor_address]).get("/openapi.json").json()["paths"][BATCH]["post"]
    assert operation["tags"] == ["learners"]
    assert {"200", "400", "401", "422"} <= set(operation["responses"])


# --- a fleet of predictor processes behind a gateway process ----------------------------------------------


def test_a_batch_over_three_predictors_equals_single_calls_and_a_hung_one_fails_only_its_items(
    fleet: Fleet, predictors: list[Process]
) -> None:
    addresses = [p.address for p in predictors]
    # A short call deadline, well inside the time health checks take to mark a hung replica down (3 x 2 s).
    env = {"LYCEUM_GATEWAY_REQUEST_TIMEOUT_S": "2"}
    gateway = fleet.gateway("gateway", predictors=predictors, env=env).start()
    wait_replicas(gateway, "predictor", serving=len(predictors))
    prefix = f"batch-{uuid.uuid4().hex[:6]}-"
    owners = owned(addresses, prefix, per_owner=3)
    learners = list(owners)
    hung = predictors[0]
    ghost = next(
        x for x in (f"{prefix}ghost-{i}" for i in range(100)) if owner_of(addresses, x) != hung.address
    )
    items = [(x, tasks_of(i)) for i, x in enumerate(learners)] + [(ghost, ["t01"])]

    with httpx.Client(base_url=gateway.url, timeout=60.0) as client:
        for i, learner_id in enumerate(learners):
            register(client, learner_id, i)
        expected = [single(client, x, t) for x, t in items]
        served = batch(client, items)
        for got, want in zip(served, expected, strict=True):
            assert_same(got, want)
        assert [r["status"] for r in served] == [200] * len(learners) + [404]

        hung.pause()  # SIGSTOP: it holds its connections and answers nothing
        try:
            during = batch(client, items)
        finally:
            hung.resume()

    for (learner_id, _), got, want in zip(items, during, served, strict=True):
        if owners.get(learner_id) == hung.address:
            assert got["status"] == 504 and got["error"]["code"] == "DEADLINE_EXCEEDED", got
        else:
            assert_same(got, want)
    assert sum(a == hung.address for a in owners.values()) == 3
