"""Uploaded datasets: the gateway writes a row after the dataset's folder is stored, so a row always names
stored data; deleting the row comes before deleting the folder. Rows never change.

Every method acts for one tenant: another tenant's dataset of the same id is a missing one."""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, delete, insert, select
from sqlalchemy.exc import IntegrityError

from lyceum_core.errors import AlreadyExists, InvalidArgument
from lyceum_core.identity import check_dataset_id, check_tenant_id
from lyceum_db.models.dataset import (
    DATASET_FORMAT_MAX_LEN,
    DATASET_NAME_MAX_LEN,
    FILENAME_MAX_LEN,
    Dataset,
)
from lyceum_db.repositories._common import check_str, json_object, reader, utcnow

LIST_MAX_LIMIT = 1000

_COLUMNS = (
    Dataset.tenant,
    Dataset.dataset_id,
    Dataset.name,
    Dataset.format,
    Dataset.filename,
    Dataset.data_file,
    Dataset.uri,
    Dataset.size_bytes,
    Dataset.rows,
    Dataset.stats,
    Dataset.cleaning,
    Dataset.created_at,
)


@dataclass(frozen=True, slots=True)
class DatasetRecord:
    """One stored dataset: the folder at `uri` holds `data_file` (`size_bytes` bytes, `rows` rows or learner
    histories); `filename` is what the tenant uploaded; `stats` and `cleaning` are the upload's reports.
    `created_at` is timezone-aware UTC."""

    tenant: str
    dataset_id: str
    name: str
    format: str
    filename: str
    data_file: str
    uri: str
    size_bytes: int
    rows: int
    stats: dict[str, Any]
    cleaning: dict[str, Any]
    created_at: datetime = field(default_factory=utcnow)


class DatasetRepository:
    """Dataset persistence: one committed INSERT or DELETE per write; reads never open a write transaction."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._reader = reader(engine)

    def create(self, rec: DatasetRecord) -> DatasetRecord:
        """Stores `rec` and returns it as it reads back. InvalidArgument if a field breaks its rule,
        AlreadyExists if the tenant already has a dataset of that id."""
        row = _row(rec)
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(Dataset).values(**row))
        except IntegrityError as exc:
            raise AlreadyExists(f"dataset {rec.dataset_id!r} already exists", field="dataset_id") from exc
        return DatasetRecord(**row)

    def get(self, tenant: str, dataset_id: str) -> DatasetRecord | None:
        """The tenant's dataset of that id, or None (also for another tenant's)."""
        stmt = select(*_COLUMNS).where(Dataset.tenant == tenant, Dataset.dataset_id == dataset_id)
        with self._reader.connect() as conn:
            row = conn.execute(stmt).one_or_none()
        return None if row is None else _record(row)

    def list(self, tenant: str, limit: int = LIST_MAX_LIMIT) -> builtins.list[DatasetRecord]:
        """Up to `limit` of the tenant's datasets, newest first."""
        if not 1 <= limit <= LIST_MAX_LIMIT:
            raise InvalidArgument(f"limit must be 1 to {LIST_MAX_LIMIT}, got {limit}", field="limit")
        stmt = (
            select(*_COLUMNS)
            .where(Dataset.tenant == tenant)
            .order_by(Dataset.created_at.desc(), Dataset.dataset_id.desc())
            .limit(limit)
        )
        with self._reader.connect() as conn:
            return [_record(row) for row in conn.execute(stmt)]

    def delete(self, tenant: str, dataset_id: str) -> DatasetRecord | None:
        """Deletes the tenant's dataset row and returns what it was (its `uri` names the folder to delete
        next), or None if the tenant has no such dataset."""
        where = (Dataset.tenant == tenant, Dataset.dataset_id == dataset_id)
        with self._engine.begin() as conn:
            row = conn.execute(select(*_COLUMNS).where(*where).with_for_update()).one_or_none()
            if row is None:
                return None
            conn.execute(delete(Dataset).where(*where))
        return _record(row)


def _row(rec: DatasetRecord) -> dict[str, Any]:
    """`rec` as a validated row; both backends then store exactly the same values."""
    check_tenant_id(rec.tenant)
    check_dataset_id(rec.dataset_id)
    check_str(rec.name, "name", DATASET_NAME_MAX_LEN)
    check_str(rec.format, "format", DATASET_FORMAT_MAX_LEN)
    check_str(rec.filename, "filename", FILENAME_MAX_LEN)
    check_str(rec.data_file, "data_file", FILENAME_MAX_LEN)
    if not isinstance(rec.uri, str) or not rec.uri:
        raise InvalidArgument("uri must be a non-empty artifact URI", field="uri")
    for name in ("size_bytes", "rows"):
        value = getattr(rec, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidArgument(f"{name} must be an int >= 0, got {value!r}", field=name)
    if not isinstance(rec.created_at, datetime) or rec.created_at.tzinfo is None:
        shown = f"created_at must be a timezone-aware datetime, got {rec.created_at!r}"
        raise InvalidArgument(shown, field="created_at")
    return {
        "tenant": rec.tenant,
        "dataset_id": rec.dataset_id,
        "name": rec.name,
        "format": rec.format,
        "filename": rec.filename,
        "data_file": rec.data_file,
        "uri": rec.uri,
        "size_bytes": rec.size_bytes,
        "rows": rec.rows,
        "stats": json_object(rec.stats, "stats"),
        "cleaning": json_object(rec.cleaning, "cleaning"),
        "created_at": rec.created_at,
    }


def _record(row: Row[Any]) -> DatasetRecord:
    return DatasetRecord(**row._mapping)
