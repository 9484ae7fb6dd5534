"""Native `/v1/feedback` routes: feedback on recorded completions, distilled into the tenant's adapters by
`sdpo` jobs (coalesced per adapter, one job at a time), and read back with its state.

Plain `def` routes: the feedback service is synchronous (FastAPI's threadpool)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status

from lyceum_db.models.feedback import FeedbackState
from lyceum_gateway.deps import Context
from lyceum_gateway.feedback import FeedbackService
from lyceum_gateway.routes import API_PREFIX
from lyceum_gateway.schemas.common import MAX_PAGE_SIZE, error_responses
from lyceum_gateway.schemas.feedback import FeedbackList, FeedbackOut, SubmitFeedbackRequest

PREFIX = f"{API_PREFIX}/feedback"
router = APIRouter(prefix=PREFIX, tags=["feedback"], responses=error_responses(401, 422))


async def get_feedback(request: Request) -> FeedbackService:
    """The feedback service of the app's lifespan (also used by the adapters routes and the /claas mount)."""
    return request.state.feedback


Feedback = Annotated[FeedbackService, Depends(get_feedback)]
FeedbackIdPath = Annotated[str, Path(min_length=1, max_length=64, description="The feedback item's id")]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Give feedback on a completion",
    response_description="Stored; it is trained into the adapter by a later (or an already started) job",
    responses=error_responses(400, 404, 409),
)
def submit_feedback(
    body: SubmitFeedbackRequest,
    feedback: Feedback,
    ctx: Context,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=128,
            description="Repeating a submission with the same key returns the first item (409 if the "
            "request differs)",
        ),
    ] = None,
) -> FeedbackOut:
    """Stores feedback on a completion the tenant recorded through the OpenAI-compatible API, for an adapter
    of the tenant's (default: the one that made the completion). Pending items of an adapter become one
    `sdpo` job once enough are pending or the oldest waited long enough (`POST /v1/adapters/{name}/distill`
    starts one now); the item's state then moves pending -> training -> applied | failed.

    404: an unknown, expired or another tenant's completion, or an unknown adapter. 400: empty feedback, no
    adapter (given, or on the completion), a public adapter (only your own adapters learn), or an adapter
    over another base model than the completion's."""
    record = feedback.submit(
        ctx.tenant,
        body.completion_id,
        body.feedback,
        adapter=body.adapter,
        training=body.training,
        idempotency_key=idempotency_key,
    )
    response.headers["Location"] = f"{PREFIX}/{record.feedback_id}"
    return FeedbackOut.from_record(record)


@router.get("", summary="List feedback", responses=error_responses(400))
def list_feedback(
    feedback: Feedback,
    ctx: Context,
    adapter: Annotated[str | None, Query(min_length=1, max_length=128, description="Of this adapter")] = None,
    state: Annotated[FeedbackState | None, Query(description="In this state")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="At most this many")] = 50,
) -> FeedbackList:
    """The tenant's feedback items, newest first."""
    records = feedback.list(ctx.tenant, adapter=adapter, state=state, limit=limit)
    return FeedbackList(feedback=[FeedbackOut.from_record(r) for r in records])


@router.get("/{feedback_id}", summary="Get a feedback item", responses=error_responses(400, 404))
def get_feedback_item(feedback_id: FeedbackIdPath, feedback: Feedback, ctx: Context) -> FeedbackOut:
    """The item's state, its job once one trains it, and the adapter version it was trained into."""
    return FeedbackOut.from_record(feedback.get(ctx.tenant, feedback_id))
