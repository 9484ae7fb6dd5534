"""Who is calling: the request id, the API key (`Authorization: Bearer <key>` or `X-API-Key: <key>`) and the
tenant it belongs to, built ONCE per request into a `RequestContext` that routes read (`deps.Context`), log
lines carry (`CURRENT`) and every gRPC call sends on.

- No keys configured and none in the database: authentication is off, every caller is the `default` tenant.
- Otherwise every `/v1`, compatibility and admin route needs a key; an unknown or revoked one is 401 at once
  (each request looks its hash up in the database, so a revocation reaches every gateway replica at once).
- Admin routes (`/v1/admin/...`) need an admin key from the settings. Without one configured they answer only
  while authentication is off entirely (a local, keyless install); otherwise 403.
- A mount may be opened to callers without a key, as a named tenant (`anonymous_tenant`).
Probes, metrics and docs stay open; they still get a request id and a `default` context.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from anyio import to_thread
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lyceum_core.context import HTTP_REQUEST_ID, HTTP_SUBJECT, RequestContext, bound, new_request_id
from lyceum_core.errors import LyceumError, PermissionDenied, Unauthenticated, Unavailable
from lyceum_core.identity import DEFAULT_TENANT, PLATFORM_TENANT, is_request_id
from lyceum_gateway.errors import error_response

log = logging.getLogger(__name__)

ADMIN_SUBJECT = "admin"


def presented_key(headers: Headers) -> str | None:
    """The key a request presents, if any (the Authorization header wins)."""
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


def key_matches(candidate: str, keys: Sequence[bytes]) -> bool:
    """Compares against every key without short-circuiting, so timing reveals nothing."""
    presented = candidate.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented, key)
    return matched


def under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


class KeyRecordLike(Protocol):
    key_id: str
    tenant: str
    subject: str | None


class KeyRepository(Protocol):
    """What the gateway needs of `lyceum_db`'s ApiKeyRepository (synchronous)."""

    def authenticate(self, plaintext: str) -> Any: ...

    def touch(self, key_id: str) -> Any: ...

    def list(self, tenant: str | None = None) -> Any: ...


class KeyStore:
    """Resolves presented keys against the database, and knows whether authentication is on.

    Authentication is on when the settings name keys, or once the database holds one (re-checked every
    `recheck_s` seconds until it does; then it stays on for this process). Nothing positive is cached: a
    revoked key fails on its next request on every replica."""

    def __init__(
        self,
        keys: KeyRepository | None,
        *,
        configured: bool,
        admin_keys: Sequence[str] = (),
        recheck_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = keys
        self._on = configured
        self._admin = [key.encode() for key in admin_keys]
        self._recheck_s = recheck_s
        self._clock = clock
        self._checked_at: float | None = None

    @property
    def has_admin_keys(self) -> bool:
        return bool(self._admin)

    def is_admin(self, key: str) -> bool:
        return bool(self._admin) and key_matches(key, self._admin)

    async def enabled(self) -> bool:
        """Whether callers need a key. Unavailable if the database cannot tell (never fails open)."""
        if self._on or self.keys is None:
            return self._on
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self._recheck_s:
            return False
        try:
            found = bool(await to_thread.run_sync(self.keys.list))
        except Exception as exc:  # noqa: BLE001 - the key store is down: refuse, do not open the gates
            log.warning("cannot read the API keys: %s", type(exc).__name__)  # its text may quote SQL
            raise Unavailable("the key store is unavailable; retry") from None
        self._checked_at = now
        self._on = found
        return found

    def keys_seen(self) -> None:
        """A key was created through this gateway: authentication is on from now."""
        self._on = True

    async def authenticate(self, key: str) -> KeyRecordLike | None:
        """The key's record (tenant, subject), or None if it is unknown or revoked; its last use is noted."""
        if self.keys is None:
            return None
        try:
            return await to_thread.run_sync(self._authenticate, key)
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot check an API key: %s", type(exc).__name__)
            raise Unavailable("the key store is unavailable; retry") from None

    def _authenticate(self, key: str) -> KeyRecordLike | None:
        assert self.keys is not None
        record = self.keys.authenticate(key)
        if record is not None:
            try:
                self.keys.touch(record.key_id)  # throttled by the repository
            except Exception:  # noqa: BLE001 - bookkeeping only; the key is valid
                log.debug("could not note the use of key %s", record.key_id, exc_info=True)
        return record


@dataclass(frozen=True, slots=True)
class MountPolicy:
    """How one mount authenticates: its path prefix, whether it answers in the compatibility shape, and the
    tenant a caller without a key becomes (None: a key is needed when authentication is on)."""

    prefix: str
    compat: bool = False
    anonymous_tenant: str | None = None


RateCheck = Callable[[str], Any]  # async (tenant) -> None, raises QuotaExceeded


class AuthMiddleware:
    """Builds the request's context (`scope["state"]["context"]`, bound as `CURRENT`) and refuses callers
    without a valid key. Reads the key store and the quotas from the lifespan state (`auth`, `quotas`).

    The request id is a plain `X-Request-Id` of the caller's, or a new one; every response carries it."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        mounts: Sequence[MountPolicy],
        admin_prefix: str,
        timeout_s: float,
    ) -> None:
        self.app = app
        # Longest prefix first, so a mount inside another one wins.
        self.mounts = sorted(mounts, key=lambda m: len(m.prefix), reverse=True)
        self.admin_prefix = admin_prefix
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        state = scope.setdefault("state", {})
        rid = state.get("request_id") or _request_id(headers)
        state["request_id"] = rid
        send = with_request_id(send, rid)
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        mount = next((m for m in self.mounts if under(path, m.prefix)), None)
        try:
            if mount is None:  # probes, metrics, docs
                ctx = RequestContext.new(DEFAULT_TENANT, request_id=rid, timeout_s=self.timeout_s)
            elif under(path, self.admin_prefix):
                ctx = await self._admin_context(state, headers, rid)
            else:
                ctx = await self._tenant_context(state, mount, headers, rid)
        except LyceumError as err:
            compat = mount is not None and mount.compat
            await error_response(err, compat=compat, request_id=rid)(scope, receive, send)
            return
        state["context"] = ctx
        with bound(ctx):
            quotas = state.get("quotas")
            if mount is not None and quotas is not None:
                try:
                    await quotas.check_rate(ctx.tenant)
                except LyceumError as err:
                    log.info("refused: %s", err.message)
                    await error_response(err, compat=mount.compat, request_id=rid)(scope, receive, send)
                    return
            await self.app(scope, receive, send)

    def _new(self, tenant: str, rid: str, subject: str | None) -> RequestContext:
        return RequestContext.new(tenant, subject=subject, request_id=rid, timeout_s=self.timeout_s)

    async def _tenant_context(
        self, state: dict[str, Any], mount: MountPolicy, headers: Headers, rid: str
    ) -> RequestContext:
        store: KeyStore | None = state.get("auth")
        key = presented_key(headers)
        subject = headers.get(HTTP_SUBJECT) or None
        if store is None:
            return self._new(DEFAULT_TENANT, rid, subject)
        if key is None:
            if mount.anonymous_tenant is not None:
                return self._new(mount.anonymous_tenant, rid, subject)
            if await store.enabled():
                raise Unauthenticated("missing API key", field="authorization")
            return self._new(DEFAULT_TENANT, rid, subject)
        if not await store.enabled():
            return self._new(DEFAULT_TENANT, rid, subject)  # keys mean nothing while authentication is off
        record = await store.authenticate(key)
        if record is None:
            raise Unauthenticated("invalid API key", field="authorization")
        return self._new(record.tenant, rid, record.subject or subject)

    async def _admin_context(self, state: dict[str, Any], headers: Headers, rid: str) -> RequestContext:
        store: KeyStore | None = state.get("auth")
        key = presented_key(headers)
        ctx = self._new(PLATFORM_TENANT, rid, ADMIN_SUBJECT)
        if store is None:
            return ctx
        if key is not None and store.is_admin(key):
            return ctx
        if not store.has_admin_keys:
            if not await store.enabled():
                return ctx  # a keyless install: nothing is protected, the admin routes neither
            raise PermissionDenied(
                "the admin routes are disabled: no admin key is configured (LYCEUM_GATEWAY_ADMIN_KEYS)",
                field="authorization",
            )
        message = "missing admin key" if key is None else "invalid admin key"
        raise Unauthenticated(message, field="authorization")


def _request_id(headers: Headers) -> str:
    given = headers.get(HTTP_REQUEST_ID)
    return given if given and is_request_id(given) else new_request_id()


def with_request_id(send: Send, request_id: str) -> Send:
    """`send`, adding `X-Request-Id` to the response (unless a handler already did)."""

    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            if HTTP_REQUEST_ID not in headers:
                headers.append(HTTP_REQUEST_ID, request_id)
        await send(message)

    return send_with_id


class RequestIdMiddleware:
    """The outermost layer after metrics: gives the request its id (kept in `scope["state"]`) and puts it on
    every response, CORS preflights included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        rid = _request_id(Headers(scope=scope))
        state["request_id"] = rid
        await self.app(scope, receive, with_request_id(send, rid))
