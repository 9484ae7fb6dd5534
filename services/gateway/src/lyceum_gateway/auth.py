"""API-key authentication for the public APIs: `Authorization: Bearer <key>` or `X-API-Key: <key>`,
compared in constant time; probes, metrics and docs stay open."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from lyceum_core.errors import Unauthenticated
from lyceum_gateway.errors import error_response


def presented_key(headers: Headers) -> str | None:
    """The key a request presents, if any (the Authorization header wins)."""
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


def key_matches(candidate: str, api_keys: Sequence[bytes]) -> bool:
    """Compares against every key without short-circuiting, so timing reveals nothing."""
    presented = candidate.encode()
    matched = False
    for key in api_keys:
        matched |= hmac.compare_digest(presented, key)
    return matched


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


class ApiKeyMiddleware:
    """Answers 401 on protected prefixes unless a configured key is presented. No keys: pass-through.

    `compat_prefixes` answer in the DFM-Server `{"detail": ...}` shape, the rest in the native one.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_keys: Sequence[str],
        protected_prefixes: Sequence[str],
        compat_prefixes: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.api_keys = [key.encode() for key in api_keys]
        self.protected_prefixes = tuple(protected_prefixes)
        self.compat_prefixes = tuple(compat_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.api_keys:
            await self.app(scope, receive, send)
            return
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        if not any(_under(path, prefix) for prefix in self.protected_prefixes):
            await self.app(scope, receive, send)
            return
        key = presented_key(Headers(scope=scope))
        if key is not None and key_matches(key, self.api_keys):
            await self.app(scope, receive, send)
            return
        message = "missing API key" if key is None else "invalid API key"
        compat = any(_under(path, prefix) for prefix in self.compat_prefixes)
        response = error_response(Unauthenticated(message, field="authorization"), compat=compat)
        await response(scope, receive, send)
