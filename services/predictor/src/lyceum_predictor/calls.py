"""What the predictor's batch thread is handed: calls (an operation on one learner, queued with its inputs)
and what reads answer (a learner's summary, a snapshot of its cache)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import torch

from lyceum_core.grpc.route_hint import Route
from lyceum_db.repositories.learners import LearnerRecord
from lyceum_ml.dfm import DFM, TaskVocab
from lyceum_ml.kv_cache import KVCache
from lyceum_predictor.batcher import Work
from lyceum_predictor.cache import LearnerKey
from lyceum_predictor.context import ContextPolicy


class Op(enum.Enum):
    PREDICT = "predict"
    APPEND = "append"
    REGISTER = "register"
    DELETE = "delete"
    READ = "read"  # a snapshot of the cache for a forecast or search
    HAND_OVER = "hand_over"  # stop leasing learners and release the leases held (a draining process)

    @property
    def writes(self) -> bool:
        return self in (Op.APPEND, Op.REGISTER, Op.DELETE)


class Call(Work):
    """One queued call. `rows`/`outcomes` are encoded with the model of `generation` (re-encoded if a swap
    came in between); `raw` keeps the task ids (predict) or events (append, register) as given."""

    __slots__ = (
        "op",
        "key",
        "generation",
        "rows",
        "outcomes",
        "raw",
        "expected_len",
        "attempt",
        "route",
        "waited",
    )

    def __init__(
        self,
        op: Op,
        key: LearnerKey,
        generation: int,
        rows: torch.Tensor | None = None,
        outcomes: torch.Tensor | None = None,
        raw: list[Any] | None = None,
        *,
        expected_len: int | None = None,
    ) -> None:
        super().__init__()
        self.op, self.key, self.generation = op, key, generation
        self.rows, self.outcomes, self.raw = rows, outcomes, raw or []
        self.expected_len, self.attempt, self.route = expected_len, 0, Route.OWNER
        self.waited = 0.0


@dataclass(frozen=True)
class Snapshot:
    """A learner's cache as of one moment, for roll-outs outside the batch thread."""

    model: DFM
    vocab: TaskVocab
    kv: KVCache
    history_len: int
    context_len: int


@dataclass(frozen=True)
class Learner:
    learner_id: str
    history_len: int  # events stored
    created_at: datetime
    updated_at: datetime
    context_len: int  # events the model conditions on (the most recent ones under a sliding window)

    @classmethod
    def of(cls, rec: LearnerRecord, policy: ContextPolicy) -> Learner:
        n = rec.history_len
        return cls(rec.learner_id, n, rec.created_at, rec.updated_at, policy.context_len(n))
