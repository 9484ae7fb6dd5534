"""Uploaded datasets: a tenant's file, checked in its declared format and stored in the artifact store
(`uri`, holding `data_file`), with its statistics and what cleaning changed; jobs name them by id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from lyceum_core.identity import DATASET_ID_LEN, TENANT_ID_MAX_LEN
from lyceum_db.models.base import Base, UTCDateTime

DATASET_NAME_MAX_LEN = 128
DATASET_FORMAT_MAX_LEN = 16
FILENAME_MAX_LEN = 255


class Dataset(Base):
    """One uploaded dataset of a tenant. `filename` is the uploaded file's name, `data_file` the name of the
    file inside the stored folder at `uri` that jobs read; `size_bytes` and `rows` describe that file."""

    __tablename__ = "datasets"

    tenant: Mapped[str] = mapped_column(String(TENANT_ID_MAX_LEN), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(String(DATASET_ID_LEN), primary_key=True)
    name: Mapped[str] = mapped_column(String(DATASET_NAME_MAX_LEN), nullable=False)
    format: Mapped[str] = mapped_column(String(DATASET_FORMAT_MAX_LEN), nullable=False)
    filename: Mapped[str] = mapped_column(String(FILENAME_MAX_LEN), nullable=False)
    data_file: Mapped[str] = mapped_column(String(FILENAME_MAX_LEN), nullable=False)
    uri: Mapped[str] = mapped_column(Text, nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    rows: Mapped[int] = mapped_column(BigInteger, nullable=False)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    cleaning: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
