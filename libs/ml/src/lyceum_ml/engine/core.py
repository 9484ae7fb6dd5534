"""The batched decoding engine: many rows advance together, one token per step, through one forward pass
(iteration-level scheduling, as vLLM and nanochat's Engine do).

Each step gathers, within a token budget:
- every decoding row's last chosen token (one token each), unless its consumer's buffer is full (a slow
  client pauses only its own row);
- one-shot forwards (the token wheel's steps, scoring, beam search's steps) queued by other threads;
- chunks of new rows' prompts (a long prompt is fed over several steps, so it cannot stall the decoders).
Rows join between steps up to `max_rows` and leave as they finish or are cancelled, freeing their caches at
once. Every row has its own KV cache, sampling parameters, RNG stream, stops, adapter and gate signal; the
model packs their tokens into one forward (`CausalLM.forward_rows`), so a row's tokens and log-probs do not
depend on its batch mates. Rows with a `Controller` (`engine.control`) have their sampling parameters and
gate signal decided each step, all rows of one controller in one call.

The engine runs on one thread (`start()`), which also performs `call()`s between steps: adapter injection
and removal change the model's modules and must not race a forward. `step()` may instead be driven by the
caller (tests, training loops) when no thread is started."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from lyceum_ml.causal_lm import CausalLM, Feed
from lyceum_ml.engine.choose import choose
from lyceum_ml.engine.control import Control, ControlView
from lyceum_ml.engine.request import Event, Finish, Request, TokenEvent
from lyceum_ml.engine.text import TextStream

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepStats:
    rows: int  # rows in the forward pass
    tokens: int  # tokens fed
    seconds: float


class Stream:
    """The consumer's end of one row: events arrive in order, the last one a `Finish`. At most `capacity`
    undelivered events are buffered; beyond that the row waits (it keeps its cache, others go on).

    `on_ready` (if set) is called from the engine thread after events arrive, e.g. to wake an event loop."""

    def __init__(self, request: Request, capacity: int, wake: Callable[[], None], row_id: int = 0) -> None:
        self.request, self.capacity, self._wake, self.row_id = request, capacity, wake, row_id
        self._events: deque[Event] = deque()
        self._cv = threading.Condition()
        self.on_ready: Callable[[], None] | None = None
        self.finished = False  # a Finish has been queued
        self.cancelled = False

    @property
    def full(self) -> bool:
        return len(self._events) >= self.capacity

    def push(self, event: Event) -> None:
        with self._cv:
            self._events.append(event)
            if isinstance(event, Finish):
                self.finished = True
            self._cv.notify_all()
        if self.on_ready is not None:
            try:
                self.on_ready()
            except Exception:  # noqa: BLE001 - a consumer gone (its loop closed) must not stop the engine
                log.debug("stream wake-up failed", exc_info=True)

    def poll(self) -> list[Event]:
        """Every event that has arrived (possibly none), without waiting."""
        with self._cv:
            events = list(self._events)
            self._events.clear()
        if events:
            self._wake()  # room again: a paused row may go on
        return events

    def wait(self, timeout: float | None = None) -> list[Event]:
        """Events, waiting until at least one has arrived (or `timeout`)."""
        with self._cv:
            self._cv.wait_for(lambda: self._events, timeout)
        return self.poll()

    def __iter__(self) -> Iterator[Event]:
        """Blocking iteration until the Finish (for a started engine)."""
        while True:
            for event in self.wait():
                yield event
                if isinstance(event, Finish):
                    return

    def cancel(self) -> None:
        """Gives the row up: the engine frees it before its next step; no more events arrive."""
        self.cancelled = True
        self._wake()


@dataclass
class _Row:
    request: Request
    stream: Stream
    cache: Any
    generator: torch.Generator
    text: TextStream
    row_id: int = 0
    gate: float | None = None  # the gate signal of the tokens fed next
    control: Control | None = None  # the controller's last decision
    fed: int = 0  # prompt tokens fed so far
    chunk: int = 0  # prompt tokens in the step under way
    pending: list[int] = field(default_factory=list)  # the chosen token to feed next step
    generated: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)

    @property
    def decoding(self) -> bool:
        return self.fed == len(self.request.prompt_ids)


@dataclass
class _Job:
    feed: Feed
    future: Future[Tensor]


class Engine:
    """One model's batched engine. Thread-safe: `submit`, `forward`, `call`, `Stream.cancel` from anywhere."""

    def __init__(
        self,
        lm: CausalLM,
        *,
        max_rows: int = 32,
        step_tokens: int = 512,
        stream_buffer: int = 64,
        on_step: Callable[[StepStats], None] | None = None,
    ) -> None:
        if max_rows < 1 or step_tokens < 1 or stream_buffer < 1:
            raise ValueError("max_rows, step_tokens and stream_buffer must be >= 1")
        self.lm, self.max_rows, self.step_tokens = lm, max_rows, step_tokens
        self.stream_buffer, self.on_step = stream_buffer, on_step
        self._cv = threading.Condition()
        self._waiting: deque[_Row] = deque()
        self._jobs: deque[_Job] = deque()
        self._calls: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._rows: list[_Row] = []  # engine thread only
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._nudged = False
        self._row_ids = itertools.count(1)

    # --- callers ----------------------------------------------------------------------------------
    def submit(self, request: Request) -> Stream:
        """Queues a row; ValueError (nothing queued) if the request does not fit the model."""
        request.validate(self.lm.max_context)
        if request.gate is not None and not self.lm.gated:
            raise ValueError("this model has no gates but a gate signal was given")
        row_id = next(self._row_ids)
        stream = Stream(request, self.stream_buffer, self._nudge, row_id)
        generator = torch.Generator().manual_seed(request.seed)
        text = TextStream(self.lm.token_bytes, request.stop)
        row = _Row(request, stream, None, generator, text, row_id, request.gate)
        with self._cv:
            self._waiting.append(row)
            self._cv.notify()
        return stream

    def forward(self, feed: Feed) -> Future[Tensor]:
        """One row's forward in the next step (its cache grows): the token wheel's and scoring's way in."""
        future: Future[Tensor] = Future()
        with self._cv:
            self._jobs.append(_Job(feed, future))
            self._cv.notify()
        return future

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Runs fn on the engine's thread between two steps (adapter injection and removal)."""
        future: Future[Any] = Future()
        with self._cv:
            self._calls.append((fn, future))
            self._cv.notify()
        return future

    @property
    def busy_rows(self) -> int:
        return len(self._rows) + len(self._waiting)

    def _nudge(self) -> None:
        with self._cv:
            self._nudged = True
            self._cv.notify()

    # --- the loop ---------------------------------------------------------------------------------
    def start(self, name: str = "engine") -> None:
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        for row in [*self._rows, *self._waiting]:
            self._finish(row, "cancelled")
        for job in self._jobs:
            job.future.cancel()

    def _loop(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._stopping or self._has_work())
                if self._stopping:
                    return
                self._nudged = False
            try:
                self.step()
            except Exception:  # noqa: BLE001 - the engine must outlive any one step
                log.exception("engine step failed")

    def _has_work(self) -> bool:
        runnable = any(not r.stream.full or r.stream.cancelled for r in self._rows)
        return bool(self._calls or self._jobs or self._waiting or runnable or self._nudged)

    def step(self) -> bool:
        """One iteration: pending calls, admissions, one forward pass, token choices. Whether it did work."""
        self._run_calls()
        self._admit()
        start = time.perf_counter()
        feeds, owners = self._plan()
        if not feeds:
            return False
        results = self._forward(feeds)
        ready: list[tuple[_Row, Tensor, Tensor | None]] = []  # rows choosing a token now
        for owner, feed, result in zip(owners, feeds, results, strict=True):
            if isinstance(owner, _Job):
                if isinstance(result, BaseException):
                    owner.future.set_exception(result)
                else:
                    owner.future.set_result(result)
            elif isinstance(result, BaseException):
                self._finish(owner, "error", result)
            elif self._ready(owner):
                ready.append((owner, result, feed.hidden))
        self._choose(ready)
        if self.on_step is not None:
            tokens = sum(len(f.token_ids) for f in feeds)
            self.on_step(StepStats(len(feeds), tokens, time.perf_counter() - start))
        return True

    def _run_calls(self) -> None:
        with self._cv:
            calls, self._calls = list(self._calls), deque()
        for fn, future in calls:
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)

    def _admit(self) -> None:
        for row in [r for r in self._rows if r.stream.cancelled]:
            self._rows.remove(row)  # its cache goes with it
        with self._cv:
            while self._waiting and len(self._rows) < self.max_rows:
                row = self._waiting.popleft()
                if not row.stream.cancelled:
                    row.cache = self.lm.new_cache()
                    self._rows.append(row)

    def _plan(self) -> tuple[list[Feed], list[_Row | _Job]]:
        feeds: list[Feed] = []
        owners: list[_Row | _Job] = []
        budget = self.step_tokens
        for row in self._rows:
            if row.decoding and row.pending and not row.stream.full:
                feeds.append(self._feed(row, row.pending))
                owners.append(row)
                budget -= 1
        with self._cv:
            while self._jobs and (budget > 0 or not feeds):
                job = self._jobs.popleft()
                if job.future.set_running_or_notify_cancel():
                    feeds.append(job.feed)
                    owners.append(job)
                    budget -= len(job.feed.token_ids)
        for row in self._rows:
            if budget <= 0 and feeds:
                break
            if not row.decoding:
                prompt = row.request.prompt_ids
                chunk = prompt[row.fed : row.fed + max(budget, 1)]
                row.chunk = len(chunk)
                feeds.append(self._feed(row, chunk))
                owners.append(row)
                budget -= len(chunk)
        return feeds, owners

    def _feed(self, row: _Row, tokens: Any) -> Feed:
        control = row.request.control
        hidden = control is not None and control.needs_hidden
        return Feed(row.cache, list(tokens), gate=row.gate, adapter=row.request.adapter, want_hidden=hidden)

    def _forward(self, feeds: list[Feed]) -> list[Tensor | BaseException]:
        """The batch's forward; if it fails, each row alone, so one bad row fails only itself."""
        lengths = [self.lm.cache_len(f.cache) for f in feeds]
        try:
            return list(self.lm.forward_rows(feeds))
        except Exception as exc:  # noqa: BLE001 - isolated below
            if len(feeds) == 1:
                self.lm.truncate(feeds[0].cache, lengths[0])
                return [exc]
        out: list[Tensor | BaseException] = []
        for feed, length in zip(feeds, lengths, strict=True):
            self.lm.truncate(feed.cache, length)  # a failed batch may have grown some caches
            try:
                out.append(self.lm.forward_rows([feed])[0])
            except Exception as exc:  # noqa: BLE001 - this row's failure
                out.append(exc)
        return out

    # --- rows -------------------------------------------------------------------------------------
    def _ready(self, row: _Row) -> bool:
        """A row's forward is done: counts its prompt chunk; whether it now chooses a token (its logits matter
        after the last prompt chunk only)."""
        if row.decoding:
            row.pending = []
            return True
        row.fed += row.chunk
        return row.decoding

    def _choose(self, ready: list[tuple[_Row, Tensor, Tensor | None]]) -> None:
        """Each ready row's token: controlled rows first get their controller's decision (one call per
        controller for all its rows), then every row chooses and emits."""
        groups: dict[int, list[int]] = {}
        for i, (row, _, _) in enumerate(ready):
            if row.request.control is not None:
                groups.setdefault(id(row.request.control), []).append(i)
        for members in groups.values():
            controller = ready[members[0]][0].request.control
            assert controller is not None
            views = [self._view(*ready[i]) for i in members]
            try:
                decided = list(controller.decide(views))
                if len(decided) != len(views):
                    raise RuntimeError(f"the controller decided {len(decided)} of {len(views)} rows")
            except Exception as exc:  # noqa: BLE001 - a failing controller fails its rows only
                for i in members:
                    self._finish(ready[i][0], "error", exc)
                continue
            pairs = zip(members, decided, strict=True)
            tokens = [self._advance(ready[i][0], ready[i][1], c) for i, c in pairs]
            chosen = [(v, c, t) for v, c, t in zip(views, decided, tokens, strict=True) if t >= 0]
            if chosen:
                views, decided, tokens = (list(x) for x in zip(*chosen, strict=True))
                try:
                    controller.chosen(views, decided, tokens)
                except Exception:  # noqa: BLE001 - scoring is the controller's affair; its rows go on
                    log.exception("controller.chosen failed")
        for row, logits, _ in ready:
            if row.request.control is None:
                self._advance(row, logits, None)

    def _view(self, row: _Row, logits: Tensor, hidden: Tensor | None) -> ControlView:
        return ControlView(row.row_id, row.request, logits, hidden, tuple(row.generated), row.control)

    def _advance(self, row: _Row, logits: Tensor, control: Control | None) -> int:
        """Chooses the row's next token (under its controller's decision, if any) and emits it; the token,
        or -1 when the choice failed."""
        request = row.request
        params = None
        if control is not None:
            params, row.gate, row.control = control.params, control.gate, control
        try:
            token, logprob, p, top = choose(logits, request, row.generated, row.generator, params)
        except Exception as exc:  # noqa: BLE001 - a failing hook fails its row only
            self._finish(row, "error", exc)
            return -1
        if token == self.lm.eos_id:
            self._finish(row, "eos")
            return token
        if token in request.stop_ids:
            self._finish(row, "stop")
            return token
        row.generated.append(token)
        row.logprobs.append(logprob)
        row.text.add(token)
        row.stream.push(TokenEvent(token, logprob, p, top, row.text.visible(), control))
        if row.text.stopped:
            self._finish(row, "stop")
        elif len(row.generated) >= request.max_new_tokens:
            self._finish(row, "length")
        elif len(request.prompt_ids) + len(row.generated) > self.lm.max_context:
            self._finish(row, "length")  # the chosen token would not fit to be fed
        else:
            row.pending = [token]
        return token

    def _finish(self, row: _Row, reason: str, error: BaseException | None = None) -> None:
        if row in self._rows:
            self._rows.remove(row)
        if row.stream.finished or row.stream.cancelled:
            return
        text = row.text.final() if reason != "error" else row.text.text
        finish = Finish(
            text, reason, tuple(row.generated), tuple(row.logprobs), len(row.request.prompt_ids), error
        )
        row.stream.push(finish)
