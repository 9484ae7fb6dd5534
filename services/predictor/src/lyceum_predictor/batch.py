"""Runs one batch of predictor calls (from the batcher's thread, which alone touches the caches):

1. admission: per learner, calls run in arrival order; a call after a write to the same learner waits for the
   next batch;
2. residency: a learner whose lease this process holds is current as cached (no database read); the others are
   claimed in ONE statement (lease taken or renewed, record read) and rebuilt if their cache is unlike the
   stored history, all rebuilds in one forward;
3. one forward (`ragged.decode_ragged`) for every predict, append and registration in the batch;
4. group commit: every append of the batch in one transaction, durable before any of them is answered; a
   refused append fails (or retries) alone;
5. caches extended, answers sent.
"""

from __future__ import annotations

import logging
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from lyceum_core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    LyceumError,
    NotFound,
    Unavailable,
    clip,
)
from lyceum_core.grpc.route_hint import rebuild_reason
from lyceum_db.repositories.learners import Claim, LearnerRepository, LeaseLost, PendingAppend
from lyceum_ml.dfm import inference
from lyceum_ml.dfm.ragged import Row, decode_ragged
from lyceum_ml.dfm.vocab import UnknownTask
from lyceum_predictor.batcher import Batcher
from lyceum_predictor.cache import (
    CLAIMS,
    HITS,
    MISSES,
    REBUILD_SECONDS,
    REBUILDS,
    Entry,
    LearnerCaches,
    LearnerKey,
)
from lyceum_predictor.calls import Call, Learner, Op, Snapshot
from lyceum_predictor.leases import Leases

if TYPE_CHECKING:
    from lyceum_predictor.engine import Served

log = logging.getLogger(__name__)
APPEND_RETRIES = 3  # an append that lost a race (another writer, a lost lease) is retried this often
LEASE_WAIT_LIMIT = 3  # leases: a write waits at most this many of another process's lease terms


@dataclass
class _Resident:
    """A called learner once its cache is current: the entry, and the claim made this batch (None: this
    process held the lease from before)."""

    entry: Entry | None
    claim: Claim | None


@dataclass
class _Plan:
    """What the batch does for one call: its row in the forward, and what to commit afterwards."""

    call: Call
    entry: Entry | None = None
    row: Row | None = None
    new_start: int = 0  # append/register: the window start after it
    shifted: bool = False  # append: the window moved, the row is a prefill of the new window
    tasks: array | None = None  # append that shifts / register: the window's events
    outcomes: array | None = None
    new_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    priors: list[float] | None = None


class BatchRunner:
    def __init__(
        self,
        served: Callable[[], Served],
        repo: LearnerRepository,
        caches: LearnerCaches,
        *,
        owner: str,
        lease_s: float,
        chunk: int,
    ) -> None:
        self.served, self.repo, self.caches = served, repo, caches
        self.owner, self.chunk = owner, chunk
        self.batcher: Batcher[Call] | None = None  # set by the engine
        self.leases = Leases(repo, caches, owner=owner, lease_s=lease_s)

    # --- the batch ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def run(self, calls: list[Call]) -> None:
        s = self.served()
        hand_over = [c for c in calls if c.op is Op.HAND_OVER]
        calls = [c for c in self._admit(calls) if c.op is not Op.HAND_OVER and self._encoded(s, c)]
        resident = self._resident(s, [c for c in calls if c.op is not Op.REGISTER])
        plans: list[_Plan] = []
        for call in calls:
            if call.future.done():  # failed while its learner was loaded
                continue
            try:
                plan = self._plan(s, call, resident.get(call.key))
            except LyceumError as err:
                call.future.set_exception(err)
                continue
            if plan is not None:
                plans.append(plan)
        if plans:
            self._read_out(s, plans, decode_ragged(s.model, [p.row for p in plans]))
        self._commit_registrations(s, [p for p in plans if p.call.op is Op.REGISTER])
        self._commit_appends(s, [p for p in plans if p.call.op is Op.APPEND])
        for call in hand_over:
            self._hand_over(call)

    def _hand_over(self, call: Call) -> None:
        """`Leases.hand_over`, in the batch thread: no batch after it believes or renews a lease."""
        try:
            call.future.set_result(self.leases.hand_over())
        except Exception as exc:  # noqa: BLE001 - the leases simply run out
            call.future.set_exception(exc)

    def _admit(self, calls: list[Call]) -> list[Call]:
        """Per learner, the calls up to and including its first write run now; the rest wait their turn."""
        written: set[LearnerKey] = set()
        admitted, later = [], []
        for call in calls:
            if call.key in written:
                later.append(call)
                continue
            admitted.append(call)
            if call.op.writes:
                written.add(call.key)
        if later:
            self._defer(later)
        return admitted

    def _encoded(self, s: Served, call: Call) -> bool:
        """Re-encodes a call queued before a model swap; False (call failed) if the new model lacks a task."""
        if call.generation == s.generation or call.rows is None:
            return True
        tasks = call.raw if call.op is Op.PREDICT else [t for t, _ in call.raw]
        try:
            call.rows = torch.tensor(s.vocab.encode(tasks), dtype=torch.long, device=s.model.device)
        except UnknownTask as e:
            field = "tasks" if call.op is Op.PREDICT else "events"
            call.future.set_exception(
                InvalidArgument(f"unknown task {clip(e.task)!r} (the served model changed)", field=field)
            )
            return False
        if call.outcomes is not None:
            call.outcomes = call.outcomes.to(s.model.device)
        call.generation = s.generation
        return True

    # --- residency and leases -----------------------------------------------------------------------
    def _resident(self, s: Served, calls: list[Call]) -> dict[LearnerKey, _Resident]:
        """Makes every called learner's cache current; a learner that cannot be loaded fails its calls."""
        now = time.monotonic()
        out: dict[LearnerKey, _Resident] = {}
        check = []
        for key in dict.fromkeys(c.key for c in calls):
            entry = self.caches.get(key)
            if entry is not None and self.leases.believed(entry, s.generation, now):
                entry.used_at = now
                out[key] = _Resident(entry, None)
                HITS.inc()
            else:
                check.append(key)
        if not check:
            return out
        calls_of: dict[LearnerKey, list[Call]] = {}
        for call in calls:
            calls_of.setdefault(call.key, []).append(call)
        started = time.monotonic()
        try:
            claims = self.repo.claim(check, self.owner, self.leases.requested_s)
        except Exception as exc:  # noqa: BLE001 - the database is unreachable: these calls fail, others go on
            for key in check:
                _fail(calls_of[key], exc)
            return out
        rebuild: list[tuple[LearnerKey, Claim, str]] = []
        for key in check:
            claim = claims.get(key)
            CLAIMS.labels("missing" if claim is None else "owned" if claim.owned else "held").inc()
            if claim is None:
                self.caches.drop(key)
                _fail(calls_of[key], NotFound(f"learner {key.learner_id!r} not found", field="learner_id"))
                continue
            entry = self.caches.get(key)
            if entry is not None and _holds(entry, claim, s):
                entry.epoch = claim.epoch
                self.leases.grant(entry, started, claim.owned)
                out[key] = _Resident(entry, claim)
                HITS.inc()
            elif all(c.op is Op.DELETE for c in calls_of[key]):  # a delete needs the claim, not a cache
                out[key] = _Resident(None, claim)
            else:
                reason = rebuild_reason(
                    entry is not None, self.caches.was_evicted(key), calls_of[key][0].route
                )
                rebuild.append((key, claim, reason))
        if rebuild:
            out.update(self._rebuild(s, rebuild, started, calls_of))
        return out

    def _rebuild(
        self,
        s: Served,
        todo: list[tuple[LearnerKey, Claim, str]],
        started: float,
        calls_of: dict[LearnerKey, list[Call]],
    ) -> dict[LearnerKey, _Resident]:
        """Rebuilds caches from the stored histories (the window in context), all in one forward."""
        begin = time.perf_counter()
        rows, built = [], []
        for key, claim, reason in todo:
            n = claim.record.history_len
            start = s.policy.start(n)
            try:
                # a history only grows: its first n events are those the claim saw, whatever came since
                history = self.repo.history(key.tenant, key.learner_id, start)[: n - start]
                tasks = array("l", s.vocab.encode([t for t, _ in history]))
            except UnknownTask as e:  # only after a swap to a model that lacks a task this learner practised
                _fail(
                    calls_of[key],
                    FailedPrecondition(
                        f"learner {key.learner_id!r} has task {clip(e.task)!r}, which the served model "
                        "does not know",
                        field="learner_id",
                    ),
                )
                continue
            except Exception as exc:  # noqa: BLE001 - deleted meanwhile, or the database failed
                _fail(calls_of[key], exc)
                continue
            outcomes = array("d", (o for _, o in history))
            rows.append(inference.prefill_row(s.model, *_tensors(s, tasks, outcomes)))
            built.append((key, claim, reason, start, tasks, outcomes))
        out = {}
        for (key, claim, reason, start, tasks, outcomes), (_, new_kv) in zip(
            built, decode_ragged(s.model, rows) if rows else [], strict=True
        ):
            entry = Entry(
                inference.cache_of(s.model, new_kv, chunk=self.chunk),
                claim.record.history_len,
                claim.record.created_at,
                s.generation,
                start=start,
                tasks=tasks,
                outcomes=outcomes,
                epoch=claim.epoch,
            )
            self.leases.grant(entry, started, claim.owned)
            self.caches.put(key, entry)
            out[key] = _Resident(entry, claim)
            MISSES.inc()
            REBUILDS.labels(reason).inc()
        if built:
            REBUILD_SECONDS.observe(time.perf_counter() - begin)
        return out

    # --- planning the forward -------------------------------------------------------------------------
    def _plan(self, s: Served, call: Call, resident: _Resident | None) -> _Plan | None:
        """The call's row in the forward, or None when it is answered (or parked) without one."""
        if call.op is Op.REGISTER:
            n = len(call.raw)
            start = s.policy.start(n)
            tasks = array("l", call.rows.tolist()[start:])
            outcomes = array("d", (o for _, o in call.raw[start:]))
            row = inference.prefill_row(s.model, *_tensors(s, tasks, outcomes))
            return _Plan(call, None, row, start, tasks=tasks, outcomes=outcomes)
        if resident is None:  # cannot happen: every call's learner was resolved or its calls failed
            raise Unavailable(
                f"learner {call.key.learner_id!r} could not be loaded; retry", field="learner_id"
            )
        entry, claim = resident.entry, resident.claim
        owned = claim.owned if claim is not None else True
        if call.op.writes and not owned:
            self._wait_for_lease(call, claim.wait_s if claim is not None else self.leases.lease_s)
            return None
        if call.op is Op.DELETE:
            self._delete(call, claim.epoch if claim is not None else entry.epoch)
            return None
        assert entry is not None
        if call.op is Op.PREDICT:
            return _Plan(call, entry, inference.predict_row(s.model, entry.kv, call.rows))
        if call.op is Op.READ:
            n = entry.history_len
            call.future.set_result(Snapshot(s.model, s.vocab, entry.kv.snapshot(), n, n - entry.start))
            return None
        return self._plan_append(s, call, entry)

    def _plan_append(self, s: Served, call: Call, entry: Entry) -> _Plan:
        n, m = entry.history_len, len(call.raw)
        if call.expected_len is not None and call.expected_len != n:
            raise FailedPrecondition(
                f"learner {call.key.learner_id!r} has {n} events, not the expected {call.expected_len}",
                field="expected_history_len",
            )
        policy = s.policy
        if not policy.slides and n + m > policy.window:
            raise InvalidArgument(
                f"appending {m} events would make the history {n + m} events long; the limit is "
                f"{policy.window}",
                field="events",
            )
        new_start = policy.start(n + m)
        if new_start == entry.start:
            row = inference.extend_row(s.model, entry.kv, call.rows, call.outcomes)
            return _Plan(call, entry, row, new_start)
        # the window moves: the cache becomes a prefill of the new window, positions re-based
        keep = new_start - entry.start
        tasks = entry.tasks[keep:] + array("l", call.rows.tolist())
        outcomes = entry.outcomes[keep:] + array("d", (o for _, o in call.raw))
        row = inference.prefill_row(s.model, *_tensors(s, tasks, outcomes))
        return _Plan(call, entry, row, new_start, shifted=True, tasks=tasks, outcomes=outcomes)

    def _read_out(self, s: Served, plans: list[_Plan], outputs: list) -> None:
        """Answers the predictions and reads the appends' priors, with one read-out for the whole batch."""
        heads, tasks, read = [], [], []
        for plan, (h, new_kv) in zip(plans, outputs, strict=True):
            plan.new_kv = new_kv
            call = plan.call
            if call.op is Op.PREDICT:
                heads.append(h)
            elif call.op is Op.APPEND:
                # each new event's prior is read at its task token: in an extend row the row is the new
                # events, in a prefill of the moved window they are its last 2m tokens
                heads.append(h[-2 * len(call.raw) :: 2])
            else:
                continue
            tasks.append(call.rows)
            read.append(plan)
        if not read:
            return
        probs = inference.probabilities(s.model, torch.cat(heads), torch.cat(tasks)).tolist()
        offset = 0
        for plan in read:
            n = plan.call.rows.shape[0]
            mine, offset = probs[offset : offset + n], offset + n
            if plan.call.op is Op.APPEND:
                plan.priors = mine
            else:
                assert plan.entry is not None
                plan.call.future.set_result((mine, plan.entry.history_len))

    # --- commits ---------------------------------------------------------------------------------------
    def _commit_registrations(self, s: Served, plans: list[_Plan]) -> None:
        for plan in plans:
            call, key = plan.call, plan.call.key
            started = time.monotonic()
            try:
                record = self.repo.create(
                    key.tenant, key.learner_id, call.raw, owner=self.owner, lease_s=self.leases.requested_s
                )
            except AlreadyExists:
                call.future.set_exception(
                    AlreadyExists(f"learner {key.learner_id!r} already exists", field="learner_id")
                )
                continue
            except Exception as exc:  # noqa: BLE001 - this registration failed; the batch goes on
                call.future.set_exception(exc)
                continue
            assert plan.new_kv is not None
            entry = Entry(
                inference.cache_of(s.model, plan.new_kv, chunk=self.chunk),
                record.history_len,
                record.created_at,
                s.generation,
                start=plan.new_start,
                tasks=plan.tasks,
                outcomes=plan.outcomes,
                epoch=1,
            )
            self.leases.grant(entry, started, True)
            self.caches.put(key, entry)
            call.future.set_result(Learner.of(record, s.policy))

    def _commit_appends(self, s: Served, plans: list[_Plan]) -> None:
        """Group commit: every append of the batch in one transaction, then the caches and the answers."""
        if not plans:
            return
        pending = []
        for plan in plans:
            key, entry = plan.call.key, plan.entry
            assert entry is not None
            pending.append(
                PendingAppend(key.tenant, key.learner_id, plan.call.raw, entry.history_len, entry.epoch)
            )
        started = time.monotonic()
        try:
            results = self.repo.append_many(self.owner, self.leases.requested_s, pending)
        except Exception as exc:  # noqa: BLE001 - nothing applied (or, if the commit's answer was lost, all)
            for plan in plans:
                self.caches.drop(plan.call.key)  # the next call re-reads what the database holds
                plan.call.future.set_exception(exc)
            return
        retry = []
        for plan, result in zip(plans, results, strict=True):
            call = plan.call
            if isinstance(result, LyceumError):
                self.caches.drop(call.key)
                if self._refused(call, result):
                    retry.append(call)
                continue
            self._extend(s, plan, result.history_len, started)
            call.future.set_result((Learner.of(result, s.policy), plan.priors))
        if retry:
            self._defer(retry)

    def _refused(self, call: Call, error: LyceumError) -> bool:
        """Answers an append the database refused; True if it should run again (rebuilt first)."""
        if isinstance(error, NotFound):
            call.future.set_exception(error)
        elif call.expected_len is not None and not isinstance(error, LeaseLost):
            call.future.set_exception(
                FailedPrecondition(
                    f"learner {call.key.learner_id!r} changed concurrently; it no longer has "
                    f"{call.expected_len} events",
                    field="expected_history_len",
                )
            )
        elif call.attempt + 1 >= APPEND_RETRIES:
            call.future.set_exception(error)
        else:
            call.attempt += 1
            return True
        return False

    def _extend(self, s: Served, plan: _Plan, history_len: int, started: float) -> None:
        """Moves a committed append into its learner's cache (an evicted one just stays evicted)."""
        entry, call = plan.entry, plan.call
        assert entry is not None and plan.new_kv is not None
        try:
            if plan.shifted:
                entry.kv = inference.cache_of(s.model, plan.new_kv, chunk=self.chunk)
                entry.start, entry.tasks, entry.outcomes = plan.new_start, plan.tasks, plan.outcomes
            else:
                entry.kv.append(plan.new_kv)
                entry.tasks.extend(call.rows.tolist())
                entry.outcomes.extend(o for _, o in call.raw)
            entry.history_len = history_len
            self.leases.grant(entry, started, True)
            self.caches.resized(call.key)
        except Exception:  # noqa: BLE001 - committed already; the cache rebuilds on next use
            log.exception("could not extend the cache of %s", call.key)
            self.caches.drop(call.key)

    def _delete(self, call: Call, epoch: int) -> None:
        key = call.key
        try:
            deleted = self.repo.delete(key.tenant, key.learner_id, owner=self.owner, epoch=epoch)
        except LeaseLost:
            self._wait_for_lease(call, 0.0)
            return
        except Exception as exc:  # noqa: BLE001
            call.future.set_exception(exc)
            return
        self.caches.drop(key)
        if deleted:
            call.future.set_result(None)
        else:
            call.future.set_exception(NotFound(f"learner {key.learner_id!r} not found", field="learner_id"))

    # --- helpers ---------------------------------------------------------------------------------------
    def _wait_for_lease(self, call: Call, wait_s: float) -> None:
        """A write to a learner another process holds: runs again once that lease has ended (the holder
        then stops answering from its cache), unless it has waited longer than a holder that keeps
        renewing would let it."""
        if call.waited > LEASE_WAIT_LIMIT * max(self.leases.lease_s, 0.1):
            call.future.set_exception(
                Unavailable(
                    f"learner {call.key.learner_id!r} is being served by another predictor; retry there",
                    field="learner_id",
                )
            )
            return
        delay = wait_s + 0.01
        call.waited += delay
        self._defer([call], delay)  # the retry claims the lease and checks the cache against the record

    def _defer(self, calls: list[Call], delay_s: float = 0.0) -> None:
        assert self.batcher is not None
        self.batcher.defer(calls, delay_s)


def _fail(calls: list[Call], exc: BaseException) -> None:
    for call in calls:
        if not call.future.done():
            call.future.set_exception(exc)


def _holds(entry: Entry, claim: Claim, s: Served) -> bool:
    """Whether a cache holds exactly the stored learner: the same incarnation with the same number of events
    (a history only grows, so that fixes its contents), encoded by the served model."""
    return (
        entry.history_len == claim.record.history_len
        and entry.created_at == claim.record.created_at
        and entry.generation == s.generation
    )


def _tensors(s: Served, tasks: array, outcomes: array) -> tuple[torch.Tensor, torch.Tensor]:
    device = s.model.device
    return (
        torch.tensor(tasks, dtype=torch.long, device=device),
        torch.tensor(outcomes, dtype=torch.float32, device=device),
    )
