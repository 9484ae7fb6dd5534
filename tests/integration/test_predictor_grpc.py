"""The predictor's gRPC contract, RPC by RPC, against a real server on a real port over SQLite: what each
call returns, the codes and fields of its errors, and that reads change nothing. Health and reflection too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from fixtures.predictor import (
    MAX_HISTORY_LEN,
    TEST_TASKS,
    PredictorStubFor,
    RunningPredictor,
    predictor_settings,
    tiny_dfm,
)
from fixtures.predictor_calls import (
    HISTORY,
    Stub,
    append,
    assert_close,
    events,
    forecast,
    max_diff,
    predict,
    register,
)
from fixtures.servers import rpc_error
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from lyceum_api.predictor.v1 import predictor_pb2 as pb
from lyceum_core.identity import DEFAULT_TENANT, PLATFORM_TENANT
from lyceum_core.storage import ArtifactStore
from lyceum_db.engine import create_engine
from lyceum_db.repositories.registry import ModelRepository
from lyceum_predictor.cache import LearnerKey

pytestmark = pytest.mark.integration

SERVICE = "lyceum.predictor.v1.PredictorService"


# --- RegisterLearner / GetLearner ------------------------------------------------------------------------
def test_register_an_empty_learner(predictor_stub: Stub) -> None:
    learner = register(predictor_stub, "empty-1")
    assert (learner.learner_id, learner.history_len) == ("empty-1", 0)
    assert learner.created_at.ToDatetime() == learner.updated_at.ToDatetime()
    assert learner.created_at.seconds > 0

    got = predictor_stub.GetLearner(pb.GetLearnerRequest(learner_id="empty-1")).learner
    assert got == learner
    response = predictor_stub.Predict(pb.PredictRequest(learner_id="empty-1", tasks=TEST_TASKS))
    assert (response.learner_id, response.history_len) == ("empty-1", 0)
    assert len(response.probabilities) == len(TEST_TASKS)
    assert all(0.0 < p < 1.0 for p in response.probabilities)


def test_register_with_history_equals_registering_empty_and_appending(predictor_stub: Stub) -> None:
    learner = register(predictor_stub, "with-history", HISTORY)
    register(predictor_stub, "appended")
    appended = append(predictor_stub, "appended", HISTORY).learner

    assert learner.history_len == appended.history_len == len(HISTORY)
    assert_close(predict(predictor_stub, "with-history"), predict(predictor_stub, "appended"))
    register(predictor_stub, "fresh")
    different = max_diff(predict(predictor_stub, "fresh"), predict(predictor_stub, "appended"))
    assert different > 1e-3  # the history matters, so the equality above is not vacuous


def test_register_twice_is_already_exists_and_keeps_the_original(predictor_stub: Stub) -> None:
    register(predictor_stub, "dup", HISTORY)
    before = predict(predictor_stub, "dup")

    err = rpc_error(lambda: register(predictor_stub, "dup", [("t02", 1.0)]), grpc.StatusCode.ALREADY_EXISTS)

    assert err.field == "learner_id"
    got = predictor_stub.GetLearner(pb.GetLearnerRequest(learner_id="dup")).learner
    assert got.history_len == len(HISTORY)
    assert predict(predictor_stub, "dup") == before


def test_get_learner_tracks_appends(predictor_stub: Stub) -> None:
    created = register(predictor_stub, "tracked")
    updated = append(predictor_stub, "tracked", HISTORY[:2]).learner
    got = predictor_stub.GetLearner(pb.GetLearnerRequest(learner_id="tracked")).learner

    assert got == updated and got.history_len == 2
    assert got.created_at == created.created_at
    assert got.updated_at.ToDatetime() >= created.updated_at.ToDatetime()


# --- Predict ---------------------------------------------------------------------------------------------
def test_predict_answers_each_task_in_order_duplicates_independently(predictor_stub: Stub) -> None:
    register(predictor_stub, "p", HISTORY)
    every = predict(predictor_stub, "p")
    tasks = ["t09", "t02", "t09", "t00", "t09"]
    response = predictor_stub.Predict(pb.PredictRequest(learner_id="p", tasks=tasks))

    assert (response.learner_id, response.history_len) == ("p", len(HISTORY))
    assert_close(response.probabilities, [every[TEST_TASKS.index(t)] for t in tasks])
    assert_close([predict(predictor_stub, "p", [t])[0] for t in tasks], response.probabilities)
    assert predict(predictor_stub, "p") == every  # reading twice changes nothing


# --- AppendEvents --------------------------------------------------------------------------------------
def test_append_priors_are_what_predict_said_just_before(predictor_stub: Stub) -> None:
    register(predictor_stub, "one-by-one", HISTORY[:2])
    register(predictor_stub, "batched", HISTORY[:2])
    new = [("t05", 1.0), ("t05", 0.0), ("t11", 1.0), ("t00", 0.25)]

    singles = []
    for i, (task, outcome) in enumerate(new):
        said = predict(predictor_stub, "one-by-one", [task])
        response = append(predictor_stub, "one-by-one", [(task, outcome)])
        assert response.learner.history_len == 2 + i + 1
        assert_close(response.prior_probabilities, said)
        singles.append(response.prior_probabilities[0])
    batched = append(predictor_stub, "batched", new)

    assert batched.learner.history_len == 2 + len(new)
    assert_close(batched.prior_probabilities, singles)
    assert_close(predict(predictor_stub, "batched"), predict(predictor_stub, "one-by-one"))


def test_append_with_expected_history_len(predictor_stub: Stub, predictor: RunningPredictor) -> None:
    register(predictor_stub, "cas")
    first = append(predictor_stub, "cas", HISTORY[:2], expected_history_len=0)
    assert first.learner.history_len == 2
    before = (predict(predictor_stub, "cas"), predictor.engine.repo.history(DEFAULT_TENANT, "cas"))

    # a retried append (same expected length) and a wrong guess both fail without writing anything
    for expected in (0, 1, 3, 100):
        err = rpc_error(
            lambda e=expected: append(predictor_stub, "cas", HISTORY[2:4], expected_history_len=e),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert err.field == "expected_history_len"
    assert predictor_stub.GetLearner(pb.GetLearnerRequest(learner_id="cas")).learner.history_len == 2
    assert (predict(predictor_stub, "cas"), predictor.engine.repo.history(DEFAULT_TENANT, "cas")) == before

    assert append(predictor_stub, "cas", HISTORY[2:4], expected_history_len=2).learner.history_len == 4


# --- Forecast ----------------------------------------------------------------------------------------------
def test_forecast_returns_s_by_l_and_changes_nothing(predictor_stub: Stub) -> None:
    register(predictor_stub, "f", HISTORY)
    before = predict(predictor_stub, "f")
    plans = [["t01", "t02", "t03", "t04", "t05"], ["t05", "t05", "t05", "t05", "t05"], ["t15"] * 5]

    rows = forecast(predictor_stub, "f", plans)

    assert [len(r) for r in rows] == [5, 5, 5]
    assert_close([r[0] for r in rows], predict(predictor_stub, "f", [p[0] for p in plans]))
    assert all(0.0 < p < 1.0 for r in rows for p in r)
    assert_close(forecast(predictor_stub, "f", plans[1:2])[0], rows[1])  # rows are independent
    explicit = forecast(predictor_stub, "f", plans, feedback=pb.FEEDBACK_MODE_EXPECTED)
    assert explicit == rows  # UNSPECIFIED means EXPECTED
    got = predictor_stub.GetLearner(pb.GetLearnerRequest(learner_id="f")).learner
    assert got.history_len == len(HISTORY)
    assert predict(predictor_stub, "f") == before


def test_forecast_sample_mode_is_seeded(predictor_stub: Stub) -> None:
    register(predictor_stub, "s", HISTORY)
    plans = [["t02", "t04", "t06", "t08", "t10", "t12", "t14", "t00"]] * 4
    sampled = forecast(predictor_stub, "s", plans, feedback=pb.FEEDBACK_MODE_SAMPLE, seed=7)

    assert sampled == forecast(predictor_stub, "s", plans, feedback=pb.FEEDBACK_MODE_SAMPLE, seed=7)
    assert sampled != forecast(predictor_stub, "s", plans, feedback=pb.FEEDBACK_MODE_SAMPLE, seed=8)
    assert sampled != forecast(predictor_stub, "s", plans)
    huge = forecast(predictor_stub, "s", plans, feedback=pb.FEEDBACK_MODE_SAMPLE, seed=2**64 - 1)
    assert [len(r) for r in huge] == [8] * 4


def test_forecast_with_no_sequences_or_empty_sequences(predictor_stub: Stub) -> None:
    register(predictor_stub, "e", HISTORY)
    assert forecast(predictor_stub, "e", []) == []
    assert forecast(predictor_stub, "e", [[], [], []]) == [[], [], []]


def test_forecast_with_ragged_sequences_is_invalid(predictor_stub: Stub) -> None:
    register(predictor_stub, "r", HISTORY)
    err = rpc_error(
        lambda: forecast(predictor_stub, "r", [["t01", "t02"], ["t01"]]), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert err.field == "task_sequences"
    err = rpc_error(lambda: forecast(predictor_stub, "r", [["t01"], []]), grpc.StatusCode.INVALID_ARGUMENT)
    assert err.field == "task_sequences"


def test_forecast_up_to_the_history_limit(predictor_stub: Stub) -> None:
    # a long history keeps only its window in context, which leaves room for roll-outs up to the model's limit
    full = predictor_stub.RegisterLearner(
        pb.RegisterLearnerRequest(learner_id="full", history=events([("t04", 1.0)] * MAX_HISTORY_LEN))
    ).learner
    assert full.history_len == MAX_HISTORY_LEN and full.context_len < MAX_HISTORY_LEN
    room = MAX_HISTORY_LEN - full.context_len + 1
    assert len(forecast(predictor_stub, "full", [["t01"] * room])[0]) == room
    err = rpc_error(
        lambda: forecast(predictor_stub, "full", [["t01"] * (room + 1)]), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert err.field == "task_sequences"

    register(predictor_stub, "short", HISTORY)
    longest = MAX_HISTORY_LEN - len(HISTORY) + 1  # the last step sees history + longest - 1 events
    assert len(forecast(predictor_stub, "short", [["t03"] * longest])[0]) == longest


# --- DeleteLearner -------------------------------------------------------------------------------------
def test_delete_then_every_call_is_not_found(predictor_stub: Stub) -> None:
    register(predictor_stub, "gone", HISTORY)
    assert predictor_stub.DeleteLearner(pb.DeleteLearnerRequest(learner_id="gone")).learner_id == "gone"

    calls: list[Callable[[], object]] = [
        lambda: predictor_stub.GetLearner(pb.GetLearnerRequest(learner_id="gone")),
        lambda: predict(predictor_stub, "gone"),
        lambda: append(predictor_stub, "gone", HISTORY[:1]),
        lambda: forecast(predictor_stub, "gone", [["t01"]]),
        lambda: predictor_stub.DeleteLearner(pb.DeleteLearnerRequest(learner_id="gone")),
    ]
    for call in calls:
        assert rpc_error(call, grpc.StatusCode.NOT_FOUND).field == "learner_id"

    # the id is free again, with no trace of the old history
    assert register(predictor_stub, "gone").history_len == 0
    register(predictor_stub, "control")
    assert predict(predictor_stub, "gone") == predict(predictor_stub, "control")


def test_unknown_learner_is_not_found(predictor_stub: Stub) -> None:
    assert (
        rpc_error(lambda: predict(predictor_stub, "nobody"), grpc.StatusCode.NOT_FOUND).field == "learner_id"
    )
    assert (
        rpc_error(lambda: forecast(predictor_stub, "nobody", []), grpc.StatusCode.NOT_FOUND).field
        == "learner_id"
    )


# --- ListTasks / GetModelInfo ----------------------------------------------------------------------------
def test_list_tasks_is_the_model_vocabulary(predictor_stub: Stub) -> None:
    assert list(predictor_stub.ListTasks(pb.ListTasksRequest()).tasks) == TEST_TASKS


def test_get_model_info_describes_the_served_model(predictor_stub: Stub) -> None:
    info = predictor_stub.GetModelInfo(pb.GetModelInfoRequest())
    model = tiny_dfm(0)  # what write_test_checkpoint saved
    assert (info.name, info.version) == ("dfm-test", "0")
    assert (info.n_layer, info.n_head, info.n_kv_head, info.d_model) == (2, 4, 2, 32)
    assert (info.n_tasks, info.task_encoder) == (len(TEST_TASKS), "table")
    assert info.max_history_len == MAX_HISTORY_LEN
    assert (info.dtype, info.device) == ("float32", "cpu")
    assert info.n_parameters == model.num_parameters()
    assert info.resident_learners == 0

    register(predictor_stub, "a")
    register(predictor_stub, "b", HISTORY)
    assert predictor_stub.GetModelInfo(pb.GetModelInfoRequest()).resident_learners == 2


# --- tenants ---------------------------------------------------------------------------------------------
def test_equal_learner_ids_in_two_tenants_are_independent(
    predictor: RunningPredictor, predictor_stub_for: PredictorStubFor
) -> None:
    acme, globex = predictor_stub_for("acme"), predictor_stub_for("globex")
    register(acme, "ada", HISTORY)
    register(globex, "ada", [(task, 1.0 - outcome) for task, outcome in HISTORY[:3]])
    assert (acme_probs := predict(acme, "ada")) != (globex_probs := predict(globex, "ada"))
    assert append(acme, "ada", [("t02", 1.0)]).learner.history_len == len(HISTORY) + 1
    assert globex.GetLearner(pb.GetLearnerRequest(learner_id="ada")).learner.history_len == 3
    assert predict(globex, "ada") == globex_probs  # acme's append changed nothing of globex's ada

    caches = predictor.engine.caches
    assert LearnerKey("acme", "ada") in caches and LearnerKey("globex", "ada") in caches
    caches.clear()  # each rebuilds from its own tenant's history
    assert_close(predict(globex, "ada"), globex_probs)
    assert predict(acme, "ada") != acme_probs  # it has one more event now
    assert predictor.engine.repo.history("globex", "ada") == [(t, 1.0 - o) for t, o in HISTORY[:3]]

    acme.DeleteLearner(pb.DeleteLearnerRequest(learner_id="ada"))
    assert predict(globex, "ada") == globex_probs
    assert LearnerKey("acme", "ada") not in caches


def test_another_tenants_learner_is_not_found_like_a_missing_one(
    predictor_stub_for: PredictorStubFor,
) -> None:
    acme, globex = predictor_stub_for("acme"), predictor_stub_for("globex")
    register(acme, "ada", HISTORY)
    before = predict(acme, "ada")
    calls: dict[str, Callable[[Stub, str], object]] = {
        "get": lambda stub, i: stub.GetLearner(pb.GetLearnerRequest(learner_id=i)),
        "predict": lambda stub, i: predict(stub, i),
        "append": lambda stub, i: append(stub, i, [("t01", 1.0)]),
        "forecast": lambda stub, i: forecast(stub, i, [["t01"]]),
        "delete": lambda stub, i: stub.DeleteLearner(pb.DeleteLearnerRequest(learner_id=i)),
    }
    for name, call in calls.items():
        theirs = rpc_error(lambda c=call: c(globex, "ada"), grpc.StatusCode.NOT_FOUND)
        missing = rpc_error(lambda c=call: c(acme, "nobody"), grpc.StatusCode.NOT_FOUND)
        assert theirs.field == missing.field == "learner_id", name
        assert theirs.message.replace("ada", "X") == missing.message.replace("nobody", "X"), name
    assert predict(acme, "ada") == before
    assert register(globex, "ada").history_len == 0  # globex may have its own ada


def test_the_served_registry_model_resolves_as_the_platform_for_every_tenant(
    test_checkpoint: Path, sqlite_url: str, tmp_path: Path, predictor_stub_for: PredictorStubFor
) -> None:
    """A predictor serves one model, resolved as `model_tenant` (the platform): a public platform model
    serves every tenant's learners, and a tenant's own model of the same name changes nothing."""
    store = ArtifactStore(tmp_path / "registry")
    database = create_engine(sqlite_url)
    models = ModelRepository(database)
    uri = store.put_dir(test_checkpoint, "dfm/platform/dfm-test/1")
    models.register(PLATFORM_TENANT, "dfm-test", "dfm", uri, {}, public=True)
    models.set_alias(PLATFORM_TENANT, "dfm-test", "production", 1)
    models.register("acme", "dfm-test", "dfm", uri, {})  # acme's own, unaliased: never served here
    settings = predictor_settings(
        test_checkpoint,
        sqlite_url,
        model="dfm-test@production",
        registry_url=str(tmp_path / "registry"),
        model_cache_dir=tmp_path / "cache",
        model_poll_s=0,
    )
    assert settings.model_tenant == PLATFORM_TENANT
    running = RunningPredictor(settings)
    try:
        for tenant in ("acme", "globex"):
            stub = predictor_stub_for(tenant, running.address)
            info = stub.GetModelInfo(pb.GetModelInfoRequest())
            assert (info.name, info.version) == ("dfm-test", "1")
            register(stub, "ada", HISTORY)
            assert len(predict(stub, "ada")) == len(TEST_TASKS)
    finally:
        running.close()
        database.dispose()


# --- health and reflection ------------------------------------------------------------------------------
def test_health_reports_serving(predictor_address: str) -> None:
    with grpc.insecure_channel(predictor_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE):
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.RpcError) as info:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_service(predictor_address: str) -> None:
    with grpc.insecure_channel(predictor_address) as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for s in next(responses).list_services_response.service}
        assert {SERVICE, "grpc.health.v1.Health"} <= names

        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)
        found = next(reflection.ServerReflectionInfo(iter([request])))
        assert found.WhichOneof("message_response") == "file_descriptor_response"


# --- context and memory ---------------------------------------------------------------------------------
def test_get_learner_and_model_info_report_the_context(predictor_stub: Stub) -> None:
    learner = register(predictor_stub, "ada", HISTORY)
    info = predictor_stub.GetModelInfo(pb.GetModelInfoRequest())

    assert info.context_policy in ("sliding_window", "reject")
    assert 0 < info.context_window <= info.max_history_len
    assert learner.context_len == min(len(HISTORY), info.context_window)
    got = predictor_stub.GetLearner(pb.GetLearnerRequest(learner_id="ada")).learner
    assert (got.history_len, got.context_len) == (len(HISTORY), learner.context_len)


def test_collect_garbage_frees_nothing_on_the_cpu_and_keeps_every_learner(predictor_stub: Stub) -> None:
    register(predictor_stub, "ada", HISTORY)
    before = predict(predictor_stub, "ada")

    assert predictor_stub.CollectGarbage(pb.CollectGarbageRequest()).freed_bytes == 0
    assert predict(predictor_stub, "ada") == before
