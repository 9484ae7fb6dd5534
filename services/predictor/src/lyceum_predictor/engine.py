"""The predictor's core: validates requests, keeps learner caches consistent with the stored histories and
runs the DFM. Knows nothing of gRPC; every failure is a lyceum_core error.

Consistency rule: the database is the truth. A cache is used only if it holds exactly the stored number of
events; otherwise it is rebuilt from the stored history (one prefill). Appends are committed to the
database before the cache is extended and before the caller is answered.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import torch

from lyceum_core.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from lyceum_core.grpc.route_hint import rebuild_reason
from lyceum_core.identity import check_learner_id
from lyceum_db.repositories.learners import LearnerRecord, LearnerRepository
from lyceum_ml.checkpoint import LoadedDFM
from lyceum_ml.dfm import DFM, TaskVocab, inference
from lyceum_ml.dfm.inference import Feedback
from lyceum_ml.dfm.vocab import UnknownTask
from lyceum_predictor.cache import HITS, MISSES, REBUILD_SECONDS, REBUILDS, Entry, LearnerCaches, LearnerKey

log = logging.getLogger(__name__)
APPEND_RETRIES = 3


@dataclass(frozen=True)
class Limits:
    max_history_len: int | None = None  # events per learner; None = as many as the served model can hold
    max_tasks_per_request: int = 1024
    max_events_per_request: int = 4096
    max_forecast_sequences: int = 256
    max_forecast_length: int = 512


@dataclass(frozen=True)
class Served:
    """The model being served, as one immutable snapshot: calls capture it once, so a swap never mixes
    weights, vocabulary or caches of two models."""

    model: DFM
    vocab: TaskVocab
    metadata: dict[str, Any]
    generation: int  # bumped by every swap; cache entries of another generation are rebuilt
    max_history_len: int


@dataclass(frozen=True)
class Learner:
    learner_id: str
    history_len: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, rec: LearnerRecord) -> Learner:
        return cls(rec.learner_id, rec.history_len, rec.created_at, rec.updated_at)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    n_layer: int
    n_head: int
    n_kv_head: int
    d_model: int
    n_tasks: int
    task_encoder: str
    max_history_len: int
    dtype: str
    device: str
    n_parameters: int


class PredictorEngine:
    def __init__(
        self,
        loaded: LoadedDFM,
        repo: LearnerRepository,
        caches: LearnerCaches,
        limits: Limits,
        *,
        chunk_tokens: int = 128,
    ) -> None:
        self.repo, self.caches, self.limits, self.chunk = repo, caches, limits, chunk_tokens
        self._locks = [threading.Lock() for _ in range(1024)]  # striped per-learner locks
        self._swap_lock = threading.Lock()
        self.served = self._snapshot(loaded, generation=0)

    def swap(self, loaded: LoadedDFM) -> Served:
        """Serves another model from now on (no restart). Calls already running finish on the old one;
        every learner's cache is rebuilt from its stored history on next use."""
        with self._swap_lock:
            self.served = self._snapshot(loaded, self.served.generation + 1)
            self.caches.clear()
        return self.served

    def _snapshot(self, loaded: LoadedDFM, generation: int) -> Served:
        configured, limit = self.limits.max_history_len, loaded.model.cfg.max_events
        if configured is not None and configured <= limit:
            limit = configured
        elif configured is not None:
            log.warning(
                "max_history_len %d exceeds what the model can hold; serving %d events",
                configured,
                limit,
            )
        return Served(loaded.model, loaded.vocab, dict(loaded.metadata), generation, limit)

    # --- operations -------------------------------------------------------------------------------
    def register(self, tenant: str, learner_id: str, history: Sequence[tuple[str, float]]) -> Learner:
        key = _key(tenant, learner_id)
        s = self.served
        rows, outcomes = self._events(s, history, "history")
        if len(history) > s.max_history_len:
            raise InvalidArgument(
                f"history has {len(history)} events; the limit is {s.max_history_len}", field="history"
            )
        with self._lock(key):
            if self.repo.get(tenant, learner_id) is not None:
                raise _exists(learner_id)
            kv = inference.prefill(s.model, rows, outcomes, chunk=self.chunk)
            record = self.repo.create(tenant, learner_id, list(history))
            self.caches.put(key, Entry(kv, record.history_len, record.created_at, s.generation))
        return Learner.of(record)

    def get(self, tenant: str, learner_id: str) -> Learner:
        return Learner.of(self._record(_key(tenant, learner_id)))

    def predict(self, tenant: str, learner_id: str, tasks: Sequence[str]) -> tuple[list[float], int]:
        """P(success) per task given the committed history, and that history's length."""
        key = _key(tenant, learner_id)
        s = self.served
        rows = self._tasks(s, tasks, "tasks", self.limits.max_tasks_per_request)
        with self._lock(key):
            entry = self._resident(s, key)
            probs = inference.predict(s.model, entry.kv, rows)
            return probs.tolist(), entry.history_len

    def append(
        self,
        tenant: str,
        learner_id: str,
        events: Sequence[tuple[str, float]],
        expected_len: int | None = None,
    ) -> tuple[Learner, list[float]]:
        """Appends events (durably, then to the cache); returns the learner and each event's prior P."""
        key = _key(tenant, learner_id)
        if not events:
            raise InvalidArgument("events must not be empty", field="events")
        if expected_len is not None and expected_len < 0:
            raise InvalidArgument("expected_history_len must be >= 0", field="expected_history_len")
        s = self.served
        rows, outcomes = self._events(s, events, "events")
        with self._lock(key):
            for attempt in range(APPEND_RETRIES):
                entry = self._resident(s, key)
                if expected_len is not None and expected_len != entry.history_len:
                    raise FailedPrecondition(
                        f"learner {learner_id!r} has {entry.history_len} events, "
                        f"not the expected {expected_len}",
                        field="expected_history_len",
                    )
                total = entry.history_len + len(events)
                if total > s.max_history_len:
                    raise InvalidArgument(
                        f"appending {len(events)} events would make the history {total} events long; "
                        f"the limit is {s.max_history_len}",
                        field="events",
                    )
                priors, new_kv = inference.extend(s.model, entry.kv, rows, outcomes)
                try:
                    record = self.repo.append(
                        tenant, learner_id, list(events), expected_len=entry.history_len
                    )
                except Aborted:
                    # another writer (e.g. a failover pod) got there first: rebuild and retry, unless the
                    # caller pinned the length, in which case its precondition has failed
                    self.caches.drop(key)
                    if expected_len is not None:
                        raise FailedPrecondition(
                            f"learner {learner_id!r} changed concurrently; "
                            f"it no longer has {expected_len} events",
                            field="expected_history_len",
                        ) from None
                    if attempt + 1 == APPEND_RETRIES:
                        raise
                    continue
                try:
                    entry.kv.append(new_kv)
                    entry.history_len = record.history_len
                    self.caches.resized(key)
                except Exception:
                    self.caches.drop(key)  # committed already; the cache rebuilds on next use
                    raise
                return Learner.of(record), priors.tolist()
        raise AssertionError("unreachable")

    def forecast(
        self,
        tenant: str,
        learner_id: str,
        sequences: Sequence[Sequence[str]],
        feedback: Feedback = Feedback.EXPECTED,
        seed: int = 0,
    ) -> list[list[float]]:
        """S x L roll-out probabilities from the learner's state; never changes it."""
        key = _key(tenant, learner_id)
        lim = self.limits
        if len(sequences) > lim.max_forecast_sequences:
            raise InvalidArgument(
                f"{len(sequences)} task sequences; at most {lim.max_forecast_sequences}",
                field="task_sequences",
            )
        lengths = {len(s) for s in sequences}
        if len(lengths) > 1:
            raise InvalidArgument("all task sequences must have the same length", field="task_sequences")
        L = lengths.pop() if lengths else 0
        if L > lim.max_forecast_length:
            raise InvalidArgument(
                f"task sequences of length {L}; at most {lim.max_forecast_length}", field="task_sequences"
            )
        s = self.served
        flat = self._tasks(s, [t for seq in sequences for t in seq], "task_sequences", None, allow_empty=True)
        with self._lock(key):
            entry = self._resident(s, key)
            if L and entry.history_len + L - 1 > s.max_history_len:
                raise InvalidArgument(
                    f"a roll-out of {L} tasks after {entry.history_len} events runs past the limit of "
                    f"{s.max_history_len} events",
                    field="task_sequences",
                )
            if not sequences or L == 0:
                return [[] for _ in sequences]
            probs = inference.forecast(s.model, entry.kv, flat.view(len(sequences), L), feedback, seed)
            return probs.tolist()

    def delete(self, tenant: str, learner_id: str) -> None:
        key = _key(tenant, learner_id)
        with self._lock(key):
            self.caches.drop(key)
            if not self.repo.delete(tenant, learner_id):
                raise _not_found(learner_id)

    def tasks(self) -> list[str]:
        return list(self.served.vocab.tasks)

    def info(self) -> ModelInfo:
        s = self.served
        cfg = s.model.cfg
        return ModelInfo(
            name=str(s.metadata.get("name", "dfm")),
            version=str(s.metadata.get("version", "0")),
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            n_kv_head=cfg.n_kv_head,
            d_model=cfg.d_model,
            n_tasks=cfg.n_tasks,
            task_encoder=cfg.task_encoder,
            max_history_len=s.max_history_len,
            dtype=str(s.model.dtype).removeprefix("torch."),
            device=str(s.model.device),
            n_parameters=s.model.num_parameters(),
        )

    # --- cache consistency ------------------------------------------------------------------------
    def _record(self, key: LearnerKey) -> LearnerRecord:
        record = self.repo.get(key.tenant, key.learner_id)
        if record is None:
            raise _not_found(key.learner_id)
        return record

    def _resident(self, s: Served, key: LearnerKey) -> Entry:
        """The learner's cache, rebuilt if missing or unlike the stored history. Caller holds the lock."""
        record = self._record(key)
        learner_id = key.learner_id
        entry = self.caches.get(key)
        if entry is not None and _holds(entry, record, s):
            HITS.inc()
            return entry
        MISSES.inc()
        reason = rebuild_reason(entry is not None, self.caches.was_evicted(key))
        start = time.perf_counter()
        history = self.repo.history(key.tenant, learner_id)
        try:
            task_rows = s.vocab.encode([t for t, _ in history])
        except UnknownTask as e:  # only after a swap to a model that lacks a task this learner practised
            raise FailedPrecondition(
                f"learner {learner_id!r} has task {e.task!r}, which the served model does not know",
                field="learner_id",
            ) from None
        rows = torch.tensor(task_rows, dtype=torch.long, device=s.model.device)
        outcomes = torch.tensor([o for _, o in history], dtype=torch.float32, device=s.model.device)
        kv = inference.prefill(s.model, rows, outcomes, chunk=self.chunk)
        entry = Entry(kv, len(history), record.created_at, s.generation)
        self.caches.put(key, entry)
        REBUILDS.labels(reason).inc()
        REBUILD_SECONDS.observe(time.perf_counter() - start)
        return entry

    def _lock(self, key: LearnerKey) -> threading.Lock:
        return self._locks[zlib.crc32(f"{key.tenant}/{key.learner_id}".encode()) % len(self._locks)]

    # --- validation ---------------------------------------------------------------------------------
    def _tasks(
        self, s: Served, tasks: Sequence[str], field: str, limit: int | None, allow_empty: bool = False
    ) -> torch.Tensor:
        if not tasks and not allow_empty:
            raise InvalidArgument(f"{field} must not be empty", field=field)
        if limit is not None and len(tasks) > limit:
            raise InvalidArgument(f"{field} has {len(tasks)} entries; at most {limit}", field=field)
        try:
            rows = s.vocab.encode(tasks)
        except UnknownTask as e:
            raise InvalidArgument(f"unknown task {_clip(e.task)!r}", field=field) from None
        return torch.tensor(rows, dtype=torch.long, device=s.model.device)

    def _events(
        self, s: Served, events: Sequence[tuple[str, float]], field: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if len(events) > self.limits.max_events_per_request:
            raise InvalidArgument(
                f"{field} has {len(events)} events; at most {self.limits.max_events_per_request} per request",
                field=field,
            )
        for i, (_, outcome) in enumerate(events):
            if not (math.isfinite(outcome) and 0.0 <= outcome <= 1.0):
                raise InvalidArgument(f"{field}[{i}].outcome must be in [0, 1], got {outcome}", field=field)
        rows = self._tasks(s, [t for t, _ in events], field, None, allow_empty=True)
        outcomes = torch.tensor([o for _, o in events], dtype=torch.float32, device=s.model.device)
        return rows, outcomes


def _holds(entry: Entry, record: LearnerRecord, s: Served) -> bool:
    """Whether a cache holds exactly the stored learner (same incarnation, same number of events) as encoded
    by the served model."""
    return (
        entry.history_len == record.history_len
        and entry.created_at == record.created_at
        and entry.generation == s.generation
    )


def _key(tenant: str, learner_id: str) -> LearnerKey:
    """The checked cache/lock key of a learner: equal ids in two tenants are two learners."""
    return LearnerKey(tenant, check_learner_id(learner_id))


def _clip(text: str, limit: int = 80) -> str:
    """User input as echoed in an error message: bounded, so a huge value cannot bloat the reply."""
    return text if len(text) <= limit else text[:limit] + "..."


def _not_found(learner_id: str) -> NotFound:
    return NotFound(f"learner {learner_id!r} not found", field="learner_id")


def _exists(learner_id: str) -> AlreadyExists:
    return AlreadyExists(f"learner {learner_id!r} already exists", field="learner_id")
