"""Recorded completions: what a generation asked to be recorded sampled, written durably before its final
message is sent (the id it returns always names a stored row), and purged after the retention period. Each
row keeps the digest of its response's text (`response_digest`), by which feedback that quotes the text
(CLaaS's) finds it."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

from lyceum_core.identity import new_completion_id
from lyceum_db.engine import create_engine
from lyceum_db.repositories.completions import CompletionRecord, CompletionRepository, response_digest
from lyceum_ml.engine.text import TextStream
from lyceum_sampler.generation import Completed

log = logging.getLogger(__name__)
PURGE_EVERY_S = 3600.0
LOGPROB_FLOOR = -1e9  # a token chosen by a hook with probability 0 (log-prob -inf: JSON has no infinity)


class Recorder:
    """Writes completions to the database (connected on first use)."""

    def __init__(self, database_url: str, retention_days: float) -> None:
        self.database_url, self.retention = database_url, timedelta(days=retention_days)
        self._repository: CompletionRepository | None = None
        self._engine = None
        self._lock = threading.Lock()
        self._last_purge = 0.0

    @property
    def repository(self) -> CompletionRepository:
        with self._lock:
            if self._repository is None:
                self._engine = create_engine(self.database_url)
                self._repository = CompletionRepository(self._engine)
            return self._repository

    def record(self, tenant: str, subject: str | None, completed: Completed, text: str | None = None) -> str:
        """Stores the completion (one committed INSERT) and returns its id. `text` is the response's text as
        the caller was answered (the final message's); without it, it is decoded again from the tokens."""
        target = completed.target
        record = CompletionRecord(
            tenant=tenant,
            completion_id=new_completion_id(),
            model=target.loaded.key,
            adapter=target.adapter.key if target.adapter else None,
            subject=subject or None,
            prompt_ids=completed.prompt_ids,
            token_ids=completed.token_ids,
            logprobs=tuple(max(lp, LOGPROB_FLOOR) for lp in completed.logprobs),
            params=completed.params,
            finish_reason=completed.finish_reason,
            response_sha256=response_digest(response_text(completed) if text is None else text),
        )
        self.repository.record(record)
        self._maybe_purge()
        return record.completion_id

    def _maybe_purge(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now - self._last_purge < PURGE_EVERY_S:
            return
        self._last_purge = now
        try:
            gone = self.repository.purge(datetime.now(UTC) - self.retention)
        except Exception:  # noqa: BLE001 - retention is housekeeping; recording already succeeded
            log.exception("could not purge old completions")
            return
        if gone:
            log.info("purged %d completions older than %s", gone, self.retention)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def response_text(completed: Completed) -> str:
    """The text the engine answered for the completion's tokens: their bytes decoded incrementally (UTF-8, a
    broken character replaced) and cut before the first of the request's stop strings, by the engine's own
    `TextStream`. A stop string a chat template adds is not among the recorded parameters: a response cut by
    one decodes longer here, which is why the caller passes the answered text when it has it."""
    stop = completed.params.get("stop") or ()
    stream = TextStream(completed.target.loaded.lm.token_bytes, [s for s in stop if isinstance(s, str)])
    for token_id in completed.token_ids:
        stream.add(token_id)
    return stream.final()
