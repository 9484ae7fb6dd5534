"""Learner histories: create, read, append with optimistic concurrency on `history_len`, and delete.
Every method acts for one tenant: another tenant's learner of the same id is a different learner.

Leases let a serving process answer reads from its cache without asking the database each time. A process
(`owner`, unique per process) that `claim`s a learner holds it until `lease_until`, measured by the database's
clock; nobody else may write the learner meanwhile (`claim` refuses, `append_many`/`delete` with an owner
require the lease), so the holder's cache cannot go stale before the lease ends. The holder measures the lease
from before it asked, with its own monotonic clock, so it never believes in a lease longer than the database
grants. Taking a learner over from another process bumps `owner_epoch`: a cache built under an older epoch
is stale. Writers without an owner (`append`, `delete` without one) wait for no lease: they are refused while
another process holds one.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    Float,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError

from lyceum_core.errors import Aborted, AlreadyExists, InvalidArgument, LyceumError, NotFound
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


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One event of a learner's history: its position (from 0), task, outcome and when it was stored."""

    seq: int
    task: str
    outcome: float
    created_at: datetime


Key = tuple[str, str]  # (tenant, learner_id)
LIST_MAX_LIMIT = 1000  # learners per `list` call, as for jobs
EVENTS_MAX_LIMIT = 5000  # events per `events` page


@dataclass(frozen=True, slots=True)
class Claim:
    """What `claim` found for one learner: its record and ownership epoch, and whether the claimer now holds
    its lease; if not, `wait_s` is how long the other holder's lease still runs."""

    record: LearnerRecord
    epoch: int
    owned: bool
    wait_s: float = 0.0


@dataclass(frozen=True, slots=True)
class PendingAppend:
    """One append of a group commit: applied if the history still has `expected_len` events and the
    committer still holds the learner's lease under `epoch`."""

    tenant: str
    learner_id: str
    events: Sequence[tuple[str, float]]
    expected_len: int
    epoch: int


class LeaseLost(Aborted):
    """The writer no longer holds the learner's lease (another process took it over): rebuild and retry."""


class LearnerRepository:
    """Learner persistence. Every write is one short transaction, committed when the method returns."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._reader = reader(engine)
        self._now = _db_clock(engine)

    def create(
        self,
        tenant: str,
        learner_id: str,
        events: Sequence[tuple[str, float]],
        *,
        owner: str | None = None,
        lease_s: float = 0.0,
    ) -> LearnerRecord:
        """Creates a learner with an initial history (leased to `owner` under epoch 1 when given);
        AlreadyExists if the tenant already has that id."""
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
                        owner=owner,
                        owner_epoch=1,
                        lease_until=None if owner is None else self._now + lease_s,
                    )
                )
                if rows:
                    conn.execute(insert(LearnerEvent), rows)
        except IntegrityError as exc:
            # The primary key is the only constraint a fresh learner can break, also when two creates race.
            raise AlreadyExists(f"learner {learner_id!r} already exists", field="learner_id") from exc
        return LearnerRecord(tenant, learner_id, len(rows), now, now)

    # --- leases -----------------------------------------------------------------------------------------
    def claim(self, keys: Sequence[Key], owner: str, lease_s: float) -> dict[Key, Claim]:
        """Takes (or renews) `owner`'s lease on each learner whose lease is free, expired or its own, in one
        statement; a learner another process holds is returned unowned with its record. Learners that do not
        exist are absent from the result."""
        if not keys:
            return {}
        now = self._now
        take = (
            update(Learner)
            .where(
                tuple_(Learner.tenant, Learner.learner_id).in_(list(keys)),
                or_(Learner.lease_until.is_(None), Learner.owner == owner, Learner.lease_until <= now),
            )
            .values(
                owner=owner,
                owner_epoch=case(
                    (Learner.owner == owner, Learner.owner_epoch), else_=Learner.owner_epoch + 1
                ),
                lease_until=now + lease_s,
            )
            .returning(*_RECORD, Learner.owner_epoch)
        )
        with self._engine.begin() as conn:
            claims = {
                (row[0], row[1]): Claim(LearnerRecord(*row[:5]), row[5], owned=True)
                for row in conn.execute(take)
            }
            others = [key for key in keys if key not in claims]
            if others:
                held = select(*_RECORD, Learner.owner_epoch, Learner.lease_until - now).where(
                    tuple_(Learner.tenant, Learner.learner_id).in_(others)
                )
                for row in conn.execute(held):
                    claims[(row[0], row[1])] = Claim(
                        LearnerRecord(*row[:5]), row[5], owned=False, wait_s=max(0.0, float(row[6] or 0))
                    )
        return claims

    def renew(self, owner: str, leases: Sequence[tuple[str, str, int]], lease_s: float) -> set[Key]:
        """Extends `owner`'s leases on learners (tenant, learner_id, epoch) it still holds under that epoch,
        in one statement; returns the keys renewed (a lease taken over meanwhile is not)."""
        if not leases:
            return set()
        stmt = (
            update(Learner)
            .where(
                Learner.owner == owner,
                tuple_(Learner.tenant, Learner.learner_id, Learner.owner_epoch).in_(list(leases)),
            )
            .values(lease_until=self._now + lease_s)
            .returning(Learner.tenant, Learner.learner_id)
        )
        with self._engine.begin() as conn:
            return {(row[0], row[1]) for row in conn.execute(stmt)}

    def release(self, owner: str) -> int:
        """Ends every lease `owner` holds (a process shutting down), so others may take its learners over at
        once; returns how many it held."""
        with self._engine.begin() as conn:
            result = conn.execute(update(Learner).where(Learner.owner == owner).values(lease_until=None))
        return result.rowcount

    def append_many(
        self, owner: str, lease_s: float, appends: Sequence[PendingAppend]
    ) -> builtins.list[LearnerRecord | LyceumError]:
        """Group commit: applies every append whose learner `owner` still holds under its epoch and whose
        history still has the expected length, in ONE transaction (durable for all at once), renewing those
        leases. Returns, per append, the new record or why it was not applied (NotFound, LeaseLost, Aborted
        for a changed history); if the transaction itself fails, the error is raised for all."""
        now_py = utcnow()
        rows_of = [
            _event_rows(a.tenant, a.learner_id, a.events, start=a.expected_len, now=now_py) for a in appends
        ]
        results: list[LearnerRecord | LyceumError] = []
        with self._engine.begin() as conn:
            inserts: list[dict[str, Any]] = []
            for a, rows in zip(appends, rows_of, strict=True):
                new_len = a.expected_len + len(rows)
                swap = (
                    update(Learner)
                    .where(
                        Learner.tenant == a.tenant,
                        Learner.learner_id == a.learner_id,
                        Learner.history_len == a.expected_len,
                        Learner.owner == owner,
                        Learner.owner_epoch == a.epoch,
                    )
                    .values(history_len=new_len, updated_at=now_py, lease_until=self._now + lease_s)
                    .returning(Learner.created_at)
                )
                created_at = conn.execute(swap).scalar_one_or_none()
                if created_at is None:
                    results.append(_refusal(conn, a, owner))
                    continue
                inserts.extend(rows)
                results.append(LearnerRecord(a.tenant, a.learner_id, new_len, created_at, now_py))
            if inserts:
                conn.execute(insert(LearnerEvent), inserts)
        return results

    def get(self, tenant: str, learner_id: str) -> LearnerRecord | None:
        """The learner's record, or None if there is no such learner."""
        stmt = select(
            Learner.tenant, Learner.learner_id, Learner.history_len, Learner.created_at, Learner.updated_at
        ).where(Learner.tenant == tenant, Learner.learner_id == learner_id)
        with self._reader.connect() as conn:
            row = conn.execute(stmt).one_or_none()
        return None if row is None else LearnerRecord(*row)

    def list(
        self, tenant: str, *, limit: int = 50, after: str | None = None, prefix: str | None = None
    ) -> builtins.list[LearnerRecord]:
        """Up to `limit` of the tenant's learners in learner id order (the primary key's: every page is one
        index range), optionally only those whose id starts with `prefix`.

        Paging: pass the `learner_id` of the last learner of a page as `after` to get the next page; a learner
        created or deleted meanwhile is seen or not, and no learner is seen twice."""
        check_tenant_id(tenant)
        if not 1 <= limit <= LIST_MAX_LIMIT:
            raise InvalidArgument(f"limit must be 1 to {LIST_MAX_LIMIT}, got {limit}", field="limit")
        stmt = select(*_RECORD).where(Learner.tenant == tenant).order_by(Learner.learner_id).limit(limit)
        if after is not None:
            stmt = stmt.where(Learner.learner_id > after)
        if prefix:
            # Not LIKE: SQLite's ignores case, PostgreSQL's does not; this is case-sensitive on both.
            stmt = stmt.where(func.substr(Learner.learner_id, 1, len(prefix)) == prefix)
        with self._reader.connect() as conn:
            return [LearnerRecord(*row) for row in conn.execute(stmt)]

    def events(
        self, tenant: str, learner_id: str, *, start: int = 0, limit: int = 1000
    ) -> tuple[LearnerRecord, builtins.list[EventRecord]]:
        """The learner's record and up to `limit` of its events from the `start`-th on, in append order, none
        past the record's `history_len`; NotFound if there is no such learner."""
        if not 0 <= start < 2**31:
            raise InvalidArgument(f"start must be 0 to 2**31 - 1, got {start}", field="start")
        if not 1 <= limit <= EVENTS_MAX_LIMIT:
            raise InvalidArgument(f"limit must be 1 to {EVENTS_MAX_LIMIT}, got {limit}", field="limit")
        key = (Learner.tenant == tenant) & (Learner.learner_id == learner_id)
        page = (
            select(LearnerEvent.seq, LearnerEvent.task, LearnerEvent.outcome, LearnerEvent.created_at)
            .where(
                LearnerEvent.tenant == tenant,
                LearnerEvent.learner_id == learner_id,
                LearnerEvent.seq >= start,
            )
            .order_by(LearnerEvent.seq)
            .limit(limit)
        )
        # An append commits its events with the new history_len, so every event below the length read first
        # is there when the page is read; events appended in between are left for the next read.
        with self._reader.connect() as conn:
            row = conn.execute(select(*_RECORD).where(key)).one_or_none()
            if row is None:
                raise _not_found(learner_id)
            record = LearnerRecord(*row)
            events = [EventRecord(*event) for event in conn.execute(page) if event.seq < record.history_len]
        return record, events

    def history(self, tenant: str, learner_id: str, start: int = 0) -> builtins.list[tuple[str, float]]:
        """The learner's (task, outcome) events in append order from the `start`-th on; NotFound if there is
        no such learner."""
        # One statement answers both "does the learner exist" and "what are its events": the outer join
        # yields no row for a missing learner and a single all-NULL event for an empty history.
        stmt = (
            select(LearnerEvent.task, LearnerEvent.outcome)
            .select_from(Learner)
            .outerjoin(
                LearnerEvent,
                (LearnerEvent.tenant == Learner.tenant)
                & (LearnerEvent.learner_id == Learner.learner_id)
                & (LearnerEvent.seq >= start),
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
        """Appends events if the history still has `expected_len` events; Aborted if it changed meanwhile or
        a serving process holds the learner's lease (a writer that holds none must not change what a lease
        holder serves). Bumps the ownership epoch, so any cache of the learner is known to be stale."""
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
                or_(Learner.lease_until.is_(None), Learner.lease_until <= self._now),
            )
            .values(history_len=new_len, updated_at=now, owner_epoch=Learner.owner_epoch + 1)
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
                if found == expected_len:
                    raise LeaseLost(
                        f"learner {learner_id!r} is leased by a serving process", field="learner_id"
                    )
                raise Aborted(
                    f"history changed concurrently: expected {expected_len} events, found {found}",
                    field="expected_len",
                )
            if rows:
                conn.execute(insert(LearnerEvent), rows)
        return LearnerRecord(tenant, learner_id, new_len, created_at, now)

    def delete(self, tenant: str, learner_id: str, *, owner: str | None = None, epoch: int = 0) -> bool:
        """Deletes the learner and (by cascade) its events; True if it existed. With `owner`, only while it
        holds the learner's lease under `epoch` (LeaseLost otherwise); without, while nobody holds one."""
        held = (
            (Learner.owner == owner) & (Learner.owner_epoch == epoch)
            if owner is not None
            else or_(Learner.lease_until.is_(None), Learner.lease_until <= self._now)
        )
        key = (Learner.tenant == tenant) & (Learner.learner_id == learner_id)
        with self._engine.begin() as conn:
            if conn.execute(delete(Learner).where(key, held)).rowcount > 0:
                return True
            if conn.execute(select(Learner.history_len).where(key)).first() is None:
                return False
        raise LeaseLost(f"learner {learner_id!r} is leased by another serving process", field="learner_id")

    def count(self, tenant: str) -> int:
        """The number of the tenant's learners."""
        stmt = select(func.count()).select_from(Learner).where(Learner.tenant == tenant)
        with self._reader.connect() as conn:
            return conn.execute(stmt).scalar_one()


_RECORD = (Learner.tenant, Learner.learner_id, Learner.history_len, Learner.created_at, Learner.updated_at)


def _db_clock(engine: Engine) -> ColumnElement[float]:
    """The database's clock in seconds since the Unix epoch, as SQL: leases are measured by one clock that
    every process shares."""
    if engine.dialect.name == "postgresql":
        return func.extract("epoch", func.clock_timestamp()).cast(Float)
    if engine.dialect.name == "sqlite":
        return (func.julianday("now") - literal(2440587.5)) * literal(86400.0)
    raise NotImplementedError(f"no lease clock for {engine.dialect.name}")


def _refusal(conn: Any, a: PendingAppend, owner: str) -> LyceumError:
    """Why a group-committed append did not apply (read inside its transaction)."""
    row = conn.execute(
        select(Learner.history_len, Learner.owner, Learner.owner_epoch).where(
            Learner.tenant == a.tenant, Learner.learner_id == a.learner_id
        )
    ).one_or_none()
    if row is None:
        return _not_found(a.learner_id)
    if row.history_len != a.expected_len:
        return Aborted(
            f"history changed concurrently: expected {a.expected_len} events, found {row.history_len}",
            field="expected_len",
        )
    return LeaseLost(
        f"learner {a.learner_id!r} was taken over by another serving process", field="learner_id"
    )


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
