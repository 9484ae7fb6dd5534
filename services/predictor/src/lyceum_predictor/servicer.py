"""The thin gRPC edge of the predictor: converts protos to plain values, runs the engine off the event loop
for the caller's tenant (the bound request context), converts results back. Errors are mapped by
lyceum_core's interceptor."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from lyceum_api.predictor.v1 import predictor_pb2 as pb
from lyceum_api.predictor.v1 import predictor_pb2_grpc
from lyceum_core.context import current_context
from lyceum_core.errors import InvalidArgument, LyceumError
from lyceum_core.grpc.errors import GRPC_CODE
from lyceum_ml.dfm.inference import Feedback
from lyceum_predictor.engine import Learner, PredictorEngine
from lyceum_predictor.search import SearchRequest

T = TypeVar("T")
FEEDBACK = {
    pb.FEEDBACK_MODE_UNSPECIFIED: Feedback.EXPECTED,
    pb.FEEDBACK_MODE_EXPECTED: Feedback.EXPECTED,
    pb.FEEDBACK_MODE_SAMPLE: Feedback.SAMPLE,
}
# SearchCurriculumRequest's optional fields: unset ones keep SearchRequest's defaults (v0.1's).
SEARCH_OPTIONS = (
    "population_size",
    "generations",
    "elite_count",
    "tournament_size",
    "crossover_rate",
    "mutation_rate",
    "eval_every",
    "seed",
)


def _timestamp(dt: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(dt)
    return ts


def _learner(learner: Learner) -> pb.Learner:
    return pb.Learner(
        learner_id=learner.learner_id,
        history_len=learner.history_len,
        created_at=_timestamp(learner.created_at),
        updated_at=_timestamp(learner.updated_at),
        context_len=learner.context_len,
    )


def _item_result(learner_id: str, result: tuple[list[float], int] | LyceumError) -> pb.PredictManyResult:
    """One PredictMany item's answer: its predictions, or the error it alone met (its canonical gRPC code)."""
    if isinstance(result, LyceumError):
        code = GRPC_CODE[result.code].value[0]
        return pb.PredictManyResult(
            error=pb.ItemError(code=code, message=result.message, field=result.field or "")
        )
    probs, history_len = result
    return pb.PredictManyResult(
        prediction=pb.PredictResponse(learner_id=learner_id, probabilities=probs, history_len=history_len)
    )


async def _settled(item: Future | LyceumError) -> Any:
    """A batched call's result, or the error it alone met."""
    if isinstance(item, LyceumError):
        return item
    try:
        return await asyncio.wrap_future(item)
    except LyceumError as err:
        return err


def _search_request(request: pb.SearchCurriculumRequest) -> SearchRequest:
    options = {name: getattr(request, name) for name in SEARCH_OPTIONS if request.HasField(name)}
    return SearchRequest(
        target_tasks=list(request.target_tasks),
        candidate_tasks=list(request.candidate_tasks),
        depth=request.depth,
        **options,
    )


def _tenant() -> str:
    """The caller's tenant, from the request context the server's interceptor bound for this call."""
    return current_context().tenant


def _events(events: Any) -> list[tuple[str, float]]:
    return [(e.task, e.outcome) for e in events]


class PredictorServicer(predictor_pb2_grpc.PredictorServiceServicer):
    def __init__(
        self, engine: PredictorEngine, executor: ThreadPoolExecutor, rollouts: ThreadPoolExecutor
    ) -> None:
        self.engine = engine
        self.executor, self.rollouts = executor, rollouts

    async def _run(self, fn: Callable[..., T], *args: Any, pool: ThreadPoolExecutor | None = None) -> T:
        """Runs engine work on a thread pool (the executor, or `pool`), in the call's context (request
        context and route hint)."""
        call = contextvars.copy_context().run
        return await asyncio.get_running_loop().run_in_executor(pool or self.executor, call, fn, *args)

    @staticmethod
    async def _batched(future: Future) -> Any:
        """Awaits a call queued to the engine's batcher (no thread waits for it)."""
        return await asyncio.wrap_future(future)

    async def RegisterLearner(self, request: pb.RegisterLearnerRequest, context: grpc.aio.ServicerContext):
        learner = await self._batched(
            self.engine.submit_register(_tenant(), request.learner_id, _events(request.history))
        )
        return pb.RegisterLearnerResponse(learner=_learner(learner))

    async def GetLearner(self, request: pb.GetLearnerRequest, context: grpc.aio.ServicerContext):
        return pb.GetLearnerResponse(
            learner=_learner(await self._run(self.engine.get, _tenant(), request.learner_id))
        )

    async def Predict(self, request: pb.PredictRequest, context: grpc.aio.ServicerContext):
        probs, history_len = await self._batched(
            self.engine.submit_predict(_tenant(), request.learner_id, list(request.tasks))
        )
        return pb.PredictResponse(learner_id=request.learner_id, probabilities=probs, history_len=history_len)

    async def AppendEvents(self, request: pb.AppendEventsRequest, context: grpc.aio.ServicerContext):
        expected = request.expected_history_len if request.HasField("expected_history_len") else None
        learner, priors = await self._batched(
            self.engine.submit_append(_tenant(), request.learner_id, _events(request.events), expected)
        )
        return pb.AppendEventsResponse(learner=_learner(learner), prior_probabilities=priors)

    async def Forecast(self, request: pb.ForecastRequest, context: grpc.aio.ServicerContext):
        sequences = [list(s.tasks) for s in request.task_sequences]
        if request.feedback not in FEEDBACK:
            raise InvalidArgument(f"unknown feedback mode {request.feedback}", field="feedback")
        plan = self.engine.plan_forecast(sequences)
        snap = await self._batched(self.engine.submit_read(_tenant(), request.learner_id))
        probs = await self._run(
            self.engine.roll_out, plan, snap, FEEDBACK[request.feedback], request.seed, pool=self.rollouts
        )
        return pb.ForecastResponse(
            learner_id=request.learner_id,
            predictions=[pb.ProbabilitySequence(probabilities=p) for p in probs],
        )

    async def DeleteLearner(self, request: pb.DeleteLearnerRequest, context: grpc.aio.ServicerContext):
        await self._batched(self.engine.submit_delete(_tenant(), request.learner_id))
        return pb.DeleteLearnerResponse(learner_id=request.learner_id)

    async def ListTasks(self, request: pb.ListTasksRequest, context: grpc.aio.ServicerContext):
        return pb.ListTasksResponse(tasks=self.engine.tasks())

    async def GetModelInfo(self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext):
        info = self.engine.info()
        return pb.GetModelInfoResponse(**vars(info), resident_learners=self.engine.caches.count(_tenant()))

    async def PredictMany(self, request: pb.PredictManyRequest, context: grpc.aio.ServicerContext):
        items = [(item.learner_id, list(item.tasks)) for item in request.items]
        results = [await _settled(f) for f in self.engine.submit_predict_many(_tenant(), items)]
        return pb.PredictManyResponse(
            results=[_item_result(learner_id, r) for (learner_id, _), r in zip(items, results, strict=True)]
        )

    async def SearchCurriculum(self, request: pb.SearchCurriculumRequest, context: grpc.aio.ServicerContext):
        search = _search_request(request)
        snap = await self._batched(self.engine.submit_read(_tenant(), request.learner_id))
        result = await self._run(self.engine.search_from, snap, search, pool=self.rollouts)
        return pb.SearchCurriculumResponse(
            learner_id=request.learner_id,
            best_sequence=result.best_sequence,
            best_fitness=result.best_fitness,
            best_fitness_curve=result.best_fitness_curve,
            mean_fitness_curve=result.mean_fitness_curve,
            evaluations=result.evaluations,
            history_len=result.history_len,
        )

    async def CollectGarbage(self, request: pb.CollectGarbageRequest, context: grpc.aio.ServicerContext):
        return pb.CollectGarbageResponse(freed_bytes=await self._run(self.engine.collect_garbage))
