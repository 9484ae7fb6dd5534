"""Knowledge-tracing datasets for DFM training: importers for the 3-line (DKT/DKVMN), pyKT CSV and JSONL
formats, a task vocabulary shared across files, learner-level splits, and `load_dataset(spec)`."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from lyceum_ml.dfm.simulate import SimConfig, simulate
from lyceum_ml.dfm.vocab import TaskVocab

History = tuple[list[int], list[float]]  # task rows and outcomes in [0, 1], oldest first
_INT = re.compile(r"[+-]?\d+")
_CONCEPT = re.compile(r"\d+(_\d+)*")  # pyKT: an integer, or several joined by "_" (one multi-concept task)


@dataclass
class Dataset:
    tasks: list[str]  # task ids; histories refer to them by row
    histories: list[History]  # one per learner (or per pyKT row)
    learners: list[str] | None = None  # learner id of each history, when the file has them
    folds: list[int] | None = None  # pyKT fold of each history
    source: str = ""

    @property
    def n_events(self) -> int:
        return sum(len(t) for t, _ in self.histories)

    def select(self, indices: Iterable[int]) -> Dataset:
        """The histories at `indices` (same task table)."""
        idx = list(indices)
        return replace(
            self,
            histories=[self.histories[i] for i in idx],
            learners=None if self.learners is None else [self.learners[i] for i in idx],
            folds=None if self.folds is None else [self.folds[i] for i in idx],
        )

    def with_vocab(self, vocab: TaskVocab) -> Dataset:
        """The same histories with task rows re-numbered to `vocab` (which must contain every task)."""
        rows = vocab.encode(self.tasks)
        histories = [([rows[t] for t in tasks], outcomes) for tasks, outcomes in self.histories]
        return replace(self, tasks=list(vocab.tasks), histories=histories)


def task_order(tasks: Iterable[str]) -> list[str]:
    """Distinct task ids in a deterministic order: integers numerically first, then the rest as text."""
    return sorted(set(tasks), key=lambda t: (0, int(t), t) if _INT.fullmatch(t) else (1, 0, t))


def shared_vocab(*datasets: Dataset) -> TaskVocab:
    """The union of the datasets' task ids, in `task_order` (independent of which file lists a task first)."""
    return TaskVocab(task_order(t for d in datasets for t in d.tasks))


def _dataset(
    raw: list[tuple[list[str], list[float]]],
    source: str,
    learners: list[str] | None = None,
    folds: list[int] | None = None,
) -> Dataset:
    """Task-id histories -> a Dataset with its own task table."""
    tasks = task_order(t for ids, _ in raw for t in ids)
    index = {t: i for i, t in enumerate(tasks)}
    histories = [([index[t] for t in ids], outcomes) for ids, outcomes in raw]
    return Dataset(tasks, histories, learners, folds, source)


def _outcome(value: str | float, where: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise ValueError(f"{where}: non-numeric outcome {value!r}") from None
    if not 0.0 <= x <= 1.0:  # also rejects NaN
        raise ValueError(f"{where}: outcome {value!r} outside [0, 1]")
    return x


def _fields(line: str) -> list[str]:
    """A comma-separated line's fields, tolerating spaces and a trailing comma."""
    parts = [p.strip() for p in line.strip().split(",")]
    return parts[:-1] if parts and parts[-1] == "" else parts


# --- importers --------------------------------------------------------------------------------------------
def read_kt3(path: str | Path) -> Dataset:
    """The 3-line format of DKT and DKVMN: per learner a count line `n`, `n` task ids, `n` outcomes.

    Trailing commas, blank lines (also lines of only commas) and CRLF endings are tolerated; task ids are
    kept as written (e.g. "12"). A count of 0 is a record on its own. No learner ids."""
    path = Path(path)
    lines = [(i + 1, line) for i, line in enumerate(path.read_text(encoding="utf-8").splitlines())]
    lines = [(no, line) for no, line in lines if line.strip().strip(",").strip()]
    raw: list[tuple[list[str], list[float]]] = []
    pos = 0
    while pos < len(lines):
        no, line = lines[pos]
        count = line.strip().rstrip(",").strip()
        if not _INT.fullmatch(count) or int(count) < 0:
            raise ValueError(f"{path}:{no}: expected a count of events, got {count[:40]!r}")
        n = int(count)
        if n == 0:
            pos += 1
            continue
        if pos + 2 >= len(lines):
            raise ValueError(f"{path}:{no}: record of {n} events is missing its task or outcome line")
        (task_no, task_line), (out_no, out_line) = lines[pos + 1], lines[pos + 2]
        ids, outs = _fields(task_line), _fields(out_line)
        for name, values, at in (("task ids", ids, task_no), ("outcomes", outs, out_no)):
            if len(values) != n:
                raise ValueError(f"{path}:{at}: {len(values)} {name} where the count line ({no}) says {n}")
        bad = next((t for t in ids if not _INT.fullmatch(t)), None)
        if bad is not None:
            raise ValueError(f"{path}:{task_no}: non-integer task id {bad[:40]!r}")
        raw.append((ids, [_outcome(x, f"{path}:{out_no}") for x in outs]))
        pos += 3
    return _dataset(raw, str(path))


def read_pykt(path: str | Path) -> Dataset:
    """pyKT's processed CSV (`fold,uid,concepts,responses[,...]`, one learner per row, quoted lists).

    Entries where the concept or response is -1 (pyKT's padding) are dropped; uid and fold are kept.
    Task ids come from `concepts` (a "_"-joined multi-concept entry stays one task id)."""
    path = Path(path)
    raw: list[tuple[list[str], list[float]]] = []
    learners, folds = [], []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"fold", "uid", "concepts", "responses"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}:1: missing column(s) {sorted(missing)} in the header")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            concepts, responses = _fields(row["concepts"] or ""), _fields(row["responses"] or "")
            if len(concepts) != len(responses):
                raise ValueError(f"{where}: {len(concepts)} concepts but {len(responses)} responses")
            fold = (row["fold"] or "").strip()
            if not _INT.fullmatch(fold):
                raise ValueError(f"{where}: non-integer fold {fold!r}")
            keep = [(c, r) for c, r in zip(concepts, responses, strict=True) if c != "-1" and r != "-1"]
            bad = next((c for c, _ in keep if not _CONCEPT.fullmatch(c)), None)
            if bad is not None:
                raise ValueError(f"{where}: concept {bad[:40]!r} is not an integer id")
            raw.append(([c for c, _ in keep], [_outcome(r, where) for _, r in keep]))
            learners.append((row["uid"] or "").strip())
            folds.append(int(fold))
    return _dataset(raw, str(path), learners, folds)


def read_jsonl(path: str | Path) -> Dataset:
    """One JSON object per line: {"learner_id"?: ..., "tasks": [ids], "outcomes": [numbers in [0, 1]]}.

    Task ids may be strings or integers (kept as strings); blank lines are skipped."""
    path = Path(path)
    raw: list[tuple[list[str], list[float]]] = []
    learners: list[str | None] = []
    with path.open(encoding="utf-8") as f:
        for no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{no}"
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON ({e.msg})") from None
            if not isinstance(doc, dict) or not isinstance(doc.get("tasks"), list):
                raise ValueError(f"{where}: expected an object with a 'tasks' list and an 'outcomes' list")
            tasks, outcomes = doc["tasks"], doc.get("outcomes")
            if not isinstance(outcomes, list) or len(outcomes) != len(tasks):
                n = len(outcomes) if isinstance(outcomes, list) else "no"
                raise ValueError(f"{where}: {len(tasks)} tasks but {n} outcomes")
            for t in tasks:
                if isinstance(t, bool) or not isinstance(t, str | int) or t == "":
                    raise ValueError(f"{where}: task ids must be non-empty strings or integers, got {t!r}")
            bad = next((x for x in outcomes if isinstance(x, bool) or not isinstance(x, int | float)), None)
            if bad is not None:  # JSON strings and booleans are not outcomes
                raise ValueError(f"{where}: non-numeric outcome {bad!r}")
            raw.append(([str(t) for t in tasks], [_outcome(x, where) for x in outcomes]))
            lid = doc.get("learner_id")
            learners.append(None if lid is None else str(lid))
    if all(lid is None for lid in learners):
        return _dataset(raw, str(path))
    # a line without an id is a learner of its own
    return _dataset(raw, str(path), [lid or f"{path.name}:{i}" for i, lid in enumerate(learners)])


# --- splits -----------------------------------------------------------------------------------------------
def learner_split(
    n: int, valid_fraction: float, seed: int, learners: Sequence[str] | None = None
) -> tuple[list[int], list[int]]:
    """Indices of n histories split into (train, valid) by learner: all of a learner's histories (several
    when `learners` repeats an id, e.g. pre-windowed rows) land on one side. Without ids each history is a
    learner. At least one learner stays on each side when valid_fraction > 0."""
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    ids = list(learners) if learners is not None else [str(i) for i in range(n)]
    if len(ids) != n:
        raise ValueError(f"{len(ids)} learner ids for {n} histories")
    distinct = list(dict.fromkeys(ids))  # first-appearance order, so the split depends only on the seed
    n_valid = round(valid_fraction * len(distinct))
    if valid_fraction > 0:
        n_valid = min(len(distinct) - 1, max(1, n_valid))
    order = np.random.default_rng(seed).permutation(len(distinct))
    held_out = {distinct[i] for i in order[:n_valid]}
    train = [i for i, lid in enumerate(ids) if lid not in held_out]
    return train, [i for i, lid in enumerate(ids) if lid in held_out]


def split_by_learner(
    histories: Sequence[History], valid_fraction: float, seed: int, learners: Sequence[str] | None = None
) -> tuple[list[History], list[History]]:
    """(train, valid) histories; learners never straddle the two (see `learner_split`)."""
    train, valid = learner_split(len(histories), valid_fraction, seed, learners)
    return [histories[i] for i in train], [histories[i] for i in valid]


def split_dataset(data: Dataset, valid_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """`split_by_learner` for a Dataset, keeping learner ids and folds with their histories."""
    train, valid = learner_split(len(data.histories), valid_fraction, seed, data.learners)
    return data.select(train), data.select(valid)


def split_folds(data: Dataset, valid_fold: int) -> tuple[Dataset, Dataset]:
    """pyKT-style cross-validation: rows of `valid_fold` are the validation set, every other fold trains."""
    if data.folds is None:
        raise ValueError(f"{data.source} has no folds (only pyKT files do)")
    if valid_fold not in set(data.folds):
        raise ValueError(f"fold {valid_fold} not in {data.source} (folds {sorted(set(data.folds))})")
    train = [i for i, f in enumerate(data.folds) if f != valid_fold]
    valid = [i for i, f in enumerate(data.folds) if f == valid_fold]
    if data.learners is not None:
        leaked = {data.learners[i] for i in train} & {data.learners[i] for i in valid}
        if leaked:
            example = min(leaked)
            raise ValueError(f"{data.source}: {len(leaked)} learner(s) in several folds, e.g. {example}")
    return data.select(train), data.select(valid)


# --- one entry point --------------------------------------------------------------------------------------
READERS = {"kt3": read_kt3, "pykt": read_pykt, "jsonl": read_jsonl}


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset lives and how to split it. Validation comes from `valid_path`, else `valid_fold`
    (pyKT), else a seeded learner-level split of the training file. "simulated" ignores the paths and
    splits one simulation (`simulation`) into train/valid/test by learner."""

    format: Literal["kt3", "pykt", "jsonl", "simulated"]
    train_path: str | Path | None = None
    test_path: str | Path | None = None
    valid_path: str | Path | None = None
    valid_fraction: float = 0.1
    valid_fold: int | None = None
    seed: int = 0
    simulation: SimConfig = field(default_factory=SimConfig)

    def __post_init__(self) -> None:
        if self.format not in (*READERS, "simulated"):
            raise ValueError(f"unknown dataset format {self.format!r}")
        if self.format != "simulated" and self.train_path is None:
            raise ValueError(f"format {self.format!r} needs a train_path")
        if self.valid_path is not None and self.valid_fold is not None:
            raise ValueError("give valid_path or valid_fold, not both")


@dataclass
class Splits:
    vocab: TaskVocab  # shared by every split: the union of all files' task ids
    train: Dataset
    valid: Dataset
    test: Dataset | None = None


def load_dataset(spec: DatasetSpec) -> Splits:
    """Reads and splits a dataset; every split is re-numbered to one shared vocabulary."""
    if spec.format == "simulated":
        sim = simulate(spec.simulation)
        full = Dataset(list(sim.tasks), sim.histories, source="simulated")
        rest, test = split_dataset(full, spec.valid_fraction, spec.seed + 1)
        train, valid = split_dataset(rest, spec.valid_fraction, spec.seed)
    else:
        read = READERS[spec.format]
        train = read(spec.train_path)  # type: ignore[arg-type]
        test = read(spec.test_path) if spec.test_path is not None else None
        if spec.valid_path is not None:
            valid = read(spec.valid_path)
        elif spec.valid_fold is not None:
            train, valid = split_folds(train, spec.valid_fold)
        else:
            train, valid = split_dataset(train, spec.valid_fraction, spec.seed)
    parts = [d for d in (train, valid, test) if d is not None]
    vocab = shared_vocab(*parts)
    return Splits(
        vocab=vocab,
        train=train.with_vocab(vocab),
        valid=valid.with_vocab(vocab),
        test=None if test is None else test.with_vocab(vocab),
    )
