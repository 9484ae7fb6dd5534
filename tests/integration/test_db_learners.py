"""LearnerRepository on real SQLite and PostgreSQL: round trips, optimistic concurrency, errors, races."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fixtures.threads import race

from lyceum_core.errors import Aborted, AlreadyExists, InvalidArgument, NotFound
from lyceum_db import LearnerRecord, LearnerRepository

pytestmark = pytest.mark.integration

A, B = "acme", "globex"  # two tenants
EVENTS = [("add", 1.0), ("sub", 0.0), ("mul", 0.5)]


@pytest.fixture
def repo(db_engine: sa.Engine) -> LearnerRepository:
    return LearnerRepository(db_engine)


def _event_count(engine: sa.Engine, learner_id: str, tenant: str = A) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT count(*) FROM learner_events WHERE tenant = :tenant AND learner_id = :id"),
            {"tenant": tenant, "id": learner_id},
        ).scalar_one()


def test_create_then_get_and_history_round_trip(repo: LearnerRepository) -> None:
    before = datetime.now(UTC)
    created = repo.create(A, "ada", EVENTS)
    after = datetime.now(UTC)

    assert created.tenant == A
    assert created.learner_id == "ada"
    assert created.history_len == 3
    assert created.created_at == created.updated_at
    assert before <= created.created_at <= after
    assert repo.get(A, "ada") == created
    assert repo.history(A, "ada") == EVENTS


def test_timestamps_come_back_in_utc(repo: LearnerRepository) -> None:
    repo.create(A, "ada", EVENTS)
    record = repo.get(A, "ada")
    assert record is not None
    assert record.created_at.utcoffset() == timedelta(0)
    assert record.updated_at.utcoffset() == timedelta(0)


def test_history_keeps_append_order_not_task_order(repo: LearnerRepository) -> None:
    events = [(f"task-{(i * 7) % 50:02d}", i / 49) for i in range(50)]
    repo.create(A, "ada", events[:20])
    repo.append(A, "ada", events[20:], expected_len=20)
    assert repo.history(A, "ada") == events


def test_create_with_no_events(repo: LearnerRepository) -> None:
    created = repo.create(A, "ada", [])
    assert created.history_len == 0
    assert repo.history(A, "ada") == []
    assert repo.get(A, "ada") == created


def test_get_missing_is_none(repo: LearnerRepository) -> None:
    assert repo.get(A, "nobody") is None


def test_duplicate_create_raises_already_exists_and_changes_nothing(repo: LearnerRepository) -> None:
    original = repo.create(A, "ada", EVENTS)
    with pytest.raises(AlreadyExists) as info:
        repo.create(A, "ada", [("other", 0.25)])
    assert info.value.field == "learner_id"
    assert repo.get(A, "ada") == original
    assert repo.history(A, "ada") == EVENTS
    assert repo.count(A) == 1


def test_append_with_current_len_extends_history(repo: LearnerRepository) -> None:
    created = repo.create(A, "ada", EVENTS)
    appended = repo.append(A, "ada", [("div", 0.75), ("mod", 1.0)], expected_len=3)

    assert appended.history_len == 5
    assert appended.created_at == created.created_at
    assert appended.updated_at >= created.updated_at
    assert repo.get(A, "ada") == appended
    assert repo.history(A, "ada") == [*EVENTS, ("div", 0.75), ("mod", 1.0)]


def test_append_nothing_bumps_updated_at_only(repo: LearnerRepository) -> None:
    created = repo.create(A, "ada", EVENTS)
    appended = repo.append(A, "ada", [], expected_len=3)
    assert appended.history_len == 3
    assert appended.updated_at >= created.updated_at
    assert repo.get(A, "ada") == appended
    assert repo.history(A, "ada") == EVENTS


@pytest.mark.parametrize("stale_len", [0, 2, 4])
def test_append_with_stale_len_aborts_and_writes_nothing(
    repo: LearnerRepository, db_engine: sa.Engine, stale_len: int
) -> None:
    created = repo.create(A, "ada", EVENTS)
    with pytest.raises(Aborted, match=f"expected {stale_len} events, found 3"):
        repo.append(A, "ada", [("div", 0.75)], expected_len=stale_len)
    assert repo.get(A, "ada") == created
    assert repo.history(A, "ada") == EVENTS
    assert _event_count(db_engine, "ada") == 3


def test_append_to_missing_learner_is_not_found(repo: LearnerRepository, db_engine: sa.Engine) -> None:
    with pytest.raises(NotFound) as info:
        repo.append(A, "nobody", [("add", 1.0)], expected_len=0)
    assert info.value.field == "learner_id"
    assert repo.count(A) == 0
    assert _event_count(db_engine, "nobody") == 0


def test_history_of_missing_learner_is_not_found(repo: LearnerRepository) -> None:
    with pytest.raises(NotFound) as info:
        repo.history(A, "nobody")
    assert info.value.field == "learner_id"


def test_delete_cascades_to_events(repo: LearnerRepository, db_engine: sa.Engine) -> None:
    repo.create(A, "ada", EVENTS)
    repo.create(A, "bob", [("add", 0.0)])

    assert repo.delete(A, "ada") is True
    assert repo.get(A, "ada") is None
    assert _event_count(db_engine, "ada") == 0
    with pytest.raises(NotFound):
        repo.history(A, "ada")
    assert repo.history(A, "bob") == [("add", 0.0)]
    assert repo.delete(A, "ada") is False


def test_delete_then_create_starts_a_fresh_history(repo: LearnerRepository) -> None:
    repo.create(A, "ada", EVENTS)
    repo.delete(A, "ada")
    repo.create(A, "ada", [("new", 1.0)])
    assert repo.history(A, "ada") == [("new", 1.0)]


def test_count(repo: LearnerRepository) -> None:
    assert repo.count(A) == 0
    for name in ("a", "b", "c"):
        repo.create(A, name, [])
    assert repo.count(A) == 3
    repo.delete(A, "b")
    assert repo.count(A) == 2


@pytest.mark.parametrize(
    ("learner_id", "events", "field"),
    [
        ("", [], "learner_id"),
        ("x" * 129, [], "learner_id"),
        ("ada", [("", 1.0)], "events"),
        ("ada", [("t" * 257, 1.0)], "events"),
        ("ada", [("add", float("nan"))], "events"),
    ],
)
def test_invalid_input_is_rejected_the_same_on_every_backend(
    repo: LearnerRepository, learner_id: str, events: list[tuple[str, float]], field: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        repo.create(A, learner_id, events)
    assert info.value.field == field
    assert repo.count(A) == 0


def test_limits_are_inclusive(repo: LearnerRepository) -> None:
    repo.create(A, "x" * 128, [("t" * 256, -1.5)])
    assert repo.history(A, "x" * 128) == [("t" * 256, -1.5)]


def test_racing_appends_with_same_expected_len_exactly_one_wins(
    repo: LearnerRepository, db_engine: sa.Engine
) -> None:
    repo.create(A, "ada", EVENTS)
    threads = 4
    for round_ in range(5):
        expected_len = 3 + round_ * 2

        def append(i: int, expected_len: int = expected_len) -> tuple[int, LearnerRecord]:
            return i, repo.append(
                A, "ada", [(f"r{expected_len}-t{i}", i), ("x", 0.0)], expected_len=expected_len
            )

        results, errors = race(threads, append)
        assert len(results) == 1, errors
        assert len(errors) == threads - 1
        assert all(isinstance(exc, Aborted) for exc in errors), errors
        winner, record = results[0]
        assert record.history_len == expected_len + 2
        history = repo.history(A, "ada")
        assert len(history) == expected_len + 2
        assert history[expected_len:] == [(f"r{expected_len}-t{winner}", float(winner)), ("x", 0.0)]
    assert _event_count(db_engine, "ada") == 13


def test_racing_creates_exactly_one_wins(repo: LearnerRepository) -> None:
    def create(i: int) -> int:
        repo.create(A, "ada", [(f"t{i}", float(i))])
        return i

    results, errors = race(4, create)
    assert len(results) == 1, errors
    assert len(errors) == 3
    assert all(isinstance(exc, AlreadyExists) for exc in errors), errors
    assert repo.history(A, "ada") == [(f"t{results[0]}", float(results[0]))]


def test_two_tenants_have_independent_learners_of_the_same_id(
    repo: LearnerRepository, db_engine: sa.Engine
) -> None:
    repo.create(A, "ada", EVENTS)
    repo.create(B, "ada", [("other", 0.25)])  # no collision

    assert repo.history(A, "ada") == EVENTS
    assert repo.history(B, "ada") == [("other", 0.25)]
    repo.append(B, "ada", [("more", 1.0)], expected_len=1)
    assert repo.get(A, "ada").history_len == 3  # type: ignore[union-attr]
    assert repo.get(B, "ada").history_len == 2  # type: ignore[union-attr]
    assert (repo.count(A), repo.count(B), repo.count("initech")) == (1, 1, 0)

    assert repo.delete(B, "ada") is True
    assert repo.history(A, "ada") == EVENTS  # the cascade stays inside the tenant
    assert _event_count(db_engine, "ada", A) == 3
    assert _event_count(db_engine, "ada", B) == 0


def test_another_tenants_learner_behaves_exactly_as_missing(repo: LearnerRepository) -> None:
    repo.create(A, "ada", EVENTS)

    def error(call: Callable[[], object]) -> tuple[str, str | None]:
        with pytest.raises(NotFound) as info:
            call()
        return info.value.message, info.value.field

    assert repo.get(B, "ada") is None
    # B sees exactly what a tenant that never had an `ada` sees.
    assert error(lambda: repo.history(B, "ada")) == error(lambda: repo.history("initech", "ada"))
    assert error(lambda: repo.append(B, "ada", [("add", 1.0)], expected_len=3)) == error(
        lambda: repo.append("initech", "ada", [("add", 1.0)], expected_len=3)
    )
    assert repo.delete(B, "ada") is False
    assert repo.history(A, "ada") == EVENTS


def test_invalid_tenant_is_rejected(repo: LearnerRepository) -> None:
    with pytest.raises(InvalidArgument) as info:
        repo.create("Not A Tenant", "ada", [])
    assert info.value.field == "tenant"
