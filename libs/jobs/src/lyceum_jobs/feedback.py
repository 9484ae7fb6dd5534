"""The feedback dispatcher: coalesces an adapter's pending feedback into one `sdpo` job at a time.

Anything may offer an adapter (the gateway when feedback arrives, a worker when the adapter's job ended, the
reconciler's pass for items that waited long enough); the repository's slot makes sure that of all racing
dispatchers (gateway replicas, trainer workers) one starts the job and that every item is trained once. Jobs
are enqueued after their row committed; a lost message is re-sent by the trainer's reconciler, and a batch
whose end hook never ran (its worker died) is settled by the reconciler's pass (`tick`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from lyceum_core.errors import FailedPrecondition, NotFound
from lyceum_db.models.job import JobState
from lyceum_db.repositories._common import utcnow
from lyceum_db.repositories.feedback import Dispatched, FeedbackRepository, JobSpec
from lyceum_db.repositories.jobs import JobRecord, JobRepository
from lyceum_db.repositories.registry import ModelRepository, served_version
from lyceum_jobs.configs import MAX_FEEDBACK_PER_JOB, SDPOTrain
from lyceum_jobs.kinds import KINDS, parse_config

log = logging.getLogger(__name__)

SDPO = "sdpo"
ADAPTER_KIND = "adapter"
# The batch policy's defaults, defined once: the gateway's and the trainer's settings name them.
DEFAULT_BATCH_SIZE = 4
DEFAULT_MAX_WAIT_S = 30.0
DEFAULT_MAX_ITEMS = 16

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class FeedbackPolicy:
    """When an adapter's pending feedback becomes a job: as soon as `batch_size` items are pending, or once
    the oldest has waited `max_wait_s` (noticed by the next reconciler pass); a job takes at most `max_items`
    items (the rest wait for the next one)."""

    batch_size: int = DEFAULT_BATCH_SIZE
    max_wait_s: float = DEFAULT_MAX_WAIT_S
    max_items: int = DEFAULT_MAX_ITEMS

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.max_wait_s >= 0:
            raise ValueError(f"max_wait_s must be >= 0, got {self.max_wait_s}")
        if not 1 <= self.max_items <= MAX_FEEDBACK_PER_JOB:
            raise ValueError(f"max_items must be 1 to {MAX_FEEDBACK_PER_JOB}, got {self.max_items}")


def parent_version(models: ModelRepository, tenant: str, adapter: str) -> int:
    """The version of the tenant's adapter that feedback trains from: the one its name is served at (the
    `serving` alias, else `latest`). NotFound if the adapter has neither."""
    version = served_version(models.aliases(tenant, adapter))
    if version is None:
        raise NotFound(f"adapter {adapter!r} not found", field="adapter")
    return version


def training_overrides(train: SDPOTrain) -> dict[str, Any]:
    """The settings as a feedback item stores them: only those differing from the defaults, so that items
    asking for the same settings (`{}` and the defaults spelled out) train together."""
    return train.model_dump(mode="json", exclude_defaults=True)


def result_version(result: Mapping[str, Any] | None) -> int | None:
    """The adapter version an `sdpo` job registered (its result's first model), or None."""
    models = (result or {}).get("models") or []
    version = models[0].get("version") if models and isinstance(models[0], Mapping) else None
    return version if isinstance(version, int) else None


class Dispatcher:
    """Starts `sdpo` jobs for adapters with pending feedback and settles them when they end.

    `enqueue` sends the run message of a committed job; an error it raises is logged (the reconciler re-sends
    queued jobs whose message was lost). `clock` gives "now" (UTC) where a caller passes none."""

    def __init__(
        self,
        feedback: FeedbackRepository,
        jobs: JobRepository,
        models: ModelRepository,
        enqueue: Callable[[JobRecord], None],
        policy: FeedbackPolicy | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.feedback, self.jobs, self.models = feedback, jobs, models
        self.enqueue = enqueue
        self.policy = policy or FeedbackPolicy()
        self.clock = clock or utcnow

    @classmethod
    def from_engine(
        cls, engine: Engine, enqueue: Callable[[JobRecord], None], policy: FeedbackPolicy | None = None
    ) -> Dispatcher:
        """A dispatcher over the repositories of `engine`'s database."""
        repositories = FeedbackRepository(engine), JobRepository(engine), ModelRepository(engine)
        return cls(*repositories, enqueue, policy)

    def offer(self, tenant: str, adapter: str, now: datetime | None = None) -> Dispatched | None:
        """Dispatches the adapter's pending feedback if it is due (see FeedbackPolicy) and its slot is free;
        returns what it dispatched, else None."""
        now = now or self.clock()
        p = self.policy
        due = self.feedback.pending_adapters(now, p.batch_size, p.max_wait_s, tenant=tenant, adapter=adapter)
        if not due:
            return None
        return self._dispatch(tenant, adapter, now)

    def force(
        self,
        tenant: str,
        adapter: str,
        *,
        training: Mapping[str, Any] | None = None,
        feedback_ids: Sequence[str] | None = None,
        gate: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> Dispatched | None:
        """Dispatches the adapter's pending feedback now, due or not: the oldest item and those asking for its
        training settings, or (with `training`) any pending items trained with those; only those among
        `feedback_ids`, if given; judged by `gate` (GateSettings fields) instead of the default gate. None if
        nothing is pending; FailedPrecondition while a job of the adapter is queued or running (a slot left
        by a job that ended is settled first)."""
        now = now or self.clock()
        self._free_if_ended(tenant, adapter)
        dispatched = self._dispatch(
            tenant, adapter, now, training=training, feedback_ids=feedback_ids, gate=gate
        )
        if dispatched is None:
            holder = self.feedback.holder(tenant, adapter)
            if holder is not None:
                raise FailedPrecondition(
                    f"adapter {adapter!r} is being distilled already (job {holder}); try again when it ended",
                    field="adapter",
                )
        return dispatched

    def ended(self, job: JobRecord, state: JobState) -> None:
        """The runner's end hook: settles the batch of an `sdpo` job that reached `state`, then offers its
        adapter again (items that arrived while it trained may be due)."""
        if job.kind != SDPO:
            return
        final = self.jobs.get(job.tenant, job.job_id) or job  # `job` is as claimed: no result or error yet
        self.settle(final, state)
        adapter = final.config.get("adapter")
        if isinstance(adapter, str):
            self.offer(job.tenant, adapter)

    def settle(self, job: JobRecord, state: JobState | None = None) -> int:
        """Settles the batch of a job that ended (in `state`, default its own): applied with the version it
        registered, or failed with its error. Returns how many items moved."""
        state = JobState(state or job.state)
        version = result_version(job.result) if state == JobState.SUCCEEDED else None
        moved = self.feedback.settle(job.job_id, state, version=version, error=job.error)
        if moved:
            log.info("settled %d feedback item(s) of job %s: %s", moved, job.job_id, state.value)
        return moved

    def tick(self, now: datetime | None = None) -> int:
        """One reconciler pass: settles slots whose job ended unseen, then dispatches every due adapter.
        Returns how many jobs it started. A failure with one adapter is logged and the pass goes on."""
        now = now or self.clock()
        for slot in self.feedback.stale_slots():
            try:
                self._free(slot.tenant, slot.job_id)
            except Exception:  # noqa: BLE001 - one bad slot must not stall the others
                log.exception("could not settle the feedback of job %s", slot.job_id)
        started = 0
        p = self.policy
        for tenant, adapter in self.feedback.pending_adapters(now, p.batch_size, p.max_wait_s):
            try:
                started += self._dispatch(tenant, adapter, now) is not None
            except Exception:  # noqa: BLE001 - likewise for one adapter's dispatch
                log.exception("could not dispatch the feedback of %s/%s", tenant, adapter)
        return started

    def _free_if_ended(self, tenant: str, adapter: str) -> None:
        holder = self.feedback.holder(tenant, adapter)
        if holder is not None:
            job = self.jobs.get(tenant, holder)
            if job is None or job.state.terminal:
                self._free(tenant, holder)

    def settle_ended(self, tenant: str, job_ids: Iterable[str]) -> int:
        """Settles the batches of those of the tenant's `job_ids` that ended (or are gone) before their end
        hook ran: then no read shows an item training once its job shows it ended. Returns how many moved."""
        return sum(self._free(tenant, job_id) for job_id in set(job_ids))

    def _free(self, tenant: str, job_id: str) -> int:
        """Settles the batch of `job_id` if it ended or is gone; returns how many items moved."""
        job = self.jobs.get(tenant, job_id)
        if job is None:
            return self.feedback.settle(job_id, JobState.FAILED, error="the distillation job is gone")
        return self.settle(job) if job.state.terminal else 0

    def _dispatch(
        self,
        tenant: str,
        adapter: str,
        now: datetime,
        *,
        training: Mapping[str, Any] | None = None,
        feedback_ids: Sequence[str] | None = None,
        gate: Mapping[str, Any] | None = None,
    ) -> Dispatched | None:
        try:
            parent = parent_version(self.models, tenant, adapter)
        except NotFound:
            failed = self.feedback.fail_pending(tenant, adapter, f"adapter {adapter!r} no longer exists")
            log.warning("failed %d feedback item(s): adapter %s/%s is gone", failed, tenant, adapter)
            return None

        def job_spec(settings: dict[str, Any], feedback: list[str]) -> JobSpec:
            config = {"adapter": adapter, "parent": parent, "feedback": feedback, "train": settings}
            if gate:
                config["gate"] = dict(gate)
            parsed = parse_config(SDPO, config)
            return JobSpec(SDPO, parsed.model_dump(mode="json"), KINDS[SDPO].default_queue)

        dispatched = self.feedback.dispatch(
            tenant,
            adapter,
            job_spec,
            self.policy.max_items,
            now,
            training=training,
            feedback_ids=feedback_ids,
        )
        if dispatched is None:
            return None
        log.info(
            "dispatched %d feedback item(s) of %s/%s as job %s (from version %d)",
            len(dispatched.feedback_ids),
            tenant,
            adapter,
            dispatched.job.job_id,
            parent,
        )
        try:
            self.enqueue(dispatched.job)  # after the commit
        except Exception:  # noqa: BLE001 - the job row is the truth; the reconciler re-sends a lost message
            log.exception("could not enqueue feedback job %s; the reconciler will", dispatched.job.job_id)
        return dispatched
