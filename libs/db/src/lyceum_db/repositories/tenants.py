"""Tenants (with their quota overrides) and their API keys. A key is shown once, when created; only its
sha256 is stored, so a lookup is by hash and a leaked database reveals no usable key."""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import math
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from lyceum_core.errors import AlreadyExists, InvalidArgument, NotFound
from lyceum_core.identity import check_subject, check_tenant_id
from lyceum_db.models.tenant import KEY_NAME_MAX_LEN, ApiKey, Tenant
from lyceum_db.repositories._common import check_str, json_object, reader, utcnow

Clock = Callable[[], datetime]

KEY_PREFIX = "lyk_"
STATIC_KEY_NAME = "static"  # the name of keys bootstrapped from settings
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key

_KEY_COLUMNS = (
    ApiKey.key_id,
    ApiKey.tenant,
    ApiKey.subject,
    ApiKey.name,
    ApiKey.created_at,
    ApiKey.last_used_at,
    ApiKey.revoked_at,
)


@dataclass(frozen=True, slots=True)
class TenantRecord:
    """A tenant; `quotas` holds its overrides of the gateway's default quotas (absent: the default)."""

    tenant_id: str
    quotas: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An API key, without the key itself; timestamps are timezone-aware UTC."""

    key_id: str
    tenant: str
    subject: str | None
    name: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def hash_key(plaintext: str) -> str:
    """The sha256 hex digest under which a key is stored."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


class TenantRepository:
    """Tenant persistence. Every write is one short transaction, committed when the method returns."""

    def __init__(self, engine: Engine, *, clock: Clock | None = None) -> None:
        self._engine = engine
        self._reader = reader(engine)
        self._clock = clock or utcnow

    def create(self, tenant_id: str, quotas: Mapping[str, Any] | None = None) -> TenantRecord:
        """Creates a tenant; AlreadyExists if the id is taken."""
        check_tenant_id(tenant_id, field="tenant_id")
        record = TenantRecord(tenant_id, _quotas(quotas or {}), self._clock())
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(Tenant).values(
                        tenant_id=record.tenant_id, quotas=record.quotas, created_at=record.created_at
                    )
                )
        except IntegrityError as exc:
            raise AlreadyExists(f"tenant {tenant_id!r} already exists", field="tenant_id") from exc
        return record

    def ensure(self, tenant_id: str) -> TenantRecord:
        """The tenant, created (without quota overrides) if it does not exist yet; safe to race."""
        check_tenant_id(tenant_id, field="tenant_id")
        for _ in range(3):
            try:
                with self._engine.begin() as conn:
                    _ensure_tenant(conn, tenant_id, self._clock())
                    record = _get_tenant(conn, tenant_id)
            except IntegrityError:
                continue  # created concurrently: the next round finds it
            assert record is not None
            return record
        raise AlreadyExists(f"tenant {tenant_id!r} is being created concurrently; retry", field="tenant_id")

    def get(self, tenant_id: str) -> TenantRecord | None:
        """The tenant, or None."""
        with self._reader.connect() as conn:
            return _get_tenant(conn, tenant_id)

    def list(self) -> builtins.list[TenantRecord]:
        """Every tenant, by id."""
        stmt = select(Tenant.tenant_id, Tenant.quotas, Tenant.created_at).order_by(Tenant.tenant_id)
        with self._reader.connect() as conn:
            return [TenantRecord(*row) for row in conn.execute(stmt)]

    def set_quotas(self, tenant_id: str, quotas: Mapping[str, Any]) -> TenantRecord:
        """Replaces the tenant's quota overrides; NotFound if there is no such tenant."""
        values = _quotas(quotas)
        stmt = (
            update(Tenant)
            .where(Tenant.tenant_id == tenant_id)
            .values(quotas=values)
            .returning(Tenant.tenant_id, Tenant.quotas, Tenant.created_at)
        )
        with self._engine.begin() as conn:
            row = conn.execute(stmt).one_or_none()
        if row is None:
            raise NotFound(f"tenant {tenant_id!r} not found", field="tenant_id")
        return TenantRecord(*row)


class ApiKeyRepository:
    """API key persistence. Creating a key for a tenant that does not exist yet creates the tenant.

    `clock` (default: the system clock in UTC) supplies "now"; `touch` writes a key's last use at most once
    per `TOUCH_EVERY`, remembered in this process and checked again in the database, so that a busy key
    costs one write a minute however many gateways use it.
    """

    def __init__(self, engine: Engine, *, clock: Clock | None = None) -> None:
        self._engine = engine
        self._reader = reader(engine)
        self._clock = clock or utcnow
        self._touched: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def create(
        self, tenant: str, subject: str | None = None, name: str | None = None
    ) -> tuple[KeyRecord, str]:
        """A new key of `tenant` (acting for `subject`, if given): its record and the plaintext key
        `lyk_<key_id>_<secret>`, which is not stored and cannot be shown again."""
        check_tenant_id(tenant)
        if subject is not None:
            check_subject(subject)
        if name is not None:
            check_str(name, "name", KEY_NAME_MAX_LEN)
        now = self._clock()
        for _ in range(3):  # a key id collision (8 random bytes) is all but impossible; retry anyway
            key_id = secrets.token_hex(8)
            plaintext = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            try:
                with self._engine.begin() as conn:
                    _ensure_tenant(conn, tenant, now)
                    _insert_key(conn, key_id, tenant, subject, name, hash_key(plaintext), now)
            except IntegrityError:
                continue
            return KeyRecord(key_id, tenant, subject, name, now, None, None), plaintext
        raise AlreadyExists("could not allocate a key id; retry", field="key_id")

    def ensure_static(self, tenant: str, plaintext: str) -> KeyRecord:
        """Registers a key given in settings (bootstrap) for `tenant`, creating the tenant if needed;
        idempotent. Its key id derives from its hash. Settings own such a key: if they now name another
        tenant, the key moves there. A revoked static key stays revoked (remove it from the settings)."""
        check_tenant_id(tenant)
        if not plaintext:
            raise InvalidArgument("an API key must not be empty", field="key")
        digest = hash_key(plaintext)
        now = self._clock()
        for _ in range(3):  # two gateways starting at once race for the same row
            try:
                with self._engine.begin() as conn:
                    _ensure_tenant(conn, tenant, now)
                    row = conn.execute(select(*_KEY_COLUMNS).where(ApiKey.key_hash == digest)).one_or_none()
                    if row is None:
                        _insert_key(conn, digest[:16], tenant, None, STATIC_KEY_NAME, digest, now)
                        return KeyRecord(digest[:16], tenant, None, STATIC_KEY_NAME, now, None, None)
                    record = _key(row)
                    if record.tenant != tenant:
                        conn.execute(update(ApiKey).where(ApiKey.key_hash == digest).values(tenant=tenant))
                        record = dataclasses.replace(record, tenant=tenant)
                    return record
            except IntegrityError:
                continue
        raise AlreadyExists("the static key is being registered concurrently; retry", field="key")

    def authenticate(self, plaintext: str) -> KeyRecord | None:
        """The key's record, or None if the key is unknown or revoked."""
        if not plaintext:
            return None
        digest = hash_key(plaintext)
        stmt = select(*_KEY_COLUMNS).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
        with self._reader.connect() as conn:
            row = conn.execute(stmt).one_or_none()
        return None if row is None else _key(row)

    def get(self, key_id: str) -> KeyRecord | None:
        """The key's record, or None."""
        with self._reader.connect() as conn:
            row = conn.execute(select(*_KEY_COLUMNS).where(ApiKey.key_id == key_id)).one_or_none()
        return None if row is None else _key(row)

    def list(self, tenant: str | None = None) -> builtins.list[KeyRecord]:
        """Every key (of one tenant, with `tenant`), oldest first, revoked ones included."""
        stmt = select(*_KEY_COLUMNS).order_by(ApiKey.created_at, ApiKey.key_id)
        if tenant is not None:
            stmt = stmt.where(ApiKey.tenant == tenant)
        with self._reader.connect() as conn:
            return [_key(row) for row in conn.execute(stmt)]

    def revoke(self, key_id: str) -> KeyRecord:
        """Revokes the key from now on (a key revoked before keeps its first revocation time); NotFound if
        there is no such key."""
        now = self._clock()
        with self._engine.begin() as conn:
            live = (ApiKey.key_id == key_id) & ApiKey.revoked_at.is_(None)
            conn.execute(update(ApiKey).where(live).values(revoked_at=now))
            row = conn.execute(select(*_KEY_COLUMNS).where(ApiKey.key_id == key_id)).one_or_none()
        if row is None:
            raise NotFound(f"API key {key_id!r} not found", field="key_id")
        return _key(row)

    def touch(self, key_id: str, now: datetime | None = None) -> bool:
        """Records that the key was used at `now` (default: the clock), unless that was recorded less than
        `TOUCH_EVERY` ago; True if it wrote."""
        now = now or self._clock()
        with self._lock:
            last = self._touched.get(key_id)
            if last is not None and now - last < TOUCH_EVERY:
                return False
            self._touched[key_id] = now
        stmt = (
            update(ApiKey)
            .where(
                ApiKey.key_id == key_id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= now - TOUCH_EVERY),
            )
            .values(last_used_at=now)
        )
        with self._engine.begin() as conn:
            if conn.execute(stmt).rowcount > 0:
                return True
            # Another process wrote it within the minute: remember when, so the next write is on time.
            last_used = conn.execute(
                select(ApiKey.last_used_at).where(ApiKey.key_id == key_id)
            ).scalar_one_or_none()
        with self._lock:
            if last_used is None:
                self._touched.pop(key_id, None)  # an unknown key
            else:
                self._touched[key_id] = last_used
        return False


def _ensure_tenant(conn: Connection, tenant_id: str, now: datetime) -> None:
    """Inserts the tenant unless it exists, in the caller's transaction. A concurrent insert of the same
    tenant makes the caller's transaction fail with IntegrityError; callers retry, and then find it."""
    exists = conn.execute(select(Tenant.tenant_id).where(Tenant.tenant_id == tenant_id)).first()
    if exists is None:
        conn.execute(insert(Tenant).values(tenant_id=tenant_id, quotas={}, created_at=now))


def _get_tenant(conn: Connection, tenant_id: str) -> TenantRecord | None:
    row = conn.execute(
        select(Tenant.tenant_id, Tenant.quotas, Tenant.created_at).where(Tenant.tenant_id == tenant_id)
    ).one_or_none()
    return None if row is None else TenantRecord(*row)


def _insert_key(
    conn: Connection,
    key_id: str,
    tenant: str,
    subject: str | None,
    name: str | None,
    key_hash: str,
    now: datetime,
) -> None:
    conn.execute(
        insert(ApiKey).values(
            key_id=key_id, tenant=tenant, subject=subject, name=name, key_hash=key_hash, created_at=now
        )
    )


def _key(row: Row[Any]) -> KeyRecord:
    return KeyRecord(*row)


def _quotas(quotas: Mapping[str, Any]) -> dict[str, Any]:
    """Quota overrides: a JSON object of non-negative numbers (their meaning is the gateway's)."""
    values = json_object(quotas, "quotas")
    for key, value in values.items():
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < 0:
            raise InvalidArgument(
                f"quotas.{key} must be a non-negative number, got {value!r}", field="quotas"
            )
    return values
