"""create_engine: supported URLs, driver rewriting, and the SQLite connection settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from lyceum_core.errors import InvalidArgument
from lyceum_db import create_engine

pytestmark = pytest.mark.integration


def test_sqlite_creates_parent_folder_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "lyceum.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            pragmas = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar_one()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
    finally:
        engine.dispose()
    assert path.exists()
    # synchronous=NORMAL reads back as 1.
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 5000, "synchronous": 1}


@pytest.mark.parametrize(
    "url", ["postgresql://postgres@127.0.0.1:5432/test", "postgresql+psycopg://postgres@127.0.0.1:5432/test"]
)
def test_postgres_uses_psycopg3_with_pre_ping(url: str) -> None:
    engine = create_engine(url)
    try:
        assert engine.dialect.driver == "psycopg"
        assert engine.pool._pre_ping  # no public accessor
    finally:
        engine.dispose()


def test_postgres_engine_connects(postgres_url: str) -> None:
    engine = create_engine(postgres_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "url",
    ["sqlite://", "sqlite:///:memory:", "mysql://root@localhost/db", "postgresql+psycopg2://u@h/db"],
)
def test_unsupported_urls_are_invalid_arguments(url: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        create_engine(url)
    assert info.value.field == "url"
