"""Cheap structural checks of the DFM trainer's learner-history files (kt3, pyKT CSV, JSONL), streamed: the
first bad line is named. The same rules as `lyceum_ml.dfm.data`'s readers, which the gateway cannot import
(torch); counts learners and events for the dataset's statistics."""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lyceum_core.errors import InvalidArgument
from lyceum_jobs.datasets.rows import DFM_FORMATS, check_format

_INT = re.compile(r"[+-]?\d+")
_CONCEPT = re.compile(r"\d+(_\d+)*")  # pyKT: an integer, or several joined by "_"
PYKT_COLUMNS = ("fold", "uid", "concepts", "responses")


@dataclass(frozen=True, slots=True)
class HistoryCounts:
    """What a learner-history file holds: histories (one per learner or pyKT row) and events in all."""

    rows: int
    events: int


def check_dfm(path: str | os.PathLike[str], format: str) -> HistoryCounts:
    """Checks a kt3, pykt or jsonl file line by line; InvalidArgument naming the first bad line (field
    "file"), or one saying the file holds no history."""
    check_format(format, DFM_FORMATS)
    path = Path(path)
    rows = events = 0
    try:
        for n in _CHECKS[format](path):
            rows += 1
            events += n
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"the file is not UTF-8 text (byte {exc.start})", field="file") from None
    if rows == 0:
        raise InvalidArgument("the file holds no learner history", field="file")
    return HistoryCounts(rows, events)


def _bad(line: int, message: str) -> InvalidArgument:
    return InvalidArgument(f"line {line}: {message}", field="file")


def _fields(line: str) -> list[str]:
    """A comma-separated line's fields, tolerating spaces and a trailing comma."""
    parts = [p.strip() for p in line.strip().split(",")]
    return parts[:-1] if parts and parts[-1] == "" else parts


def _outcome(value: object, line: int) -> None:
    if isinstance(value, bool):
        raise _bad(line, f"non-numeric outcome {value!r}")
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _bad(line, f"non-numeric outcome {str(value)[:40]!r}") from None
    if not (math.isfinite(x) and 0.0 <= x <= 1.0):
        raise _bad(line, f"outcome {value!r} outside [0, 1]")


def _kt3(path: Path) -> Iterator[int]:
    """Per learner a count line `n`, `n` task ids, `n` outcomes; blank (or comma-only) lines skipped."""
    with path.open(encoding="utf-8-sig") as f:
        lines = ((no, line) for no, line in enumerate(f, start=1) if line.strip().strip(",").strip())
        for no, line in lines:
            count = line.strip().rstrip(",").strip()
            if not _INT.fullmatch(count) or int(count) < 0:
                raise _bad(no, f"expected a count of events, got {count[:40]!r}")
            n = int(count)
            if n == 0:
                yield 0
                continue
            tasks, outcomes = next(lines, None), next(lines, None)
            if tasks is None or outcomes is None:
                raise _bad(no, f"record of {n} events is missing its task or outcome line")
            (task_no, task_line), (out_no, out_line) = tasks, outcomes
            ids, outs = _fields(task_line), _fields(out_line)
            for name, values, at in (("task ids", ids, task_no), ("outcomes", outs, out_no)):
                if len(values) != n:
                    raise _bad(at, f"{len(values)} {name} where the count line ({no}) says {n}")
            bad = next((t for t in ids if not _INT.fullmatch(t)), None)
            if bad is not None:
                raise _bad(task_no, f"non-integer task id {bad[:40]!r}")
            for x in outs:
                _outcome(x, out_no)
            yield n


def _pykt(path: Path) -> Iterator[int]:
    """pyKT's processed CSV: `fold,uid,concepts,responses[,...]`, one learner a row (-1 entries padding)."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in PYKT_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise _bad(1, f"missing column(s) {', '.join(missing)} in the header")
        try:
            for row in reader:
                no = reader.line_num
                concepts, responses = _fields(row["concepts"] or ""), _fields(row["responses"] or "")
                if len(concepts) != len(responses):
                    raise _bad(no, f"{len(concepts)} concepts but {len(responses)} responses")
                if not _INT.fullmatch((row["fold"] or "").strip()):
                    raise _bad(no, f"non-integer fold {(row['fold'] or '')[:40]!r}")
                keep = [(c, r) for c, r in zip(concepts, responses, strict=True) if c != "-1" and r != "-1"]
                bad = next((c for c, _ in keep if not _CONCEPT.fullmatch(c)), None)
                if bad is not None:
                    raise _bad(no, f"concept {bad[:40]!r} is not an integer id")
                for _, r in keep:
                    _outcome(r, no)
                yield len(keep)
        except csv.Error as exc:
            raise _bad(reader.line_num, str(exc)) from None


def _jsonl(path: Path) -> Iterator[int]:
    """One object a line: {"learner_id"?, "tasks": [ids], "outcomes": [numbers in [0, 1]]}."""
    with path.open(encoding="utf-8-sig") as f:
        for no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _bad(no, f"invalid JSON ({exc.msg})") from None
            if not isinstance(doc, dict) or not isinstance(doc.get("tasks"), list):
                raise _bad(no, "expected an object with a 'tasks' list and an 'outcomes' list")
            tasks, outcomes = doc["tasks"], doc.get("outcomes")
            if not isinstance(outcomes, list) or len(outcomes) != len(tasks):
                n = len(outcomes) if isinstance(outcomes, list) else "no"
                raise _bad(no, f"{len(tasks)} tasks but {n} outcomes")
            for t in tasks:
                if isinstance(t, bool) or not isinstance(t, str | int) or t == "":
                    raise _bad(no, f"task ids must be non-empty strings or integers, got {t!r}")
            for x in outcomes:
                if isinstance(x, bool) or not isinstance(x, int | float):
                    raise _bad(no, f"non-numeric outcome {x!r}")
                _outcome(x, no)
            yield len(tasks)


_CHECKS = {"kt3": _kt3, "pykt": _pykt, "jsonl": _jsonl}
