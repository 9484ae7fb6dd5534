"""CORS per mount: each path prefix has its own allowed origins (the native API none by default, the
token-wheel mount any), answered by Starlette's CORSMiddleware, preflight `OPTIONS` included. Credentials are
never allowed: callers authenticate with a key header, not cookies."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from lyceum_core.context import HTTP_REQUEST_ID, HTTP_SUBJECT

ALLOW_HEADERS = [
    "Authorization",
    "X-API-Key",
    "Content-Type",
    HTTP_REQUEST_ID,
    HTTP_SUBJECT,
    "Idempotency-Key",
    "Last-Event-ID",
]
EXPOSE_HEADERS = [HTTP_REQUEST_ID, "Retry-After", "Location"]
ALLOW_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _under(path: str, prefix: str) -> bool:
    return not prefix or path == prefix or path.startswith(prefix + "/")


class MountCorsMiddleware:
    """Routes each request to the CORS policy of the longest matching prefix (`""` matches every path); a
    prefix with no origins passes requests through untouched (no CORS headers: browsers refuse)."""

    def __init__(self, app: ASGIApp, *, policies: Sequence[tuple[str, Sequence[str]]]) -> None:
        self.app = app
        self.policies: list[tuple[str, ASGIApp]] = []
        for prefix, origins in sorted(policies, key=lambda p: len(p[0]), reverse=True):
            handler: ASGIApp = app
            if origins:
                handler = CORSMiddleware(
                    app,
                    allow_origins=list(origins),
                    allow_methods=ALLOW_METHODS,
                    allow_headers=ALLOW_HEADERS,
                    expose_headers=EXPOSE_HEADERS,
                    allow_credentials=False,
                    max_age=600,
                )
            self.policies.append((prefix, handler))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        handler = next((h for prefix, h in self.policies if _under(path, prefix)), self.app)
        await handler(scope, receive, send)
