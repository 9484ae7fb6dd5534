"""Datasets: the formats of uploaded data and their row rules, defined once for the gateway (which checks,
cleans, describes and stores an upload) and the trainer (which reads the stored rows, or local files of the
same formats). Imports no torch.

Text formats (`alpaca`, `chat`, `completion`, `text`) are rows read from JSON, JSONL, CSV (and plain text for
`text`) and stored normalised as JSONL; the DFM formats (`kt3`, `pykt`, `jsonl`) are learner-history files
checked line by line and stored as uploaded."""

from lyceum_jobs.datasets.cleaning import PII_KINDS, PLACEHOLDERS, CleaningOptions, clean, scrub_pii
from lyceum_jobs.datasets.dfm import HistoryCounts, check_dfm
from lyceum_jobs.datasets.files import FileKind, file_kind, iter_rows, read_rows, split_documents, write_rows
from lyceum_jobs.datasets.rows import (
    DFM_FORMATS,
    FORMATS,
    ROLES,
    ROW_FORMATS,
    SFT_FORMATS,
    TEXT_FORMAT,
    check_format,
    check_row,
    row_text,
)
from lyceum_jobs.datasets.stats import count_tokens, describe
from lyceum_jobs.datasets.upload import NORMALISED_FILE, Prepared, data_file, prepare

__all__ = [
    "DFM_FORMATS",
    "FORMATS",
    "NORMALISED_FILE",
    "PII_KINDS",
    "PLACEHOLDERS",
    "ROLES",
    "ROW_FORMATS",
    "SFT_FORMATS",
    "TEXT_FORMAT",
    "CleaningOptions",
    "FileKind",
    "HistoryCounts",
    "Prepared",
    "check_dfm",
    "check_format",
    "check_row",
    "clean",
    "count_tokens",
    "data_file",
    "describe",
    "file_kind",
    "iter_rows",
    "prepare",
    "read_rows",
    "row_text",
    "scrub_pii",
    "split_documents",
    "write_rows",
]
