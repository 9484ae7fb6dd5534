"""Helpers shared by the repositories: the clock, a read-only engine, input validation."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from lyceum_core.errors import InvalidArgument


def utcnow() -> datetime:
    """The system clock as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def reader(engine: Engine) -> Engine:
    """The engine for reads: on PostgreSQL in autocommit, one round trip instead of BEGIN + SELECT +
    ROLLBACK; SQLite's driver already reads outside a transaction."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


def check_str(value: str, field: str, max_len: int) -> None:
    """InvalidArgument unless `value` has 1 to `max_len` characters; SQLite would not enforce the length."""
    if not value or len(value) > max_len:
        raise InvalidArgument(
            f"{field} must be 1 to {max_len} characters, got {len(value or '')}", field=field
        )


def json_object(value: Mapping[str, Any], field: str) -> dict[str, Any]:
    """`value` as it will read back from a JSON column. Non-finite floats are refused: PostgreSQL's json type
    rejects them, and both backends must accept the same documents."""
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{field} must be a JSON object, got {type(value).__name__}", field=field)
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{field} is not JSON-serialisable: {exc}", field=field) from exc
