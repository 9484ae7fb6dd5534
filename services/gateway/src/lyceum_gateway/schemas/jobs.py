"""Bodies of the native `/v1/jobs` API and their conversions from the job repository's records."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lyceum_db.models.job import IDEMPOTENCY_KEY_MAX_LEN, JobState
from lyceum_db.repositories.jobs import JobRecord
from lyceum_gateway.jobs import MetricsPoint
from lyceum_jobs.kinds import KINDS, QUEUES

# Literal over the registered names: an unknown kind or queue is a 422 naming the field, and the OpenAPI
# document lists the accepted values.
JobKindName = Literal[tuple(KINDS)]  # type: ignore[valid-type]
QueueName = Literal[tuple(QUEUES)]  # type: ignore[valid-type]

_KIND_DOCS = "; ".join(f"`{k.name}`: {k.summary} (queue `{k.default_queue}`)" for k in KINDS.values())

DFM_EXAMPLE = {
    "kind": "dfm_pretrain",
    "config": {
        "dataset": {"format": "simulated", "n_learners": 500},
        "model": {"d_model": 64, "n_layer": 2},
        "train": {"steps": 300, "batch_size": 32, "lr": 0.003},
        "register_as": "dfm-demo",
    },
    "idempotency_key": "nightly-dfm-2026-11-22",
}
LM_EXAMPLE = {
    "kind": "lm_pretrain",
    "config": {"corpus": {"paths": ["data/corpus.txt"]}, "train": {"steps": 500, "seq_len": 128}},
    "queue": "gpu",
}


class SubmitJobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [DFM_EXAMPLE, LM_EXAMPLE]})

    kind: JobKindName = Field(description=f"The job kind. {_KIND_DOCS}.")  # type: ignore[valid-type]
    config: dict[str, Any] = Field(
        description="The kind's config; omitted fields take their defaults, unknown fields are refused "
        "(422 naming the field, e.g. `config.train.lr`)"
    )
    queue: QueueName | None = Field(  # type: ignore[valid-type]
        None, description="The queue to run on; defaults to the kind's queue"
    )
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX_LEN,
        description="Repeating a submission with the same key returns the first job (200) instead of "
        "creating another; the same key with a different kind or config is 409. Also accepted as the "
        "`Idempotency-Key` header.",
    )

    def validated_config(self) -> dict[str, Any]:
        """The config checked against its kind's model, before any job row exists. A bad config raises the
        same 422 as a bad body, with every offending field under `config.` (the first one in `field`)."""
        try:
            KINDS[self.kind].config.model_validate(self.config)
        except ValidationError as exc:
            errors = [{**error, "loc": ("body", "config", *error["loc"])} for error in exc.errors()]
            raise RequestValidationError(errors) from None
        return self.config


class JobProgress(BaseModel):
    """What the running worker last reported; every field is absent until it does. Extra keys pass through."""

    model_config = ConfigDict(extra="allow")

    step: int | None = Field(None, description="Optimizer steps done", examples=[120])
    total: int | None = Field(None, description="Optimizer steps in the whole run", examples=[300])
    throughput: float | None = Field(None, description="Training throughput", examples=[15234.5])
    throughput_unit: str | None = Field(None, description="Unit of `throughput`", examples=["events/s"])
    phase: str | None = Field(
        None,
        description="The part of a multi-phase run the step is in: a distilled dfm_pretrain job's `teacher` "
        "(its DKT), then `student` (the DFM); absent for a one-phase run",
        examples=["teacher"],
    )
    eta_s: float | None = Field(
        None,
        description="Estimated seconds to the end of the run at the current phase's step rate (a distilled "
        "DFM's teacher steps are faster than its student's: the teacher phase's estimate runs low)",
        examples=[41.7],
    )
    last_checkpoint: int | None = Field(None, description="Step of the latest checkpoint", examples=[100])
    loss: float | None = Field(None, description="Latest training loss (the phase's)", examples=[0.571])


class JobOut(BaseModel):
    job_id: str = Field(examples=["5d0c6a2e8f1b4c7a9e3d2b1a0f9e8d7c"])
    kind: str = Field(examples=["dfm_pretrain"])
    queue: str = Field(examples=["gpu"])
    state: JobState = Field(
        description="queued -> running -> succeeded | failed; a cancel goes through cancelling -> cancelled",
        examples=["running"],
    )
    attempt: int = Field(description="How many times a worker has claimed the job", examples=[1])
    config: dict[str, Any] = Field(description="The validated config, defaults filled in")
    progress: JobProgress
    metrics: dict[str, Any] = Field(
        description="The latest evaluation metrics", examples=[{"auc": 0.78, "bce": 0.55}]
    )
    error: str | None = Field(None, description="Why the job failed", examples=[None])
    result: dict[str, Any] | None = Field(
        None,
        description="What a succeeded job produced",
        examples=[{"model": {"name": "dfm-demo", "version": 3, "uri": "var/registry/models/dfm-demo/..."}}],
    )
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime

    @classmethod
    def from_record(cls, job: JobRecord) -> JobOut:
        return cls(
            job_id=job.job_id,
            kind=job.kind,
            queue=job.queue,
            state=job.state,
            attempt=job.attempt,
            config=job.config,
            progress=JobProgress.model_validate(job.progress),
            metrics=job.metrics,
            error=job.error,
            result=job.result,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            updated_at=job.updated_at,
        )


class JobList(BaseModel):
    jobs: list[JobOut] = Field(description="Newest first")
    next_cursor: str | None = Field(
        None, description="Pass as `before` for the next page; null on the last page", examples=[None]
    )


class MetricsPointOut(BaseModel):
    step: int = Field(examples=[200])
    values: dict[str, Any] = Field(examples=[{"loss": 0.57, "throughput": 15234.5}])
    time: datetime = Field(description="When the worker reported it")

    @classmethod
    def from_domain(cls, point: MetricsPoint) -> MetricsPointOut:
        return cls(step=point.step, values=point.values, time=point.time)


class MetricsHistory(BaseModel):
    job_id: str
    points: list[MetricsPointOut] = Field(description="Ordered by step, then by report order")


class ProgressEvent(BaseModel):
    """The data of an `event: progress` in a job's event stream."""

    job_id: str
    state: JobState
    attempt: int
    progress: JobProgress
    metrics: dict[str, Any]
    updated_at: datetime

    @classmethod
    def from_record(cls, job: JobRecord) -> ProgressEvent:
        return cls(
            job_id=job.job_id,
            state=job.state,
            attempt=job.attempt,
            progress=JobProgress.model_validate(job.progress),
            metrics=job.metrics,
            updated_at=job.updated_at,
        )
