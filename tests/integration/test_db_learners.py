"""LearnerRepository on real SQLite and PostgreSQL: round trips, optimistic concurrency, errors, races."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
import sqlalchemy as sa

from lyceum_core.errors import Aborted, AlreadyExists, InvalidArgument, NotFound
from lyceum_db import LearnerRecord, LearnerRepository

pytestmark = pytest.mark.integration

T = TypeVar("T")
EVENTS = [("add", 1.0), ("sub", 0.0), ("mul", 0.5)]


@pytest.fixture
def repo(db_engine: sa.Engine) -> LearnerRepository:
    return LearnerRepository(db_engine)


def _event_count(engine: sa.Engine, learner_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT count(*) FROM learner_events WHERE learner_id = :id"), {"id": learner_id}
        ).scalar_one()


def _race(n: int, action: Callable[[int], T]) -> tuple[list[T], list[BaseException]]:
    """Runs action(0..n-1) in n threads released together; returns the results and the errors."""
    barrier = threading.Barrier(n)
    results: list[T] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        try:
            result = action(i)
        except BaseException as exc:  # collected; the test asserts on them
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(result)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return results, errors


def test_create_then_get_and_history_round_trip(repo: LearnerRepository) -> None:
    before = datetime.now(UTC)
    created = repo.create("ada", EVENTS)
    after = datetime.now(UTC)

    assert created.learner_id == "ada"
    assert created.history_len == 3
    assert created.created_at == created.updated_at
    assert before <= created.created_at <= after
    assert repo.get("ada") == created
    assert repo.history("ada") == EVENTS


def test_timestamps_come_back_in_utc(repo: LearnerRepository) -> None:
    repo.create("ada", EVENTS)
    record = repo.get("ada")
    assert record is not None
    assert record.created_at.utcoffset() == timedelta(0)
    assert record.updated_at.utcoffset() == timedelta(0)


def test_history_keeps_append_order_not_task_order(repo: LearnerRepository) -> None:
    events = [(f"task-{(i * 7) % 50:02d}", i / 49) for i in range(50)]
    repo.create("ada", events[:20])
    repo.append("ada", events[20:], expected_len=20)
    assert repo.history("ada") == events


def test_create_with_no_events(repo: LearnerRepository) -> None:
    created = repo.create("ada", [])
    assert created.history_len == 0
    assert repo.history("ada") == []
    assert repo.get("ada") == created


def test_get_missing_is_none(repo: LearnerRepository) -> None:
    assert repo.get("nobody") is None


def test_duplicate_create_raises_already_exists_and_changes_nothing(repo: LearnerRepository) -> None:
    original = repo.create("ada", EVENTS)
    with pytest.raises(AlreadyExists) as info:
        repo.create("ada", [("other", 0.25)])
    assert info.value.field == "learner_id"
    assert repo.get("ada") == original
    assert repo.history("ada") == EVENTS
    assert repo.count() == 1


def test_append_with_current_len_extends_history(repo: LearnerRepository) -> None:
    created = repo.create("ada", EVENTS)
    appended = repo.append("ada", [("div", 0.75), ("mod", 1.0)], expected_len=3)

    assert appended.history_len == 5
    assert appended.created_at == created.created_at
    assert appended.updated_at >= created.updated_at
    assert repo.get("ada") == appended
    assert repo.history("ada") == [*EVENTS, ("div", 0.75), ("mod", 1.0)]


def test_append_nothing_bumps_updated_at_only(repo: LearnerRepository) -> None:
    created = repo.create("ada", EVENTS)
    appended = repo.append("ada", [], expected_len=3)
    assert appended.history_len == 3
    assert appended.updated_at >= created.updated_at
    assert repo.get("ada") == appended
    assert repo.history("ada") == EVENTS


@pytest.mark.parametrize("stale_len", [0, 2, 4])
def test_append_with_stale_len_aborts_and_writes_nothing(
    repo: LearnerRepository, db_engine: sa.Engine, stale_len: int
) -> None:
    created = repo.create("ada", EVENTS)
    with pytest.raises(Aborted, match=f"expected {stale_len} events, found 3"):
        repo.append("ada", [("div", 0.75)], expected_len=stale_len)
    assert repo.get("ada") == created
    assert repo.history("ada") == EVENTS
    assert _event_count(db_engine, "ada") == 3


def test_append_to_missing_learner_is_not_found(repo: LearnerRepository, db_engine: sa.Engine) -> None:
    with pytest.raises(NotFound) as info:
        repo.append("nobody", [("add", 1.0)], expected_len=0)
    assert info.value.field == "learner_id"
    assert repo.count() == 0
    assert _event_count(db_engine, "nobody") == 0


def test_history_of_missing_learner_is_not_found(repo: LearnerRepository) -> None:
    with pytest.raises(NotFound) as info:
        repo.history("nobody")
    assert info.value.field == "learner_id"


def test_delete_cascades_to_events(repo: LearnerRepository, db_engine: sa.Engine) -> None:
    repo.create("ada", EVENTS)
    repo.create("bob", [("add", 0.0)])

    assert repo.delete("ada") is True
    assert repo.get("ada") is None
    assert _event_count(db_engine, "ada") == 0
    with pytest.raises(NotFound):
        repo.history("ada")
    assert repo.history("bob") == [("add", 0.0)]
    assert repo.delete("ada") is False


def test_delete_then_create_starts_a_fresh_history(repo: LearnerRepository) -> None:
    repo.create("ada", EVENTS)
    repo.delete("ada")
    repo.create("ada", [("new", 1.0)])
    assert repo.history("ada") == [("new", 1.0)]


def test_count(repo: LearnerRepository) -> None:
    assert repo.count() == 0
    for name in ("a", "b", "c"):
        repo.create(name, [])
    assert repo.count() == 3
    repo.delete("b")
    assert repo.count() == 2


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
        repo.create(learner_id, events)
    assert info.value.field == field
    assert repo.count() == 0


def test_limits_are_inclusive(repo: LearnerRepository) -> None:
    repo.create("x" * 128, [("t" * 256, -1.5)])
    assert repo.history("x" * 128) == [("t" * 256, -1.5)]


def test_racing_appends_with_same_expected_len_exactly_one_wins(
    repo: LearnerRepository, db_engine: sa.Engine
) -> None:
    repo.create("ada", EVENTS)
    threads = 4
    for round_ in range(5):
        expected_len = 3 + round_ * 2

        def append(i: int, expected_len: int = expected_len) -> tuple[int, LearnerRecord]:
            return i, repo.append(
                "ada", [(f"r{expected_len}-t{i}", i), ("x", 0.0)], expected_len=expected_len
            )

        results, errors = _race(threads, append)
        assert len(results) == 1, errors
        assert len(errors) == threads - 1
        assert all(isinstance(exc, Aborted) for exc in errors), errors
        winner, record = results[0]
        assert record.history_len == expected_len + 2
        history = repo.history("ada")
        assert len(history) == expected_len + 2
        assert history[expected_len:] == [(f"r{expected_len}-t{winner}", float(winner)), ("x", 0.0)]
    assert _event_count(db_engine, "ada") == 13


def test_racing_creates_exactly_one_wins(repo: LearnerRepository) -> None:
    def create(i: int) -> int:
        repo.create("ada", [(f"t{i}", float(i))])
        return i

    results, errors = _race(4, create)
    assert len(results) == 1, errors
    assert len(errors) == 3
    assert all(isinstance(exc, AlreadyExists) for exc in errors), errors
    assert repo.history("ada") == [(f"t{results[0]}", float(results[0]))]
