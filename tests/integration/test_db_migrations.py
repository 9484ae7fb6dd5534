"""The packaged Alembic migrations and `python -m lyceum_db`, on empty SQLite and PostgreSQL databases."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.util import CommandError

from lyceum_db import LearnerRepository, create_engine
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
    LearnerRepository(engine := create_engine(empty_database_url)).create("ada", [("add", 1.0)])
    engine.dispose()
    upgrade(empty_database_url)
    engine = create_engine(empty_database_url)
    try:
        assert LearnerRepository(engine).history("ada") == [("add", 1.0)]
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
