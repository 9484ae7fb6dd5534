"""Per-tenant quotas at the gateway: the token bucket (in memory with an injected clock; in real Redis, shared
by two gateway replicas), per-tenant overrides, and the learner and job quotas (429 naming the quota)."""

from __future__ import annotations

import asyncio
import os

import pytest
import redis
from fastapi.testclient import TestClient
from fixtures.gateway import ACME, ADMIN, DFM_CONFIG, GLOBEX, NO_PREDICTOR, MakeGateway, TenantGateways
from fixtures.parallel import redis_url

from lyceum_core.identity import DEFAULT_TENANT
from lyceum_db.engine import create_engine
from lyceum_db.repositories import LearnerRepository
from lyceum_gateway.quotas import LocalBuckets, QuotaBook, TenantQuotas, check_overrides

pytestmark = pytest.mark.integration

QUOTA_REDIS_URL = os.environ.get("LYCEUM_TEST_QUOTA_REDIS_URL") or redis_url(0)
JOB = {"kind": "dfm_pretrain", "config": DFM_CONFIG}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def assert_quota(response, quota: str) -> dict:  # noqa: ANN001
    assert response.status_code == 429, response.text
    body = response.json()["error"]
    assert (body["code"], body["field"]) == ("RESOURCE_EXHAUSTED", quota)
    assert body["request_id"] == response.headers["x-request-id"]
    return body


# --- the pieces, with an injected clock ---------------------------------------------------------------------


def test_token_bucket_refills_at_the_rate() -> None:
    clock = FakeClock()
    buckets = LocalBuckets(clock=clock)

    def take() -> float:
        return asyncio.run(buckets.take("acme", 2.0, 3.0))

    assert [take() for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    assert take() == pytest.approx(0.5)  # empty: one token in 1/2 s
    clock.now += 0.5
    assert take() == 0.0
    clock.now += 100  # refills to the size, no more
    assert [take() for _ in range(4)][-1] > 0
    assert asyncio.run(buckets.take("globex", 2.0, 3.0)) == 0.0  # buckets are per key


def test_quota_book_caches_overrides_briefly() -> None:
    clock = FakeClock()
    overrides = {"acme": {"max_jobs": 2}}
    reads: list[str] = []

    def load(tenant: str) -> dict | None:
        reads.append(tenant)
        return overrides.get(tenant)

    book = QuotaBook(TenantQuotas(rps=5, max_jobs=10), load, ttl_s=5, clock=clock)

    assert book.cached("acme") is None  # never read: the request path reads it in a worker thread
    assert book.get("acme") == TenantQuotas(rps=5, max_jobs=2)
    assert book.get("globex") == TenantQuotas(rps=5, max_jobs=10)
    overrides["acme"] = {"max_jobs": 4}
    assert book.get("acme").max_jobs == 2  # cached
    assert book.cached("acme") == TenantQuotas(rps=5, max_jobs=2)  # on the event loop, no read
    clock.now += 5
    assert book.cached("acme") is None  # expired
    assert book.get("acme").max_jobs == 4
    assert reads == ["acme", "globex", "acme"]


@pytest.mark.parametrize(
    "quotas", [{"rps": -1}, {"max_jobs": 1.5}, {"max_jobs": True}, {"speed": 3}, {"burst": "2"}]
)
def test_bad_overrides_are_refused(quotas: dict) -> None:
    with pytest.raises(Exception, match="quota"):
        check_overrides(quotas)


# --- through the gateway ------------------------------------------------------------------------------------


def test_rate_quota_answers_429_with_retry_after(make_gateway: MakeGateway, jobs_settings: dict) -> None:
    # One request per 1000 s, a burst of 2: the third request waits ~1000 s whatever the test's speed.
    client = make_gateway([NO_PREDICTOR], **jobs_settings, quota_rps=0.001, quota_burst=2)

    assert [client.get("/v1/jobs").status_code for _ in range(2)] == [200, 200]
    refused = client.get("/v1/jobs")

    body = assert_quota(refused, "rps")
    assert 990 <= int(refused.headers["retry-after"]) <= 1000
    assert "rate" in body["message"]
    compat = client.get("/dfm-server/tasks")
    assert compat.status_code == 429 and set(compat.json()) == {"detail", "request_id"}
    assert client.get("/healthz").status_code == 200  # probes are never limited
    assert 'lyceum_quota_refusals_total{quota="rps"} 2.0' in client.get("/metrics").text


def test_rate_quota_is_per_tenant_with_overrides(tenant_gateways: TenantGateways) -> None:
    a = tenant_gateways.a
    set_rps = a.put("/v1/admin/tenants/acme/quotas", json={"rps": 0.001, "burst": 1}, headers=ADMIN)
    assert set_rps.status_code == 200

    assert a.get("/v1/jobs", headers=ACME).status_code == 200
    assert_quota(a.get("/v1/jobs", headers=ACME), "rps")
    assert [a.get("/v1/jobs", headers=GLOBEX).status_code for _ in range(3)] == [200, 200, 200]


def test_redis_token_bucket_is_shared_by_gateway_replicas(
    make_gateway: MakeGateway, jobs_settings: dict
) -> None:
    store = redis.Redis.from_url(QUOTA_REDIS_URL)
    try:
        store.flushdb()
    except redis.ConnectionError:
        pytest.fail(
            f"Redis at {QUOTA_REDIS_URL} did not answer: start one (or set LYCEUM_TEST_QUOTA_REDIS_URL)"
        )
    settings = {**jobs_settings, "quota_rps": 0.001, "quota_burst": 3, "quota_redis_url": QUOTA_REDIS_URL}
    a = make_gateway([NO_PREDICTOR], **settings)
    b = make_gateway([NO_PREDICTOR], **settings)

    statuses = [client.get("/v1/jobs").status_code for client in (a, b, a)]
    refused = b.get("/v1/jobs")

    assert statuses == [200, 200, 200]
    assert_quota(refused, "rps")
    assert int(refused.headers["retry-after"]) >= 990
    assert store.exists(f"lyceum:quota:rps:{DEFAULT_TENANT}")
    store.flushdb()
    store.close()


def test_learner_quota_is_checked_before_a_register(make_gateway: MakeGateway, jobs_settings: dict) -> None:
    # No predictor behind: the quota refuses before any call to one.
    engine = create_engine(jobs_settings["database_url"])
    LearnerRepository(engine).create(DEFAULT_TENANT, "ada", [])
    engine.dispose()
    client = make_gateway([NO_PREDICTOR], **jobs_settings, quota_max_learners=1)

    body = assert_quota(client.post("/v1/learners", json={"learner_id": "bob"}), "max_learners")

    assert "1 learners" in body["message"]
    assert 'lyceum_quota_refusals_total{quota="max_learners"} 1.0' in client.get("/metrics").text


def test_job_quota_counts_queued_and_running_jobs(tenant_gateways: TenantGateways) -> None:
    a: TestClient = tenant_gateways.a
    assert a.put("/v1/admin/tenants/acme/quotas", json={"max_jobs": 1}, headers=ADMIN).status_code == 200
    first = a.post("/v1/jobs", json=JOB, headers=ACME)
    assert first.status_code == 201

    body = assert_quota(a.post("/v1/jobs", json=JOB, headers=ACME), "max_jobs")

    assert "quota of 1 queued or running jobs" in body["message"]
    assert a.post("/v1/jobs", json=JOB, headers=GLOBEX).status_code == 201  # another tenant's quota
    assert a.post(f"/v1/jobs/{first.json()['job_id']}/cancel", headers=ACME).status_code == 200
    assert a.post("/v1/jobs", json=JOB, headers=ACME).status_code == 201  # a cancelled job frees its place


def test_a_retried_submission_gets_its_job_even_at_the_job_quota(tenant_gateways: TenantGateways) -> None:
    # Was 429: the quota was checked before the idempotency key, so a client retrying an accepted submission
    # (a lost response) was refused while its own job held the tenant's last place.
    a: TestClient = tenant_gateways.a
    assert a.put("/v1/admin/tenants/acme/quotas", json={"max_jobs": 1}, headers=ADMIN).status_code == 200
    first = a.post("/v1/jobs", json={**JOB, "idempotency_key": "nightly-1"}, headers=ACME)
    assert first.status_code == 201

    retried = a.post("/v1/jobs", json=JOB, headers={**ACME, "Idempotency-Key": "nightly-1"})

    assert (retried.status_code, retried.json()) == (200, first.json())
    other = {"kind": "dfm_pretrain", "config": {**DFM_CONFIG, "train": {"steps": 41}}}
    reused = a.post("/v1/jobs", json={**other, "idempotency_key": "nightly-1"}, headers=ACME)
    assert reused.status_code == 409  # the key's job differs: a conflict, not the quota
    assert_quota(a.post("/v1/jobs", json={**JOB, "idempotency_key": "nightly-2"}, headers=ACME), "max_jobs")
    assert len(tenant_gateways.jobs.list("acme")) == 1
