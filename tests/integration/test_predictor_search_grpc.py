"""The predictor's many-learner and search RPCs against a real server on a real port over SQLite: PredictMany
answers each item alone (with its own error); SearchCurriculum is seeded, validated and changes nothing."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import pytest
from fixtures.predictor import MAX_HISTORY_LEN, TEST_TASKS, PredictorStubFor
from fixtures.predictor_calls import HISTORY, Stub, assert_close, forecast, predict, register
from fixtures.servers import rpc_error

from lyceum_api.predictor.v1 import predictor_pb2 as pb

pytestmark = pytest.mark.integration


# --- PredictMany --------------------------------------------------------------------------------
def predict_many(stub: Stub, items: Sequence[tuple[str, Sequence[str]]]) -> list[pb.PredictManyResult]:
    request = pb.PredictManyRequest(items=[pb.PredictManyItem(learner_id=x, tasks=t) for x, t in items])
    return list(stub.PredictMany(request).results)


def test_predict_many_answers_each_item_alone_with_its_own_error(
    predictor_stub_for: PredictorStubFor,
) -> None:
    acme, globex = predictor_stub_for("acme"), predictor_stub_for("globex")
    register(acme, "ada", HISTORY)
    register(acme, "bob")
    register(globex, "eve", HISTORY[:2])
    items = [
        ("ada", ["t01", "t02"]),
        ("ghost", ["t01"]),  # unknown
        ("bob", TEST_TASKS),
        ("eve", ["t01"]),  # another tenant's
        ("ada", ["zz"]),  # unknown task
        ("bad id!", ["t01"]),  # malformed id
        ("bob", []),  # no tasks
        ("ada", ["t01", "t02"]),  # the same item twice: answered twice
    ]

    results = predict_many(acme, items)

    assert [r.WhichOneof("result") for r in results] == [
        "prediction",
        "error",
        "prediction",
        "error",
        "error",
        "error",
        "error",
        "prediction",
    ]
    for (learner_id, tasks), r in zip(items, results, strict=True):
        if r.WhichOneof("result") == "prediction":
            single = acme.Predict(pb.PredictRequest(learner_id=learner_id, tasks=tasks))
            assert (r.prediction.learner_id, r.prediction.history_len) == (learner_id, single.history_len)
            assert_close(r.prediction.probabilities, single.probabilities)  # batched: within TOL
    not_found, invalid = grpc.StatusCode.NOT_FOUND.value[0], grpc.StatusCode.INVALID_ARGUMENT.value[0]
    errors = [(r.error.code, r.error.field) for r in results if r.WhichOneof("result") == "error"]
    assert errors == [
        (not_found, "learner_id"),
        (not_found, "learner_id"),
        (invalid, "tasks"),
        (invalid, "learner_id"),
        (invalid, "tasks"),
    ]
    single = rpc_error(lambda: predict(acme, "eve", ["t01"]), grpc.StatusCode.NOT_FOUND)
    assert results[3].error.message == single.message  # the same words as the single call
    assert "zz" in results[4].error.message
    assert predict_many(acme, []) == []


# --- SearchCurriculum ---------------------------------------------------------------------------
def search(stub: Stub, learner_id: str, **fields: object) -> pb.SearchCurriculumResponse:
    request = pb.SearchCurriculumRequest(
        learner_id=learner_id,
        target_tasks=fields.pop("target_tasks", ["t07", "t08"]),
        candidate_tasks=fields.pop("candidate_tasks", ["t01", "t02", "t03", "t04"]),
        depth=fields.pop("depth", 3),
        **fields,
    )
    return stub.SearchCurriculum(request)


def test_search_curriculum_is_seeded_and_changes_nothing(predictor_stub: Stub) -> None:
    register(predictor_stub, "ada", HISTORY)
    before = predict(predictor_stub, "ada")

    first = search(predictor_stub, "ada", population_size=8, generations=3, seed=11)
    again = search(predictor_stub, "ada", population_size=8, generations=3, seed=11)

    assert first == again
    assert first.learner_id == "ada" and first.history_len == len(HISTORY)
    assert len(first.best_sequence) == 3 and set(first.best_sequence) <= {"t01", "t02", "t03", "t04"}
    assert first.evaluations == 8 * (3 + 1)
    assert len(first.best_fitness_curve) == len(first.mean_fitness_curve) >= 1
    assert first.best_fitness == max(first.best_fitness_curve)
    assert 0.0 <= first.best_fitness <= 1.0
    # the fitness of the best sequence is its forecast's mean success on the targets after the last step
    rolled = [list(first.best_sequence) + [t] for t in ("t07", "t08")]
    final = [row[-1] for row in forecast(predictor_stub, "ada", rolled)]
    assert abs(first.best_fitness - sum(final) / 2) < 1e-4
    assert predictor_stub.GetLearner(pb.GetLearnerRequest(learner_id="ada")).learner.history_len == len(
        HISTORY
    )
    assert predict(predictor_stub, "ada") == before


def test_search_curriculum_unset_options_take_the_v01_defaults(predictor_stub: Stub) -> None:
    register(predictor_stub, "ada", HISTORY)

    result = search(predictor_stub, "ada", depth=1, generations=0, seed=3)

    assert result.evaluations == 64  # population_size 64, one generation scored


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"depth": 0}, "depth"),
        ({"target_tasks": []}, "target_tasks"),
        ({"candidate_tasks": []}, "candidate_tasks"),
        ({"population_size": 3, "elite_count": 4}, "population_size"),
        ({"candidate_tasks": ["t01", "zz"]}, "candidate_tasks"),
        ({"target_tasks": ["zz"]}, "target_tasks"),
        ({"depth": MAX_HISTORY_LEN}, "depth"),  # past the history limit with the learner's 6 events
        ({"crossover_rate": 1.5}, "crossover_rate"),
        ({"generations": -1}, "generations"),
        ({"eval_every": 0}, "eval_every"),
    ],
)
def test_search_curriculum_refuses_bad_requests(predictor_stub: Stub, fields: dict, field: str) -> None:
    register(predictor_stub, "ada", HISTORY)

    err = rpc_error(lambda: search(predictor_stub, "ada", **fields), grpc.StatusCode.INVALID_ARGUMENT)

    assert err.field == field, err


def test_search_curriculum_for_an_unknown_learner_is_not_found(predictor_stub: Stub) -> None:
    err = rpc_error(lambda: search(predictor_stub, "ghost"), grpc.StatusCode.NOT_FOUND)
    assert err.field == "learner_id"
