"""Model registry: numbered versions per model name, aliases that point at versions, and rollback of an
alias along its recorded history. Registering a version moves the `latest` alias to it."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Row, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from lyceum_core.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound
from lyceum_db.models.job import JOB_ID_LEN, KIND_MAX_LEN
from lyceum_db.models.registry import (
    ALIAS_MAX_LEN,
    MODEL_NAME_MAX_LEN,
    AliasMove,
    ModelAlias,
    ModelAliasEvent,
    ModelVersion,
)
from lyceum_db.repositories._common import check_str, json_object, reader, utcnow

LATEST = "latest"

T = TypeVar("T")
_VERSION_COLUMNS = (
    ModelVersion.name,
    ModelVersion.version,
    ModelVersion.kind,
    ModelVersion.uri,
    ModelVersion.metrics,
    ModelVersion.job_id,
    ModelVersion.metadata_,
    ModelVersion.created_at,
)
# Writers that lose a race for a version number or an alias's first row try again; each round has a winner,
# so this bounds how many concurrent registrations of one name are certain to succeed.
_MAX_ATTEMPTS = 32


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """One registered model version; `created_at` is timezone-aware UTC."""

    name: str
    version: int
    kind: str
    uri: str
    metrics: dict[str, Any]
    job_id: str | None
    metadata: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AliasEvent:
    """One move of an alias from `previous_version` (None when the alias was created) to `version`."""

    name: str
    alias: str
    version: int
    previous_version: int | None
    reason: AliasMove
    moved_at: datetime


class ModelRepository:
    """Model registry persistence. Every write is one short transaction, committed when the method returns."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._reader = reader(engine)

    def register(
        self,
        name: str,
        kind: str,
        uri: str,
        metrics: Mapping[str, Any],
        job_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ModelRecord:
        """Registers the next version of `name` and moves `latest` to it. Idempotent per job: if `job_id`
        already registered a version of `name`, that version is returned and nothing changes."""
        _check_name(name)
        check_str(kind, "kind", KIND_MAX_LEN)
        if not uri:
            raise InvalidArgument("uri must not be empty", field="uri")
        if job_id is not None:
            check_str(job_id, "job_id", JOB_ID_LEN)
        metrics_json = json_object(metrics, "metrics")
        metadata_json = json_object(metadata or {}, "metadata")

        def attempt(conn: Connection) -> ModelRecord:
            if job_id is not None:
                existing = conn.execute(
                    select(*_VERSION_COLUMNS).where(ModelVersion.name == name, ModelVersion.job_id == job_id)
                ).one_or_none()
                if existing is not None:
                    return _model(existing)
            # max + 1 is only a guess while others register too: the primary key turns a collision into an
            # IntegrityError, and the retry reads the new maximum.
            latest = conn.execute(select(func.max(ModelVersion.version)).where(ModelVersion.name == name))
            version = (latest.scalar_one() or 0) + 1
            now = utcnow()
            row = conn.execute(
                insert(ModelVersion)
                .values(
                    name=name,
                    version=version,
                    kind=kind,
                    uri=uri,
                    metrics=metrics_json,
                    job_id=job_id,
                    metadata_=metadata_json,
                    created_at=now,
                )
                .returning(*_VERSION_COLUMNS)
            ).one()
            _move_alias(conn, name, LATEST, version, AliasMove.REGISTER, now)
            return _model(row)

        return self._write(attempt)

    def get(self, name: str, version: int) -> ModelRecord | None:
        """The version's record, or None if there is no such version."""
        with self._reader.connect() as conn:
            return _get(conn, name, version)

    def list(self, name: str | None = None) -> builtins.list[ModelRecord]:
        """All versions (of one model, with `name`), ordered by name and version."""
        stmt = select(*_VERSION_COLUMNS).order_by(ModelVersion.name, ModelVersion.version)
        if name is not None:
            stmt = stmt.where(ModelVersion.name == name)
        with self._reader.connect() as conn:
            return [_model(row) for row in conn.execute(stmt)]

    def resolve(self, name: str, ref: str) -> ModelRecord:
        """The version `ref` names: an alias, or a version number written in decimal digits. NotFound with
        field "name" if the model has no versions, else with field "ref" if nothing matches."""
        with self._reader.connect() as conn:
            if ref.isdecimal():
                record = _get(conn, name, int(ref))
            else:
                row = conn.execute(
                    select(*_VERSION_COLUMNS)
                    .join(
                        ModelAlias,
                        (ModelAlias.name == ModelVersion.name) & (ModelAlias.version == ModelVersion.version),
                    )
                    .where(ModelAlias.name == name, ModelAlias.alias == ref)
                ).one_or_none()
                record = None if row is None else _model(row)
            if record is not None:
                return record
            known = conn.execute(
                select(ModelVersion.version).where(ModelVersion.name == name).limit(1)
            ).first()
        if known is None:
            raise NotFound(f"model {name!r} not found", field="name")
        raise NotFound(f"model {name!r} has no version or alias {ref!r}", field="ref")

    def set_alias(self, name: str, alias: str, version: int) -> ModelRecord:
        """Points `alias` at `version` (which must exist: NotFound otherwise), recording the move; returns the
        version's record. Aliases cannot be all digits, which would read as version numbers."""
        _check_alias(alias)

        def attempt(conn: Connection) -> ModelRecord:
            record = _get(conn, name, version)
            if record is None:
                raise NotFound(f"model {name!r} has no version {version}", field="version")
            _move_alias(conn, name, alias, version, AliasMove.SET, utcnow())
            return record

        return self._write(attempt)

    def rollback(self, name: str, alias: str) -> ModelRecord:
        """Moves `alias` back to the version it pointed at before its last move that was not itself undone;
        repeated rollbacks walk further back. NotFound if there is no such alias, FailedPrecondition if it
        has no earlier version."""

        def attempt(conn: Connection) -> ModelRecord:
            current = _lock_alias(conn, name, alias)
            if current is None:
                raise NotFound(f"model {name!r} has no alias {alias!r}", field="alias")
            events = conn.execute(
                select(ModelAliasEvent.version, ModelAliasEvent.reason)
                .where(ModelAliasEvent.name == name, ModelAliasEvent.alias == alias)
                .order_by(ModelAliasEvent.id)
            ).all()
            # Replaying the history as a stack: a move pushes its version, a rollback pops one.
            stack: builtins.list[int] = []
            for version, reason in events:
                if reason == AliasMove.ROLLBACK:
                    stack.pop()
                else:
                    stack.append(version)
            if len(stack) < 2:
                raise FailedPrecondition(f"alias {alias!r} of {name!r} has no earlier version", field="alias")
            target = stack[-2]
            now = utcnow()
            conn.execute(
                update(ModelAlias)
                .where(ModelAlias.name == name, ModelAlias.alias == alias)
                .values(version=target, updated_at=now)
            )
            _record_move(conn, name, alias, target, current, AliasMove.ROLLBACK, now)
            record = _get(conn, name, target)
            assert record is not None, "aliases reference existing versions (foreign key)"
            return record

        return self._write(attempt)

    def aliases(self, name: str) -> dict[str, int]:
        """The model's aliases and the versions they point at; empty for an unknown model."""
        stmt = (
            select(ModelAlias.alias, ModelAlias.version)
            .where(ModelAlias.name == name)
            .order_by(ModelAlias.alias)
        )
        with self._reader.connect() as conn:
            return {alias: version for alias, version in conn.execute(stmt)}

    def alias_history(self, name: str, alias: str) -> builtins.list[AliasEvent]:
        """Every move of the alias, oldest first."""
        stmt = (
            select(
                ModelAliasEvent.name,
                ModelAliasEvent.alias,
                ModelAliasEvent.version,
                ModelAliasEvent.previous_version,
                ModelAliasEvent.reason,
                ModelAliasEvent.moved_at,
            )
            .where(ModelAliasEvent.name == name, ModelAliasEvent.alias == alias)
            .order_by(ModelAliasEvent.id)
        )
        with self._reader.connect() as conn:
            return [
                AliasEvent(n, a, version, previous, AliasMove(reason), moved_at)
                for n, a, version, previous, reason, moved_at in conn.execute(stmt)
            ]

    def _write(self, attempt: Callable[[Connection], T]) -> T:
        """Runs `attempt` in its own transaction, again after a lost race (an IntegrityError)."""
        for _ in range(_MAX_ATTEMPTS):
            try:
                with self._engine.begin() as conn:
                    return attempt(conn)
            except IntegrityError:
                continue
        raise Aborted("too many concurrent registry writes; retry")


def _model(row: Row[Any]) -> ModelRecord:
    return ModelRecord(*row)


def _get(conn: Connection, name: str, version: int) -> ModelRecord | None:
    row = conn.execute(
        select(*_VERSION_COLUMNS).where(ModelVersion.name == name, ModelVersion.version == version)
    ).one_or_none()
    return None if row is None else _model(row)


def _lock_alias(conn: Connection, name: str, alias: str) -> int | None:
    """The alias's version, read under a write lock on its row that is held until commit (None, and no lock,
    if there is no such alias). The no-op UPDATE takes the row lock on PostgreSQL and the database's write
    lock on SQLite, where SELECT ... FOR UPDATE does not exist."""
    stmt = (
        update(ModelAlias)
        .where(ModelAlias.name == name, ModelAlias.alias == alias)
        .values(version=ModelAlias.version)
        .returning(ModelAlias.version)
    )
    return conn.execute(stmt).scalar_one_or_none()


def _move_alias(
    conn: Connection, name: str, alias: str, version: int, reason: AliasMove, now: datetime
) -> None:
    """Points the alias at `version` and records the move; nothing happens if it already points there. A
    concurrent first move of the same alias makes the INSERT raise IntegrityError (the caller retries)."""
    current = _lock_alias(conn, name, alias)
    if current == version:
        return
    if current is None:
        conn.execute(insert(ModelAlias).values(name=name, alias=alias, version=version, updated_at=now))
    else:
        conn.execute(
            update(ModelAlias)
            .where(ModelAlias.name == name, ModelAlias.alias == alias)
            .values(version=version, updated_at=now)
        )
    _record_move(conn, name, alias, version, current, reason, now)


def _record_move(
    conn: Connection,
    name: str,
    alias: str,
    version: int,
    previous: int | None,
    reason: AliasMove,
    now: datetime,
) -> None:
    conn.execute(
        insert(ModelAliasEvent).values(
            name=name,
            alias=alias,
            version=version,
            previous_version=previous,
            reason=reason.value,
            moved_at=now,
        )
    )


def _check_name(name: str) -> None:
    check_str(name, "name", MODEL_NAME_MAX_LEN)


def _check_alias(alias: str) -> None:
    check_str(alias, "alias", ALIAS_MAX_LEN)
    if alias.isdecimal():
        raise InvalidArgument(f"alias {alias!r} would read as a version number", field="alias")
