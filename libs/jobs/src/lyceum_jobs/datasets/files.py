"""Reading rows of the text formats from JSON (an array), JSONL, CSV and plain-text files, each row checked
as it is read (the first bad one is named), and writing them normalised as JSONL."""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from lyceum_core.errors import InvalidArgument
from lyceum_jobs.datasets.rows import REQUIRED, ROW_FORMATS, TEXT_FORMAT, check_format, check_row

FileKind = Literal["json", "jsonl", "csv", "text"]
SUFFIXES: dict[str, FileKind] = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".txt": "text",
    ".text": "text",
    ".md": "text",
}
EOT = "<|endoftext|>"  # separates documents in a text file (as LM pretraining reads them), else blank lines
_BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n")
_SNIFF_BYTES = 4096


def file_kind(path: str | os.PathLike[str]) -> FileKind:
    """The file's kind by its suffix; without a known one, by its first character (`[` JSON, `{` JSONL,
    else plain text)."""
    kind = SUFFIXES.get(Path(path).suffix.lower())
    if kind is not None:
        return kind
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        return "json"
    if head.startswith(b"{"):
        return "jsonl"
    return "text"


def iter_rows(
    path: str | os.PathLike[str], format: str, kind: FileKind | None = None
) -> Iterator[dict[str, Any]]:
    """The normalised rows of a file of `format` (alpaca, chat, completion or text), read as `kind` (default:
    `file_kind`); InvalidArgument naming the first bad row (field "file")."""
    check_format(format, ROW_FORMATS)
    kind = kind or file_kind(path)
    try:
        raw = _RAW[kind](Path(path), format)
        for index, row in enumerate(raw):
            yield check_row(format, row, index)
    except InvalidArgument as err:
        raise InvalidArgument(err.message, field="file") from None
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"the file is not UTF-8 text (byte {exc.start})", field="file") from None


def read_rows(
    path: str | os.PathLike[str], format: str, kind: FileKind | None = None
) -> list[dict[str, Any]]:
    """Every normalised row of the file (see `iter_rows`); the trainer's loader of local SFT files."""
    return list(iter_rows(path, format, kind))


def write_rows(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> int:
    """Writes the rows as JSONL (UTF-8, one compact object a line); returns the bytes written."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    return os.path.getsize(path)


# --- raw rows, by file kind -------------------------------------------------------------------------------


def _json(path: Path, format: str) -> Iterator[Any]:
    try:
        with path.open(encoding="utf-8-sig") as f:
            doc = json.load(f)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(doc, list):
        raise InvalidArgument("a JSON file must hold an array of rows (JSONL: one object a line)")
    yield from doc


def _jsonl(path: Path, format: str) -> Iterator[Any]:
    with path.open(encoding="utf-8-sig") as f:
        index = 0
        for line in f:
            if not line.strip():
                continue
            index += 1
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidArgument(f"row {index}: invalid JSON ({exc.msg})") from None


def _csv(path: Path, format: str) -> Iterator[Any]:
    # A long document is one cell; csv's default cap (128 KiB) would refuse it.
    csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 2**31 - 1)))
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED[format] if c not in (reader.fieldnames or ())]
        if missing:
            raise InvalidArgument(f"the CSV header lacks the column(s) {', '.join(missing)} of {format} rows")
        index = 0
        try:
            for row in reader:
                index += 1
                if format == "chat":
                    row = _chat_cell(row, index)
                yield row
        except csv.Error as exc:
            raise InvalidArgument(f"row {index + 1}: {exc}") from None


def _chat_cell(row: dict[str, Any], index: int) -> dict[str, Any]:
    """A CSV chat row's `messages` cell holds the JSON array."""
    cell = row.get("messages")
    if isinstance(cell, str):
        try:
            return {**row, "messages": json.loads(cell)}
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"row {index}: messages: invalid JSON ({exc.msg})") from None
    return row


def _text(path: Path, format: str) -> Iterator[Any]:
    if format != TEXT_FORMAT:
        raise InvalidArgument(
            f"a plain-text file holds no {format} rows: upload JSON (an array), JSONL or CSV"
        )
    yield from split_documents(path.read_text(encoding="utf-8-sig"))


def split_documents(text: str) -> list[str]:
    """A text file's documents: separated by `<|endoftext|>` when it has one, else by blank lines; each
    stripped, empty ones dropped."""
    parts = text.split(EOT) if EOT in text else _BLANK_LINES.split(text.replace("\r\n", "\n"))
    return [doc.strip() for doc in parts if doc.strip()]


_RAW = {"json": _json, "jsonl": _jsonl, "csv": _csv, "text": _text}
