"""Recorded completions: the sampler writes one per generation asked to be recorded, before it answers, so the
id it returns always names a stored row. Rows are immutable; `purge` drops the old ones (retention).

Every read acts for one tenant: another tenant's completion of the same id is a missing one. A completion can
also be found by its response's text (`find_by_response`, with `response_digest`), for feedback that quotes
the response instead of naming the id (the /claas mount)."""

from __future__ import annotations

import builtins
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from numbers import Integral, Real
from typing import Any

from sqlalchemy import Engine, Row, delete, insert, select
from sqlalchemy.exc import IntegrityError

from lyceum_core.errors import AlreadyExists, InvalidArgument
from lyceum_core.identity import check_completion_id, check_subject, check_tenant_id
from lyceum_db.models.completion import FINISH_REASONS, RESPONSE_SHA256_LEN, Completion
from lyceum_db.repositories._common import json_object, reader, utcnow

# A bound on each token list, so that one request cannot write an unbounded row; generous for any context.
MAX_TOKENS = 1_000_000
LIST_MAX_LIMIT = 1000

_COLUMNS = (
    Completion.tenant,
    Completion.completion_id,
    Completion.model,
    Completion.adapter,
    Completion.subject,
    Completion.prompt_ids,
    Completion.token_ids,
    Completion.logprobs,
    Completion.params,
    Completion.finish_reason,
    Completion.created_at,
    Completion.response_sha256,
)
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class CompletionRecord:
    """One completion: `model` is the served model's key (`tenant/name@version`, or a local model's name),
    `adapter` the applied adapter's key or None; `logprobs[i]` is the log-probability of `token_ids[i]` under
    the distribution it was drawn from. `created_at` is timezone-aware UTC. `response_sha256` is
    `response_digest` of the response's text (None if the recorder did not know it)."""

    tenant: str
    completion_id: str
    model: str
    adapter: str | None
    subject: str | None
    prompt_ids: tuple[int, ...]
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    params: dict[str, Any]
    finish_reason: str
    created_at: datetime = field(default_factory=utcnow)
    response_sha256: str | None = None


def response_digest(text: str) -> str:
    """The sha256 hex of a response's text with its whitespace normalised (runs of whitespace become one
    space, none at either end): the same visible text finds the same completion however it was re-wrapped."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


class CompletionRepository:
    """Completion persistence. `record` is one committed INSERT; reads never open a write transaction."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._reader = reader(engine)

    def record(self, rec: CompletionRecord) -> None:
        """Stores `rec`. InvalidArgument if a field breaks its rule, AlreadyExists if the tenant already has
        a completion of that id."""
        row = _row(rec)
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(Completion).values(**row))
        except IntegrityError as exc:
            raise AlreadyExists(
                f"completion {rec.completion_id!r} already exists", field="completion_id"
            ) from exc

    def get(self, tenant: str, completion_id: str) -> CompletionRecord | None:
        """The tenant's completion of that id, or None (also for another tenant's)."""
        stmt = select(*_COLUMNS).where(Completion.tenant == tenant, Completion.completion_id == completion_id)
        with self._reader.connect() as conn:
            row = conn.execute(stmt).one_or_none()
        return None if row is None else _record(row)

    def list(
        self, tenant: str, subject: str | None = None, limit: int = 100
    ) -> builtins.list[CompletionRecord]:
        """Up to `limit` of the tenant's completions (of one subject, with `subject`), newest first."""
        if not 1 <= limit <= LIST_MAX_LIMIT:
            raise InvalidArgument(f"limit must be 1 to {LIST_MAX_LIMIT}, got {limit}", field="limit")
        stmt = (
            select(*_COLUMNS)
            .where(Completion.tenant == tenant)
            .order_by(Completion.created_at.desc(), Completion.completion_id.desc())
            .limit(limit)
        )
        if subject is not None:
            stmt = stmt.where(Completion.subject == subject)
        with self._reader.connect() as conn:
            return [_record(row) for row in conn.execute(stmt)]

    def find_by_response(self, tenant: str, digest: str, limit: int = 10) -> builtins.list[CompletionRecord]:
        """Up to `limit` of the tenant's completions whose response has `digest` (`response_digest`), newest
        first: the same text may have been generated more than once."""
        if not 1 <= limit <= LIST_MAX_LIMIT:
            raise InvalidArgument(f"limit must be 1 to {LIST_MAX_LIMIT}, got {limit}", field="limit")
        stmt = (
            select(*_COLUMNS)
            .where(Completion.tenant == tenant, Completion.response_sha256 == _digest(digest))
            .order_by(Completion.created_at.desc(), Completion.completion_id.desc())
            .limit(limit)
        )
        with self._reader.connect() as conn:
            return [_record(row) for row in conn.execute(stmt)]

    def purge(self, before: datetime) -> int:
        """Deletes every tenant's completions created before `before` (aware); returns how many."""
        _check_aware(before, "before")
        with self._engine.begin() as conn:
            return conn.execute(delete(Completion).where(Completion.created_at < before)).rowcount


def _row(rec: CompletionRecord) -> dict[str, Any]:
    """`rec` as a validated row; both backends then store exactly the same values."""
    check_tenant_id(rec.tenant)
    check_completion_id(rec.completion_id)
    if rec.subject is not None:
        check_subject(rec.subject)
    if not isinstance(rec.model, str) or not rec.model:
        raise InvalidArgument("model must be a non-empty model key", field="model")
    if rec.adapter is not None and (not isinstance(rec.adapter, str) or not rec.adapter):
        raise InvalidArgument("adapter must be a non-empty adapter key or None", field="adapter")
    if rec.finish_reason not in FINISH_REASONS:
        shown = f"finish_reason {rec.finish_reason!r} is not one of {', '.join(sorted(FINISH_REASONS))}"
        raise InvalidArgument(shown, field="finish_reason")
    _check_aware(rec.created_at, "created_at")
    if rec.response_sha256 is not None:
        _digest(rec.response_sha256, "response_sha256")
    prompt_ids = _token_ids(rec.prompt_ids, "prompt_ids")
    token_ids = _token_ids(rec.token_ids, "token_ids")
    logprobs = _logprobs(rec.logprobs)
    if len(logprobs) != len(token_ids):
        shown = f"logprobs has {len(logprobs)} entries, token_ids {len(token_ids)}: one per token"
        raise InvalidArgument(shown, field="logprobs")
    return {
        "tenant": rec.tenant,
        "completion_id": rec.completion_id,
        "subject": rec.subject,
        "model": rec.model,
        "adapter": rec.adapter,
        "prompt_ids": prompt_ids,
        "token_ids": token_ids,
        "logprobs": logprobs,
        "params": json_object(rec.params, "params"),
        "finish_reason": rec.finish_reason,
        "created_at": rec.created_at,
        "response_sha256": rec.response_sha256,
    }


def _digest(value: str, field: str = "digest") -> str:
    """A sha256 hex digest as `response_digest` writes it (lowercase), else InvalidArgument."""
    if not isinstance(value, str) or len(value) != RESPONSE_SHA256_LEN or not _HEX.issuperset(value):
        raise InvalidArgument(f"{field} must be 64 lowercase hex digits (sha256)", field=field)
    return value


def _token_ids(values: Iterable[Any], field: str) -> list[int]:
    """Non-negative integers (NumPy's too, not bools), at most MAX_TOKENS of them, as plain ints."""
    ids = list(values)
    if len(ids) > MAX_TOKENS:
        raise InvalidArgument(f"{field} has {len(ids)} entries, at most {MAX_TOKENS}", field=field)
    for i, value in enumerate(ids):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
            shown = f"{field}[{i}] must be a token id (an int >= 0), got {value!r}"
            raise InvalidArgument(shown, field=field)
    return [int(value) for value in ids]


def _logprobs(values: Iterable[Any]) -> list[float]:
    """Finite floats as plain floats: PostgreSQL's json refuses NaN and infinities, SQLite would keep them."""
    logprobs = list(values)
    if len(logprobs) > MAX_TOKENS:
        raise InvalidArgument(f"logprobs has {len(logprobs)} entries, at most {MAX_TOKENS}", field="logprobs")
    out = []
    for i, value in enumerate(logprobs):
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise InvalidArgument(f"logprobs[{i}] must be a finite number, got {value!r}", field="logprobs")
        out.append(float(value))
    return out


def _check_aware(value: datetime, field: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidArgument(f"{field} must be a timezone-aware datetime, got {value!r}", field=field)


def _record(row: Row[Any]) -> CompletionRecord:
    # JSON arrays read back as lists; the frozen record holds tuples.
    return CompletionRecord(
        tenant=row.tenant,
        completion_id=row.completion_id,
        model=row.model,
        adapter=row.adapter,
        subject=row.subject,
        prompt_ids=tuple(row.prompt_ids),
        token_ids=tuple(row.token_ids),
        logprobs=tuple(float(x) for x in row.logprobs),
        params=row.params,
        finish_reason=row.finish_reason,
        created_at=row.created_at,
        response_sha256=row.response_sha256,
    )
