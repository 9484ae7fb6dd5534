"""Learner histories: create, read, append with optimistic concurrency on `history_len`, and delete.
Every method acts for one tenant: another tenant's learner of the same id is a different learner."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from lyceum_core.errors import Aborted, AlreadyExists, InvalidArgument, NotFound
from lyceum_core.identity import check_learner_id, check_tenant_id
from lyceum_db.models.learner import TASK_MAX_LEN, Learner, LearnerEvent
from lyceum_db.repositories._common import reader, utcnow


@dataclass(frozen=True, slots=True)
class LearnerRecord:
    """A learner's row; timestamps are timezone-aware UTC."""

    tenant: str
    learner_id: str
    history_len: int
    created_at: datetime
    updated_at: datetime


class LearnerRepository:
    """Learner persistence. Every write is one short transaction, committed when the method returns."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._reader = reader(engine)

    def create(self, tenant: str, learner_id: str, events: Sequence[tuple[str, float]]) -> LearnerRecord:
        """Creates a learner with an initial history; AlreadyExists if the tenant already has that id."""
        check_tenant_id(tenant)
        check_learner_id(learner_id)
        now = utcnow()
        rows = _event_rows(tenant, learner_id, events, start=0, now=now)
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(Learner).values(
                        tenant=tenant,
                        learner_id=learner_id,
                        history_len=len(rows),
                        created_at=now,
                        updated_at=now,
                    )
                )
                if rows:
                    conn.execute(insert(LearnerEvent), rows)
        except IntegrityError as exc:
            # The primary key is the only constraint a fresh learner can break, also when two creates race.
            raise AlreadyExists(f"learner {learner_id!r} already exists", field="learner_id") from exc
        return LearnerRecord(tenant, learner_id, len(rows), now, now)

    def get(self, tenant: str, learner_id: str) -> LearnerRecord | None:
        """The learner's record, or None if there is no such learner."""
        stmt = select(
            Learner.tenant, Learner.learner_id, Learner.history_len, Learner.created_at, Learner.updated_at
        ).where(Learner.tenant == tenant, Learner.learner_id == learner_id)
        with self._reader.connect() as conn:
            row = conn.execute(stmt).one_or_none()
        return None if row is None else LearnerRecord(*row)

    def history(self, tenant: str, learner_id: str) -> list[tuple[str, float]]:
        """The learner's (task, outcome) events in append order; NotFound if there is no such learner."""
        # One statement answers both "does the learner exist" and "what are its events": the outer join
        # yields no row for a missing learner and a single all-NULL event for an empty history.
        stmt = (
            select(LearnerEvent.task, LearnerEvent.outcome)
            .select_from(Learner)
            .outerjoin(
                LearnerEvent,
                (LearnerEvent.tenant == Learner.tenant) & (LearnerEvent.learner_id == Learner.learner_id),
            )
            .where(Learner.tenant == tenant, Learner.learner_id == learner_id)
            .order_by(LearnerEvent.seq)
        )
        with self._reader.connect() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            raise _not_found(learner_id)
        if rows[0].task is None:
            return []
        return [(task, outcome) for task, outcome in rows]

    def append(
        self, tenant: str, learner_id: str, events: Sequence[tuple[str, float]], *, expected_len: int
    ) -> LearnerRecord:
        """Appends events if the history still has `expected_len` events; Aborted if it changed meanwhile."""
        if expected_len < 0:
            raise InvalidArgument(f"expected_len must be >= 0, got {expected_len}", field="expected_len")
        now = utcnow()
        rows = _event_rows(tenant, learner_id, events, start=expected_len, now=now)
        new_len = expected_len + len(rows)
        # The conditional UPDATE is the compare-and-swap: it takes the row's write lock, so of two appends
        # with the same expected_len exactly one matches; the other sees the new length and aborts.
        swap = (
            update(Learner)
            .where(
                Learner.tenant == tenant,
                Learner.learner_id == learner_id,
                Learner.history_len == expected_len,
            )
            .values(history_len=new_len, updated_at=now)
            .returning(Learner.created_at)
        )
        with self._engine.begin() as conn:
            created_at = conn.execute(swap).scalar_one_or_none()
            if created_at is None:
                found = conn.execute(
                    select(Learner.history_len).where(
                        Learner.tenant == tenant, Learner.learner_id == learner_id
                    )
                ).scalar_one_or_none()
                if found is None:
                    raise _not_found(learner_id)
                raise Aborted(
                    f"history changed concurrently: expected {expected_len} events, found {found}",
                    field="expected_len",
                )
            if rows:
                conn.execute(insert(LearnerEvent), rows)
        return LearnerRecord(tenant, learner_id, new_len, created_at, now)

    def delete(self, tenant: str, learner_id: str) -> bool:
        """Deletes the learner and (by cascade) its events; True if it existed."""
        with self._engine.begin() as conn:
            result = conn.execute(
                delete(Learner).where(Learner.tenant == tenant, Learner.learner_id == learner_id)
            )
        return result.rowcount > 0

    def count(self, tenant: str) -> int:
        """The number of the tenant's learners."""
        stmt = select(func.count()).select_from(Learner).where(Learner.tenant == tenant)
        with self._reader.connect() as conn:
            return conn.execute(stmt).scalar_one()


def _not_found(learner_id: str) -> NotFound:
    return NotFound(f"learner {learner_id!r} not found", field="learner_id")


def _event_rows(
    tenant: str, learner_id: str, events: Sequence[tuple[str, float]], *, start: int, now: datetime
) -> list[dict[str, Any]]:
    """Validated rows for a bulk insert; both backends then enforce the same limits."""
    rows = []
    for i, (task, outcome) in enumerate(events):
        if not task or len(task) > TASK_MAX_LEN:
            raise InvalidArgument(f"events[{i}]: task must be 1 to {TASK_MAX_LEN} characters", field="events")
        outcome = float(outcome)
        if not math.isfinite(outcome):
            raise InvalidArgument(f"events[{i}]: outcome must be finite, got {outcome}", field="events")
        rows.append(
            {
                "tenant": tenant,
                "learner_id": learner_id,
                "seq": start + i,
                "task": task,
                "outcome": outcome,
                "created_at": now,
            }
        )
    return rows
