"""ModelRepository on real SQLite and PostgreSQL: numbered versions, idempotent registration per job,
aliases, alias history and rollback, and racing registrations."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from test_db_jobs import race

from lyceum_core.errors import FailedPrecondition, InvalidArgument, NotFound
from lyceum_db import AliasMove, ModelRecord, ModelRepository

pytestmark = pytest.mark.integration

JOB_A, JOB_B = "a" * 32, "b" * 32


@pytest.fixture
def repo(db_engine: sa.Engine) -> ModelRepository:
    return ModelRepository(db_engine)


def register(repo: ModelRepository, name: str = "dfm", job_id: str | None = None) -> ModelRecord:
    n = len(repo.list(name)) + 1
    return repo.register(name, "dfm", f"file:///models/{name}/{n}", {"auc": 0.5 + n / 100}, job_id)


def moves(repo: ModelRepository, name: str, alias: str) -> list[tuple[int | None, int, AliasMove]]:
    return [(e.previous_version, e.version, e.reason) for e in repo.alias_history(name, alias)]


def test_register_numbers_versions_and_moves_latest(repo: ModelRepository) -> None:
    first = repo.register("dfm", "dfm", "file:///m/1", {"auc": 0.7}, JOB_A, {"dataset": "assist09"})
    assert (first.name, first.version, first.kind, first.uri) == ("dfm", 1, "dfm", "file:///m/1")
    assert (first.metrics, first.job_id, first.metadata) == ({"auc": 0.7}, JOB_A, {"dataset": "assist09"})
    assert first.created_at.utcoffset() == timedelta(0)
    second = repo.register("dfm", "dfm", "file:///m/2", {"auc": 0.8})
    assert (second.version, second.job_id, second.metadata) == (2, None, {})
    other = register(repo, "lm")
    assert other.version == 1  # numbered per name

    assert repo.get("dfm", 1) == first
    assert repo.get("dfm", 3) is None
    assert repo.list() == [first, second, other]
    assert repo.list("dfm") == [first, second]
    assert repo.list("nothing") == []
    assert repo.aliases("dfm") == {"latest": 2}
    assert moves(repo, "dfm", "latest") == [(None, 1, AliasMove.REGISTER), (1, 2, AliasMove.REGISTER)]


def test_register_is_idempotent_per_job(repo: ModelRepository) -> None:
    first = register(repo, job_id=JOB_A)
    register(repo, job_id=JOB_B)
    repo.rollback("dfm", "latest")  # latest -> 1
    again = repo.register("dfm", "dfm", "file:///elsewhere", {"auc": 0.0}, JOB_A)
    assert again == first
    assert len(repo.list("dfm")) == 2
    assert repo.aliases("dfm") == {"latest": 1}  # an idempotent replay moves nothing
    assert register(repo, "lm", job_id=JOB_A).version == 1  # one job may register several models


def test_resolve_by_alias_or_number(repo: ModelRepository) -> None:
    v1, v2, v3 = (register(repo) for _ in range(3))
    repo.set_alias("dfm", "prod", 2)
    assert repo.resolve("dfm", "latest") == v3
    assert repo.resolve("dfm", "prod") == v2
    assert repo.resolve("dfm", "1") == v1
    assert repo.resolve("dfm", "003") == v3

    for ref in ("4", "0", "staging"):
        with pytest.raises(NotFound) as info:
            repo.resolve("dfm", ref)
        assert info.value.field == "ref"
    with pytest.raises(NotFound) as info:
        repo.resolve("nothing", "latest")
    assert info.value.field == "name"


def test_set_alias_records_the_previous_version(repo: ModelRepository) -> None:
    for _ in range(3):
        register(repo)
    assert repo.set_alias("dfm", "prod", 1).version == 1
    assert repo.set_alias("dfm", "prod", 3).version == 3
    assert repo.set_alias("dfm", "prod", 3).version == 3  # no move, no event
    assert repo.aliases("dfm") == {"latest": 3, "prod": 3}
    assert moves(repo, "dfm", "prod") == [(None, 1, AliasMove.SET), (1, 3, AliasMove.SET)]


def test_set_alias_rejects_unknown_versions_and_numeric_aliases(repo: ModelRepository) -> None:
    register(repo)
    with pytest.raises(NotFound) as info:
        repo.set_alias("dfm", "prod", 2)
    assert info.value.field == "version"
    with pytest.raises(NotFound):
        repo.set_alias("nothing", "prod", 1)
    for alias in ("7", "", "a" * 65):
        with pytest.raises(InvalidArgument) as info:
            repo.set_alias("dfm", alias, 1)
        assert info.value.field == "alias"
    assert repo.aliases("dfm") == {"latest": 1}
    assert repo.alias_history("dfm", "prod") == []


def test_rollback_walks_back_along_the_history(repo: ModelRepository) -> None:
    for _ in range(3):
        register(repo)
    assert repo.rollback("dfm", "latest").version == 2
    assert repo.rollback("dfm", "latest").version == 1  # a second rollback goes further, not back to 3
    with pytest.raises(FailedPrecondition) as info:
        repo.rollback("dfm", "latest")
    assert info.value.field == "alias"
    assert repo.aliases("dfm") == {"latest": 1}

    register(repo)  # v4; latest history is now 1 -> 4
    assert repo.rollback("dfm", "latest").version == 1
    assert moves(repo, "dfm", "latest")[-1] == (4, 1, AliasMove.ROLLBACK)


def test_rollback_undoes_manual_moves(repo: ModelRepository) -> None:
    for _ in range(3):
        register(repo)
    repo.set_alias("dfm", "prod", 1)
    repo.set_alias("dfm", "prod", 3)
    repo.set_alias("dfm", "prod", 2)
    assert repo.rollback("dfm", "prod").version == 3
    repo.set_alias("dfm", "prod", 2)
    assert repo.rollback("dfm", "prod").version == 3
    assert repo.rollback("dfm", "prod").version == 1
    assert repo.resolve("dfm", "prod").version == 1


def test_rollback_of_a_missing_alias_is_not_found(repo: ModelRepository) -> None:
    register(repo)
    with pytest.raises(NotFound) as info:
        repo.rollback("dfm", "prod")
    assert info.value.field == "alias"
    with pytest.raises(FailedPrecondition):
        repo.rollback("dfm", "latest")  # exists, but was never moved


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", "dfm", "file:///m", {}), "name"),
        (("n" * 129, "dfm", "file:///m", {}), "name"),
        (("dfm", "", "file:///m", {}), "kind"),
        (("dfm", "dfm", "", {}), "uri"),
        (("dfm", "dfm", "file:///m", {"auc": float("nan")}), "metrics"),
        (("dfm", "dfm", "file:///m", {}, "j" * 33), "job_id"),
        (("dfm", "dfm", "file:///m", {}, None, {"x": object()}), "metadata"),
    ],
)
def test_invalid_registrations_are_rejected(
    repo: ModelRepository, args: tuple[object, ...], field: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        repo.register(*args)  # type: ignore[arg-type]
    assert info.value.field == field
    assert repo.list() == []


def test_racing_registrations_get_distinct_versions_and_latest_ends_on_the_last(
    repo: ModelRepository,
) -> None:
    n = 8
    results, errors = race(n, lambda i: repo.register("dfm", "dfm", f"file:///m/{i}", {}, f"{i:032d}"))
    assert not errors, errors
    assert sorted(record.version for record in results) == list(range(1, n + 1))
    assert repo.aliases("dfm") == {"latest": n}
    history = moves(repo, "dfm", "latest")
    assert [version for _, version, _ in history] == list(range(1, n + 1))
    assert [previous for previous, _, _ in history] == [None, *range(1, n)]


def test_racing_registrations_of_one_job_make_one_version(repo: ModelRepository) -> None:
    results, errors = race(6, lambda i: repo.register("dfm", "dfm", f"file:///m/{i}", {}, JOB_A))
    assert not errors, errors
    assert len({record.uri for record in results}) == 1
    assert [record.version for record in repo.list("dfm")] == [1]
    assert len(repo.alias_history("dfm", "latest")) == 1


def test_racing_alias_moves_keep_a_consistent_history(repo: ModelRepository) -> None:
    for _ in range(4):
        register(repo)
    _, errors = race(8, lambda i: repo.set_alias("dfm", "prod", 1 + i % 4))
    assert not errors, errors
    history = moves(repo, "dfm", "prod")
    # Every move starts where the previous one ended: no lost update.
    assert [previous for previous, _, _ in history[1:]] == [version for _, version, _ in history[:-1]]
    assert repo.aliases("dfm")["prod"] == history[-1][1]
