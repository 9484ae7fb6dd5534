"""The predictor's core: validates requests and hands them to the batch runner, which keeps learner caches
consistent with the stored histories and runs the DFM over many learners' calls at once. Knows nothing of
gRPC; every failure is a lyceum_core error.

Consistency rule: the database is the truth. A cache answers without asking the database only while this
process holds the learner's lease (`lyceum_db.repositories.learners`); otherwise it is checked against the
stored history (and rebuilt if unlike it). Appends are committed to the database (group commit) before the
cache is extended and before any caller is answered.

Calls come in two shapes: `submit_*` returns a Future (the gRPC servicer awaits it without tying up a thread),
the plain method waits for it. Forecasts and curriculum searches take a consistent snapshot of the learner's
cache through the runner and roll out in the caller's thread, so a long roll-out never holds up the batches.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import secrets
import socket
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import torch

from lyceum_core.errors import InvalidArgument, LyceumError, NotFound, clip
from lyceum_core.grpc.route_hint import ROUTE
from lyceum_core.identity import check_learner_id
from lyceum_db.repositories.learners import LearnerRepository
from lyceum_ml.checkpoint import LoadedDFM
from lyceum_ml.devices import free_memory
from lyceum_ml.dfm import DFM, TaskVocab, inference
from lyceum_ml.dfm.inference import Feedback
from lyceum_ml.dfm.vocab import UnknownTask
from lyceum_predictor.batch import BatchRunner
from lyceum_predictor.batcher import Batcher
from lyceum_predictor.cache import LearnerCaches, LearnerKey
from lyceum_predictor.calls import Call, Learner, Op, Snapshot
from lyceum_predictor.context import ContextPolicy, Policy
from lyceum_predictor.search import SearchRequest, SearchResult, run_search

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    max_history_len: int | None = None  # events the model may condition on; None = as many as it can hold
    max_tasks_per_request: int = 1024
    max_events_per_request: int = 4096
    max_forecast_sequences: int = 4096
    max_forecast_length: int = 512
    forecast_memory_bytes: int = 512 * 2**20  # a forecast's roll-out cache and attention scores
    context_policy: Policy = "sliding_window"
    context_window: int | None = None  # default: see ContextPolicy.build
    context_stride: int | None = None


@dataclass(frozen=True)
class Batching:
    max_rows: int = 32  # calls per batch
    max_delay_s: float = 0.0  # how long a batch waits for more calls (0: takes what queued meanwhile)
    lease_s: float = 3.0  # how long a learner's lease runs (0: check the database on every call)


@dataclass(frozen=True)
class Served:
    """The model being served, as one immutable snapshot: calls capture it once, so a swap never mixes
    weights, vocabulary or caches of two models."""

    model: DFM
    vocab: TaskVocab
    metadata: dict[str, Any]
    generation: int  # bumped by every swap; cache entries of another generation are rebuilt
    max_history_len: int  # events the model conditions on at most (roll-outs included)
    policy: ContextPolicy  # which stored events it conditions on


@dataclass(frozen=True)
class ForecastPlan:
    tasks: torch.Tensor  # (S * L,) task rows
    sequences: int
    length: int


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
    context_policy: str
    context_window: int


def process_owner() -> str:
    """This process's identity as a lease holder: unique per process incarnation."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"


class PredictorEngine:
    def __init__(
        self,
        loaded: LoadedDFM,
        repo: LearnerRepository,
        caches: LearnerCaches,
        limits: Limits,
        *,
        chunk_tokens: int = 128,
        batching: Batching = Batching(),
        owner: str | None = None,
    ) -> None:
        self.repo, self.caches, self.limits, self.chunk = repo, caches, limits, chunk_tokens
        self.owner = owner or process_owner()
        self.served = self._snapshot(loaded, generation=0)
        self.runner = BatchRunner(
            lambda: self.served, repo, caches, owner=self.owner, lease_s=batching.lease_s, chunk=chunk_tokens
        )
        self.batcher: Batcher[Call] = Batcher(
            self.runner.run,
            max_rows=batching.max_rows,
            max_delay_s=batching.max_delay_s,
            name="predictor-batcher",
        )
        self.runner.batcher = self.batcher
        self._closing = threading.Event()
        self._renewer = threading.Thread(target=self._renew_leases, name="lease-renewer", daemon=True)
        if batching.lease_s > 0:
            self._renewer.start()

    def _renew_leases(self) -> None:
        """Renews the leases of learners in use a few times per lease term (see Leases.renew)."""
        period = self.runner.leases.lease_s / 4
        while not self._closing.wait(period):
            try:
                self.runner.leases.renew()
            except Exception:  # noqa: BLE001 - calls renew synchronously meanwhile; try again next period
                log.warning("renewing learner leases failed", exc_info=True)

    def swap(self, loaded: LoadedDFM) -> Served:
        """Serves another model from now on (no restart). Batches already running finish on the old one;
        every learner's cache is rebuilt from its stored history on next use."""
        self.served = self._snapshot(loaded, self.served.generation + 1)
        self.caches.clear()
        return self.served

    def take_leases(self) -> None:
        """Serving (again): learners are leased as they are used (the default; undoes `hand_over`)."""
        self.runner.leases.take()

    def hand_over(self) -> int:
        """Draining: stops leasing learners and ends the leases held, so the predictors taking this one's
        learners over need not wait for them to run out; calls still arriving are checked against the
        database. Returns how many leases ended."""
        return self._submit(Call(Op.HAND_OVER, LearnerKey("", ""), self.served.generation)).result()

    def close(self) -> None:
        """Runs what is queued, stops the batch thread and hands this process's leases back, so other
        predictors take its learners over without waiting for the leases to run out."""
        self._closing.set()
        if self._renewer.is_alive():
            self._renewer.join()
        self.batcher.close()
        try:
            self.repo.release(self.owner)
        except Exception:  # noqa: BLE001 - the leases simply run out
            log.warning("could not release learner leases", exc_info=True)

    def _snapshot(self, loaded: LoadedDFM, generation: int) -> Served:
        configured, limit = self.limits.max_history_len, loaded.model.cfg.max_events
        if configured is not None and configured <= limit:
            limit = configured
        elif configured is not None:
            log.warning(
                "max_history_len %d exceeds what the model can hold; serving %d events", configured, limit
            )
        lim = self.limits
        policy = ContextPolicy.build(lim.context_policy, limit, lim.context_window, lim.context_stride)
        return Served(loaded.model, loaded.vocab, dict(loaded.metadata), generation, limit, policy)

    # --- operations -------------------------------------------------------------------------------
    def submit_register(self, tenant: str, learner_id: str, history: Sequence[tuple[str, float]]) -> Future:
        key = _key(tenant, learner_id)
        s = self.served
        rows, outcomes = self._events(s, history, "history")
        if not s.policy.slides and len(history) > s.policy.window:
            raise InvalidArgument(
                f"history has {len(history)} events; the limit is {s.policy.window}", field="history"
            )
        return self._submit(Call(Op.REGISTER, key, s.generation, rows, outcomes, list(history)))

    def register(self, tenant: str, learner_id: str, history: Sequence[tuple[str, float]]) -> Learner:
        return self.submit_register(tenant, learner_id, history).result()

    def get(self, tenant: str, learner_id: str) -> Learner:
        key = _key(tenant, learner_id)
        record = self.repo.get(key.tenant, key.learner_id)
        if record is None:
            raise NotFound(f"learner {learner_id!r} not found", field="learner_id")
        return Learner.of(record, self.served.policy)

    def submit_predict(self, tenant: str, learner_id: str, tasks: Sequence[str]) -> Future:
        """P(success) per task given the committed history, and that history's length."""
        key = _key(tenant, learner_id)
        s = self.served
        rows = self._tasks(s, tasks, "tasks", self.limits.max_tasks_per_request)
        return self._submit(Call(Op.PREDICT, key, s.generation, rows, raw=list(tasks)))

    def predict(self, tenant: str, learner_id: str, tasks: Sequence[str]) -> tuple[list[float], int]:
        return self.submit_predict(tenant, learner_id, tasks).result()

    def submit_predict_many(
        self, tenant: str, items: Sequence[tuple[str, Sequence[str]]]
    ) -> list[Future | LyceumError]:
        """`submit_predict` for many learners; an item that fails validation is its error."""
        out: list[Future | LyceumError] = []
        for learner_id, tasks in items:
            try:
                out.append(self.submit_predict(tenant, learner_id, tasks))
            except LyceumError as err:
                out.append(err)
        return out

    def predict_many(
        self, tenant: str, items: Sequence[tuple[str, Sequence[str]]]
    ) -> list[tuple[list[float], int] | LyceumError]:
        """`predict` for many learners (batched together); each item's result or its own error, in order."""
        out: list[tuple[list[float], int] | LyceumError] = []
        for item in self.submit_predict_many(tenant, items):
            if isinstance(item, LyceumError):
                out.append(item)
                continue
            try:
                out.append(item.result())
            except LyceumError as err:
                out.append(err)
        return out

    def submit_append(
        self,
        tenant: str,
        learner_id: str,
        events: Sequence[tuple[str, float]],
        expected_len: int | None = None,
    ) -> Future:
        """Appends events (durably, then to the cache); resolves to the learner and each event's prior P."""
        key = _key(tenant, learner_id)
        if not events:
            raise InvalidArgument("events must not be empty", field="events")
        if expected_len is not None and expected_len < 0:
            raise InvalidArgument("expected_history_len must be >= 0", field="expected_history_len")
        s = self.served
        rows, outcomes = self._events(s, events, "events")
        policy = s.policy
        if policy.slides and len(events) > policy.window - policy.stride + 1:
            raise InvalidArgument(
                f"events has {len(events)} events; at most {policy.window - policy.stride + 1} per append "
                f"(the context window is {policy.window} events)",
                field="events",
            )
        call = Call(Op.APPEND, key, s.generation, rows, outcomes, list(events), expected_len=expected_len)
        return self._submit(call)

    def append(
        self,
        tenant: str,
        learner_id: str,
        events: Sequence[tuple[str, float]],
        expected_len: int | None = None,
    ) -> tuple[Learner, list[float]]:
        return self.submit_append(tenant, learner_id, events, expected_len).result()

    def forecast(
        self,
        tenant: str,
        learner_id: str,
        sequences: Sequence[Sequence[str]],
        feedback: Feedback = Feedback.EXPECTED,
        seed: int = 0,
    ) -> list[list[float]]:
        """S x L roll-out probabilities from the learner's state; never changes it."""
        plan = self.plan_forecast(sequences)
        return self.roll_out(plan, self.submit_read(tenant, learner_id).result(), feedback, seed)

    def plan_forecast(self, sequences: Sequence[Sequence[str]]) -> ForecastPlan:
        """A forecast's sequences, checked and encoded (before the learner is read)."""
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
        return ForecastPlan(flat, len(sequences), L)

    def submit_read(self, tenant: str, learner_id: str) -> Future:
        """Resolves to a consistent snapshot of the learner's current cache (checked by the batch runner),
        for a roll-out outside the batches."""
        return self._submit(Call(Op.READ, _key(tenant, learner_id), self.served.generation))

    def roll_out(
        self, plan: ForecastPlan, snap: Snapshot, feedback: Feedback = Feedback.EXPECTED, seed: int = 0
    ) -> list[list[float]]:
        """The forecast of `plan` from `snap` (the heavy part: run it off the event loop)."""
        S, L = plan.sequences, plan.length
        lim, limit = self.limits, self.served.max_history_len
        if L and snap.context_len + L - 1 > limit:
            raise InvalidArgument(
                f"a roll-out of {L} tasks after {snap.context_len} events in context runs past the limit of "
                f"{limit} events",
                field="task_sequences",
            )
        if S == 0 or L == 0:
            return [[] for _ in range(S)]
        need = inference.forecast_bytes(snap.model, snap.kv.length, S, L)
        if need > lim.forecast_memory_bytes:
            raise InvalidArgument(
                f"a forecast of {S} sequences x {L} tasks needs {need / 2**20:.0f} MiB; the predictor's "
                f"forecast_memory_bytes limit is {lim.forecast_memory_bytes / 2**20:.0f} MiB (send fewer or "
                "shorter sequences)",
                field="task_sequences",
            )
        return inference.forecast(snap.model, snap.kv, plan.tasks.view(S, L), feedback, seed).tolist()

    def search(self, tenant: str, learner_id: str, request: SearchRequest) -> SearchResult:
        """Curriculum search from the learner's committed state; changes nothing."""
        return self.search_from(self.submit_read(tenant, learner_id).result(), request)

    def search_from(self, snap: Snapshot, request: SearchRequest) -> SearchResult:
        """The search of `request` from `snap` (the heavy part: run it off the event loop)."""
        limit = self.served.max_history_len
        result = run_search(snap.model, snap.vocab, snap.kv, snap.context_len, limit, request)
        return dataclasses.replace(result, history_len=snap.history_len)

    def submit_delete(self, tenant: str, learner_id: str) -> Future:
        key = _key(tenant, learner_id)
        return self._submit(Call(Op.DELETE, key, self.served.generation))

    def delete(self, tenant: str, learner_id: str) -> None:
        self.submit_delete(tenant, learner_id).result()

    def tasks(self) -> list[str]:
        return list(self.served.vocab.tasks)

    def collect_garbage(self) -> int:
        """Frees what can be freed without losing state; returns the accelerator bytes released."""
        return free_memory(self.served.model.device)

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
            context_policy=s.policy.kind,
            context_window=s.policy.window,
        )

    # --- plumbing -----------------------------------------------------------------------------------
    def _submit(self, call: Call) -> Future:
        call.route = ROUTE.get()
        return self.batcher.submit(call)

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
            raise InvalidArgument(f"unknown task {clip(e.task)!r}", field=field) from None
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


def _key(tenant: str, learner_id: str) -> LearnerKey:
    """The checked cache key of a learner: equal ids in two tenants are two learners."""
    return LearnerKey(tenant, check_learner_id(learner_id))
