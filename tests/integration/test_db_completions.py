"""CompletionRepository on real SQLite and PostgreSQL: recorded completions read back exactly, stay private to
their tenant, are refused when malformed or duplicated, list newest first and are purged by age."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from fixtures.threads import race

from lyceum_core.errors import AlreadyExists, InvalidArgument
from lyceum_core.identity import new_completion_id
from lyceum_db import CompletionRecord, CompletionRepository
from lyceum_db.repositories.completions import MAX_TOKENS

pytestmark = pytest.mark.integration

A, B = "acme", "globex"  # two tenants
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def repo(db_engine: sa.Engine) -> CompletionRepository:
    return CompletionRepository(db_engine)


def completion(tenant: str = A, *, at: datetime = T0, **changes: Any) -> CompletionRecord:
    rec = CompletionRecord(
        tenant=tenant,
        completion_id=new_completion_id(),
        model="default/lm-demo@1",
        adapter="acme/lm-demo-tutor@2",
        subject="student-7",
        prompt_ids=(5, 17, 0),
        token_ids=(42, 3),
        logprobs=(-0.25, -1.5),
        params={"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 2, "stop": ["\n"]},
        finish_reason="length",
        created_at=at,
    )
    return dataclasses.replace(rec, **changes)


def test_record_then_get_reads_back_exactly(repo: CompletionRepository) -> None:
    rec = completion()
    assert repo.record(rec) is None
    got = repo.get(A, rec.completion_id)
    assert got == rec
    assert got is not None and got.created_at.utcoffset() == timedelta(0)
    assert isinstance(got.token_ids, tuple) and isinstance(got.logprobs, tuple)

    plain = completion(adapter=None, subject=None, prompt_ids=(), token_ids=(), logprobs=(), params={})
    repo.record(dataclasses.replace(plain, finish_reason="eos"))
    assert repo.get(A, plain.completion_id) == dataclasses.replace(plain, finish_reason="eos")


def test_another_tenants_completion_is_missing(repo: CompletionRepository) -> None:
    rec = completion()
    repo.record(rec)
    assert repo.get(B, rec.completion_id) is None
    assert repo.get(A, new_completion_id()) is None
    assert repo.get(A, "not-an-id") is None
    assert repo.list(B) == []
    # Ids are per tenant: the same id in another tenant is another completion.
    theirs = completion(B, completion_id=rec.completion_id, token_ids=(1,), logprobs=(0.0,))
    repo.record(theirs)
    assert (repo.get(A, rec.completion_id), repo.get(B, rec.completion_id)) == (rec, theirs)


def test_duplicate_id_is_already_exists(repo: CompletionRepository) -> None:
    rec = completion()
    repo.record(rec)
    with pytest.raises(AlreadyExists) as info:
        repo.record(dataclasses.replace(rec, token_ids=(9,), logprobs=(-3.0,)))
    assert info.value.field == "completion_id"
    assert repo.get(A, rec.completion_id) == rec  # the first one is untouched


def test_racing_duplicates_store_one(repo: CompletionRepository) -> None:
    rec = completion()
    results, errors = race(
        4, lambda i: repo.record(dataclasses.replace(rec, token_ids=(i,), logprobs=(-1.0,)))
    )
    assert len(results) == 1 and len(errors) == 3
    assert all(isinstance(error, AlreadyExists) for error in errors)
    assert len(repo.list(A)) == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"tenant": "Acme!"}, "tenant"),
        ({"completion_id": "cmpl-123"}, "completion_id"),
        ({"completion_id": "cmpl-" + "A" * 32}, "completion_id"),
        ({"subject": "no spaces"}, "subject"),
        ({"subject": ""}, "subject"),
        ({"model": ""}, "model"),
        ({"adapter": ""}, "adapter"),
        ({"finish_reason": "timeout"}, "finish_reason"),
        ({"finish_reason": ""}, "finish_reason"),
        ({"logprobs": (-0.25,)}, "logprobs"),  # one per sampled token
        ({"logprobs": (-0.25, float("nan"))}, "logprobs"),
        ({"logprobs": (-0.25, float("-inf"))}, "logprobs"),
        ({"logprobs": (-0.25, "x")}, "logprobs"),
        ({"token_ids": (42, -1)}, "token_ids"),
        ({"token_ids": (42, 3.0)}, "token_ids"),
        ({"token_ids": (42, True)}, "token_ids"),
        ({"prompt_ids": (None,)}, "prompt_ids"),
        ({"prompt_ids": (0,) * (MAX_TOKENS + 1)}, "prompt_ids"),
        ({"token_ids": (0,) * (MAX_TOKENS + 1), "logprobs": (0.0,) * (MAX_TOKENS + 1)}, "token_ids"),
        ({"params": {"temperature": float("inf")}}, "params"),
        ({"params": ["not", "a", "mapping"]}, "params"),
        ({"created_at": datetime(2026, 1, 1)}, "created_at"),  # naive
    ],
)
def test_record_refuses_malformed_completions(
    repo: CompletionRepository, changes: dict[str, Any], field: str
) -> None:
    rec = completion(**changes)
    with pytest.raises(InvalidArgument) as info:
        repo.record(rec)
    assert info.value.field == field
    assert repo.list(A) == [] and repo.list("acme") == []


def test_numpy_values_are_stored_as_plain_numbers(repo: CompletionRepository) -> None:
    rec = completion(
        prompt_ids=tuple(np.array([1, 2], dtype=np.int64)),
        token_ids=tuple(np.array([7, 8, 9], dtype=np.int32)),
        logprobs=tuple(np.array([-0.5, -1.25, -0.125], dtype=np.float32)),
    )
    repo.record(rec)
    got = repo.get(A, rec.completion_id)
    assert got is not None
    assert (got.prompt_ids, got.token_ids, got.logprobs) == ((1, 2), (7, 8, 9), (-0.5, -1.25, -0.125))
    assert all(type(x) is int for x in got.token_ids) and all(type(x) is float for x in got.logprobs)


def test_a_long_completion_round_trips(repo: CompletionRepository) -> None:
    n = 20_000
    rng = np.random.default_rng(0)
    rec = completion(
        prompt_ids=tuple(range(n)),
        token_ids=tuple(int(x) for x in rng.integers(0, 50_000, n)),
        logprobs=tuple(float(x) for x in -rng.exponential(2.0, n)),  # full float64 precision survives
    )
    repo.record(rec)
    assert repo.get(A, rec.completion_id) == rec


def test_list_is_newest_first_per_tenant_and_subject(repo: CompletionRepository) -> None:
    old = completion(at=T0)
    mid = completion(at=T0 + timedelta(seconds=1), subject="student-9")
    new = completion(at=T0 + timedelta(seconds=2), subject=None)
    theirs = completion(B, at=T0 + timedelta(seconds=3))
    for rec in (mid, theirs, old, new):
        repo.record(rec)

    assert repo.list(A) == [new, mid, old]
    assert repo.list(A, limit=2) == [new, mid]
    assert repo.list(A, subject="student-7") == [old]
    assert repo.list(A, subject="student-9") == [mid]
    assert repo.list(A, subject="nobody") == []
    assert repo.list(B) == [theirs]
    # Equal timestamps still list in one stable order.
    twins = sorted((completion(at=T0 + timedelta(hours=1)) for _ in range(3)), key=lambda r: r.completion_id)
    for rec in twins:
        repo.record(rec)
    assert repo.list(A, limit=3) == twins[::-1]
    for limit in (0, 1001):
        with pytest.raises(InvalidArgument) as info:
            repo.list(A, limit=limit)
        assert info.value.field == "limit"


def test_purge_drops_every_tenants_old_completions(repo: CompletionRepository) -> None:
    old_a, old_b = completion(A, at=T0), completion(B, at=T0 + timedelta(minutes=1))
    edge = completion(A, at=T0 + timedelta(days=1))
    new = completion(B, at=T0 + timedelta(days=2))
    for rec in (old_a, old_b, edge, new):
        repo.record(rec)

    assert repo.purge(T0 + timedelta(days=1)) == 2  # strictly before: `edge` stays
    assert repo.list(A) == [edge] and repo.list(B) == [new]
    assert repo.get(A, old_a.completion_id) is None
    assert repo.purge(T0 + timedelta(days=1)) == 0
    # Any timezone: compared as instants.
    assert repo.purge((T0 + timedelta(days=3)).astimezone(timezone(timedelta(hours=-5)))) == 2
    with pytest.raises(InvalidArgument) as info:
        repo.purge(datetime(2030, 1, 1))
    assert info.value.field == "before"
