"""Recorded completions: what a generation asked to be recorded sampled, written durably before its final
message is sent (the id it returns always names a stored row), and purged after the retention period."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

from lyceum_core.identity import new_completion_id
from lyceum_db.engine import create_engine
from lyceum_db.repositories.completions import CompletionRecord, CompletionRepository
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

    def record(self, tenant: str, subject: str | None, completed: Completed) -> str:
        """Stores the completion (one committed INSERT) and returns its id."""
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
