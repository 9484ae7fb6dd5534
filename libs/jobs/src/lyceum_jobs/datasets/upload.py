"""What an uploaded file becomes: validated row by row in its declared format, cleaned if asked, written
into a folder as the one file the trainer reads (text formats normalised to `data.jsonl`; DFM files as
uploaded) and described by its statistics. Knows nothing of HTTP or of where the folder is stored."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lyceum_core.errors import InvalidArgument
from lyceum_jobs.datasets.cleaning import CleaningOptions, clean
from lyceum_jobs.datasets.dfm import check_dfm
from lyceum_jobs.datasets.files import FileKind, iter_rows, write_rows
from lyceum_jobs.datasets.rows import DFM_FORMATS, check_format
from lyceum_jobs.datasets.stats import describe

if TYPE_CHECKING:
    from tokenizers import Tokenizer

NORMALISED_FILE = "data.jsonl"
DFM_FILES = {"kt3": "data.txt", "pykt": "data.csv", "jsonl": "data.jsonl"}


def data_file(format: str) -> str:
    """The name of the file a stored dataset of `format` keeps its data in."""
    return DFM_FILES.get(check_format(format), NORMALISED_FILE)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A dataset ready to store: `data_file` inside the folder, its rows and bytes, its statistics, and the
    cleaning report (empty when no rule ran)."""

    data_file: str
    rows: int
    size_bytes: int
    stats: dict[str, Any]
    cleaning: dict[str, Any]


def prepare(
    source: str | os.PathLike[str],
    format: str,
    dest_dir: str | os.PathLike[str],
    options: CleaningOptions | None = None,
    tokenizer: Tokenizer | None = None,
    kind: FileKind | None = None,
) -> Prepared:
    """Validates `source` as `format` (InvalidArgument naming the first bad row or line, field "file"),
    cleans it, and writes the dataset's file into the existing folder `dest_dir`. `kind` overrides the file
    kind read from `source`'s suffix or content (see `files.file_kind`)."""
    options = options or CleaningOptions()
    check_format(format)
    target = Path(dest_dir) / data_file(format)
    if format in DFM_FORMATS:
        if options.active:
            raise InvalidArgument(
                f"cleaning applies to rows of text (alpaca, chat, completion, text), not to {format} files",
                field="format",
            )
        counts = check_dfm(source, format)
        shutil.copyfile(source, target)
        stats = {"rows": counts.rows, "events": counts.events}
        return Prepared(target.name, counts.rows, target.stat().st_size, stats, {})
    rows = iter_rows(source, format, kind)
    if options.active:
        kept, report = clean(format, rows, options)
    else:
        kept, report = list(rows), {}
    if not kept:
        shown = "cleaning removed every row" if report.get("rows_in") else "the file holds no rows"
        raise InvalidArgument(shown, field="file")
    size = write_rows(target, kept)
    return Prepared(target.name, len(kept), size, describe(format, kept, tokenizer), report)
