"""A predictor as its callers (the gateway, jobs) see it: a small `Predictor` Protocol over plain dataclasses,
and `GrpcPredictor`, its implementation over one replica's grpc.aio channel. Protos stop here."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import grpc
from google.protobuf import timestamp_pb2

from lyceum_api.predictor.v1 import predictor_pb2 as pb
from lyceum_api.predictor.v1 import predictor_pb2_grpc as pb_grpc
from lyceum_core.context import RequestContext
from lyceum_fleet.grpc_client import GrpcClient

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PredictorService"].full_name


@dataclass(frozen=True, slots=True)
class Event:
    """One observed interaction: the learner attempted `task` and scored `outcome` in [0, 1]."""

    task: str
    outcome: float


@dataclass(frozen=True, slots=True)
class Learner:
    learner_id: str
    history_len: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Predictions:
    """`probabilities[i]` is P(success on `tasks[i]`) given the first `history_len` events."""

    learner_id: str
    history_len: int
    probabilities: list[float]


@dataclass(frozen=True, slots=True)
class AppendResult:
    learner: Learner
    prior_probabilities: list[float]


class Feedback(enum.StrEnum):
    """How a forecast feeds its own predictions back as outcomes."""

    EXPECTED = "expected"
    SAMPLE = "sample"


@dataclass(frozen=True, slots=True)
class Forecast:
    learner_id: str
    predictions: list[list[float]]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    version: str
    n_layer: int
    n_head: int
    n_kv_head: int
    d_model: int
    n_tasks: int
    task_encoder: str
    max_history_len: int
    dtype: str
    device: str
    n_parameters: int
    resident_learners: int


class Predictor(Protocol):
    """What callers need from the predictors (one replica, or the routed fleet). Every call acts for `ctx`
    (its tenant owns the learner); every failure is a `LyceumError`."""

    async def register_learner(
        self, ctx: RequestContext, learner_id: str, history: Sequence[Event] = ()
    ) -> Learner: ...

    async def get_learner(self, ctx: RequestContext, learner_id: str) -> Learner: ...

    async def predict(self, ctx: RequestContext, learner_id: str, tasks: Sequence[str]) -> Predictions: ...

    async def append_events(
        self,
        ctx: RequestContext,
        learner_id: str,
        events: Sequence[Event],
        expected_history_len: int | None = None,
    ) -> AppendResult: ...

    async def forecast(
        self,
        ctx: RequestContext,
        learner_id: str,
        task_sequences: Sequence[Sequence[str]],
        feedback: Feedback = Feedback.EXPECTED,
        seed: int | None = None,
    ) -> Forecast: ...

    async def delete_learner(self, ctx: RequestContext, learner_id: str) -> None: ...

    async def list_tasks(self, ctx: RequestContext) -> list[str]: ...

    async def get_model_info(self, ctx: RequestContext) -> ModelInfo: ...

    async def health(self) -> bool:
        """True when a replica reports SERVING; never raises."""
        ...


_FEEDBACK_PB = {Feedback.EXPECTED: pb.FEEDBACK_MODE_EXPECTED, Feedback.SAMPLE: pb.FEEDBACK_MODE_SAMPLE}


def _time(ts: timestamp_pb2.Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def _learner(msg: pb.Learner) -> Learner:
    return Learner(
        learner_id=msg.learner_id,
        history_len=msg.history_len,
        created_at=_time(msg.created_at),
        updated_at=_time(msg.updated_at),
    )


def _events(events: Sequence[Event]) -> list[pb.Event]:
    return [pb.Event(task=e.task, outcome=e.outcome) for e in events]


class GrpcPredictor(GrpcClient):
    """A `Predictor` over one grpc.aio channel; an async context manager that owns the channel."""

    role = "predictor"
    service_name = SERVICE_NAME

    def __init__(self, address: str, *, timeout_s: float, health_timeout_s: float = 2.0) -> None:
        super().__init__(address, timeout_s=timeout_s, health_timeout_s=health_timeout_s)
        self._stub: pb_grpc.PredictorServiceStub | None = None

    def _open(self, channel: grpc.aio.Channel) -> None:
        self._stub = pb_grpc.PredictorServiceStub(channel)

    def _close(self) -> None:
        self._stub = None

    @property
    def stub(self) -> pb_grpc.PredictorServiceStub:
        if self._stub is None:
            raise self._closed()
        return self._stub

    async def register_learner(
        self, ctx: RequestContext, learner_id: str, history: Sequence[Event] = ()
    ) -> Learner:
        request = pb.RegisterLearnerRequest(learner_id=learner_id, history=_events(history))
        response = await self._call(self.stub.RegisterLearner, request, ctx)
        return _learner(response.learner)

    async def get_learner(self, ctx: RequestContext, learner_id: str) -> Learner:
        request = pb.GetLearnerRequest(learner_id=learner_id)
        response = await self._call(self.stub.GetLearner, request, ctx)
        return _learner(response.learner)

    async def predict(self, ctx: RequestContext, learner_id: str, tasks: Sequence[str]) -> Predictions:
        request = pb.PredictRequest(learner_id=learner_id, tasks=tasks)
        response = await self._call(self.stub.Predict, request, ctx)
        return Predictions(
            learner_id=response.learner_id,
            history_len=response.history_len,
            probabilities=list(response.probabilities),
        )

    async def append_events(
        self,
        ctx: RequestContext,
        learner_id: str,
        events: Sequence[Event],
        expected_history_len: int | None = None,
    ) -> AppendResult:
        request = pb.AppendEventsRequest(
            learner_id=learner_id, events=_events(events), expected_history_len=expected_history_len
        )
        response = await self._call(self.stub.AppendEvents, request, ctx)
        return AppendResult(
            learner=_learner(response.learner), prior_probabilities=list(response.prior_probabilities)
        )

    async def forecast(
        self,
        ctx: RequestContext,
        learner_id: str,
        task_sequences: Sequence[Sequence[str]],
        feedback: Feedback = Feedback.EXPECTED,
        seed: int | None = None,
    ) -> Forecast:
        request = pb.ForecastRequest(
            learner_id=learner_id,
            task_sequences=[pb.TaskSequence(tasks=seq) for seq in task_sequences],
            feedback=_FEEDBACK_PB[feedback],
            seed=seed,
        )
        response = await self._call(self.stub.Forecast, request, ctx)
        return Forecast(
            learner_id=response.learner_id,
            predictions=[list(seq.probabilities) for seq in response.predictions],
        )

    async def delete_learner(self, ctx: RequestContext, learner_id: str) -> None:
        await self._call(self.stub.DeleteLearner, pb.DeleteLearnerRequest(learner_id=learner_id), ctx)

    async def list_tasks(self, ctx: RequestContext) -> list[str]:
        response = await self._call(self.stub.ListTasks, pb.ListTasksRequest(), ctx)
        return list(response.tasks)

    async def get_model_info(self, ctx: RequestContext) -> ModelInfo:
        r = await self._call(self.stub.GetModelInfo, pb.GetModelInfoRequest(), ctx)
        return ModelInfo(
            name=r.name,
            version=r.version,
            n_layer=r.n_layer,
            n_head=r.n_head,
            n_kv_head=r.n_kv_head,
            d_model=r.d_model,
            n_tasks=r.n_tasks,
            task_encoder=r.task_encoder,
            max_history_len=r.max_history_len,
            dtype=r.dtype,
            device=r.device,
            n_parameters=r.n_parameters,
            resident_learners=r.resident_learners,
        )
