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
from lyceum_core.errors import Code, Internal, InvalidArgument, LyceumError, error_for
from lyceum_core.grpc.errors import GRPC_CODE
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
    context_len: int  # events the model conditions on (the most recent ones once past its context)


@dataclass(frozen=True, slots=True)
class Predictions:
    """`probabilities[i]` is P(success on `tasks[i]`) given the first `history_len` events."""

    learner_id: str
    history_len: int
    probabilities: list[float]


@dataclass(frozen=True, slots=True)
class PredictItem:
    """One item of a batch prediction: a learner and its candidate tasks."""

    learner_id: str
    tasks: Sequence[str]


@dataclass(frozen=True, slots=True)
class ItemFailure:
    """The error one batch item met alone (the others are unaffected)."""

    learner_id: str
    error: LyceumError


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
class SearchSpec:
    """A curriculum search (DFM-Server v0.1's `/search`). A None option takes the predictor's default
    (population 64, 20 generations, 4 elites, tournaments of 2, crossover 0.8, mutation 0.05, scored after
    the last step only, a random seed); the predictor checks the ranges."""

    target_tasks: Sequence[str]
    candidate_tasks: Sequence[str]
    depth: int
    population_size: int | None = None
    generations: int | None = None
    elite_count: int | None = None
    tournament_size: int | None = None
    crossover_rate: float | None = None
    mutation_rate: float | None = None
    eval_every: int | None = None
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class CurriculumSearch:
    """The best task sequence found, its fitness, and per generation the best-so-far and mean fitness."""

    learner_id: str
    best_sequence: list[str]
    best_fitness: float
    best_fitness_curve: list[float]
    mean_fitness_curve: list[float]
    evaluations: int
    history_len: int


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
    context_policy: str  # "sliding_window" or "reject": what happens past the model's context
    context_window: int  # events the model conditions on at most


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

    async def predict_many(
        self, ctx: RequestContext, items: Sequence[PredictItem]
    ) -> list[Predictions | ItemFailure]:
        """`predict` for many learners: each item's predictions or its own error, in item order."""
        ...

    async def search_curriculum(
        self, ctx: RequestContext, learner_id: str, spec: SearchSpec
    ) -> CurriculumSearch: ...

    async def collect_garbage(self, ctx: RequestContext) -> int:
        """Frees what a replica can free without losing state; the accelerator bytes released."""
        ...

    async def health(self) -> bool:
        """True when a replica reports SERVING; never raises."""
        ...


_FEEDBACK_PB = {Feedback.EXPECTED: pb.FEEDBACK_MODE_EXPECTED, Feedback.SAMPLE: pb.FEEDBACK_MODE_SAMPLE}
_CODE_OF_GRPC = {status.value[0]: code for code, status in GRPC_CODE.items()}  # ItemError.code -> Code
_INT32_MAX = 2**31 - 1
_UINT64_END = 2**64


def _time(ts: timestamp_pb2.Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def _learner(msg: pb.Learner) -> Learner:
    return Learner(
        learner_id=msg.learner_id,
        history_len=msg.history_len,
        created_at=_time(msg.created_at),
        updated_at=_time(msg.updated_at),
        context_len=msg.context_len,
    )


def _predictions(msg: pb.PredictResponse) -> Predictions:
    return Predictions(
        learner_id=msg.learner_id, history_len=msg.history_len, probabilities=list(msg.probabilities)
    )


def _item_error(msg: pb.ItemError) -> LyceumError:
    return error_for(_CODE_OF_GRPC.get(msg.code, Code.INTERNAL), msg.message, field=msg.field or None)


def _int32(name: str, value: int | None, low: int = -(2**31)) -> int | None:
    """A value for an int32 field; out of range is the caller's error, not a crash in the encoder."""
    if value is not None and not low <= value <= _INT32_MAX:
        raise InvalidArgument(f"{name} must be in [{low}, {_INT32_MAX}], got {value}", field=name)
    return value


def _search_request(learner_id: str, spec: SearchSpec) -> pb.SearchCurriculumRequest:
    if spec.seed is not None and not 0 <= spec.seed < _UINT64_END:
        raise InvalidArgument(f"seed must be in [0, 2**64), got {spec.seed}", field="seed")
    return pb.SearchCurriculumRequest(
        learner_id=learner_id,
        target_tasks=spec.target_tasks,
        candidate_tasks=spec.candidate_tasks,
        depth=_int32("depth", spec.depth),
        population_size=_int32("population_size", spec.population_size),
        generations=_int32("generations", spec.generations),
        elite_count=_int32("elite_count", spec.elite_count),
        tournament_size=_int32("tournament_size", spec.tournament_size),
        crossover_rate=spec.crossover_rate,
        mutation_rate=spec.mutation_rate,
        eval_every=_int32("eval_every", spec.eval_every),
        seed=spec.seed,
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
        return _predictions(await self._call(self.stub.Predict, request, ctx))

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
            context_policy=r.context_policy,
            context_window=r.context_window,
        )

    async def predict_many(
        self, ctx: RequestContext, items: Sequence[PredictItem]
    ) -> list[Predictions | ItemFailure]:
        request = pb.PredictManyRequest(
            items=[pb.PredictManyItem(learner_id=item.learner_id, tasks=item.tasks) for item in items]
        )
        response = await self._call(self.stub.PredictMany, request, ctx)
        if len(response.results) != len(items):
            raise self._public(Internal(f"{len(response.results)} results for {len(items)} items"))
        out: list[Predictions | ItemFailure] = []
        for item, result in zip(items, response.results, strict=True):
            if result.WhichOneof("result") == "prediction":
                out.append(_predictions(result.prediction))
            else:
                out.append(ItemFailure(item.learner_id, self._public(_item_error(result.error))))
        return out

    async def search_curriculum(
        self, ctx: RequestContext, learner_id: str, spec: SearchSpec
    ) -> CurriculumSearch:
        request = _search_request(learner_id, spec)
        r = await self._call(self.stub.SearchCurriculum, request, ctx)
        return CurriculumSearch(
            learner_id=r.learner_id,
            best_sequence=list(r.best_sequence),
            best_fitness=r.best_fitness,
            best_fitness_curve=list(r.best_fitness_curve),
            mean_fitness_curve=list(r.mean_fitness_curve),
            evaluations=r.evaluations,
            history_len=r.history_len,
        )

    async def collect_garbage(self, ctx: RequestContext) -> int:
        response = await self._call(self.stub.CollectGarbage, pb.CollectGarbageRequest(), ctx)
        return response.freed_bytes
