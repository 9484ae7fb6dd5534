"""Bad requests to the predictor over real gRPC: each is INVALID_ARGUMENT naming the offending field and
leaves every learner exactly as it was (stored history, history_len and predictions)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
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
from fixtures.predictor_calls import Stub, events
from fixtures.servers import tenant_channel

from lyceum_api.predictor.v1 import predictor_pb2 as pb
from lyceum_api.predictor.v1 import predictor_pb2_grpc
from lyceum_core.grpc.errors import from_rpc_error
from lyceum_core.identity import DEFAULT_TENANT
from lyceum_ml.dfm import inference
from lyceum_predictor.server import build_engine

pytestmark = pytest.mark.integration

Call = Callable[[Stub], object]
LEARNER = "learner-1"
HISTORY = [(TEST_TASKS[i % 5], float(i % 2)) for i in range(10)]


def register(learner_id: str, history: Sequence[tuple[str, float]] = ()) -> Call:
    return lambda stub: stub.RegisterLearner(
        pb.RegisterLearnerRequest(learner_id=learner_id, history=events(history))
    )


def get(learner_id: str) -> Call:
    return lambda stub: stub.GetLearner(pb.GetLearnerRequest(learner_id=learner_id))


def predict(learner_id: str, tasks: Sequence[str]) -> Call:
    return lambda stub: stub.Predict(pb.PredictRequest(learner_id=learner_id, tasks=tasks))


def append(learner_id: str, pairs: Sequence[tuple[str, float]]) -> Call:
    return lambda stub: stub.AppendEvents(pb.AppendEventsRequest(learner_id=learner_id, events=events(pairs)))


def forecast(learner_id: str, sequences: Sequence[Sequence[str]]) -> Call:
    return lambda stub: stub.Forecast(
        pb.ForecastRequest(
            learner_id=learner_id, task_sequences=[pb.TaskSequence(tasks=s) for s in sequences]
        )
    )


def delete(learner_id: str) -> Call:
    return lambda stub: stub.DeleteLearner(pb.DeleteLearnerRequest(learner_id=learner_id))


def snapshot(stub: Stub, running: RunningPredictor) -> tuple[object, ...]:
    """Everything a failed request must leave alone."""
    repo = running.engine.repo
    return (
        stub.GetLearner(pb.GetLearnerRequest(learner_id=LEARNER)).learner,
        list(stub.Predict(pb.PredictRequest(learner_id=LEARNER, tasks=TEST_TASKS)).probabilities),
        repo.history(DEFAULT_TENANT, LEARNER),
        repo.count(DEFAULT_TENANT),
    )


def assert_invalid(stub: Stub, call: Call, field: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call(stub)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert from_rpc_error(info.value).field == field, info.value.details()


@pytest.fixture
def predictor(test_checkpoint: Path, tmp_path: Path) -> Iterator[RunningPredictor]:
    """This module checks the limits, so it serves with the `reject` context policy, where a history's
    length has one; the sliding window's behaviour is tested in test_predictor_context.py."""
    url = f"sqlite:///{tmp_path / 'lyceum.db'}"
    running = RunningPredictor(predictor_settings(test_checkpoint, url, context_policy="reject"))
    yield running
    running.close()


@pytest.fixture
def stub(predictor_stub: Stub) -> Stub:
    register(LEARNER, HISTORY)(predictor_stub)
    return predictor_stub


ROOM = MAX_HISTORY_LEN - len(HISTORY)  # events LEARNER can still take
BAD_REQUESTS = {
    "predict-unknown-task": (predict(LEARNER, ["t00", "t99"]), "tasks"),
    "predict-no-tasks": (predict(LEARNER, []), "tasks"),
    "append-unknown-task": (append(LEARNER, [("t00", 1.0), ("nope", 1.0)]), "events"),
    "append-empty-task": (append(LEARNER, [("", 1.0)]), "events"),
    "append-outcome-below-0": (append(LEARNER, [("t00", -0.01)]), "events"),
    "append-outcome-above-1": (append(LEARNER, [("t00", 1.01)]), "events"),
    "append-outcome-nan": (append(LEARNER, [("t00", math.nan)]), "events"),
    "append-outcome-inf": (append(LEARNER, [("t00", math.inf)]), "events"),
    "append-outcome-minus-inf": (append(LEARNER, [("t00", -math.inf)]), "events"),
    "append-bad-after-good": (append(LEARNER, [("t00", 1.0), ("t01", 0.0), ("t02", 2.0)]), "events"),
    "append-no-events": (append(LEARNER, []), "events"),
    "append-past-limit": (append(LEARNER, [("t01", 1.0)] * (ROOM + 1)), "events"),
    "forecast-unknown-task": (forecast(LEARNER, [["t01", "t02"], ["t01", "zz"]]), "task_sequences"),
    "forecast-ragged": (forecast(LEARNER, [["t01", "t02"], ["t01"]]), "task_sequences"),
    "forecast-past-limit": (forecast(LEARNER, [["t01"] * (ROOM + 2)]), "task_sequences"),
    "register-unknown-task": (register("new", [("t00", 1.0), ("nope", 0.0)]), "history"),
    "register-outcome-nan": (register("new", [("t00", math.nan)]), "history"),
    "register-outcome-above-1": (register("new", [("t00", 1.5)]), "history"),
    "register-outcome-below-0": (register("new", [("t00", -1.0)]), "history"),
    "register-past-limit": (register("new", [("t00", 1.0)] * (MAX_HISTORY_LEN + 1)), "history"),
}


@pytest.mark.parametrize(("call", "field"), list(BAD_REQUESTS.values()), ids=list(BAD_REQUESTS))
def test_bad_request_is_invalid_and_changes_nothing(
    stub: Stub, predictor: RunningPredictor, call: Call, field: str
) -> None:
    before = snapshot(stub, predictor)
    assert_invalid(stub, call, field)
    assert snapshot(stub, predictor) == before
    with pytest.raises(grpc.RpcError):  # a rejected register creates nothing
        get("new")(stub)


BAD_IDS = {"empty": "", "too-long": "x" * 129, "space": "a b", "slash": "x/y"}
RPCS: dict[str, Callable[[str], Call]] = {
    "register": lambda learner_id: register(learner_id, HISTORY[:2]),
    "get": get,
    "predict": lambda learner_id: predict(learner_id, ["t01"]),
    "append": lambda learner_id: append(learner_id, HISTORY[:2]),
    "forecast": lambda learner_id: forecast(learner_id, [["t01"]]),
    "delete": delete,
}


@pytest.mark.parametrize("learner_id", list(BAD_IDS.values()), ids=list(BAD_IDS))
@pytest.mark.parametrize("rpc", list(RPCS.values()), ids=list(RPCS))
def test_bad_learner_id_is_invalid_and_changes_nothing(
    stub: Stub, predictor: RunningPredictor, rpc: Callable[[str], Call], learner_id: str
) -> None:
    before = snapshot(stub, predictor)
    assert_invalid(stub, rpc(learner_id), "learner_id")
    assert snapshot(stub, predictor) == before


def test_learner_ids_at_the_edges_of_the_rule_are_accepted(stub: Stub) -> None:
    for learner_id in ("x" * 128, "A.b_c:d@e-1", "0"):
        assert register(learner_id)(stub).learner.learner_id == learner_id
        assert get(learner_id)(stub).learner.history_len == 0


def test_histories_up_to_the_limit_are_accepted(stub: Stub) -> None:
    assert register("full", [("t02", 1.0)] * MAX_HISTORY_LEN)(stub).learner.history_len == MAX_HISTORY_LEN
    assert predict("full", TEST_TASKS)(stub).history_len == MAX_HISTORY_LEN
    assert append(LEARNER, [("t03", 0.0)] * ROOM)(stub).learner.history_len == MAX_HISTORY_LEN
    assert_invalid(stub, append(LEARNER, [("t03", 0.0)]), "events")
    assert get(LEARNER)(stub).learner.history_len == MAX_HISTORY_LEN


@pytest.fixture
def limited(test_checkpoint: Path, sqlite_url: str) -> Iterator[Stub]:
    settings = predictor_settings(
        test_checkpoint,
        sqlite_url,
        max_tasks_per_request=4,
        max_events_per_request=3,
        max_forecast_sequences=2,
        max_forecast_length=3,
        max_history_len=8,
        context_policy="reject",
    )
    running = RunningPredictor(settings)
    try:
        with tenant_channel(running.address) as channel:
            stub = predictor_pb2_grpc.PredictorServiceStub(channel)
            register(LEARNER, HISTORY[:3])(stub)
            yield stub
    finally:
        running.close()


def test_request_size_limits(limited: Stub) -> None:
    assert len(predict(LEARNER, TEST_TASKS[:4])(limited).probabilities) == 4
    assert_invalid(limited, predict(LEARNER, TEST_TASKS[:5]), "tasks")

    assert_invalid(limited, append(LEARNER, HISTORY[:4]), "events")
    assert_invalid(limited, register("other", HISTORY[:4]), "history")
    assert append(LEARNER, HISTORY[:3])(limited).learner.history_len == 6

    assert len(forecast(LEARNER, [["t01"] * 3] * 2)(limited).predictions) == 2
    assert_invalid(limited, forecast(LEARNER, [["t01"]] * 3), "task_sequences")
    assert_invalid(limited, forecast(LEARNER, [["t01"] * 4]), "task_sequences")
    assert get(LEARNER)(limited).learner.history_len == 6


def test_a_configured_history_limit_below_the_models(limited: Stub) -> None:
    assert limited.GetModelInfo(pb.GetModelInfoRequest()).max_history_len == 8
    append(LEARNER, HISTORY[:3])(limited)
    assert_invalid(limited, append(LEARNER, HISTORY[:3]), "events")  # 9 > 8 events
    assert append(LEARNER, HISTORY[:2])(limited).learner.history_len == 8
    assert len(forecast(LEARNER, [["t01"]])(limited).predictions) == 1
    assert_invalid(limited, forecast(LEARNER, [["t01", "t02"]]), "task_sequences")


def test_a_history_limit_beyond_the_model_is_clamped(test_checkpoint: Path, sqlite_url: str) -> None:
    settings = predictor_settings(
        test_checkpoint, sqlite_url, max_history_len=MAX_HISTORY_LEN + 100, context_policy="reject"
    )
    engine = build_engine(settings)
    assert engine.served.max_history_len == MAX_HISTORY_LEN
    assert engine.info().max_history_len == MAX_HISTORY_LEN


# --- malformed calls straight to the service: never UNKNOWN or INTERNAL -----------------------------------
EMPTY_REQUESTS: dict[str, Call] = {
    "register": lambda stub: stub.RegisterLearner(pb.RegisterLearnerRequest()),
    "get": lambda stub: stub.GetLearner(pb.GetLearnerRequest()),
    "predict": lambda stub: stub.Predict(pb.PredictRequest()),
    "append": lambda stub: stub.AppendEvents(pb.AppendEventsRequest()),
    "forecast": lambda stub: stub.Forecast(pb.ForecastRequest()),
    "delete": lambda stub: stub.DeleteLearner(pb.DeleteLearnerRequest()),
}
EVERY_RPC: dict[str, Call] = {
    **{name: rpc(LEARNER) for name, rpc in RPCS.items()},
    "list-tasks": lambda stub: stub.ListTasks(pb.ListTasksRequest()),
    "model-info": lambda stub: stub.GetModelInfo(pb.GetModelInfoRequest()),
}


@pytest.mark.parametrize("call", list(EMPTY_REQUESTS.values()), ids=list(EMPTY_REQUESTS))
def test_an_empty_request_is_invalid(stub: Stub, call: Call) -> None:
    assert_invalid(stub, call, "learner_id")


@pytest.mark.parametrize("call", list(EVERY_RPC.values()), ids=list(EVERY_RPC))
def test_a_call_without_a_tenant_is_unauthenticated(
    stub: Stub, predictor: RunningPredictor, predictor_stub_for: PredictorStubFor, call: Call
) -> None:
    before = snapshot(stub, predictor)
    with pytest.raises(grpc.RpcError) as info:
        call(predictor_stub_for(None))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, info.value.details()
    assert from_rpc_error(info.value).field == "tenant"
    assert snapshot(stub, predictor) == before


@pytest.mark.parametrize("tenant", ["Upper", "a/b", "x" * 64, "-lead"])
def test_a_malformed_tenant_is_invalid(stub: Stub, predictor_stub_for: PredictorStubFor, tenant: str) -> None:
    for call in EVERY_RPC.values():
        with pytest.raises(grpc.RpcError) as info:
            call(predictor_stub_for(tenant))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()


MALFORMED: dict[str, tuple[Call, str]] = {
    "forecast-unknown-feedback": (
        lambda stub: stub.Forecast(
            pb.ForecastRequest(
                learner_id=LEARNER, task_sequences=[pb.TaskSequence(tasks=["t01"])], feedback=99
            )
        ),
        "feedback",
    ),
    "append-negative-expected-len": (
        lambda stub: stub.AppendEvents(
            pb.AppendEventsRequest(learner_id=LEARNER, events=events(HISTORY[:1]), expected_history_len=-1)
        ),
        "expected_history_len",
    ),
    "predict-huge-task-name": (predict(LEARNER, ["t" * 100_000]), "tasks"),
    "predict-too-many-tasks": (predict(LEARNER, ["t01"] * 1025), "tasks"),
    "append-too-many-events": (append(LEARNER, [("t01", 1.0)] * 4097), "events"),
    "forecast-too-many-sequences": (forecast(LEARNER, [["t01"]] * 4097), "task_sequences"),
    "forecast-too-long": (forecast(LEARNER, [["t01"] * 513]), "task_sequences"),
    "register-huge-id": (register("x" * 100_000), "learner_id"),
    "get-control-characters": (get("a\nb"), "learner_id"),
}


@pytest.mark.parametrize(("call", "field"), list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_requests_are_invalid_and_change_nothing(
    stub: Stub, predictor: RunningPredictor, call: Call, field: str
) -> None:
    before = snapshot(stub, predictor)
    assert_invalid(stub, call, field)
    assert snapshot(stub, predictor) == before


def test_any_seed_is_accepted(stub: Stub) -> None:
    for seed in (0, 2**63, 2**64 - 1):
        request = pb.ForecastRequest(
            learner_id=LEARNER,
            task_sequences=[pb.TaskSequence(tasks=["t01", "t02"])],
            feedback=pb.FEEDBACK_MODE_SAMPLE,
            seed=seed,
        )
        assert len(stub.Forecast(request).predictions[0].probabilities) == 2


def test_a_forecast_past_the_memory_budget_is_refused_naming_it_and_the_next_one_works(
    test_checkpoint: Path, sqlite_url: str
) -> None:
    # v0.1's throughput script sweeps S = 1, 2, 4, ... until an error, then expects the server to go on
    model = tiny_dfm(0)
    budget = inference.forecast_bytes(model, 2 * (len(HISTORY) + 1), 16, 8)  # S=16 x L=8 fits exactly
    settings = predictor_settings(test_checkpoint, sqlite_url, forecast_memory_bytes=budget)
    running = RunningPredictor(settings)
    try:
        with tenant_channel(running.address) as channel:
            stub = predictor_pb2_grpc.PredictorServiceStub(channel)
            register(LEARNER, HISTORY)(stub)
            sizes = []
            for s in (1, 2, 4, 8, 16, 32, 64):
                try:
                    forecast(LEARNER, [["t01"] * 8] * s)(stub)
                except grpc.RpcError as err:
                    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
                    assert "forecast_memory_bytes" in err.details()
                    break
                sizes.append(s)
            assert sizes == [1, 2, 4, 8, 16]
            assert len(forecast(LEARNER, [["t01"] * 8] * 16)(stub).predictions) == 16  # and the next works
    finally:
        running.close()
