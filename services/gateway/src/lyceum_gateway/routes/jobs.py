"""Native `/v1/jobs` routes: submit, list, read, follow (metrics history and Server-Sent Events), cancel and
resume training jobs.

The job repository is synchronous, so these are plain `def` routes, which FastAPI runs in its threadpool;
only the event stream is async, and it reads the database in worker threads.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from lyceum_core.errors import Code, InvalidArgument, LyceumError, NotFound
from lyceum_db.models.job import JobState
from lyceum_gateway import sse
from lyceum_gateway.deps import Context, Jobs, QuotaChecks, Registry, Store
from lyceum_gateway.errors import error_body
from lyceum_gateway.jobs import Ended, JobService, JobUpdate, MetricsPoint, ProgressChanged
from lyceum_gateway.routes import API_PREFIX
from lyceum_gateway.routes.datasets import Datasets
from lyceum_gateway.schemas.common import MAX_PAGE_SIZE, error_responses
from lyceum_gateway.schemas.jobs import (
    JobKindName,
    JobList,
    JobOut,
    MetricsHistory,
    MetricsPointOut,
    ProgressEvent,
    SubmitJobRequest,
)
from lyceum_jobs.configs import check_models, referenced_datasets, referenced_models
from lyceum_jobs.kinds import parse_config

log = logging.getLogger(__name__)

router = APIRouter(prefix=f"{API_PREFIX}/jobs", tags=["jobs"], responses=error_responses(401, 422))

KEEPALIVE_S = 15.0  # a comment at least this often keeps proxies from cutting an idle stream
RETRY_MS = 2000

JobIdPath = Annotated[str, Path(min_length=1, max_length=64, description="The job's id")]
AfterStep = Annotated[
    int | None, Query(ge=0, description="Only metrics reported at later steps", examples=[100])
]
ArtifactName = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description="A file named in the job's `result.artifacts.files`",
        examples=["compliance.png"],
    ),
]
LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        description="Sent by reconnecting SSE clients: the step of the last metrics event they received",
    ),
]

SSE_EXAMPLE = (
    'event: progress\ndata: {"job_id": "5d0c...", "state": "running", "attempt": 1, "progress": '
    '{"step": 120, "total": 300, "eta_s": 41.7}, ...}\n\n'
    'event: metrics\nid: 120\ndata: {"step": 120, "values": {"loss": 0.57}, "time": "2026-11-22T21:30:00Z"}'
    "\n\n"
    'event: end\ndata: {"job_id": "5d0c...", "state": "succeeded", ...}\n\n'
)
STREAM_DOC = (
    "`progress` (the job changed; once at the start), `metrics` (one per new metrics point; `id` is its "
    "step) and a final `end` (the whole terminal job), until the job ends or the client leaves; `error` (the "
    "error envelope) if the stream itself fails. Comments keep an idle stream open."
)
SSE_CONTENT = {sse.MEDIA_TYPE: {"schema": {"type": "string"}, "example": SSE_EXAMPLE}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Submit a training job",
    response_description="The job was created and enqueued",
    responses={
        200: {"model": JobOut, "description": "The idempotency key was seen before: the job it created"},
        **error_responses(400, 404, 409, 503),
    },
)
def submit_job(
    body: SubmitJobRequest,
    jobs: Jobs,
    ctx: Context,
    quotas: QuotaChecks,
    datasets: Datasets,
    registry: Registry,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key", min_length=1, max_length=128, description="Same as `idempotency_key`"
        ),
    ] = None,
) -> JobOut:
    """Validates the config (422 naming the field; 404 naming an uploaded dataset or registered model the
    tenant does not have; 400 for a model of the wrong kind or one the config cannot use, e.g. a gate signal
    for an LM without gates; no job is created), writes the job and then enqueues it.
    201 with the new job, or 200 with the earlier job when the idempotency key repeats (409 if its kind or
    config differ). 429 naming `max_jobs` when the tenant's queued and running jobs reach its quota (never
    for a repeated idempotency key: it creates nothing)."""
    config = body.validated_config()
    parsed = parse_config(body.kind, config)
    # Every uploaded dataset and registered model the config names must be the tenant's (404 naming it;
    # 400 for a model of the wrong kind, or one the config cannot use); no job is created otherwise.
    datasets.require(ctx.tenant, referenced_datasets(parsed))
    found = registry.require(ctx.tenant, referenced_models(parsed))
    check_models(parsed, {field: record.metadata for field, record in found.items()})
    if body.idempotency_key and idempotency_key and body.idempotency_key != idempotency_key:
        raise InvalidArgument(
            "the Idempotency-Key header and idempotency_key differ", field="idempotency_key"
        )
    key = body.idempotency_key or idempotency_key
    if key is None or jobs.find_submitted(ctx.tenant, key) is None:
        # A retry of an accepted submission gets its job (or 409) even at the quota: it adds no job.
        quotas.check_jobs(ctx.tenant)
    job, created = jobs.submit(ctx.tenant, body.kind, config, queue=body.queue, idempotency_key=key)
    response.headers["Location"] = f"{router.prefix}/{job.job_id}"
    if not created:
        response.status_code = status.HTTP_200_OK
    return JobOut.from_record(job)


@router.get("", summary="List jobs", responses=error_responses(400))
def list_jobs(
    jobs: Jobs,
    ctx: Context,
    state: Annotated[JobState | None, Query(description="Only jobs in this state")] = None,
    kind: Annotated[JobKindName | None, Query(description="Only jobs of this kind")] = None,  # type: ignore[valid-type]
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size")] = 50,
    before: Annotated[
        str | None, Query(min_length=1, max_length=64, description="`next_cursor` of the previous page")
    ] = None,
) -> JobList:
    """Jobs newest first, a page at a time; follow `next_cursor` until it is null."""
    page, cursor = jobs.page(ctx.tenant, state=state, kind=kind, limit=limit, before=before)
    return JobList(jobs=[JobOut.from_record(job) for job in page], next_cursor=cursor)


@router.get("/{job_id}", summary="Get a job", responses=error_responses(404))
def get_job(job_id: JobIdPath, jobs: Jobs, ctx: Context) -> JobOut:
    """The job's state, progress, latest metrics, and its error or result once it ended."""
    return JobOut.from_record(jobs.get(ctx.tenant, job_id))


@router.get(
    "/{job_id}/metrics",
    summary="A job's metrics history, or a live stream of it",
    response_model=MetricsHistory,
    responses={
        200: {
            "description": "The metrics history; with `Accept: text/event-stream`, an event stream: "
            + STREAM_DOC,
            "content": SSE_CONTENT,
        },
        **error_responses(404),
    },
)
def job_metrics(
    job_id: JobIdPath,
    jobs: Jobs,
    ctx: Context,
    request: Request,
    after_step: AfterStep = None,
    last_event_id: LastEventId = None,
) -> MetricsHistory | StreamingResponse:
    """Every metrics report the job made, ordered by step. With `Accept: text/event-stream`, the same as
    `/events`: the points so far, then new ones as they come, until the job ends."""
    if sse.accepts_event_stream(request.headers.get("accept", "")):
        return _stream(jobs, request, ctx.tenant, job_id, _resume_from(after_step, last_event_id))
    points = jobs.metrics(ctx.tenant, job_id, after_step)
    return MetricsHistory(job_id=job_id, points=[MetricsPointOut.from_domain(p) for p in points])


@router.get(
    "/{job_id}/events",
    summary="Follow a job (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={
        200: {"description": "An event stream: " + STREAM_DOC, "content": SSE_CONTENT},
        **error_responses(404),
    },
)
def job_events(
    job_id: JobIdPath,
    jobs: Jobs,
    ctx: Context,
    request: Request,
    after_step: AfterStep = None,
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    """A `text/event-stream` of the job's progress and metrics that ends with an `end` event carrying the
    terminal job; polls the database about twice a second."""
    return _stream(jobs, request, ctx.tenant, job_id, _resume_from(after_step, last_event_id))


@router.post("/{job_id}/cancel", summary="Cancel a job", responses=error_responses(404, 409))
def cancel_job(job_id: JobIdPath, jobs: Jobs, ctx: Context) -> JobOut:
    """A queued job is cancelled at once; a running one becomes `cancelling` until its worker checkpoints and
    stops. Cancelling a cancelled job changes nothing; a succeeded or failed one is 409."""
    return JobOut.from_record(jobs.cancel(ctx.tenant, job_id))


@router.post("/{job_id}/resume", summary="Resume a job", responses=error_responses(404, 409, 503))
def resume_job(job_id: JobIdPath, jobs: Jobs, ctx: Context) -> JobOut:
    """Queues a cancelled or failed job again; it continues from its last checkpoint. 409 in other states."""
    return JobOut.from_record(jobs.resume(ctx.tenant, job_id))


@router.get(
    "/{job_id}/artifacts/{name}",
    summary="Download a job's artifact",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}, "application/json": {}}, "description": "The file"},
        **error_responses(404),
    },
)
def job_artifact(job_id: JobIdPath, name: ArtifactName, jobs: Jobs, ctx: Context, store: Store) -> Response:
    """One file the job stored as an artifact (an evaluation's plots and `results.json`): only names its
    result lists; 404 for any other name, a job without artifacts, or another tenant's job."""
    artifacts = (jobs.get(ctx.tenant, job_id).result or {}).get("artifacts") or {}
    if name not in (artifacts.get("files") or []) or not artifacts.get("uri"):
        raise NotFound(f"job {job_id!r} has no artifact {name!r}", field="name")
    data = store.read_bytes(artifacts["uri"], name)
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    disposition = f'attachment; filename="{name}"'  # the name matched a pattern without quotes
    return Response(data, media_type=media_type, headers={"Content-Disposition": disposition})


# --- event streams ------------------------------------------------------------------------------------------


def _resume_from(after_step: int | None, last_event_id: str | None) -> int | None:
    """`after_step`, else the step a reconnecting EventSource last saw."""
    if after_step is None and last_event_id is not None and last_event_id.strip().isdigit():
        return int(last_event_id)
    return after_step


def _stream(
    jobs: JobService, request: Request, tenant: str, job_id: str, after_step: int | None
) -> StreamingResponse:
    jobs.get(tenant, job_id)  # an unknown job is a plain 404, before the stream starts
    return StreamingResponse(
        _event_stream(jobs, request, tenant, job_id, after_step),
        media_type=sse.MEDIA_TYPE,
        headers=sse.HEADERS,
    )


async def _event_stream(
    jobs: JobService, request: Request, tenant: str, job_id: str, after_step: int | None
) -> AsyncIterator[str]:
    yield sse.retry(RETRY_MS)
    last_write = time.monotonic()
    try:
        async with aclosing(jobs.watch(tenant, job_id, after_step=after_step)) as updates:
            async for update in updates:
                if await request.is_disconnected():
                    return
                if update is not None:
                    yield _render(update)
                elif time.monotonic() - last_write >= KEEPALIVE_S:
                    yield sse.comment("keep-alive")
                else:
                    continue
                last_write = time.monotonic()
    except LyceumError as err:
        yield sse.event("error", json.dumps(error_body(err.code.value, err.message, err.field)))
    except Exception:  # noqa: BLE001 - the status line is long sent; tell the client, then end the stream
        log.exception("event stream of job %s failed", job_id)
        yield sse.event("error", json.dumps(error_body(Code.INTERNAL.value, "internal error")))


def _render(update: JobUpdate) -> str:
    if isinstance(update, MetricsPoint):
        point = MetricsPointOut.from_domain(update)
        return sse.event("metrics", point.model_dump_json(), event_id=str(update.step))
    if isinstance(update, ProgressChanged):
        return sse.event("progress", ProgressEvent.from_record(update.job).model_dump_json())
    assert isinstance(update, Ended)
    return sse.event("end", JobOut.from_record(update.job).model_dump_json())
