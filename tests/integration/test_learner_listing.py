"""`GET /v1/learners` (a tenant's learners, a page at a time) and `GET /v1/learners/{id}/events` (a learner's
committed history) through the real gateway, authentication on (`acme`, `globex`), on a real database (SQLite
and PostgreSQL): pages in learner id order with a cursor, a case-sensitive id prefix filter, another
tenant's learners never listed nor readable (404 like a missing one), and bad parameters refused with 422
naming the field.

The learners are written as the predictor writes them (LearnerRepository): no model runs here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from fixtures.gateway import ACME, ACME_KEY, GLOBEX, GLOBEX_KEY, NO_PREDICTOR, MakeGateway

from lyceum_db.repositories.learners import LearnerRepository

pytestmark = pytest.mark.integration

ACME_LEARNERS = ["ada", "class-a:bo", "class-a:cy", "class-b:di", "Class-a:ed"]


@dataclass
class World:
    client: TestClient
    learners: LearnerRepository

    def list(self, headers: dict[str, str] = ACME, **params: Any) -> dict[str, Any]:
        response = self.client.get("/v1/learners", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    def ids(self, headers: dict[str, str] = ACME, **params: Any) -> list[str]:
        return [learner["learner_id"] for learner in self.list(headers, **params)["learners"]]


@pytest.fixture
def world(jobs_settings: dict[str, Any], jobs_engine: sa.Engine, make_gateway: MakeGateway) -> World:
    # The gateway bootstraps the tenants of its keys, so it starts before their learners are written.
    keys = [f"acme:{ACME_KEY}", f"globex:{GLOBEX_KEY}"]
    client = make_gateway([NO_PREDICTOR], **jobs_settings, api_keys=keys)
    learners = LearnerRepository(jobs_engine)
    for i, learner_id in enumerate(ACME_LEARNERS):
        learners.create("acme", learner_id, [(f"t{j:02d}", float(j % 2)) for j in range(i)])
    learners.create("globex", "ada", [("t01", 1.0)] * 7)
    learners.create("globex", "zed", [])
    return World(client, learners)


def error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return body["error"]


# --- listing ------------------------------------------------------------------------------------------------


def test_lists_the_tenants_learners_in_id_order_with_their_history_lengths(world: World) -> None:
    body = world.list()

    assert [learner["learner_id"] for learner in body["learners"]] == sorted(ACME_LEARNERS)
    assert body["next_cursor"] is None
    by_id = {learner["learner_id"]: learner for learner in body["learners"]}
    assert {k: v["history_len"] for k, v in by_id.items()} == {k: i for i, k in enumerate(ACME_LEARNERS)}
    ada = by_id["ada"]
    assert set(ada) == {"learner_id", "history_len", "created_at", "updated_at"}
    assert ada["created_at"].endswith(("Z", "+00:00"))


def test_another_tenants_learners_never_appear(world: World) -> None:
    assert world.ids(GLOBEX) == ["ada", "zed"]
    assert [learner["history_len"] for learner in world.list(GLOBEX)["learners"]] == [7, 0]
    assert "zed" not in world.ids(ACME)
    assert world.ids(GLOBEX, prefix="class") == []
    # A cursor is only a position in the caller's own list.
    assert world.ids(GLOBEX, after="ada") == ["zed"]


def test_pages_follow_the_cursor_until_it_is_null(world: World) -> None:
    seen, cursor, pages = [], None, 0
    while True:
        body = world.list(limit=2, **({"after": cursor} if cursor else {}))
        seen += [learner["learner_id"] for learner in body["learners"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert seen == sorted(ACME_LEARNERS)
    assert pages == 3


def test_an_exactly_full_last_page_has_no_cursor(world: World) -> None:
    body = world.list(limit=len(ACME_LEARNERS))

    assert len(body["learners"]) == len(ACME_LEARNERS) and body["next_cursor"] is None


def test_a_page_reflects_learners_created_and_deleted_after_the_cursor(world: World) -> None:
    first = world.list(limit=2)
    world.learners.create("acme", "zz-late", [])
    world.learners.delete("acme", "class-a:cy")

    rest = world.ids(after=first["next_cursor"])

    assert first["next_cursor"] == sorted(ACME_LEARNERS)[1]
    assert "zz-late" in rest and "class-a:cy" not in rest


def test_the_prefix_filter_is_case_sensitive_and_pages(world: World) -> None:
    assert world.ids(prefix="class-a:") == ["class-a:bo", "class-a:cy"]
    assert world.ids(prefix="Class") == ["Class-a:ed"]
    assert world.ids(prefix="class-a:bo") == ["class-a:bo"]
    assert world.ids(prefix="nobody") == []
    page = world.list(prefix="class", limit=2)
    assert page["next_cursor"] == "class-a:cy"
    assert world.ids(prefix="class", after=page["next_cursor"]) == ["class-b:di"]


def test_the_default_page_is_bounded(world: World) -> None:
    for i in range(60):
        world.learners.create("acme", f"bulk-{i:03d}", [])

    body = world.list()

    assert len(body["learners"]) == 50 and body["next_cursor"] == body["learners"][-1]["learner_id"]
    assert len(world.list(limit=200)["learners"]) == 65


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"after": ""}, "after"),
        ({"after": "x" * 129}, "after"),
        ({"prefix": ""}, "prefix"),
        ({"prefix": "p" * 129}, "prefix"),
        ({"prefix": "a b"}, "prefix"),
        ({"prefix": "a%"}, "prefix"),
        ({"after": "x\x00"}, "after"),
    ],
)
def test_bad_list_parameters_name_the_field(world: World, params: dict[str, Any], field: str) -> None:
    response = world.client.get("/v1/learners", params=params, headers=ACME)

    assert error(response, 422)["field"] == field


def test_listing_needs_a_key(world: World) -> None:
    assert error(world.client.get("/v1/learners"), 401)["code"]
    assert error(world.client.get("/v1/learners/ada/events"), 401)["code"]


# --- a learner's history ------------------------------------------------------------------------------------


def test_the_history_reads_back_in_append_order(world: World) -> None:
    world.learners.append("acme", "class-b:di", [("t09", 0.5)], expected_len=3)

    response = world.client.get("/v1/learners/class-b:di/events", headers=ACME)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["learner_id"] == "class-b:di" and body["history_len"] == 4 and body["next_start"] is None
    events = [(e["seq"], e["task"], e["outcome"]) for e in body["events"]]
    assert events == [(0, "t00", 0.0), (1, "t01", 1.0), (2, "t02", 0.0), (3, "t09", 0.5)]
    assert all(e["created_at"] for e in body["events"])


def test_the_history_pages_with_start_and_limit(world: World) -> None:
    def page(**params: Any) -> dict[str, Any]:
        response = world.client.get("/v1/learners/ada/events", params=params, headers=GLOBEX)
        assert response.status_code == 200, response.text
        return response.json()

    seen, start = [], 0
    while start is not None:
        body = page(start=start, limit=3)
        seen += [e["seq"] for e in body["events"]]
        start = body["next_start"]

    assert seen == list(range(7))
    assert page(start=7)["events"] == [] and page(start=7)["next_start"] is None
    assert page(start=100) == {"learner_id": "ada", "history_len": 7, "events": [], "next_start": None}


def test_an_empty_history_is_empty(world: World) -> None:
    response = world.client.get("/v1/learners/ada/events", headers=ACME)

    assert response.json() == {"learner_id": "ada", "history_len": 0, "events": [], "next_start": None}


def test_another_tenants_history_answers_404_like_a_missing_one(world: World) -> None:
    other = error(world.client.get("/v1/learners/zed/events", headers=ACME), 404)
    missing = error(world.client.get("/v1/learners/nobody/events", headers=ACME), 404)

    assert other["field"] == missing["field"] == "learner_id"
    assert other["message"] == missing["message"].replace("nobody", "zed")


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/learners/ada/events", {"start": -1}, "start"),
        ("/v1/learners/ada/events", {"start": 2**31}, "start"),
        ("/v1/learners/ada/events", {"start": 10**30}, "start"),
        ("/v1/learners/ada/events", {"limit": 0}, "limit"),
        ("/v1/learners/ada/events", {"limit": 5001}, "limit"),
        ("/v1/learners/no%20spaces/events", {}, "learner_id"),
    ],
)
def test_bad_history_parameters_name_the_field(
    world: World, path: str, params: dict[str, Any], field: str
) -> None:
    response = world.client.get(path, params=params, headers=ACME)

    assert error(response, 422)["field"] == field
