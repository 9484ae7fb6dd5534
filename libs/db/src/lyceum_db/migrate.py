"""Runs the Alembic migrations packaged in `lyceum_db/migrations` against a URL; no alembic.ini needed."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from lyceum_db.engine import create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic Config for the packaged migrations and the database at `url`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # New revisions are named like versions/0002_jobs.py (pass `--rev-id 0002`).
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    # Config values go through configparser interpolation, so a literal '%' (URL-encoded password) is doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrates the database up to `revision` (default: the latest), creating a SQLite file if needed."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Migrates the database down to `revision` ("base" drops every Lyceum table)."""
    command.downgrade(alembic_config(url), revision)


def check(url: str) -> None:
    """Raises alembic's CommandError if the database is behind head or the models and migrations drift."""
    command.check(alembic_config(url))


def current(url: str) -> str | None:
    """The database's current revision, or None if it was never migrated."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head() -> str:
    """The latest revision of the packaged migrations."""
    head_revision = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head_revision is not None, "the packaged migrations have no revisions"
    return head_revision
