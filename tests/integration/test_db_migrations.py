"""The packaged Alembic migrations and `python -m lyceum_db`, on empty SQLite and PostgreSQL databases."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.util import CommandError
from sqlalchemy.exc import IntegrityError

from lyceum_core.identity import DEFAULT_TENANT, new_completion_id
from lyceum_db import (
    CompletionRecord,
    CompletionRepository,
    JobRepository,
    LearnerRepository,
    ModelRepository,
    TenantRepository,
    create_engine,
)
from lyceum_db.migrate import MIGRATIONS_DIR, check, current, downgrade, head, upgrade
from lyceum_db.models import Base

VERSIONS = MIGRATIONS_DIR / "versions"

pytestmark = pytest.mark.integration


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lyceum_db", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_head_is_the_first_revision() -> None:
    assert head() == sorted(p.name.split("_")[0] for p in VERSIONS.glob("0*.py"))[-1]


def test_upgrade_then_check_passes(empty_database_url: str) -> None:
    assert current(empty_database_url) is None
    upgrade(empty_database_url)
    assert current(empty_database_url) == head()
    assert _tables(empty_database_url) == {*Base.metadata.tables, "alembic_version"}
    check(empty_database_url)  # what CI's `alembic check` runs: models and migrations agree


def test_upgrade_is_idempotent(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    LearnerRepository(engine := create_engine(empty_database_url)).create(
        DEFAULT_TENANT, "ada", [("add", 1.0)]
    )
    engine.dispose()
    upgrade(empty_database_url)
    engine = create_engine(empty_database_url)
    try:
        assert LearnerRepository(engine).history(DEFAULT_TENANT, "ada") == [("add", 1.0)]
    finally:
        engine.dispose()


def test_check_fails_before_upgrade(empty_database_url: str) -> None:
    with pytest.raises(CommandError, match="not up to date"):
        check(empty_database_url)


def test_check_detects_drift(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    engine = create_engine(empty_database_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE stray (id INTEGER PRIMARY KEY)")
    finally:
        engine.dispose()
    with pytest.raises(CommandError, match="stray"):
        check(empty_database_url)


def test_downgrade_to_base_then_upgrade_again(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    downgrade(empty_database_url, "base")
    assert current(empty_database_url) is None
    assert _tables(empty_database_url) <= {"alembic_version"}
    upgrade(empty_database_url)
    check(empty_database_url)


def test_cli_upgrade_current_check(empty_database_url: str) -> None:
    upgraded = _cli("upgrade", "--url", empty_database_url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"at revision {head()}" in upgraded.stdout

    shown = _cli("current", "--url", empty_database_url)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == head()

    checked = _cli("check", "--url", empty_database_url)
    assert checked.returncode == 0, checked.stderr
    assert "models and migrations agree" in checked.stdout


def test_cli_check_fails_on_unmigrated_database(empty_database_url: str) -> None:
    checked = _cli("check", "--url", empty_database_url)
    assert checked.returncode == 1
    assert "not up to date" in checked.stderr


def test_cli_reads_url_from_env(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'from-env.db'}"
    result = _cli("upgrade", env={**os.environ, "LYCEUM_DB_URL": url})
    assert result.returncode == 0, result.stderr
    assert current(url) == head()


# Rows as revision 0002 stored them (no tenant), written with plain SQL: the models no longer fit that schema.
_T0 = "2026-01-01 12:00:00+00:00"
_ROWS_0002 = [
    ("INSERT INTO learners (learner_id, history_len, created_at, updated_at) VALUES ('ada', 2, :t, :t)"),
    ("INSERT INTO learners (learner_id, history_len, created_at, updated_at) VALUES ('bob', 0, :t, :t)"),
    (
        "INSERT INTO learner_events (learner_id, seq, task, outcome, created_at) "
        "VALUES ('ada', 0, 'add', 1.0, :t)"
    ),
    (
        "INSERT INTO learner_events (learner_id, seq, task, outcome, created_at) "
        "VALUES ('ada', 1, 'sub', 0.0, :t)"
    ),
    (
        "INSERT INTO jobs (job_id, kind, queue, config, state, attempt, progress, metrics, idempotency_key, "
        "enqueued_at, created_at, updated_at) VALUES ('" + "a" * 32 + "', 'dfm_pretrain', 'gpu', '{}', "
        "'succeeded', 1, '{}', '{}', 'req-1', :t, :t, :t)"
    ),
    (
        'INSERT INTO job_metrics (job_id, step, "values", created_at) VALUES (\''
        + "a" * 32
        + "', 5, '{}', :t)"
    ),
    (
        "INSERT INTO model_versions (name, version, kind, uri, metrics, job_id, metadata, created_at) "
        "VALUES ('dfm', 1, 'dfm', 'file:///m/1', '{}', NULL, '{}', :t)"
    ),
    (
        "INSERT INTO model_versions (name, version, kind, uri, metrics, job_id, metadata, created_at) "
        "VALUES ('dfm', 2, 'dfm', 'file:///m/2', '{}', '" + "a" * 32 + "', '{}', :t)"
    ),
    ("INSERT INTO model_aliases (name, alias, version, updated_at) VALUES ('dfm', 'latest', 2, :t)"),
    ("INSERT INTO model_aliases (name, alias, version, updated_at) VALUES ('dfm', 'prod', 1, :t)"),
    (
        "INSERT INTO model_alias_events (name, alias, version, previous_version, reason, moved_at) "
        "VALUES ('dfm', 'latest', 1, NULL, 'register', :t), ('dfm', 'latest', 2, 1, 'register', :t)"
    ),
]


def test_upgrade_from_0002_moves_existing_rows_into_the_default_tenant(empty_database_url: str) -> None:
    url = empty_database_url
    upgrade(url, "0002")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in _ROWS_0002:
                conn.execute(sa.text(statement), {"t": _T0})
    finally:
        engine.dispose()

    upgrade(url)
    check(url)  # the migrated schema is exactly the models'
    engine = create_engine(url)
    try:
        learners, jobs, models = LearnerRepository(engine), JobRepository(engine), ModelRepository(engine)
        assert learners.history(DEFAULT_TENANT, "ada") == [("add", 1.0), ("sub", 0.0)]
        assert learners.count(DEFAULT_TENANT) == 2
        job = jobs.get(DEFAULT_TENANT, "a" * 32)
        assert job is not None and job.tenant == DEFAULT_TENANT
        assert [step for step, _, _ in jobs.metrics_history(DEFAULT_TENANT, job.job_id)] == [5]
        assert jobs.create(DEFAULT_TENANT, "dfm_pretrain", {}, "gpu", idempotency_key="req-1") == (job, False)
        assert models.resolve(DEFAULT_TENANT, "dfm", "prod").version == 1
        assert models.aliases(DEFAULT_TENANT, "dfm") == {"latest": 2, "prod": 1}
        assert [r.public for r in models.list(DEFAULT_TENANT)] == [False, False]
        assert [e.version for e in models.alias_history(DEFAULT_TENANT, "dfm", "latest")] == [1, 2]
        assert TenantRepository(engine).get(DEFAULT_TENANT) is not None

        # Nothing of it is visible to another tenant, which may now use the same ids.
        assert learners.get("acme", "ada") is None
        assert models.list("acme") == []
        learners.create("acme", "ada", [])
        assert jobs.create("acme", "dfm_pretrain", {"x": 1}, "gpu", idempotency_key="req-1")[1] is True
        assert models.register("acme", "dfm", "dfm", "file:///acme/1", {}, "a" * 32).version == 1
        # The constraints moved too: the foreign keys now span the tenant.
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO learner_events (tenant, learner_id, seq, task, outcome, created_at) "
                    "VALUES ('initech', 'ada', 0, 'add', 1.0, :t)"
                ),
                {"t": _T0},
            )
        assert learners.delete(DEFAULT_TENANT, "ada") is True
        assert learners.history("acme", "ada") == []
    finally:
        engine.dispose()


def test_downgrade_below_tenants_refuses_to_merge_tenants(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    engine = create_engine(empty_database_url)
    try:
        LearnerRepository(engine).create(DEFAULT_TENANT, "ada", [("add", 1.0)])
        LearnerRepository(engine).create("acme", "ada", [])
    finally:
        engine.dispose()
    with pytest.raises(RuntimeError, match="learners holds 1 row"):
        downgrade(empty_database_url, "0002")
    # 0003's downgrade refused and changed nothing; the later steps' downgrades ran before it and stay run
    # on SQLite (no transactional DDL), were rolled back with it on PostgreSQL
    assert current(empty_database_url) in (head(), "0003")
    upgrade(empty_database_url)

    engine = create_engine(empty_database_url)
    try:
        LearnerRepository(engine).delete("acme", "ada")
    finally:
        engine.dispose()
    downgrade(empty_database_url, "0002")
    engine = create_engine(empty_database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT learner_id, seq, task FROM learner_events")).all()
        assert [tuple(r) for r in rows] == [("ada", 0, "add")]
    finally:
        engine.dispose()
    upgrade(empty_database_url)
    check(empty_database_url)


# Rows as revision 0004 stored them, written with plain SQL like the 0002 rows above.
_ROWS_0004 = [
    "INSERT INTO tenants (tenant_id, quotas, created_at) VALUES ('acme', '{}', :t)",
    (
        "INSERT INTO learners (tenant, learner_id, history_len, created_at, updated_at, owner, owner_epoch, "
        "lease_until) VALUES ('acme', 'ada', 1, :t, :t, 'host-1', 3, 12.5)"
    ),
    (
        "INSERT INTO learner_events (tenant, learner_id, seq, task, outcome, created_at) "
        "VALUES ('acme', 'ada', 0, 'add', 1.0, :t)"
    ),
    (
        "INSERT INTO model_versions (tenant, name, version, kind, uri, metrics, job_id, metadata, public, "
        "created_at) VALUES ('acme', 'lm', 1, 'lm', 'file:///m/1', '{}', NULL, '{}', false, :t)"
    ),
    (
        "INSERT INTO model_aliases (tenant, name, alias, version, updated_at) "
        "VALUES ('acme', 'lm', 'latest', 1, :t)"
    ),
]


def test_upgrade_from_0004_adds_completions_and_keeps_rows(empty_database_url: str) -> None:
    url = empty_database_url
    upgrade(url, "0004")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in _ROWS_0004:
                conn.execute(sa.text(statement), {"t": _T0})
    finally:
        engine.dispose()

    upgrade(url)
    check(url)
    engine = create_engine(url)
    try:
        assert LearnerRepository(engine).history("acme", "ada") == [("add", 1.0)]
        assert ModelRepository(engine).resolve("acme", "lm", "latest").uri == "file:///m/1"
        completions = CompletionRepository(engine)
        rec = CompletionRecord(
            "acme", new_completion_id(), "acme/lm@1", None, "s-1", (1, 2), (3,), (-0.5,), {}, "eos"
        )
        completions.record(rec)
        assert completions.get("acme", rec.completion_id) == rec
    finally:
        engine.dispose()

    downgrade(url, "0004")  # drops the table, and only it
    assert "completions" not in _tables(url)
    engine = create_engine(url)
    try:
        assert LearnerRepository(engine).history("acme", "ada") == [("add", 1.0)]
    finally:
        engine.dispose()
    upgrade(url)
    check(url)
