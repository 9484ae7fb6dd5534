"""Tenants and API keys at the gateway, on a real database (SQLite and PostgreSQL) with two gateway replicas:
bootstrap `tenant:key` settings, key authentication (none and unknown keys are 401 at once; a revoked key at
once on the replica that revoked it and on every other within the key cache's time, with an injected clock;
concurrent requests share one lookup), the admin routes, and jobs and models isolated per tenant (another
tenant's is a plain 404)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from fixtures.gateway import (
    ACME,
    ACME_KEY,
    ADMIN,
    ADMIN_KEY,
    DFM_CONFIG,
    GLOBEX,
    GLOBEX_KEY,
    NO_PREDICTOR,
    MakeGateway,
    TenantGateways,
    gateway_settings,
)

from lyceum_core.identity import PLATFORM_TENANT
from lyceum_db.repositories import ApiKeyRepository
from lyceum_gateway.auth import KeyStore
from lyceum_gateway.main import create_app

pytestmark = pytest.mark.integration


def error(response) -> dict:  # noqa: ANN001
    body = response.json()
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return body["error"]


CACHE_S = 5.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clocked_gateways(tenant_gateways: TenantGateways) -> Iterator[tuple[TestClient, TestClient, FakeClock]]:
    """Two replicas like `tenant_gateways`, whose key caches (`CACHE_S`) run on one injected clock."""
    clock = FakeClock()
    settings = gateway_settings([NO_PREDICTOR], **{**tenant_gateways.settings, "auth_cache_s": CACHE_S})
    with ExitStack() as stack:
        a, b = (stack.enter_context(TestClient(create_app(settings, clock=clock))) for _ in range(2))
        yield a, b, clock


def create_key(client: TestClient, tenant: str, **extra: str) -> dict:
    response = client.post("/v1/admin/keys", json={"tenant": tenant, **extra}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


# --- keys ---------------------------------------------------------------------------------------------------


def test_bootstrap_keys_create_their_tenants(tenant_gateways: TenantGateways) -> None:
    tenants = tenant_gateways.a.get("/v1/admin/tenants", headers=ADMIN).json()["tenants"]
    keys = tenant_gateways.b.get("/v1/admin/keys", headers=ADMIN).json()["keys"]

    assert {"acme", "globex"} <= {t["tenant_id"] for t in tenants}
    assert sorted(k["tenant"] for k in keys) == ["acme", "globex"]
    assert all("key" not in k for k in keys)  # plaintext is never listed
    assert tenant_gateways.a.get("/v1/jobs", headers=ACME).status_code == 200
    assert tenant_gateways.b.get("/v1/jobs", headers=GLOBEX).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-key"),
        pytest.param({"Authorization": "Bearer lyk_0000_nope"}, id="unknown"),
        pytest.param({"X-API-Key": ADMIN_KEY}, id="admin-key-is-no-tenant-key"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/models", "/dfm-server/tasks", "/token-wheel/api/models"])
def test_every_mount_needs_a_tenant_key(tenant_gateways: TenantGateways, headers: dict, path: str) -> None:
    response = tenant_gateways.a.get(path, headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    if path.startswith("/v1/"):
        assert error(response)["code"] == "UNAUTHENTICATED"
    else:  # the compatibility mounts' shape
        assert response.json()["request_id"] == response.headers["x-request-id"]
        assert "API key" in response.json()["detail"]


def test_revoked_key_is_refused_at_once_here_and_on_every_replica_within_the_cache_time(
    clocked_gateways: tuple[TestClient, TestClient, FakeClock],
) -> None:
    a, b, clock = clocked_gateways
    created = create_key(a, "acme", subject="user-7", name="app")
    assert created["key"].startswith("lyk_") and created["subject"] == "user-7"
    key = {"Authorization": f"Bearer {created['key']}"}
    assert a.get("/v1/jobs", headers=key).status_code == 200  # both replicas now trust it from memory
    assert b.get("/v1/jobs", headers=key).status_code == 200

    revoked = b.post(f"/v1/admin/keys/{created['key_id']}/revoke", headers=ADMIN)

    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert b.get("/v1/jobs", headers=key).status_code == 401  # the replica that revoked it: at once
    clock.now += CACHE_S - 0.1
    assert a.get("/v1/jobs", headers=key).status_code == 200  # the price of no database read per request
    clock.now += 0.1
    for gateway in (a, b):
        response = gateway.get("/v1/jobs", headers=key)
        assert response.status_code == 401
        assert error(response)["message"] == "invalid API key"
    assert a.get("/v1/jobs", headers=ACME).status_code == 200  # other keys are unaffected
    listed = {k["key_id"]: k for k in a.get("/v1/admin/keys?tenant=acme", headers=ADMIN).json()["keys"]}
    assert listed[created["key_id"]]["revoked_at"] is not None
    assert listed[created["key_id"]]["last_used_at"] is not None


def test_an_unknown_key_is_refused_every_time_and_a_new_one_works_at_once(
    clocked_gateways: tuple[TestClient, TestClient, FakeClock],
) -> None:
    a, b, _ = clocked_gateways
    assert a.get("/v1/jobs", headers={"X-API-Key": "lyk_not_yet"}).status_code == 401
    created = create_key(b, "globex")  # on the other replica: nothing negative was cached on `a`

    assert a.get("/v1/jobs", headers={"X-API-Key": created["key"]}).status_code == 200


def count_key_lookups(engine: sa.Engine) -> list[str]:
    """The SELECTs on `api_keys` that `engine` runs from now on."""
    seen: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        if statement.lstrip().upper().startswith("SELECT") and "api_keys" in statement:
            seen.append(statement)

    return seen


def test_concurrent_requests_share_one_key_lookup_and_the_cache_expires(
    tenant_gateways: TenantGateways, jobs_engine: sa.Engine
) -> None:
    clock = FakeClock()
    repository = ApiKeyRepository(jobs_engine)
    store = KeyStore(repository, configured=True, cache_s=CACHE_S, max_cached=1, clock=clock)
    lookups = count_key_lookups(jobs_engine)

    async def authenticate_many(key: str, n: int) -> list[str | None]:
        records = await asyncio.gather(*(store.authenticate(key) for _ in range(n)))
        return [r.tenant if r is not None else None for r in records]

    assert asyncio.run(authenticate_many(ACME_KEY, 20)) == ["acme"] * 20
    assert len(lookups) == 1
    clock.now += CACHE_S - 0.1
    assert asyncio.run(authenticate_many(ACME_KEY, 5)) == ["acme"] * 5
    assert len(lookups) == 1  # from memory
    clock.now += 0.1
    assert asyncio.run(authenticate_many(ACME_KEY, 5)) == ["acme"] * 5
    assert len(lookups) == 2  # expired: read again

    assert asyncio.run(authenticate_many("lyk_unknown", 3)) == [None] * 3
    assert asyncio.run(authenticate_many("lyk_unknown", 1)) == [None]
    assert len(lookups) == 4  # unknown keys are not cached
    record = repository.authenticate(ACME_KEY)
    assert record is not None
    store.forget(record.key_id)
    asyncio.run(authenticate_many(ACME_KEY, 1))
    assert len(lookups) == 6  # forgotten: read again (and the test's own read above)
    assert asyncio.run(authenticate_many(GLOBEX_KEY, 1)) == ["globex"]
    assert asyncio.run(authenticate_many(ACME_KEY, 1)) == ["acme"]
    assert len(lookups) == 8  # one key fits (max_cached=1): globex's entry pushed acme's out


def test_a_new_key_acts_for_its_tenant(tenant_gateways: TenantGateways) -> None:
    created = create_key(tenant_gateways.a, "globex")
    key = {"X-API-Key": created["key"]}
    job = tenant_gateways.a.post("/v1/jobs", json={"kind": "dfm_pretrain", "config": DFM_CONFIG}, headers=key)

    assert job.status_code == 201
    assert tenant_gateways.b.get(f"/v1/jobs/{job.json()['job_id']}", headers=GLOBEX).status_code == 200
    assert tenant_gateways.b.get(f"/v1/jobs/{job.json()['job_id']}", headers=ACME).status_code == 404


# --- admin routes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({}, 401, id="no-key"),
        pytest.param(ACME, 401, id="tenant-key"),
        pytest.param({"X-API-Key": "wrong"}, 401, id="wrong-key"),
        pytest.param(ADMIN, 200, id="admin-key"),
    ],
)
def test_admin_routes_need_the_admin_key(tenant_gateways: TenantGateways, headers: dict, status: int) -> None:
    assert tenant_gateways.a.get("/v1/admin/tenants", headers=headers).status_code == status
    assert tenant_gateways.a.get("/v1/admin/keys", headers=headers).status_code == status


def test_admin_creates_tenants_with_quotas(tenant_gateways: TenantGateways) -> None:
    client = tenant_gateways.a
    created = client.post(
        "/v1/admin/tenants",
        json={"tenant_id": "initech", "quotas": {"max_jobs": 3, "rps": 2.5}},
        headers=ADMIN,
    )
    again = client.post("/v1/admin/tenants", json={"tenant_id": "initech"}, headers=ADMIN)
    bad = client.post("/v1/admin/tenants", json={"tenant_id": "Not A Tenant"}, headers=ADMIN)
    no_tenant = client.post("/v1/admin/keys", json={"tenant": "nobody"}, headers=ADMIN)
    quotas = client.put("/v1/admin/tenants/initech/quotas", json={"max_learners": 10}, headers=ADMIN)

    assert created.status_code == 201, created.text
    assert created.json()["quotas"] == {"max_jobs": 3, "rps": 2.5}
    assert created.headers["location"] == "/v1/admin/tenants/initech"
    assert again.status_code == 409
    assert bad.status_code == 422
    assert no_tenant.status_code == 404
    assert quotas.status_code == 200 and quotas.json()["quotas"] == {"max_learners": 10}
    listed = {t["tenant_id"]: t for t in client.get("/v1/admin/tenants", headers=ADMIN).json()["tenants"]}
    assert listed["initech"]["quotas"] == {"max_learners": 10}
    assert client.post("/v1/admin/keys/0123456789abcdef/revoke", headers=ADMIN).status_code == 404


def test_admin_routes_are_disabled_without_an_admin_key_once_keys_exist(
    make_gateway: MakeGateway, jobs_settings: dict
) -> None:
    client = make_gateway([NO_PREDICTOR], **jobs_settings, api_keys=["acme:k-a"])

    response = client.get("/v1/admin/tenants", headers={"X-API-Key": "k-a"})

    assert response.status_code == 403
    assert "LYCEUM_GATEWAY_ADMIN_KEYS" in error(response)["message"]


def test_a_keyless_install_is_open_until_a_key_is_created(
    make_gateway: MakeGateway, jobs_settings: dict
) -> None:
    a = make_gateway([NO_PREDICTOR], **jobs_settings)
    b = make_gateway([NO_PREDICTOR], **jobs_settings)
    assert a.get("/v1/jobs").status_code == 200
    assert a.post("/v1/admin/tenants", json={"tenant_id": "acme"}).status_code == 201

    created = a.post("/v1/admin/keys", json={"tenant": "acme"})

    assert created.status_code == 201
    key = {"X-API-Key": created.json()["key"]}
    assert a.get("/v1/jobs").status_code == 401  # keys exist now: authentication is on
    assert a.get("/v1/admin/tenants").status_code == 403  # and the admin routes close
    assert a.get("/v1/jobs", headers=key).status_code == 200
    assert b.get("/v1/jobs", headers=key).status_code == 200


# --- isolation ----------------------------------------------------------------------------------------------


def test_jobs_are_isolated_per_tenant(tenant_gateways: TenantGateways) -> None:
    a, b = tenant_gateways.a, tenant_gateways.b
    body = {"kind": "dfm_pretrain", "config": DFM_CONFIG, "idempotency_key": "nightly"}
    mine = a.post("/v1/jobs", json=body, headers=ACME)
    theirs = b.post("/v1/jobs", json=body, headers=GLOBEX)  # the same idempotency key: no collision
    assert (mine.status_code, theirs.status_code) == (201, 201)
    job_id = mine.json()["job_id"]
    assert theirs.json()["job_id"] != job_id

    missing = b.get("/v1/jobs/0123456789abcdef0123456789abcdef", headers=GLOBEX)
    for method, path in [
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/metrics"),
        ("GET", f"/v1/jobs/{job_id}/events"),
        ("POST", f"/v1/jobs/{job_id}/cancel"),
        ("POST", f"/v1/jobs/{job_id}/resume"),
    ]:
        response = b.request(method, path, headers=GLOBEX)
        assert response.status_code == 404, (method, path)
        assert error(response)["message"] == f"job {job_id!r} not found"
    assert error(missing)["message"].startswith("job ")
    assert [j["job_id"] for j in b.get("/v1/jobs", headers=GLOBEX).json()["jobs"]] == [
        theirs.json()["job_id"]
    ]
    assert [j["job_id"] for j in a.get("/v1/jobs", headers=ACME).json()["jobs"]] == [job_id]
    assert b.get(f"/v1/jobs?before={job_id}", headers=GLOBEX).status_code == 400  # not a cursor of theirs


def test_models_are_isolated_and_platform_models_shared(tenant_gateways: TenantGateways) -> None:
    models = tenant_gateways.models
    models.register("acme", "tutor", "dfm", "var/registry/acme/tutor/1", {"auc": 0.7})
    models.register(PLATFORM_TENANT, "dfm-demo", "dfm", "var/registry/dfm-demo/1", {"auc": 0.8}, public=True)
    a, b = tenant_gateways.a, tenant_gateways.b

    def names(client: TestClient, headers: dict) -> set[str]:
        return {m["name"] for m in client.get("/v1/models", headers=headers).json()["models"]}

    assert names(a, ACME) == {"tutor", "dfm-demo"}
    assert names(b, GLOBEX) == {"dfm-demo"}
    assert a.get("/v1/models/tutor", headers=ACME).status_code == 200
    assert b.get("/v1/models/dfm-demo/versions/latest", headers=GLOBEX).status_code == 200
    for method, path, body in [
        ("GET", "/v1/models/tutor", None),
        ("GET", "/v1/models/tutor/versions/1", None),
        ("PUT", "/v1/models/tutor/aliases/prod", {"version": 1}),
        ("POST", "/v1/models/tutor/aliases/latest/rollback", None),
        ("PUT", "/v1/models/dfm-demo/aliases/prod", {"version": 1}),  # public: readable, not writable
    ]:
        response = b.request(method, path, json=body, headers=GLOBEX)
        assert response.status_code == 404, (method, path, response.text)
    assert a.put("/v1/models/tutor/aliases/prod", json={"version": 1}, headers=ACME).status_code == 200
