"""Feedback items and the per-adapter distillation slot.

An item is created pending; `dispatch` moves a batch of one adapter's pending items to training together with
the job row that trains them, in one transaction that first takes the adapter's slot (a conditional UPDATE:
of racing dispatchers exactly one wins, on PostgreSQL and SQLite alike), so an adapter never has two jobs and
an item is never in two. `settle` ends the batch when its job ended (applied or failed) and frees the slot.

Caller-facing reads take the tenant first and see only its items; dispatcher-side methods (settle, the due and
stale queries) address jobs and adapters across tenants, as the job repository's worker-side methods do.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, and_, func, insert, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from lyceum_core.errors import Aborted, InvalidArgument
from lyceum_core.identity import (
    check_completion_id,
    check_model_name,
    check_tenant_id,
    new_feedback_id,
)
from lyceum_db.models.base import UTCDateTime
from lyceum_db.models.feedback import FEEDBACK_TEXT_MAX_LEN, AdapterDistillation, Feedback, FeedbackState
from lyceum_db.models.job import IDEMPOTENCY_KEY_MAX_LEN, TERMINAL, Job, JobState
from lyceum_db.repositories._common import check_str, json_object, reader, utcnow
from lyceum_db.repositories.job_rows import JobRecord, insert_job, new_job_id

Clock = Callable[[], datetime]

LIST_MAX_LIMIT = 1000
# How many of an adapter's oldest pending items one dispatch looks at to pick its batch (those asking for the
# oldest one's training settings): a bound on the read, far above any batch.
SCAN_LIMIT = 1024
_TERMINAL = [state.value for state in TERMINAL]
_COLUMNS = tuple(Feedback.__table__.c)

__all__ = [
    "Dispatched",
    "FeedbackRecord",
    "FeedbackRepository",
    "FeedbackState",
    "JobSpec",
    "NewFeedback",
    "Slot",
    "check_feedback_text",
]


@dataclass(frozen=True, slots=True)
class NewFeedback:
    """What a caller submits: feedback `text` on its completion for its adapter `adapter` (a name), with the
    SDPO `training` overrides it asks for ({} = the defaults)."""

    tenant: str
    completion_id: str
    adapter: str
    text: str
    training: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    """A feedback item's row. `job_id` is the job that took it (from training on), `version` the adapter
    version that job registered (once applied), `error` why it failed. Timestamps are timezone-aware UTC."""

    tenant: str
    feedback_id: str
    completion_id: str
    adapter: str
    version: int | None
    text: str
    training: dict[str, Any]
    state: FeedbackState
    job_id: str | None
    error: str | None
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class JobSpec:
    """The job a dispatch writes: its kind, config (as stored) and queue."""

    kind: str
    config: dict[str, Any]
    queue: str


# Builds the job of a batch from (the training overrides it runs with, the ids of its items, oldest first).
JobFactory = Callable[[dict[str, Any], list[str]], JobSpec]


@dataclass(frozen=True, slots=True)
class Dispatched:
    """A batch that went to training: its job (committed, to be enqueued) and its items, oldest first."""

    job: JobRecord
    feedback_ids: list[str]


@dataclass(frozen=True, slots=True)
class Slot:
    """An adapter's taken distillation slot: the job holding it and since when."""

    tenant: str
    adapter: str
    job_id: str
    since: datetime | None


class FeedbackRepository:
    """Feedback persistence. Every write is one short transaction, committed when the method returns; `clock`
    (default: the system clock, UTC) stamps created_at / updated_at."""

    def __init__(self, engine: Engine, *, clock: Clock | None = None) -> None:
        self._engine = engine
        self._clock = clock or utcnow
        self._reader = reader(engine)

    # --- the caller's side ---------------------------------------------------------------------------------

    def create(self, rec: NewFeedback, idempotency_key: str | None = None) -> tuple[FeedbackRecord, bool]:
        """Stores a pending item; returns it and True. An `idempotency_key` the tenant used before returns
        the item it made and False (the caller decides whether the requests were the same)."""
        row = _row(rec)
        if idempotency_key is not None:
            check_str(idempotency_key, "idempotency_key", IDEMPOTENCY_KEY_MAX_LEN)
            existing = self.find_by_idempotency_key(rec.tenant, idempotency_key)
            if existing is not None:
                return existing, False
        now = self._clock()
        stmt = (
            insert(Feedback)
            .values(
                **row,
                feedback_id=new_feedback_id(),
                state=FeedbackState.PENDING.value,
                idempotency_key=idempotency_key,
                created_at=now,
                updated_at=now,
            )
            .returning(*_COLUMNS)
        )
        try:
            with self._engine.begin() as conn:
                created = conn.execute(stmt).one()
        except IntegrityError:
            # Only the idempotency key can collide (a uuid4 does not): a concurrent create with it won.
            existing = (
                self.find_by_idempotency_key(rec.tenant, idempotency_key)
                if idempotency_key is not None
                else None
            )
            if existing is None:
                raise
            return existing, False
        return _record(created), True

    def get(self, tenant: str, feedback_id: str) -> FeedbackRecord | None:
        """The tenant's item, or None (also for another tenant's)."""
        with self._reader.connect() as conn:
            row = conn.execute(
                select(*_COLUMNS).where(Feedback.tenant == tenant, Feedback.feedback_id == feedback_id)
            ).one_or_none()
        return None if row is None else _record(row)

    def get_many(self, tenant: str, feedback_ids: Sequence[str]) -> builtins.list[FeedbackRecord]:
        """The tenant's items among `feedback_ids`, in that order; missing ones are left out."""
        ids = list(dict.fromkeys(feedback_ids))
        if not ids:
            return []
        stmt = select(*_COLUMNS).where(Feedback.tenant == tenant, Feedback.feedback_id.in_(ids))
        with self._reader.connect() as conn:
            found = {row.feedback_id: _record(row) for row in conn.execute(stmt)}
        return [found[i] for i in ids if i in found]

    def find_by_idempotency_key(self, tenant: str, idempotency_key: str) -> FeedbackRecord | None:
        """The item of `tenant` a create with `idempotency_key` made, or None."""
        stmt = select(*_COLUMNS).where(Feedback.tenant == tenant, Feedback.idempotency_key == idempotency_key)
        with self._reader.connect() as conn:
            row = conn.execute(stmt).one_or_none()
        return None if row is None else _record(row)

    def list(
        self,
        tenant: str,
        adapter: str | None = None,
        state: FeedbackState | str | None = None,
        limit: int = 50,
    ) -> builtins.list[FeedbackRecord]:
        """Up to `limit` of the tenant's items (of one adapter, in one state), newest first."""
        if not 1 <= limit <= LIST_MAX_LIMIT:
            raise InvalidArgument(f"limit must be 1 to {LIST_MAX_LIMIT}, got {limit}", field="limit")
        stmt = (
            select(*_COLUMNS)
            .where(Feedback.tenant == tenant)
            .order_by(Feedback.created_at.desc(), Feedback.feedback_id.desc())
            .limit(limit)
        )
        if adapter is not None:
            stmt = stmt.where(Feedback.adapter == adapter)
        if state is not None:
            stmt = stmt.where(Feedback.state == _state(state).value)
        with self._reader.connect() as conn:
            return [_record(row) for row in conn.execute(stmt)]

    # --- the dispatcher's side -----------------------------------------------------------------------------

    def dispatch(
        self,
        tenant: str,
        adapter: str,
        job_factory: JobFactory,
        max_items: int,
        now: datetime,
        *,
        training: Mapping[str, Any] | None = None,
        feedback_ids: Sequence[str] | None = None,
    ) -> Dispatched | None:
        """In one transaction: takes the adapter's slot, picks its oldest pending items (only those among
        `feedback_ids`, if given) that ask for the oldest one's training settings, up to `max_items`, writes
        the job `job_factory` makes for them, and moves them to training with it. With `training`, the items
        are picked whatever they asked for and the job runs with `training`.

        None, writing nothing, if the slot is taken (a job of the adapter runs, or a racing dispatcher won)
        or nothing is pending. An exception of `job_factory` rolls everything back."""
        if max_items < 1:
            raise InvalidArgument(f"max_items must be >= 1, got {max_items}", field="max_items")
        job_id = new_job_id()
        with self._engine.connect() as conn, conn.begin() as tx:
            # The first statement writes, so SQLite takes its write lock here (a later read -> write upgrade
            # could fail at once in WAL mode instead of waiting).
            _ensure_slot(conn, tenant, adapter)
            taken = conn.execute(
                update(AdapterDistillation)
                .where(
                    AdapterDistillation.tenant == tenant,
                    AdapterDistillation.adapter == adapter,
                    AdapterDistillation.job_id.is_(None),
                )
                .values(job_id=job_id, since=now)
            ).rowcount
            if taken != 1:
                tx.rollback()
                return None
            batch, settings = _pick(conn, tenant, adapter, max_items, training, feedback_ids)
            if not batch:
                tx.rollback()
                return None
            spec = job_factory(settings, batch)
            job = insert_job(conn, tenant, spec.kind, spec.config, spec.queue, now, job_id=job_id)
            moved = conn.execute(
                update(Feedback)
                .where(
                    Feedback.tenant == tenant,
                    Feedback.feedback_id.in_(batch),
                    Feedback.state == FeedbackState.PENDING.value,
                )
                .values(state=FeedbackState.TRAINING.value, job_id=job_id, updated_at=now)
            ).rowcount
            if moved != len(batch):  # only the slot's holder moves pending items; never expected
                raise Aborted(f"feedback of adapter {adapter!r} changed during its dispatch; retry")
        return Dispatched(job, batch)

    def settle(
        self, job_id: str, state: JobState, version: int | None = None, error: str | None = None
    ) -> int:
        """Ends the batch of a job that ended in `state`: its items become applied (succeeded, with the
        `version` it registered) or failed (failed or cancelled, with `error`), and the adapter's slot is
        freed. Idempotent; returns how many items it moved."""
        state = JobState(state)
        if not state.terminal:
            raise InvalidArgument(f"job state {state} is not terminal", field="state")
        now = self._clock()
        if state == JobState.SUCCEEDED:
            values: dict[str, Any] = {"state": FeedbackState.APPLIED.value, "version": version, "error": None}
        else:
            reason = error or f"the distillation job was {state.value}"
            values = {"state": FeedbackState.FAILED.value, "error": reason}
        with self._engine.begin() as conn:
            moved = conn.execute(
                update(Feedback)
                .where(Feedback.job_id == job_id, Feedback.state == FeedbackState.TRAINING.value)
                .values(**values, updated_at=now)
            ).rowcount
            conn.execute(
                update(AdapterDistillation)
                .where(AdapterDistillation.job_id == job_id)
                .values(job_id=None, since=None)
            )
        return moved

    def fail_pending(self, tenant: str, adapter: str, error: str) -> int:
        """Fails every pending item of the adapter (it cannot be trained: deleted, say); returns how many."""
        with self._engine.begin() as conn:
            return conn.execute(
                update(Feedback)
                .where(
                    Feedback.tenant == tenant,
                    Feedback.adapter == adapter,
                    Feedback.state == FeedbackState.PENDING.value,
                )
                .values(state=FeedbackState.FAILED.value, error=error, updated_at=self._clock())
            ).rowcount

    def holder(self, tenant: str, adapter: str) -> str | None:
        """The id of the job holding the adapter's slot, or None when it is free."""
        stmt = select(AdapterDistillation.job_id).where(
            AdapterDistillation.tenant == tenant, AdapterDistillation.adapter == adapter
        )
        with self._reader.connect() as conn:
            return conn.execute(stmt).scalar_one_or_none()

    def pending_adapters(
        self,
        now: datetime,
        batch_size: int,
        max_wait_s: float,
        *,
        tenant: str | None = None,
        adapter: str | None = None,
    ) -> builtins.list[tuple[str, str]]:
        """(tenant, adapter) of every adapter (of one tenant, one adapter: with `tenant`, `adapter`) with a
        free slot whose pending items are due: at least `batch_size` of them, or the oldest pending for
        `max_wait_s` or longer. Oldest first."""
        cutoff = now - timedelta(seconds=max_wait_s)
        oldest = func.min(Feedback.created_at)
        stmt = (
            select(Feedback.tenant, Feedback.adapter)
            .outerjoin(
                AdapterDistillation,
                and_(
                    AdapterDistillation.tenant == Feedback.tenant,
                    AdapterDistillation.adapter == Feedback.adapter,
                ),
            )
            .where(Feedback.state == FeedbackState.PENDING.value, AdapterDistillation.job_id.is_(None))
            .group_by(Feedback.tenant, Feedback.adapter)
            .having(or_(func.count() >= batch_size, oldest <= literal(cutoff, UTCDateTime())))
            .order_by(oldest, Feedback.tenant, Feedback.adapter)
        )
        if tenant is not None:
            stmt = stmt.where(Feedback.tenant == tenant)
        if adapter is not None:
            stmt = stmt.where(Feedback.adapter == adapter)
        with self._reader.connect() as conn:
            return [(tenant, adapter) for tenant, adapter in conn.execute(stmt)]

    def stale_slots(self) -> builtins.list[Slot]:
        """Taken slots whose job has ended (or is gone): their batches still wait to be settled, because the
        worker's end hook did not run (it died) or failed. A reconciler settles them."""
        stmt = (
            select(
                AdapterDistillation.tenant,
                AdapterDistillation.adapter,
                AdapterDistillation.job_id,
                AdapterDistillation.since,
            )
            .outerjoin(Job, Job.job_id == AdapterDistillation.job_id)
            .where(
                AdapterDistillation.job_id.is_not(None),
                or_(Job.job_id.is_(None), Job.state.in_(_TERMINAL)),
            )
            .order_by(AdapterDistillation.since)
        )
        with self._reader.connect() as conn:
            return [Slot(*row) for row in conn.execute(stmt)]


def _ensure_slot(conn: Connection, tenant: str, adapter: str) -> None:
    """Inserts the adapter's (free) slot row unless it exists: INSERT ... ON CONFLICT DO NOTHING, which both
    backends speak, so that a racing insert neither fails nor aborts the transaction."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(AdapterDistillation)
        .values(tenant=tenant, adapter=adapter, job_id=None, since=None)
        .on_conflict_do_nothing(index_elements=["tenant", "adapter"])
    )


def _pick(
    conn: Connection,
    tenant: str,
    adapter: str,
    max_items: int,
    training: Mapping[str, Any] | None,
    feedback_ids: Sequence[str] | None,
) -> tuple[builtins.list[str], dict[str, Any]]:
    """The batch (ids, oldest first) and the training settings it runs with. Settings are compared here, not
    in SQL: PostgreSQL's json type has no equality."""
    stmt = (
        select(Feedback.feedback_id, Feedback.training)
        .where(
            Feedback.tenant == tenant,
            Feedback.adapter == adapter,
            Feedback.state == FeedbackState.PENDING.value,
        )
        .order_by(Feedback.created_at, Feedback.feedback_id)
        .limit(SCAN_LIMIT)
    )
    if feedback_ids is not None:
        stmt = stmt.where(Feedback.feedback_id.in_(list(feedback_ids)))
    rows = conn.execute(stmt).all()
    if not rows:
        return [], {}
    if training is not None:
        return [row.feedback_id for row in rows[:max_items]], dict(training)
    wanted = rows[0].training
    return [row.feedback_id for row in rows if row.training == wanted][:max_items], dict(wanted)


def check_feedback_text(text: object, field: str = "feedback") -> str:
    """The feedback text as stored: stripped of surrounding whitespace. InvalidArgument (naming `field`) if
    that is empty or longer than FEEDBACK_TEXT_MAX_LEN, or it holds a NUL (PostgreSQL's text refuses it)."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument(f"{field} must not be empty", field=field)
    if len(text) > FEEDBACK_TEXT_MAX_LEN:
        raise InvalidArgument(
            f"{field} has {len(text)} characters, at most {FEEDBACK_TEXT_MAX_LEN}", field=field
        )
    if "\x00" in text:
        raise InvalidArgument(f"{field} must not contain NUL characters", field=field)
    return text.strip()


def _row(rec: NewFeedback) -> dict[str, Any]:
    """`rec` as a validated row."""
    check_tenant_id(rec.tenant)
    check_completion_id(rec.completion_id)
    check_model_name(rec.adapter, field="adapter")
    return {
        "tenant": rec.tenant,
        "completion_id": rec.completion_id,
        "adapter": rec.adapter,
        "text": check_feedback_text(rec.text),
        "training": json_object(rec.training, "training"),
    }


def _record(row: Row[Any]) -> FeedbackRecord:
    values = dict(row._mapping)
    values["state"] = FeedbackState(values["state"])
    return FeedbackRecord(**values)


def _state(state: FeedbackState | str) -> FeedbackState:
    try:
        return FeedbackState(state)
    except ValueError as exc:
        raise InvalidArgument(f"unknown feedback state {state!r}", field="state") from exc
