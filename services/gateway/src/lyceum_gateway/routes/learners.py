"""Native `/v1/learners` routes: register, read, delete, append events, predict, forecast and search
curricula."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from lyceum_gateway.deps import Context, LearnerIdPath, Predictors, QuotaChecks, RequestLimits
from lyceum_gateway.routes import API_PREFIX
from lyceum_gateway.schemas.common import error_responses
from lyceum_gateway.schemas.learners import (
    AppendEventsRequest,
    AppendEventsResponse,
    CurriculumSearchRequest,
    CurriculumSearchResponse,
    ForecastRequest,
    ForecastResponse,
    LearnerOut,
    PredictRequest,
    PredictResponse,
    RegisterLearnerRequest,
)

router = APIRouter(
    prefix=f"{API_PREFIX}/learners", tags=["learners"], responses=error_responses(401, 422, 503)
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register a learner",
    responses=error_responses(400, 409),
)
async def register_learner(
    body: RegisterLearnerRequest,
    ctx: Context,
    predictors: Predictors,
    limits: RequestLimits,
    quotas: QuotaChecks,
    response: Response,
) -> LearnerOut:
    """Creates a learner, optionally with a prior history (409 if the id is taken; 429 naming
    `max_learners` when the tenant has its quota of learners)."""
    limits.learner_id(body.learner_id)
    limits.events(body.history, "history")
    await quotas.check_learners(ctx.tenant)
    history = [e.to_domain() for e in body.history]
    learner = await predictors.for_learner(ctx, body.learner_id).register_learner(
        ctx, body.learner_id, history
    )
    response.headers["Location"] = f"{router.prefix}/{learner.learner_id}"
    return LearnerOut.from_domain(learner)


@router.get("/{learner_id}", summary="Get a learner", responses=error_responses(404))
async def get_learner(learner_id: LearnerIdPath, ctx: Context, predictors: Predictors) -> LearnerOut:
    """The learner's history length and timestamps."""
    return LearnerOut.from_domain(await predictors.for_learner(ctx, learner_id).get_learner(ctx, learner_id))


@router.delete(
    "/{learner_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a learner",
    responses=error_responses(404),
)
async def delete_learner(learner_id: LearnerIdPath, ctx: Context, predictors: Predictors) -> Response:
    """Deletes the learner, its history and its cache."""
    await predictors.for_learner(ctx, learner_id).delete_learner(ctx, learner_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{learner_id}/events",
    summary="Append events to a learner's history",
    responses=error_responses(400, 404, 409),
)
async def append_events(
    learner_id: LearnerIdPath,
    body: AppendEventsRequest,
    ctx: Context,
    predictors: Predictors,
    limits: RequestLimits,
) -> AppendEventsResponse:
    """Appends events (durably) and returns what the model predicted for each just before its outcome."""
    limits.events(body.events)
    result = await predictors.for_learner(ctx, learner_id).append_events(
        ctx, learner_id, [e.to_domain() for e in body.events], body.expected_history_len
    )
    return AppendEventsResponse.from_domain(result)


@router.post(
    "/{learner_id}/predictions",
    summary="Predict success on candidate tasks",
    responses=error_responses(400, 404),
)
async def predict(
    learner_id: LearnerIdPath,
    body: PredictRequest,
    ctx: Context,
    predictors: Predictors,
    limits: RequestLimits,
) -> PredictResponse:
    """P(success) on each task, each conditioned only on the committed history; changes nothing."""
    limits.tasks(body.tasks)
    result = await predictors.for_learner(ctx, learner_id).predict(ctx, learner_id, body.tasks)
    return PredictResponse.from_domain(body.tasks, result)


@router.post(
    "/{learner_id}/forecasts",
    summary="Forecast task sequences",
    responses=error_responses(400, 404),
)
async def forecast(
    learner_id: LearnerIdPath,
    body: ForecastRequest,
    ctx: Context,
    predictors: Predictors,
    limits: RequestLimits,
) -> ForecastResponse:
    """Rolls each task sequence out from the learner's state, feeding predictions back; changes nothing."""
    limits.forecast(body.task_sequences)
    result = await predictors.for_learner(ctx, learner_id).forecast(
        ctx, learner_id, body.task_sequences, body.feedback, body.seed
    )
    return ForecastResponse(
        learner_id=result.learner_id, feedback=body.feedback, predictions=result.predictions
    )


@router.post(
    "/{learner_id}/curricula:search",
    summary="Search a curriculum",
    responses=error_responses(400, 404),
)
async def search_curriculum(
    learner_id: LearnerIdPath,
    body: CurriculumSearchRequest,
    ctx: Context,
    predictors: Predictors,
    limits: RequestLimits,
) -> CurriculumSearchResponse:
    """The `depth`-task sequence of candidate tasks that most raises the predicted success on the target
    tasks (DFM-Server v0.1's genetic algorithm, scored by forecasts with expected feedback), with the
    fitness per generation; the same request with a `seed` gives the same answer. Changes nothing."""
    limits.tasks(body.target_tasks, "target_tasks")
    limits.tasks(body.candidate_tasks, "candidate_tasks")
    result = await predictors.for_learner(ctx, learner_id).search_curriculum(
        ctx, learner_id, body.to_domain()
    )
    return CurriculumSearchResponse.from_domain(result)
