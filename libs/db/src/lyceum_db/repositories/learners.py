"""Learner histories: create, read, append with optimistic concurrency on `history_len`, and delete."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from lyceum_core.errors import Aborted, AlreadyExists, InvalidArgument, NotFound
from lyceum_db.models.learner import LEARNER_ID_MAX_LEN, TASK_MAX_LEN, Learner, LearnerEvent


@dataclass(frozen=True, slots=True)
class LearnerRecord:
    """A learner's row; timestamps are timezone-aware UTC."""

    learner_id: str
    history_len: int
    created_at: datetime
    updated_at: datetime


class LearnerRepository:
    """Learner persistence. Every write is one short transaction, committed when the method returns."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # PostgreSQL reads run in autocommit: one round trip instead of BEGIN + SELECT + ROLLBACK. SQLite's
        # driver already reads outside a transaction.
        if engine.dialect.name == "postgresql":
            self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        else:
            self._reader = engine

    def create(self, learner_id: str, events: Sequence[tuple[str, float]]) -> LearnerRecord:
        """Creates a learner with an initial history; AlreadyExists if the id is taken."""
        _check_learner_id(learner_id)
        now = _utcnow()
        rows = _event_rows(learner_id, events, start=0, now=now)
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(Learner).values(
                        learner_id=learner_id, history_len=len(rows), created_at=now, updated_at=now
                    )
                )
                if rows:
                    conn.execute(insert(LearnerEvent), rows)
        except IntegrityError as exc:
            # The primary key is the only constraint a fresh learner can break, also when two creates race.
            raise AlreadyExists(f"learner {learner_id!r} already exists", field="learner_id") from exc
        return LearnerRecord(learner_id, len(rows), now, now)

    def get(self, learner_id: str) -> LearnerRecord | None:
        """The learner's record, or None if there is no such learner."""
        stmt = select(Learner.learner_id, Learner.history_len, Learner.created_at, Learner.updated_at).where(
            Learner.learner_id == learner_id
        )
        with self._reader.connect() as conn:
            row = conn.execute(stmt).one_or_none()
        return None if row is None else LearnerRecord(*row)

    def history(self, learner_id: str) -> list[tuple[str, float]]:
        """The learner's (task, outcome) events in append order; NotFound if there is no such learner."""
        # One statement answers both "does the learner exist" and "what are its events": the outer join
        # yields no row for a missing learner and a single all-NULL event for an empty history.
        stmt = (
            select(LearnerEvent.task, LearnerEvent.outcome)
            .select_from(Learner)
            .outerjoin(LearnerEvent, LearnerEvent.learner_id == Learner.learner_id)
            .where(Learner.learner_id == learner_id)
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
        self, learner_id: str, events: Sequence[tuple[str, float]], *, expected_len: int
    ) -> LearnerRecord:
        """Appends events if the history still has `expected_len` events; Aborted if it changed meanwhile."""
        if expected_len < 0:
            raise InvalidArgument(f"expected_len must be >= 0, got {expected_len}", field="expected_len")
        now = _utcnow()
        rows = _event_rows(learner_id, events, start=expected_len, now=now)
        new_len = expected_len + len(rows)
        # The conditional UPDATE is the compare-and-swap: it takes the row's write lock, so of two appends
        # with the same expected_len exactly one matches; the other sees the new length and aborts.
        swap = (
            update(Learner)
            .where(Learner.learner_id == learner_id, Learner.history_len == expected_len)
            .values(history_len=new_len, updated_at=now)
            .returning(Learner.created_at)
        )
        with self._engine.begin() as conn:
            created_at = conn.execute(swap).scalar_one_or_none()
            if created_at is None:
                found = conn.execute(
                    select(Learner.history_len).where(Learner.learner_id == learner_id)
                ).scalar_one_or_none()
                if found is None:
                    raise _not_found(learner_id)
                raise Aborted(
                    f"history changed concurrently: expected {expected_len} events, found {found}",
                    field="expected_len",
                )
            if rows:
                conn.execute(insert(LearnerEvent), rows)
        return LearnerRecord(learner_id, new_len, created_at, now)

    def delete(self, learner_id: str) -> bool:
        """Deletes the learner and (by cascade) its events; True if it existed."""
        with self._engine.begin() as conn:
            result = conn.execute(delete(Learner).where(Learner.learner_id == learner_id))
        return result.rowcount > 0

    def count(self) -> int:
        """The number of learners."""
        with self._reader.connect() as conn:
            return conn.execute(select(func.count()).select_from(Learner)).scalar_one()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _not_found(learner_id: str) -> NotFound:
    return NotFound(f"learner {learner_id!r} not found", field="learner_id")


def _check_learner_id(learner_id: str) -> None:
    if not learner_id or len(learner_id) > LEARNER_ID_MAX_LEN:
        raise InvalidArgument(
            f"learner_id must be 1 to {LEARNER_ID_MAX_LEN} characters, got {len(learner_id)}",
            field="learner_id",
        )


def _event_rows(
    learner_id: str, events: Sequence[tuple[str, float]], *, start: int, now: datetime
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
            {"learner_id": learner_id, "seq": start + i, "task": task, "outcome": outcome, "created_at": now}
        )
    return rows
