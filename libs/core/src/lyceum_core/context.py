"""The request context: who is asking (tenant, subject), which request this is (request id) and until when
it may run (deadline). The gateway builds it once per HTTP request; it travels to every service as gRPC
metadata and arrives there as this dataclass, never as loose strings. `CURRENT` holds it for the running
request so that log lines carry its request id."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace

from lyceum_core.errors import InvalidArgument, Unauthenticated
from lyceum_core.identity import (
    DEFAULT_TENANT,
    PLATFORM_TENANT,
    check_subject,
    check_tenant_id,
    is_request_id,
)

TENANT_HEADER = "lyceum-tenant"
SUBJECT_HEADER = "lyceum-subject"
REQUEST_ID_HEADER = "lyceum-request-id"
# HTTP names of what a caller may send or receive.
HTTP_REQUEST_ID = "X-Request-Id"
HTTP_SUBJECT = "X-Lyceum-Subject"

Clock = Callable[[], float]


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who asks, which request this is, and its deadline (`time.time()` seconds; None: no deadline)."""

    tenant: str
    request_id: str
    subject: str | None = None
    deadline: float | None = None

    @classmethod
    def new(
        cls,
        tenant: str = DEFAULT_TENANT,
        *,
        subject: str | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
        clock: Clock = time.time,
    ) -> RequestContext:
        """A fresh context (a checked tenant and subject; a new request id unless a plain one is given)."""
        check_tenant_id(tenant)
        if subject is not None:
            check_subject(subject, field=HTTP_SUBJECT)
        rid = request_id if request_id and is_request_id(request_id) else new_request_id()
        deadline = clock() + timeout_s if timeout_s is not None else None
        return cls(tenant=tenant, request_id=rid, subject=subject, deadline=deadline)

    @classmethod
    def system(cls, tenant: str = PLATFORM_TENANT, *, request_id: str | None = None) -> RequestContext:
        """The context of work the platform does on its own behalf (jobs, seeding, background polls)."""
        return cls.new(tenant, request_id=request_id)

    def with_subject(self, subject: str | None) -> RequestContext:
        if subject is not None:
            check_subject(subject, field=HTTP_SUBJECT)
        return replace(self, subject=subject)

    def remaining_s(self, clock: Clock = time.time) -> float | None:
        """Seconds left before the deadline (never negative); None without a deadline."""
        return None if self.deadline is None else max(0.0, self.deadline - clock())

    def timeout(self, default_s: float, clock: Clock = time.time) -> float:
        """The gRPC timeout of a call made for this request: `default_s`, cut to the time left."""
        remaining = self.remaining_s(clock)
        return default_s if remaining is None else min(default_s, remaining)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The gRPC metadata that carries this context (the deadline travels as the call's timeout)."""
        items = [(TENANT_HEADER, self.tenant), (REQUEST_ID_HEADER, self.request_id)]
        if self.subject is not None:
            items.append((SUBJECT_HEADER, self.subject))
        return tuple(items)

    @classmethod
    def from_metadata(
        cls, metadata: Iterable[tuple[str, str | bytes]] | None, *, time_remaining: float | None = None
    ) -> RequestContext:
        """The context a call's metadata carries. A call without a tenant is refused (UNAUTHENTICATED); a
        malformed one is INVALID_ARGUMENT."""
        values: dict[str, str] = {}
        for key, value in metadata or ():
            if key in (TENANT_HEADER, SUBJECT_HEADER, REQUEST_ID_HEADER):
                values[key] = value.decode() if isinstance(value, bytes) else value
        tenant = values.get(TENANT_HEADER)
        if not tenant:
            raise Unauthenticated(f"the call carries no tenant ({TENANT_HEADER} metadata)", field="tenant")
        check_tenant_id(tenant, field=TENANT_HEADER)
        subject = values.get(SUBJECT_HEADER) or None
        if subject is not None:
            check_subject(subject, field=SUBJECT_HEADER)
        rid = values.get(REQUEST_ID_HEADER) or ""
        if rid and not is_request_id(rid):
            raise InvalidArgument(f"{REQUEST_ID_HEADER} is not a plain id", field=REQUEST_ID_HEADER)
        deadline = time.time() + time_remaining if time_remaining is not None else None
        return cls(tenant=tenant, request_id=rid or new_request_id(), subject=subject, deadline=deadline)


CURRENT: ContextVar[RequestContext | None] = ContextVar("lyceum_request_context", default=None)


def current_context() -> RequestContext:
    """The running request's context; raises if the code runs outside one (a wiring bug, not user error)."""
    ctx = CURRENT.get()
    if ctx is None:
        raise RuntimeError("no request context is bound here")
    return ctx


@contextmanager
def bound(ctx: RequestContext) -> Iterator[RequestContext]:
    """Binds `ctx` as the current context for the block (log lines inside carry its request id)."""
    token = CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        CURRENT.reset(token)
