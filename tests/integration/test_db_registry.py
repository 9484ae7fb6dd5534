"""ModelRepository on real SQLite and PostgreSQL: numbered versions, idempotent registration per job,
aliases, alias history and rollback, and racing registrations."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from fixtures.threads import race

from lyceum_core.errors import FailedPrecondition, InvalidArgument, NotFound
from lyceum_db import AliasMove, ModelRecord, ModelRepository
from lyceum_db.repositories.registry import served_version

pytestmark = pytest.mark.integration

JOB_A, JOB_B = "a" * 32, "b" * 32
A, B = "acme", "globex"  # two tenants


@pytest.fixture
def repo(db_engine: sa.Engine) -> ModelRepository:
    return ModelRepository(db_engine)


def register(
    repo: ModelRepository,
    name: str = "dfm",
    job_id: str | None = None,
    tenant: str = A,
    *,
    public: bool = False,
) -> ModelRecord:
    n = len([r for r in repo.list(tenant, name) if r.tenant == tenant]) + 1
    uri = f"file:///models/{tenant}/{name}/{n}"
    return repo.register(tenant, name, "dfm", uri, {"auc": 0.5 + n / 100}, job_id, public=public)


def moves(
    repo: ModelRepository, name: str, alias: str, tenant: str = A
) -> list[tuple[int | None, int, AliasMove]]:
    return [(e.previous_version, e.version, e.reason) for e in repo.alias_history(tenant, name, alias)]


def test_register_numbers_versions_and_moves_latest(repo: ModelRepository) -> None:
    first = repo.register(A, "dfm", "dfm", "file:///m/1", {"auc": 0.7}, JOB_A, {"dataset": "assist09"})
    assert (first.tenant, first.name, first.version, first.kind, first.uri) == (
        A,
        "dfm",
        1,
        "dfm",
        "file:///m/1",
    )
    assert first.public is False
    assert (first.metrics, first.job_id, first.metadata) == ({"auc": 0.7}, JOB_A, {"dataset": "assist09"})
    assert first.created_at.utcoffset() == timedelta(0)
    second = repo.register(A, "dfm", "dfm", "file:///m/2", {"auc": 0.8})
    assert (second.version, second.job_id, second.metadata) == (2, None, {})
    other = register(repo, "lm")
    assert other.version == 1  # numbered per name

    assert repo.get(A, "dfm", 1) == first
    assert repo.get(A, "dfm", 3) is None
    assert repo.list(A) == [first, second, other]
    assert repo.list(A, "dfm") == [first, second]
    assert repo.list(A, "nothing") == []
    assert repo.aliases(A, "dfm") == {"latest": 2}
    assert moves(repo, "dfm", "latest") == [(None, 1, AliasMove.REGISTER), (1, 2, AliasMove.REGISTER)]


def test_register_is_idempotent_per_job(repo: ModelRepository) -> None:
    first = register(repo, job_id=JOB_A)
    register(repo, job_id=JOB_B)
    repo.rollback(A, "dfm", "latest")  # latest -> 1
    again = repo.register(A, "dfm", "dfm", "file:///elsewhere", {"auc": 0.0}, JOB_A)
    assert again == first
    assert len(repo.list(A, "dfm")) == 2
    assert repo.aliases(A, "dfm") == {"latest": 1}  # an idempotent replay moves nothing
    assert register(repo, "lm", job_id=JOB_A).version == 1  # one job may register several models


def test_resolve_by_alias_or_number(repo: ModelRepository) -> None:
    v1, v2, v3 = (register(repo) for _ in range(3))
    repo.set_alias(A, "dfm", "prod", 2)
    assert repo.resolve(A, "dfm", "latest") == v3
    assert repo.resolve(A, "dfm", "prod") == v2
    assert repo.resolve(A, "dfm", "1") == v1
    assert repo.resolve(A, "dfm", "003") == v3

    for ref in ("4", "0", "staging"):
        with pytest.raises(NotFound) as info:
            repo.resolve(A, "dfm", ref)
        assert info.value.field == "ref"
    with pytest.raises(NotFound) as info:
        repo.resolve(A, "nothing", "latest")
    assert info.value.field == "name"


def test_a_bare_name_is_served_at_serving_else_latest(repo: ModelRepository) -> None:
    v1, v2 = register(repo), register(repo)
    assert repo.served(A, "dfm") == v2 and served_version(repo.aliases(A, "dfm")) == 2
    repo.set_alias(A, "dfm", "serving", 1)
    register(repo)  # latest moves on; serving stays
    assert repo.served(A, "dfm") == v1 and served_version(repo.aliases(A, "dfm")) == 1
    with pytest.raises(NotFound) as info:
        repo.served(A, "nothing")
    assert info.value.field == "name"
    assert served_version({}) is None


def test_lookup_reads_a_reference_as_a_version_or_a_served_bare_name(repo: ModelRepository) -> None:
    v1, v2 = register(repo), register(repo)
    repo.set_alias(A, "dfm", "serving", 1)
    assert repo.lookup(A, "dfm") == v1  # bare: served at `serving`
    assert repo.lookup(A, "dfm@latest") == v2 and repo.lookup(A, "dfm@2") == v2
    for bad in ("dfm@", "bad name", "@1"):
        with pytest.raises(InvalidArgument) as info:
            repo.lookup(A, bad, "gating.policy")
        assert info.value.field == "gating.policy"
    with pytest.raises(NotFound):
        repo.lookup(B, "dfm")  # another tenant's private model


def test_set_alias_records_the_previous_version(repo: ModelRepository) -> None:
    for _ in range(3):
        register(repo)
    assert repo.set_alias(A, "dfm", "prod", 1).version == 1
    assert repo.set_alias(A, "dfm", "prod", 3).version == 3
    assert repo.set_alias(A, "dfm", "prod", 3).version == 3  # no move, no event
    assert repo.aliases(A, "dfm") == {"latest": 3, "prod": 3}
    assert moves(repo, "dfm", "prod") == [(None, 1, AliasMove.SET), (1, 3, AliasMove.SET)]


def test_set_alias_rejects_unknown_versions_and_numeric_aliases(repo: ModelRepository) -> None:
    register(repo)
    with pytest.raises(NotFound) as info:
        repo.set_alias(A, "dfm", "prod", 2)
    assert info.value.field == "version"
    with pytest.raises(NotFound):
        repo.set_alias(A, "nothing", "prod", 1)
    for alias in ("7", "", "a" * 65):
        with pytest.raises(InvalidArgument) as info:
            repo.set_alias(A, "dfm", alias, 1)
        assert info.value.field == "alias"
    assert repo.aliases(A, "dfm") == {"latest": 1}
    assert repo.alias_history(A, "dfm", "prod") == []


def test_rollback_walks_back_along_the_history(repo: ModelRepository) -> None:
    for _ in range(3):
        register(repo)
    assert repo.rollback(A, "dfm", "latest").version == 2
    assert repo.rollback(A, "dfm", "latest").version == 1  # a second rollback goes further, not back to 3
    with pytest.raises(FailedPrecondition) as info:
        repo.rollback(A, "dfm", "latest")
    assert info.value.field == "alias"
    assert repo.aliases(A, "dfm") == {"latest": 1}

    register(repo)  # v4; latest history is now 1 -> 4
    assert repo.rollback(A, "dfm", "latest").version == 1
    assert moves(repo, "dfm", "latest")[-1] == (4, 1, AliasMove.ROLLBACK)


def test_rollback_undoes_manual_moves(repo: ModelRepository) -> None:
    for _ in range(3):
        register(repo)
    repo.set_alias(A, "dfm", "prod", 1)
    repo.set_alias(A, "dfm", "prod", 3)
    repo.set_alias(A, "dfm", "prod", 2)
    assert repo.rollback(A, "dfm", "prod").version == 3
    repo.set_alias(A, "dfm", "prod", 2)
    assert repo.rollback(A, "dfm", "prod").version == 3
    assert repo.rollback(A, "dfm", "prod").version == 1
    assert repo.resolve(A, "dfm", "prod").version == 1


def test_rollback_of_a_missing_alias_is_not_found(repo: ModelRepository) -> None:
    register(repo)
    with pytest.raises(NotFound) as info:
        repo.rollback(A, "dfm", "prod")
    assert info.value.field == "alias"
    with pytest.raises(FailedPrecondition):
        repo.rollback(A, "dfm", "latest")  # exists, but was never moved


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((A, "", "dfm", "file:///m", {}), "name"),
        ((A, "n" * 129, "dfm", "file:///m", {}), "name"),
        ((A, "Has Spaces", "dfm", "file:///m", {}), "name"),
        ((A, "dfm", "", "file:///m", {}), "kind"),
        ((A, "dfm", "dfm", "", {}), "uri"),
        ((A, "dfm", "dfm", "file:///m", {"auc": float("nan")}), "metrics"),
        ((A, "dfm", "dfm", "file:///m", {}, "j" * 33), "job_id"),
        ((A, "dfm", "dfm", "file:///m", {}, None, {"x": object()}), "metadata"),
        (("Not/A/Tenant", "dfm", "dfm", "file:///m", {}), "tenant"),
    ],
)
def test_invalid_registrations_are_rejected(
    repo: ModelRepository, args: tuple[object, ...], field: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        repo.register(*args)  # type: ignore[arg-type]
    assert info.value.field == field
    assert repo.list(A) == []


def test_racing_registrations_get_distinct_versions_and_latest_ends_on_the_last(
    repo: ModelRepository,
) -> None:
    n = 8
    results, errors = race(n, lambda i: repo.register(A, "dfm", "dfm", f"file:///m/{i}", {}, f"{i:032d}"))
    assert not errors, errors
    assert sorted(record.version for record in results) == list(range(1, n + 1))
    assert repo.aliases(A, "dfm") == {"latest": n}
    history = moves(repo, "dfm", "latest")
    assert [version for _, version, _ in history] == list(range(1, n + 1))
    assert [previous for previous, _, _ in history] == [None, *range(1, n)]


def test_racing_registrations_of_one_job_make_one_version(repo: ModelRepository) -> None:
    results, errors = race(6, lambda i: repo.register(A, "dfm", "dfm", f"file:///m/{i}", {}, JOB_A))
    assert not errors, errors
    assert len({record.uri for record in results}) == 1
    assert [record.version for record in repo.list(A, "dfm")] == [1]
    assert len(repo.alias_history(A, "dfm", "latest")) == 1


def test_racing_alias_moves_keep_a_consistent_history(repo: ModelRepository) -> None:
    for _ in range(4):
        register(repo)
    _, errors = race(8, lambda i: repo.set_alias(A, "dfm", "prod", 1 + i % 4))
    assert not errors, errors
    history = moves(repo, "dfm", "prod")
    # Every move starts where the previous one ended: no lost update.
    assert [previous for previous, _, _ in history[1:]] == [version for _, version, _ in history[:-1]]
    assert repo.aliases(A, "dfm")["prod"] == history[-1][1]


def test_two_tenants_number_the_same_model_name_independently(repo: ModelRepository) -> None:
    mine = [register(repo, job_id=JOB_A), register(repo)]
    theirs = register(repo, tenant=B, job_id=JOB_A)  # the same job id in another tenant is another job
    assert [r.version for r in mine] == [1, 2]
    assert (theirs.tenant, theirs.version) == (B, 1)
    assert repo.list(A) == mine
    assert repo.list(B) == [theirs]
    assert repo.resolve(A, "dfm", "latest") == mine[1]
    assert repo.resolve(B, "dfm", "latest") == theirs
    repo.set_alias(B, "dfm", "prod", 1)
    assert repo.aliases(A, "dfm") == {"latest": 2}
    assert repo.aliases(B, "dfm") == {"latest": 1, "prod": 1}
    assert repo.rollback(A, "dfm", "latest").version == 1
    assert repo.resolve(B, "dfm", "latest") == theirs


def test_another_tenants_private_model_behaves_exactly_as_missing(repo: ModelRepository) -> None:
    register(repo)
    repo.set_alias(A, "dfm", "prod", 1)

    def error(call: object) -> tuple[str, str | None]:
        with pytest.raises(NotFound) as info:
            call()  # type: ignore[operator]
        return info.value.message.replace("nothing", "dfm"), info.value.field

    assert repo.get(B, "dfm", 1) is None
    assert repo.list(B) == []
    assert repo.list(B, "dfm") == []
    assert repo.aliases(B, "dfm") == {}
    assert repo.alias_history(B, "dfm", "prod") == []
    assert error(lambda: repo.resolve(B, "dfm", "prod")) == error(lambda: repo.resolve(B, "nothing", "prod"))
    assert error(lambda: repo.set_alias(B, "dfm", "x", 1)) == error(
        lambda: repo.set_alias(B, "nothing", "x", 1)
    )
    assert error(lambda: repo.rollback(B, "dfm", "prod")) == error(
        lambda: repo.rollback(B, "nothing", "prod")
    )
    assert repo.aliases(A, "dfm") == {"latest": 1, "prod": 1}


def test_a_public_model_is_readable_by_every_tenant_but_writable_only_by_its_owner(
    repo: ModelRepository,
) -> None:
    base = register(repo, "dfm-demo", tenant="platform", public=True)
    repo.set_alias("platform", "dfm-demo", "production", 1)
    private = register(repo, "dfm-demo", tenant="platform")  # v2: not published

    assert base.public and not private.public
    assert repo.resolve(B, "dfm-demo", "production") == base
    assert repo.resolve(B, "dfm-demo", "1") == base
    assert repo.get(B, "dfm-demo", 1) == base
    assert repo.list(B) == [base]
    assert repo.aliases(B, "dfm-demo") == {"production": 1}  # latest points at the private v2
    with pytest.raises(NotFound) as info:
        repo.resolve(B, "dfm-demo", "latest")
    assert info.value.field == "ref"
    assert repo.get(B, "dfm-demo", 2) is None
    assert [e.version for e in repo.alias_history(B, "dfm-demo", "latest")] == [1]

    # Writes: for B the platform's model is missing, exactly as an unknown one.
    with pytest.raises(NotFound, match="has no version 1"):
        repo.set_alias(B, "dfm-demo", "mine", 1)
    with pytest.raises(NotFound, match="has no alias 'production'"):
        repo.rollback(B, "dfm-demo", "production")
    assert repo.aliases("platform", "dfm-demo") == {"latest": 2, "production": 1}


def test_an_own_model_hides_a_public_one_of_the_same_name(repo: ModelRepository) -> None:
    base = register(repo, "dfm-demo", tenant="platform", public=True)
    register(repo, "dfm-demo", tenant="platform", public=True)
    mine = register(repo, "dfm-demo", tenant=B)
    assert repo.resolve(B, "dfm-demo", "latest") == mine
    assert repo.list(B) == [mine]
    assert repo.get(B, "dfm-demo", 2) is None  # the platform's v2 is hidden behind B's own model
    assert repo.resolve(A, "dfm-demo", "1") == base
    assert [r.version for r in repo.list(A, "dfm-demo")] == [1, 2]
    assert repo.resolve("platform", "dfm-demo", "latest").version == 2
