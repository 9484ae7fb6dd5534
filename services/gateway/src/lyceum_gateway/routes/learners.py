"""Native `/v1/learners` routes: register, list, read (with the history), delete, append events, predict,
forecast and search curricula.

Listing learners and reading a history read the database (plain `def` routes: the repository is synchronous,
FastAPI runs them in its threadpool); everything else goes through the learner's predictor."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from lyceum_core.identity import LEARNER_ID_MAX_LEN
from lyceum_db.repositories.learners import EVENTS_MAX_LIMIT, LearnerRepository
from lyceum_gateway.deps import (
    Context,
    DatabaseEngine,
    LearnerIdPath,
    Predictors,
    QuotaChecks,
    RequestLimits,
)
from lyceum_gateway.routes import API_PREFIX
from lyceum_gateway.schemas.common import LEARNER_ID_PATTERN, MAX_PAGE_SIZE, error_responses
from lyceum_gateway.schemas.learners import (
    AppendEventsRequest,
    AppendEventsResponse,
    CurriculumSearchRequest,
    CurriculumSearchResponse,
    EventOut,
    ForecastRequest,
    ForecastResponse,
    LearnerEvents,
    LearnerList,
    LearnerOut,
    LearnerSummary,
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


async def get_learner_repository(engine: DatabaseEngine) -> LearnerRepository:
    """The learner tables, read directly for what no predictor answers (lists, histories)."""
    return LearnerRepository(engine)


Learners = Annotated[LearnerRepository, Depends(get_learner_repository)]
MAX_SEQ = 2**31 - 1  # an event's position is a 32-bit integer column


@router.get("", summary="List learners")
def list_learners(
    ctx: Context,
    learners: Learners,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size")] = 50,
    after: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=LEARNER_ID_MAX_LEN,
            pattern=LEARNER_ID_PATTERN,
            description="`next_cursor` of the previous page",
        ),
    ] = None,
    prefix: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=LEARNER_ID_MAX_LEN,
            pattern=LEARNER_ID_PATTERN,
            description="Only learners whose id starts with this (case-sensitive)",
        ),
    ] = None,
) -> LearnerList:
    """The tenant's learners in learner id order, a page at a time; follow `next_cursor` until it is null.
    Never another tenant's."""
    # One more than asked tells whether another page follows (as jobs' pages do).
    page = learners.list(ctx.tenant, limit=limit + 1, after=after, prefix=prefix)
    more = len(page) > limit
    return LearnerList(
        learners=[LearnerSummary.from_record(r) for r in page[:limit]],
        next_cursor=page[limit - 1].learner_id if more else None,
    )


@router.get("/{learner_id}", summary="Get a learner", responses=error_responses(404))
async def get_learner(learner_id: LearnerIdPath, ctx: Context, predictors: Predictors) -> LearnerOut:
    """The learner's history length and timestamps."""
    return LearnerOut.from_domain(await predictors.for_learner(ctx, learner_id).get_learner(ctx, learner_id))


@router.get("/{learner_id}/events", summary="Read a learner's history", responses=error_responses(400, 404))
def list_events(
    learner_id: LearnerIdPath,
    ctx: Context,
    learners: Learners,
    start: Annotated[int, Query(ge=0, le=MAX_SEQ, description="From this event on (0: the first)")] = 0,
    limit: Annotated[int, Query(ge=1, le=EVENTS_MAX_LIMIT, description="At most this many events")] = 1000,
) -> LearnerEvents:
    """The learner's committed events (task, outcome), oldest first, a page at a time: follow `next_start`
    until it is null. Another tenant's learner answers 404, like a missing one."""
    record, events = learners.events(ctx.tenant, learner_id, start=start, limit=limit)
    end = events[-1].seq + 1 if events else start
    return LearnerEvents(
        learner_id=record.learner_id,
        history_len=record.history_len,
        events=[EventOut.from_record(e) for e in events],
        next_start=end if end < record.history_len else None,
    )


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
