"""The DFM-Server mount's curriculum search and garbage collection: the original fields and defaults,
seeded answers equal to the native API's, bad requests refused with nothing changed."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from fixtures.dfm_server import BASE, assert_detail, post, register, state
from fixtures.predictor import MAX_HISTORY_LEN

pytestmark = pytest.mark.integration


@pytest.fixture
def ada(gateway: TestClient) -> TestClient:
    register(gateway, "ada", ["t01", "t02"], [1.0, 0.0])
    return gateway


SEARCH = {
    "learner_id": "ada",
    "target_tasks": ["t07", "t08"],
    "candidate_tasks": ["t01", "t02", "t03"],
    "depth": 3,
}
QUICK = {"population_size": 8, "generations": 3}


def test_search_answers_the_original_fields_seeded_and_changes_nothing(ada: TestClient) -> None:
    before = state(ada)

    status, found = post(ada, "/search", SEARCH | QUICK | {"seed": 4})

    assert status == 200, found
    assert set(found) == {"learner_id", "best_sequence", "best_fitness"}
    assert found["learner_id"] == "ada" and len(found["best_sequence"]) == 3
    assert set(found["best_sequence"]) <= set(SEARCH["candidate_tasks"])
    assert post(ada, "/search", SEARCH | QUICK | {"seed": 4}) == (200, found)
    assert state(ada) == before
    # the native search with the same request finds the same
    body = {k: v for k, v in (SEARCH | QUICK | {"seed": 4}).items() if k != "learner_id"}
    native = ada.post("/v1/learners/ada/curricula:search", json=body).json()
    assert (native["best_sequence"], native["best_fitness"]) == (
        found["best_sequence"],
        found["best_fitness"],
    )


def test_search_defaults_are_the_originals(ada: TestClient) -> None:
    omitted = post(ada, "/search", SEARCH | {"depth": 1, "generations": 0, "seed": 9})
    spelled = {
        "population_size": 64,
        "generations": 0,
        "elite_count": 4,
        "tournament_size": 2,
        "crossover_rate": 0.8,
        "mutation_rate": 0.05,
        "eval_every": None,
        "seed": 9,
    }
    assert omitted == post(ada, "/search", SEARCH | {"depth": 1} | spelled)
    assert omitted[0] == 200


def test_a_negative_seed_searches_as_its_absolute_value(ada: TestClient) -> None:
    # random.Random(seed) seeds with |seed|: the original answered -4 as 4
    assert post(ada, "/search", SEARCH | QUICK | {"seed": -4}) == post(
        ada, "/search", SEARCH | QUICK | {"seed": 4}
    )


BAD_SEARCHES = [
    pytest.param({"depth": 0}, 400, "depth", id="depth-0"),
    pytest.param({"target_tasks": []}, 400, "target_tasks", id="no-targets"),
    pytest.param({"candidate_tasks": []}, 400, "candidate_tasks", id="no-candidates"),
    pytest.param({"population_size": 2, "elite_count": 4}, 400, "elite_count", id="population-below-elite"),
    pytest.param({"candidate_tasks": ["t01", "nope"]}, 400, "nope", id="unknown-task"),
    pytest.param({"depth": MAX_HISTORY_LEN}, 400, "limit", id="past-the-history-limit"),
    pytest.param({"mutation_rate": 2.0}, 400, "mutation_rate", id="rate-above-1"),
    pytest.param({"depth": None}, 422, "depth", id="depth-null"),
    pytest.param({"target_tasks": "t07"}, 422, "target_tasks", id="targets-not-a-list"),
]


@pytest.mark.parametrize(("fields", "status", "mentions"), BAD_SEARCHES)
def test_bad_searches_are_refused(ada: TestClient, fields: dict, status: int, mentions: str) -> None:
    before = state(ada)

    assert_detail(*post(ada, "/search", SEARCH | fields), status, mentions=mentions)
    assert state(ada) == before


def test_search_for_an_unknown_learner_is_404(gateway: TestClient) -> None:
    assert post(gateway, "/search", SEARCH | {"learner_id": "ghost"}) == (
        404,
        {"detail": "Learner 'ghost' not found"},
    )


def test_gc_frees_without_losing_a_learner(ada: TestClient) -> None:
    before = state(ada)

    response = ada.post(f"{BASE}/gc")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert state(ada) == before
