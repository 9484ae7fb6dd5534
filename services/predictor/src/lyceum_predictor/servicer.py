"""The thin gRPC edge of the predictor: converts protos to plain values, runs the engine off the event loop
for the caller's tenant (the bound request context), converts results back. Errors are mapped by
lyceum_core's interceptor."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from lyceum_api.predictor.v1 import predictor_pb2 as pb
from lyceum_api.predictor.v1 import predictor_pb2_grpc
from lyceum_core.context import current_context
from lyceum_core.errors import InvalidArgument
from lyceum_ml.dfm.inference import Feedback
from lyceum_predictor.engine import Learner, PredictorEngine

T = TypeVar("T")
FEEDBACK = {
    pb.FEEDBACK_MODE_UNSPECIFIED: Feedback.EXPECTED,
    pb.FEEDBACK_MODE_EXPECTED: Feedback.EXPECTED,
    pb.FEEDBACK_MODE_SAMPLE: Feedback.SAMPLE,
}


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
    )


def _tenant() -> str:
    """The caller's tenant, from the request context the server's interceptor bound for this call."""
    return current_context().tenant


def _events(events: Any) -> list[tuple[str, float]]:
    return [(e.task, e.outcome) for e in events]


class PredictorServicer(predictor_pb2_grpc.PredictorServiceServicer):
    def __init__(self, engine: PredictorEngine, executor: ThreadPoolExecutor) -> None:
        self.engine = engine
        self.executor = executor

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs engine work on the executor, in the call's context (request context and route hint)."""
        call = contextvars.copy_context().run
        return await asyncio.get_running_loop().run_in_executor(self.executor, call, fn, *args)

    async def RegisterLearner(self, request: pb.RegisterLearnerRequest, context: grpc.aio.ServicerContext):
        learner = await self._run(
            self.engine.register, _tenant(), request.learner_id, _events(request.history)
        )
        return pb.RegisterLearnerResponse(learner=_learner(learner))

    async def GetLearner(self, request: pb.GetLearnerRequest, context: grpc.aio.ServicerContext):
        return pb.GetLearnerResponse(
            learner=_learner(await self._run(self.engine.get, _tenant(), request.learner_id))
        )

    async def Predict(self, request: pb.PredictRequest, context: grpc.aio.ServicerContext):
        probs, history_len = await self._run(
            self.engine.predict, _tenant(), request.learner_id, list(request.tasks)
        )
        return pb.PredictResponse(learner_id=request.learner_id, probabilities=probs, history_len=history_len)

    async def AppendEvents(self, request: pb.AppendEventsRequest, context: grpc.aio.ServicerContext):
        expected = request.expected_history_len if request.HasField("expected_history_len") else None
        learner, priors = await self._run(
            self.engine.append, _tenant(), request.learner_id, _events(request.events), expected
        )
        return pb.AppendEventsResponse(learner=_learner(learner), prior_probabilities=priors)

    async def Forecast(self, request: pb.ForecastRequest, context: grpc.aio.ServicerContext):
        sequences = [list(s.tasks) for s in request.task_sequences]
        if request.feedback not in FEEDBACK:
            raise InvalidArgument(f"unknown feedback mode {request.feedback}", field="feedback")
        probs = await self._run(
            self.engine.forecast,
            _tenant(),
            request.learner_id,
            sequences,
            FEEDBACK[request.feedback],
            request.seed,
        )
        return pb.ForecastResponse(
            learner_id=request.learner_id,
            predictions=[pb.ProbabilitySequence(probabilities=p) for p in probs],
        )

    async def DeleteLearner(self, request: pb.DeleteLearnerRequest, context: grpc.aio.ServicerContext):
        await self._run(self.engine.delete, _tenant(), request.learner_id)
        return pb.DeleteLearnerResponse(learner_id=request.learner_id)

    async def ListTasks(self, request: pb.ListTasksRequest, context: grpc.aio.ServicerContext):
        return pb.ListTasksResponse(tasks=self.engine.tasks())

    async def GetModelInfo(self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext):
        info = self.engine.info()
        return pb.GetModelInfoResponse(**vars(info), resident_learners=self.engine.caches.count(_tenant()))
