"""Who is calling: the request id, the API key (`Authorization: Bearer <key>` or `X-API-Key: <key>`) and the
tenant it belongs to, built ONCE per request into a `RequestContext` that routes read (`deps.Context`), log
lines carry (`CURRENT`) and every gRPC call sends on.

- No keys configured and none in the database: authentication is off, every caller is the `default` tenant.
- Otherwise every `/v1`, compatibility and admin route needs a key; an unknown or revoked one is 401. A valid
  key is looked up in the database once per `auth_cache_s` (by its hash, one lookup for concurrent requests)
  and trusted from memory in between, so a revocation reaches every gateway replica within that time.
- Admin routes (`/v1/admin/...`) need an admin key from the settings. Without one configured they answer only
  while authentication is off entirely (a local, keyless install); otherwise 403.
- A mount may be opened to callers without a key, as a named tenant (`anonymous_tenant`).
Probes, metrics and docs stay open; they still get a request id and a `default` context.

`EdgeMiddleware` does it, with the request id, CORS and the request metrics, as the gateway's one edge layer.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from anyio import to_thread
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lyceum_core.context import HTTP_REQUEST_ID, HTTP_SUBJECT, RequestContext, bound, new_request_id
from lyceum_core.errors import LyceumError, PermissionDenied, Unauthenticated, Unavailable
from lyceum_core.identity import DEFAULT_TENANT, PLATFORM_TENANT, is_request_id
from lyceum_db.repositories.tenants import ApiKeyRepository, KeyRecord, hash_key
from lyceum_gateway.cors import MountCorsMiddleware
from lyceum_gateway.errors import ErrorShape, error_response
from lyceum_gateway.metrics import HttpMetrics, route_template

log = logging.getLogger(__name__)

ADMIN_SUBJECT = "admin"


def presented_key(authorization: str, api_key: str | None) -> str | None:
    """The key a request presents: `Authorization: Bearer <key>`, else `X-API-Key: <key>`."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return api_key or None


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
    `recheck_s` seconds until it does; then it stays on for this process).

    A valid key's record is kept for `cache_s` seconds (keyed by the key's hash, at most `max_cached` keys,
    least recently used out first): the request path reads the database, in a worker thread, only when a key
    is new or its entry has expired, and concurrent requests with the same key share that one lookup. So a
    key revoked elsewhere keeps working here for at most `cache_s`; `forget` drops it at once. Unknown and
    revoked keys are never cached: a key created on another replica works at once."""

    def __init__(
        self,
        keys: KeyRepository | None,
        *,
        configured: bool,
        admin_keys: Sequence[str] = (),
        recheck_s: float = 2.0,
        cache_s: float = 5.0,
        max_cached: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = keys
        self._on = configured
        self._admin = [key.encode() for key in admin_keys]
        self._recheck_s = recheck_s
        self._cache_s = cache_s
        self._max_cached = max_cached
        self._clock = clock
        self._checked_at: float | None = None
        # key hash -> (when its lookup began, record), least recently used first
        self._cache: OrderedDict[str, tuple[float, KeyRecordLike]] = OrderedDict()
        self._lookups: dict[str, asyncio.Task[KeyRecordLike | None]] = {}

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

    def forget(self, key_id: str) -> None:
        """Drops the cached record of key `key_id` (revoked through this gateway: refused from now here). Safe
        from a worker thread: the snapshot and each removal are single operations under the GIL."""
        for digest, (_, record) in list(self._cache.items()):
            if record.key_id == key_id:
                self._cache.pop(digest, None)

    async def authenticate(self, key: str) -> KeyRecordLike | None:
        """The key's record (tenant, subject), or None if it is unknown or revoked; its last use is noted when
        it is looked up."""
        if self.keys is None:
            return None
        digest = hash_key(key)
        cached = self._cache.get(digest)
        if cached is not None:
            if self._clock() - cached[0] < self._cache_s:
                self._cache.move_to_end(digest)
                return cached[1]
            self._cache.pop(digest, None)
        lookup = self._lookups.get(digest)
        if lookup is None:
            lookup = asyncio.ensure_future(self._lookup(digest, key))
            self._lookups[digest] = lookup
            lookup.add_done_callback(partial(self._looked_up, digest))
        # Shielded: a caller that gives up (a client gone) does not cancel the lookup others wait for.
        return await asyncio.shield(lookup)

    def _looked_up(self, digest: str, lookup: asyncio.Task[KeyRecordLike | None]) -> None:
        self._lookups.pop(digest, None)
        if not lookup.cancelled():
            lookup.exception()  # retrieved here too: every waiter may have gone

    async def _lookup(self, digest: str, key: str) -> KeyRecordLike | None:
        started = self._clock()  # the entry ages from before the read: never trusted past cache_s
        try:
            record = await to_thread.run_sync(self._authenticate, key)
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot check an API key: %s", type(exc).__name__)
            raise Unavailable("the key store is unavailable; retry") from None
        if record is not None and self._cache_s > 0:
            self._cache[digest] = (started, record)
            while len(self._cache) > self._max_cached:
                self._cache.popitem(last=False)
        return record

    def _authenticate(self, key: str) -> KeyRecordLike | None:
        assert self.keys is not None
        record = self.keys.authenticate(key)
        if record is not None:
            try:
                self.keys.touch(record.key_id)  # throttled by the repository
            except Exception:  # noqa: BLE001 - bookkeeping only; the key is valid
                log.debug("could not note the use of key %s", record.key_id, exc_info=True)
        return record


class AdminKeys(ApiKeyRepository):
    """The key repository of the admin routes: a key revoked through this gateway also leaves its key cache,
    so it is refused here at once (on other replicas within their `auth_cache_s`)."""

    def __init__(self, engine: Engine, store: KeyStore) -> None:
        super().__init__(engine)
        self._store = store

    def revoke(self, key_id: str) -> KeyRecord:
        record = super().revoke(key_id)
        self._store.forget(key_id)
        return record


@dataclass(frozen=True, slots=True)
class MountPolicy:
    """How one mount authenticates: its path prefix, the error shape it answers in, and the tenant a caller
    without a key becomes (None: a key is needed when authentication is on)."""

    prefix: str
    shape: ErrorShape = ErrorShape.NATIVE
    anonymous_tenant: str | None = None


class EdgeMiddleware:
    """The gateway's one edge layer (pure ASGI), outermost, with the app's body limit inside it. Per HTTP
    request, from the outside in: the request metrics (every request timed and counted, refusals included),
    the request id (a plain `X-Request-Id` of the caller's, or a new one; on every response), CORS per mount
    (only for browser requests, those with an `Origin`: preflights answered before authentication), then the
    request's context (`scope["state"]["context"]`, bound as `CURRENT`) from its key, and the rate quota.

    One layer rather than one per concern: the headers are read in one pass, and the response goes through
    one `send` wrapper. Reads the key store and the quotas from the lifespan state (`auth`, `quotas`)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: HttpMetrics,
        cors: Sequence[tuple[str, Sequence[str]]],
        mounts: Sequence[MountPolicy],
        admin_prefix: str,
        timeout_s: float,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.cors = MountCorsMiddleware(self._authenticated, policies=cors)
        # Longest prefix first, so a mount inside another one wins.
        self.mounts = sorted(mounts, key=lambda m: len(m.prefix), reverse=True)
        self.admin_prefix = admin_prefix
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = _EdgeHeaders.read(scope)
        scope[_EDGE_HEADERS] = headers
        rid = headers.request_id
        scope.setdefault("state", {})["request_id"] = rid
        rid_header = (_REQUEST_ID, rid.encode())
        status = 500  # what the server answers if the app raises before starting a response

        async def send_edge(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                sent = message.get("headers") or []
                if not any(name.lower() == _REQUEST_ID for name, _ in sent):  # unless a handler did
                    message["headers"] = [*sent, rid_header]
            await send(message)

        try:
            if headers.origin is None:
                await self._authenticated(scope, receive, send_edge)
            else:
                await self.cors(scope, receive, send_edge)
        finally:
            self.metrics.observe(scope["method"], route_template(scope), status, time.perf_counter() - start)

    async def _authenticated(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app, run in the caller's context (or the refusal: 401, 403, 429, 503)."""
        headers: _EdgeHeaders = scope[_EDGE_HEADERS]
        state = scope["state"]
        rid = headers.request_id
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        mount = next((m for m in self.mounts if under(path, m.prefix)), None)
        try:
            if mount is None:  # probes, metrics, docs
                ctx = RequestContext.new(DEFAULT_TENANT, request_id=rid, timeout_s=self.timeout_s)
            elif under(path, self.admin_prefix):
                ctx = await self._admin_context(state, headers)
            else:
                ctx = await self._tenant_context(state, mount, headers)
        except LyceumError as err:
            shape = mount.shape if mount is not None else ErrorShape.NATIVE
            await error_response(err, shape=shape, request_id=rid)(scope, receive, send)
            return
        state["context"] = ctx
        with bound(ctx):
            quotas = state.get("quotas")
            if mount is not None and quotas is not None:
                try:
                    await quotas.check_rate(ctx.tenant)
                except LyceumError as err:
                    log.info("refused: %s", err.message)
                    await error_response(err, shape=mount.shape, request_id=rid)(scope, receive, send)
                    return
            await self.app(scope, receive, send)

    def _new(self, tenant: str, headers: _EdgeHeaders, subject: str | None) -> RequestContext:
        return RequestContext.new(
            tenant, subject=subject, request_id=headers.request_id, timeout_s=self.timeout_s
        )

    async def _tenant_context(
        self, state: dict[str, Any], mount: MountPolicy, headers: _EdgeHeaders
    ) -> RequestContext:
        store: KeyStore | None = state.get("auth")
        key = headers.key
        subject = headers.subject
        if store is None:
            return self._new(DEFAULT_TENANT, headers, subject)
        if key is None:
            if mount.anonymous_tenant is not None:
                return self._new(mount.anonymous_tenant, headers, subject)
            if await store.enabled():
                raise Unauthenticated("missing API key", field="authorization")
            return self._new(DEFAULT_TENANT, headers, subject)
        if not await store.enabled():
            return self._new(
                DEFAULT_TENANT, headers, subject
            )  # keys mean nothing while authentication is off
        record = await store.authenticate(key)
        if record is None:
            raise Unauthenticated("invalid API key", field="authorization")
        return self._new(record.tenant, headers, record.subject or subject)

    async def _admin_context(self, state: dict[str, Any], headers: _EdgeHeaders) -> RequestContext:
        store: KeyStore | None = state.get("auth")
        key = headers.key
        ctx = self._new(PLATFORM_TENANT, headers, ADMIN_SUBJECT)
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


_EDGE_HEADERS = "lyceum.edge_headers"  # the scope key (an ASGI extension key) of a request's `_EdgeHeaders`
_REQUEST_ID = HTTP_REQUEST_ID.lower().encode()
_NAMES = {
    name.lower().encode(): field
    for name, field in (
        ("authorization", "authorization"),
        ("x-api-key", "api_key"),
        (HTTP_REQUEST_ID, "request_id"),
        (HTTP_SUBJECT, "subject"),
        ("origin", "origin"),
    )
}


@dataclass(slots=True)
class _EdgeHeaders:
    """What the edge reads of a request's headers (the first of each), in one pass."""

    request_id: str
    key: str | None
    subject: str | None
    origin: str | None

    @classmethod
    def read(cls, scope: Scope) -> _EdgeHeaders:
        found: dict[str, str] = {}
        for name, value in scope["headers"]:
            field = _NAMES.get(name.lower())
            if field is not None and field not in found:
                found[field] = value.decode("latin-1")
        given = found.get("request_id")
        return cls(
            request_id=given if given and is_request_id(given) else new_request_id(),
            key=presented_key(found.get("authorization", ""), found.get("api_key")),
            subject=found.get("subject") or None,
            origin=found.get("origin"),
        )
