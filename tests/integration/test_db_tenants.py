"""TenantRepository and ApiKeyRepository on real SQLite and PostgreSQL: tenants and their quota overrides;
keys stored only as hashes, authenticated, listed, revoked, and their last use throttled."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
import sqlalchemy as sa
from fixtures.threads import race
from test_db_jobs import FakeClock

from lyceum_core.errors import AlreadyExists, InvalidArgument, NotFound
from lyceum_db import ApiKeyRepository, TenantRepository

pytestmark = pytest.mark.integration


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tenants(db_engine: sa.Engine, clock: FakeClock) -> TenantRepository:
    return TenantRepository(db_engine, clock=clock)


@pytest.fixture
def keys(db_engine: sa.Engine, clock: FakeClock) -> ApiKeyRepository:
    return ApiKeyRepository(db_engine, clock=clock)


def test_create_get_list_and_quotas(tenants: TenantRepository, clock: FakeClock) -> None:
    acme = tenants.create("acme", {"rps": 5.5, "max_learners": 10})
    assert (acme.tenant_id, acme.quotas, acme.created_at) == (
        "acme",
        {"rps": 5.5, "max_learners": 10},
        clock.now,
    )
    assert tenants.get("acme") == acme
    assert tenants.get("globex") is None
    with pytest.raises(AlreadyExists) as info:
        tenants.create("acme")
    assert info.value.field == "tenant_id"

    globex = tenants.ensure("globex")
    assert globex.quotas == {}
    assert tenants.ensure("globex") == globex  # idempotent
    assert tenants.ensure("acme") == acme  # keeps the existing overrides
    assert [t.tenant_id for t in tenants.list()] == ["acme", "globex"]

    updated = tenants.set_quotas("acme", {"max_jobs": 2})
    assert updated.quotas == {"max_jobs": 2}
    assert tenants.get("acme") == updated
    with pytest.raises(NotFound) as info:
        tenants.set_quotas("initech", {})
    assert info.value.field == "tenant_id"


@pytest.mark.parametrize("quotas", [{"rps": -1}, {"rps": "fast"}, {"rps": True}, {"rps": None}, ["rps"]])
def test_invalid_quotas_are_rejected(tenants: TenantRepository, quotas: object) -> None:
    with pytest.raises(InvalidArgument) as info:
        tenants.create("acme", quotas)  # type: ignore[arg-type]
    assert info.value.field == "quotas"
    assert tenants.list() == []


@pytest.mark.parametrize("tenant_id", ["", "Acme", "a" * 64, "-acme", "ac me"])
def test_invalid_tenant_ids_are_rejected(tenants: TenantRepository, tenant_id: str) -> None:
    with pytest.raises(InvalidArgument):
        tenants.create(tenant_id)
    with pytest.raises(InvalidArgument):
        tenants.ensure(tenant_id)


def test_racing_ensures_make_one_tenant(tenants: TenantRepository) -> None:
    results, errors = race(6, lambda i: tenants.ensure("acme"))
    assert not errors, errors
    assert all(r == results[0] for r in results)
    assert [t.tenant_id for t in tenants.list()] == ["acme"]


def test_a_key_is_stored_only_as_its_hash(
    keys: ApiKeyRepository, tenants: TenantRepository, db_engine: sa.Engine, clock: FakeClock
) -> None:
    record, plaintext = keys.create("acme", subject="user-7", name="ci")
    assert plaintext.startswith(f"lyk_{record.key_id}_")
    assert len(plaintext) > len("lyk_") + 16 + 40
    assert (record.tenant, record.subject, record.name) == ("acme", "user-7", "ci")
    assert (record.created_at, record.last_used_at, record.revoked_at) == (clock.now, None, None)
    assert tenants.get("acme") is not None  # the key's tenant was created with it

    with db_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM api_keys")).mappings().all()
    assert len(rows) == 1
    assert rows[0]["key_hash"] == hashlib.sha256(plaintext.encode()).hexdigest()
    assert all(plaintext not in str(value) for value in rows[0].values())


def test_authenticate_finds_the_key_and_its_tenant(keys: ApiKeyRepository) -> None:
    a, key_a = keys.create("acme")
    b, key_b = keys.create("globex", subject="svc")
    assert keys.authenticate(key_a) == a
    assert keys.authenticate(key_b) == b
    for wrong in ("", key_a + "x", key_a[:-1], "lyk_" + a.key_id + "_guess", a.key_id):
        assert keys.authenticate(wrong) is None


def test_revoke_makes_the_key_unusable_at_once(keys: ApiKeyRepository, clock: FakeClock) -> None:
    record, plaintext = keys.create("acme")
    revoked = keys.revoke(record.key_id)
    assert revoked.revoked_at == clock.now
    assert revoked.revoked
    assert keys.authenticate(plaintext) is None
    clock.advance(10)
    assert keys.revoke(record.key_id).revoked_at == revoked.revoked_at  # the first revocation counts
    with pytest.raises(NotFound) as info:
        keys.revoke("0" * 16)
    assert info.value.field == "key_id"


def test_list_all_or_per_tenant(keys: ApiKeyRepository, clock: FakeClock) -> None:
    a1, _ = keys.create("acme")
    clock.advance(1)
    b1, _ = keys.create("globex")
    clock.advance(1)
    a2, _ = keys.create("acme", name="second")
    keys.revoke(a1.key_id)
    assert [k.key_id for k in keys.list()] == [a1.key_id, b1.key_id, a2.key_id]
    assert [k.key_id for k in keys.list("acme")] == [a1.key_id, a2.key_id]
    assert keys.list("acme")[0].revoked
    assert keys.list("initech") == []


def test_static_keys_are_idempotent_and_follow_the_settings(
    keys: ApiKeyRepository, tenants: TenantRepository
) -> None:
    first = keys.ensure_static("acme", "key-a")
    assert first.key_id == hashlib.sha256(b"key-a").hexdigest()[:16]
    assert keys.ensure_static("acme", "key-a") == first
    assert keys.authenticate("key-a") == first
    assert [k.key_id for k in keys.list()] == [first.key_id]
    assert tenants.get("acme") is not None

    moved = keys.ensure_static("globex", "key-a")  # the settings now give the key to another tenant
    assert (moved.key_id, moved.tenant) == (first.key_id, "globex")
    assert keys.authenticate("key-a") == moved

    keys.revoke(first.key_id)
    assert keys.ensure_static("globex", "key-a").revoked  # a restart does not undo a revocation
    assert keys.authenticate("key-a") is None
    with pytest.raises(InvalidArgument):
        keys.ensure_static("acme", "")


def test_racing_static_keys_make_one_key(keys: ApiKeyRepository) -> None:
    results, errors = race(6, lambda i: keys.ensure_static("acme", "key-a"))
    assert not errors, errors
    assert len({r.key_id for r in results}) == 1
    assert len(keys.list()) == 1


def test_touch_writes_at_most_once_a_minute_per_key(
    keys: ApiKeyRepository, db_engine: sa.Engine, clock: FakeClock
) -> None:
    a, _ = keys.create("acme")
    b, _ = keys.create("acme")
    t0 = clock.now
    assert keys.touch(a.key_id) is True
    assert keys.get(a.key_id).last_used_at == t0  # type: ignore[union-attr]
    assert keys.touch(a.key_id, t0 + timedelta(seconds=59)) is False
    assert keys.touch(b.key_id, t0 + timedelta(seconds=30)) is True  # throttled per key
    assert keys.get(a.key_id).last_used_at == t0  # type: ignore[union-attr]
    assert keys.touch(a.key_id, t0 + timedelta(seconds=60)) is True
    assert keys.get(a.key_id).last_used_at == t0 + timedelta(seconds=60)  # type: ignore[union-attr]

    # Another process (another repository) is throttled by the database, not only by its own memory.
    other = ApiKeyRepository(db_engine, clock=clock)
    assert other.touch(a.key_id, t0 + timedelta(seconds=90)) is False
    assert other.touch(a.key_id, t0 + timedelta(seconds=120)) is True
    assert keys.touch("0" * 16) is False  # unknown: nothing to write


@pytest.mark.parametrize(
    ("tenant", "subject", "name", "field"),
    [("Bad", None, None, "tenant"), ("acme", "has space", None, "subject"), ("acme", None, "", "name")],
)
def test_invalid_keys_are_rejected(
    keys: ApiKeyRepository, tenant: str, subject: str | None, name: str | None, field: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        keys.create(tenant, subject=subject, name=name)
    assert info.value.field == field
    assert keys.list() == []
