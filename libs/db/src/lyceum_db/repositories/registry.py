"""Model registry: numbered versions per (tenant, model name), aliases that point at versions, and rollback of
an alias along its recorded history. Registering a version moves the `latest` alias to it.

Reads see the caller's own models and the public ones (published by the platform); a name the caller owns
hides a public model of the same name. Writes touch only the caller's own models: for them another tenant's
model, public or not, is missing."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Row, case, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from lyceum_core.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound
from lyceum_core.identity import (
    PLATFORM_TENANT,
    SERVING_ALIAS,
    ModelRef,
    check_alias,
    check_model_name,
    check_tenant_id,
)
from lyceum_db.models.job import JOB_ID_LEN, KIND_MAX_LEN
from lyceum_db.models.registry import AliasMove, ModelAlias, ModelAliasEvent, ModelVersion
from lyceum_db.repositories._common import check_str, json_object, reader, utcnow

LATEST = "latest"
# A bare model name (an adapter's, on the OpenAI API) is served at the first of these that exists.
SERVED_ALIASES = (SERVING_ALIAS, LATEST)

T = TypeVar("T")
_VERSION_COLUMNS = (
    ModelVersion.tenant,
    ModelVersion.name,
    ModelVersion.version,
    ModelVersion.kind,
    ModelVersion.uri,
    ModelVersion.metrics,
    ModelVersion.job_id,
    ModelVersion.metadata_,
    ModelVersion.public,
    ModelVersion.created_at,
)
# Writers that lose a race for a version number or an alias's first row try again; each round has a winner,
# so this bounds how many concurrent registrations of one name are certain to succeed.
_MAX_ATTEMPTS = 32


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """One registered model version of `tenant`; `public` ones are readable by every tenant. `created_at`
    is timezone-aware UTC."""

    tenant: str
    name: str
    version: int
    kind: str
    uri: str
    metrics: dict[str, Any]
    job_id: str | None
    metadata: dict[str, Any]
    public: bool
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
        tenant: str,
        name: str,
        kind: str,
        uri: str,
        metrics: Mapping[str, Any],
        job_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        public: bool = False,
    ) -> ModelRecord:
        """Registers the next version of the tenant's model `name` and moves its `latest` to it; `public`
        makes the version readable by every tenant. Idempotent per job: if `job_id` already registered a
        version of `name`, that version is returned and nothing changes."""
        check_tenant_id(tenant)
        check_model_name(name)
        check_str(kind, "kind", KIND_MAX_LEN)
        if not uri:
            raise InvalidArgument("uri must not be empty", field="uri")
        if job_id is not None:
            check_str(job_id, "job_id", JOB_ID_LEN)
        metrics_json = json_object(metrics, "metrics")
        metadata_json = json_object(metadata or {}, "metadata")
        own = (ModelVersion.tenant == tenant) & (ModelVersion.name == name)

        def attempt(conn: Connection) -> ModelRecord:
            if job_id is not None:
                existing = conn.execute(
                    select(*_VERSION_COLUMNS).where(own, ModelVersion.job_id == job_id)
                ).one_or_none()
                if existing is not None:
                    return _model(existing)
            # max + 1 is only a guess while others register too: the primary key turns a collision into an
            # IntegrityError, and the retry reads the new maximum.
            latest = conn.execute(select(func.max(ModelVersion.version)).where(own))
            version = (latest.scalar_one() or 0) + 1
            now = utcnow()
            row = conn.execute(
                insert(ModelVersion)
                .values(
                    tenant=tenant,
                    name=name,
                    version=version,
                    kind=kind,
                    uri=uri,
                    metrics=metrics_json,
                    job_id=job_id,
                    metadata_=metadata_json,
                    public=public,
                    created_at=now,
                )
                .returning(*_VERSION_COLUMNS)
            ).one()
            _move_alias(conn, tenant, name, LATEST, version, AliasMove.REGISTER, now)
            return _model(row)

        return self._write(attempt)

    def delete(self, tenant: str, name: str) -> builtins.list[ModelRecord]:
        """Deletes the tenant's own model `name` (never a public one of another tenant's) in one transaction:
        every version, alias and recorded alias move. Returns the deleted versions, whose artifacts are the
        caller's to remove; none if the tenant has no such model."""
        check_tenant_id(tenant)
        check_model_name(name)
        with self._engine.begin() as conn:
            for table in (ModelAliasEvent, ModelAlias):
                conn.execute(delete(table).where(table.tenant == tenant, table.name == name))
            own = (ModelVersion.tenant == tenant) & (ModelVersion.name == name)
            rows = conn.execute(delete(ModelVersion).where(own).returning(*_VERSION_COLUMNS)).all()
        return sorted((_model(row) for row in rows), key=lambda record: record.version)

    def get(self, tenant: str, name: str, version: int) -> ModelRecord | None:
        """The version of `name` the tenant sees (its own, else a public one), or None."""
        with self._reader.connect() as conn:
            owner = _owner(conn, tenant, name)
            return None if owner is None else _get(conn, owner, name, version, public_only=owner != tenant)

    def list(self, tenant: str, name: str | None = None) -> builtins.list[ModelRecord]:
        """The versions the tenant sees (of one model, with `name`): its own and the public ones, ordered by
        name and version."""
        stmt = (
            select(*_VERSION_COLUMNS)
            .where(or_(ModelVersion.tenant == tenant, ModelVersion.public.is_(True)))
            .order_by(ModelVersion.name, ModelVersion.version)
        )
        if name is not None:
            stmt = stmt.where(ModelVersion.name == name)
        with self._reader.connect() as conn:
            records = [_model(row) for row in conn.execute(stmt)]
        owners: dict[str, str] = {}
        for record in records:
            known = owners.get(record.name)
            if known is None or _rank(record.tenant, tenant) < _rank(known, tenant):
                owners[record.name] = record.tenant
        return [record for record in records if owners[record.name] == record.tenant]

    def resolve(self, tenant: str, name: str, ref: str) -> ModelRecord:
        """The version `ref` names (an alias, or a version number written in decimal digits) of the model
        `name` the tenant sees: its own, else a public one. NotFound with field "name" if the tenant sees no
        such model, else with field "ref" if nothing matches."""
        return self._resolve(tenant, name, ref, (ref,))

    def served(self, tenant: str, name: str) -> ModelRecord:
        """The version a bare model name is served at: its `serving` alias (feedback distillation moves it
        only past the quality gate), else `latest` (SERVED_ALIASES, in one query). NotFound as `resolve`."""
        return self._resolve(tenant, name, SERVING_ALIAS, SERVED_ALIASES)

    def lookup(self, tenant: str, reference: str, field: str = "model") -> ModelRecord:
        """What a reference names for the tenant: `name@alias|version` that version, a bare `name` the
        version it is served at (`served`). InvalidArgument (`field`) if malformed; NotFound as `resolve`."""
        if "@" not in reference:
            ModelRef.parse(f"{reference}@{LATEST}", field)  # the name's rules
            return self.served(tenant, reference)
        ref = ModelRef.parse(reference, field)
        return self.resolve(tenant, ref.name, ref.ref)

    def _resolve(self, tenant: str, name: str, ref: str, aliases: tuple[str, ...]) -> ModelRecord:
        """`ref` as a version number, else the version the first of `aliases` that exists points at."""
        with self._reader.connect() as conn:
            owner = _owner(conn, tenant, name)
            if owner is None:
                raise NotFound(f"model {name!r} not found", field="name")
            public_only = owner != tenant
            if ref.isdecimal():
                record = _get(conn, owner, name, int(ref), public_only=public_only)
            else:
                stmt = (
                    select(*_VERSION_COLUMNS, ModelAlias.alias)
                    .join(
                        ModelAlias,
                        (ModelAlias.tenant == ModelVersion.tenant)
                        & (ModelAlias.name == ModelVersion.name)
                        & (ModelAlias.version == ModelVersion.version),
                    )
                    .where(ModelAlias.tenant == owner, ModelAlias.name == name, ModelAlias.alias.in_(aliases))
                )
                if public_only:
                    stmt = stmt.where(ModelVersion.public.is_(True))
                rows = sorted(conn.execute(stmt), key=lambda row: aliases.index(row.alias))
                record = _model(rows[0][:-1]) if rows else None
        if record is None:
            raise NotFound(f"model {name!r} has no version or alias {ref!r}", field="ref")
        return record

    def set_alias(self, tenant: str, name: str, alias: str, version: int) -> ModelRecord:
        """Points the tenant's `alias` of `name` at `version` (which must be the tenant's own: NotFound
        otherwise), recording the move; returns the version's record. Aliases cannot be all digits, which
        would read as version numbers."""
        check_alias(alias)

        def attempt(conn: Connection) -> ModelRecord:
            record = _get(conn, tenant, name, version)
            if record is None:
                raise NotFound(f"model {name!r} has no version {version}", field="version")
            _move_alias(conn, tenant, name, alias, version, AliasMove.SET, utcnow())
            return record

        return self._write(attempt)

    def rollback(self, tenant: str, name: str, alias: str) -> ModelRecord:
        """Moves the tenant's `alias` of `name` back to the version it pointed at before its last move that
        was not itself undone; repeated rollbacks walk further back. NotFound if the tenant has no such
        alias, FailedPrecondition if it has no earlier version."""

        def attempt(conn: Connection) -> ModelRecord:
            current = _lock_alias(conn, tenant, name, alias)
            if current is None:
                raise NotFound(f"model {name!r} has no alias {alias!r}", field="alias")
            events = conn.execute(
                select(ModelAliasEvent.version, ModelAliasEvent.reason)
                .where(
                    ModelAliasEvent.tenant == tenant,
                    ModelAliasEvent.name == name,
                    ModelAliasEvent.alias == alias,
                )
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
                .where(ModelAlias.tenant == tenant, ModelAlias.name == name, ModelAlias.alias == alias)
                .values(version=target, updated_at=now)
            )
            _record_move(conn, tenant, name, alias, target, current, AliasMove.ROLLBACK, now)
            record = _get(conn, tenant, name, target)
            assert record is not None, "aliases reference existing versions (foreign key)"
            return record

        return self._write(attempt)

    def aliases(self, tenant: str, name: str) -> dict[str, int]:
        """The aliases of the model `name` the tenant sees and the versions they point at (of a public model,
        only those pointing at public versions); empty for an unknown model."""
        with self._reader.connect() as conn:
            owner = _owner(conn, tenant, name)
            if owner is None:
                return {}
            stmt = (
                select(ModelAlias.alias, ModelAlias.version)
                .join(
                    ModelVersion,
                    (ModelVersion.tenant == ModelAlias.tenant)
                    & (ModelVersion.name == ModelAlias.name)
                    & (ModelVersion.version == ModelAlias.version),
                )
                .where(ModelAlias.tenant == owner, ModelAlias.name == name)
                .order_by(ModelAlias.alias)
            )
            if owner != tenant:
                stmt = stmt.where(ModelVersion.public.is_(True))
            return {alias: version for alias, version in conn.execute(stmt)}

    def alias_history(self, tenant: str, name: str, alias: str) -> builtins.list[AliasEvent]:
        """Every move of the alias of the model `name` the tenant sees, oldest first (of a public model, the
        moves to public versions)."""
        with self._reader.connect() as conn:
            owner = _owner(conn, tenant, name)
            if owner is None:
                return []
            stmt = (
                select(
                    ModelAliasEvent.name,
                    ModelAliasEvent.alias,
                    ModelAliasEvent.version,
                    ModelAliasEvent.previous_version,
                    ModelAliasEvent.reason,
                    ModelAliasEvent.moved_at,
                )
                .where(
                    ModelAliasEvent.tenant == owner,
                    ModelAliasEvent.name == name,
                    ModelAliasEvent.alias == alias,
                )
                .order_by(ModelAliasEvent.id)
            )
            if owner != tenant:
                public = select(ModelVersion.version).where(
                    ModelVersion.tenant == owner, ModelVersion.name == name, ModelVersion.public.is_(True)
                )
                stmt = stmt.where(ModelAliasEvent.version.in_(public))
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


def _rank(owner: str, tenant: str) -> tuple[int, str]:
    """Whose model of a name a tenant sees: its own, else the platform's public one, else the first
    publisher's by name."""
    return (0 if owner == tenant else 1 if owner == PLATFORM_TENANT else 2, owner)


def _owner(conn: Connection, tenant: str, name: str) -> str | None:
    """The tenant whose model `name` `tenant` sees (see `_rank`), or None if it sees none."""
    rank = case((ModelVersion.tenant == tenant, 0), (ModelVersion.tenant == PLATFORM_TENANT, 1), else_=2)
    stmt = (
        select(ModelVersion.tenant)
        .where(ModelVersion.name == name, or_(ModelVersion.tenant == tenant, ModelVersion.public.is_(True)))
        .order_by(rank, ModelVersion.tenant)
        .limit(1)
    )
    return conn.execute(stmt).scalar_one_or_none()


def _model(row: Row[Any]) -> ModelRecord:
    return ModelRecord(*row)


def _get(
    conn: Connection, tenant: str, name: str, version: int, *, public_only: bool = False
) -> ModelRecord | None:
    stmt = select(*_VERSION_COLUMNS).where(
        ModelVersion.tenant == tenant, ModelVersion.name == name, ModelVersion.version == version
    )
    if public_only:
        stmt = stmt.where(ModelVersion.public.is_(True))
    row = conn.execute(stmt).one_or_none()
    return None if row is None else _model(row)


def _lock_alias(conn: Connection, tenant: str, name: str, alias: str) -> int | None:
    """The alias's version, read under a write lock on its row that is held until commit (None, and no lock,
    if there is no such alias). The no-op UPDATE takes the row lock on PostgreSQL and the database's write
    lock on SQLite, where SELECT ... FOR UPDATE does not exist."""
    stmt = (
        update(ModelAlias)
        .where(ModelAlias.tenant == tenant, ModelAlias.name == name, ModelAlias.alias == alias)
        .values(version=ModelAlias.version)
        .returning(ModelAlias.version)
    )
    return conn.execute(stmt).scalar_one_or_none()


def _move_alias(
    conn: Connection, tenant: str, name: str, alias: str, version: int, reason: AliasMove, now: datetime
) -> None:
    """Points the alias at `version` and records the move; nothing happens if it already points there. A
    concurrent first move of the same alias makes the INSERT raise IntegrityError (the caller retries)."""
    current = _lock_alias(conn, tenant, name, alias)
    if current == version:
        return
    if current is None:
        conn.execute(
            insert(ModelAlias).values(tenant=tenant, name=name, alias=alias, version=version, updated_at=now)
        )
    else:
        conn.execute(
            update(ModelAlias)
            .where(ModelAlias.tenant == tenant, ModelAlias.name == name, ModelAlias.alias == alias)
            .values(version=version, updated_at=now)
        )
    _record_move(conn, tenant, name, alias, version, current, reason, now)


def _record_move(
    conn: Connection,
    tenant: str,
    name: str,
    alias: str,
    version: int,
    previous: int | None,
    reason: AliasMove,
    now: datetime,
) -> None:
    conn.execute(
        insert(ModelAliasEvent).values(
            tenant=tenant,
            name=name,
            alias=alias,
            version=version,
            previous_version=previous,
            reason=reason.value,
            moved_at=now,
        )
    )


def served_version(aliases: Mapping[str, int]) -> int | None:
    """Of a model's aliases (name -> version), the version its bare name is served at (SERVED_ALIASES)."""
    return next((aliases[alias] for alias in SERVED_ALIASES if alias in aliases), None)
