"""Bodies of the native `/v1/datasets` API (uploaded datasets) and their conversions from dataset records."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lyceum_db.repositories.datasets import DatasetRecord
from lyceum_jobs.datasets import FORMATS

# Literal over the formats defined once: an unknown one is a 422 naming the field, and OpenAPI lists them.
DatasetFormat = Literal[FORMATS]  # type: ignore[valid-type]
FORMAT_DOC = (
    "`alpaca` (instruction, input?, output), `chat` (messages of {role, content}, with an assistant turn), "
    "`completion` (prompt, completion), `text` (documents: a `text` field, or a plain-text file whose "
    "documents are separated by `<|endoftext|>` or blank lines): JSON (an array), JSONL or CSV files, "
    "stored as JSONL; `kt3`, `pykt`, `jsonl`: the DFM trainer's learner-history files, stored as uploaded"
)


class LengthSummary(BaseModel):
    """Row lengths: the extremes and nearest-rank percentiles."""

    min: int
    p50: int
    p90: int
    p99: int
    max: int


class DatasetStats(BaseModel):
    """What the stored data holds. Text formats: characters, tokens (with a tokenizer), duplicate rate and
    lengths; DFM formats: learner histories (`rows`) and `events`."""

    model_config = ConfigDict(extra="allow")

    rows: int = Field(description="Rows (text formats) or learner histories (DFM formats)", examples=[1200])
    characters: int | None = Field(None, description="Characters of every row's text", examples=[845_113])
    tokens: int | None = Field(None, description="Tokens under `tokenizer`, when one was named")
    tokenizer: str | None = Field(None, description="The language model whose tokenizer counted tokens")
    duplicate_rate: float | None = Field(None, description="Share of rows that repeat an earlier row")
    length_chars: LengthSummary | None = Field(None, description="Row lengths in characters")
    length_tokens: LengthSummary | None = Field(None, description="Row lengths in tokens")
    events: int | None = Field(None, description="Events of all histories (DFM formats)")


class DatasetOut(BaseModel):
    dataset_id: str = Field(
        description='A job config names it as `{"id": "<dataset_id>"}` in place of a path',
        examples=["ds-5d0c6a2e8f1b4c7a9e3d2b1f0a6c5e4d"],
    )
    name: str = Field(examples=["support-chats"])
    format: DatasetFormat = Field(description=FORMAT_DOC)  # type: ignore[valid-type]
    filename: str = Field(description="The uploaded file's name", examples=["chats.jsonl"])
    rows: int = Field(description="Rows stored (after cleaning), or learner histories", examples=[1200])
    size_bytes: int = Field(description="Bytes of the stored data file", examples=[913_402])
    stats: DatasetStats
    cleaning: dict[str, object] = Field(
        description="What cleaning did (empty when no rule ran): options, rows_in, rows_out, "
        "pii_rows_changed, pii_replacements (per kind), duplicates_removed, too_short_removed, "
        "too_long_removed",
        examples=[{"rows_in": 1250, "rows_out": 1200, "duplicates_removed": 50}],
    )
    created_at: datetime

    @classmethod
    def from_record(cls, record: DatasetRecord) -> DatasetOut:
        return cls(
            dataset_id=record.dataset_id,
            name=record.name,
            format=record.format,
            filename=record.filename,
            rows=record.rows,
            size_bytes=record.size_bytes,
            stats=DatasetStats.model_validate(record.stats),
            cleaning=record.cleaning,
            created_at=record.created_at,
        )


class DatasetList(BaseModel):
    datasets: list[DatasetOut] = Field(description="Newest first")
