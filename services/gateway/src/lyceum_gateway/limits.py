"""Request size caps from the settings, checked at the edge so oversized requests never reach a predictor:
the body size of every request (an ASGI middleware, 413) and the item counts of the native API's requests.

Shape and type rules live in the pydantic schemas; these are the deployment-tunable limits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lyceum_core.errors import InvalidArgument
from lyceum_gateway.config import Settings
from lyceum_gateway.errors import PAYLOAD_TOO_LARGE, ErrorShape, compat_body, error_body, openai_body


@dataclass(frozen=True, slots=True)
class Limits:
    max_tasks_per_request: int
    max_events_per_request: int
    max_forecast_sequences: int
    max_forecast_length: int
    max_learner_id_len: int
    max_batch_items: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_tasks_per_request=settings.max_tasks_per_request,
            max_events_per_request=settings.max_events_per_request,
            max_forecast_sequences=settings.max_forecast_sequences,
            max_forecast_length=settings.max_forecast_length,
            max_learner_id_len=settings.max_learner_id_len,
            max_batch_items=settings.max_batch_items,
        )

    def learner_id(self, learner_id: str, field: str = "learner_id") -> str:
        if len(learner_id) > self.max_learner_id_len:
            limit = self.max_learner_id_len
            raise InvalidArgument(
                f"{field} is {len(learner_id)} characters long; at most {limit} are allowed", field=field
            )
        return learner_id

    def tasks(self, tasks: Sequence[object], field: str = "tasks") -> None:
        _at_most(len(tasks), self.max_tasks_per_request, field)

    def events(self, events: Sequence[object], field: str = "events") -> None:
        _at_most(len(events), self.max_events_per_request, field)

    def batch(self, items: Sequence[object], field: str = "items") -> None:
        _at_most(len(items), self.max_batch_items, field)

    def forecast(self, task_sequences: Sequence[Sequence[object]], field: str = "task_sequences") -> None:
        _at_most(len(task_sequences), self.max_forecast_sequences, field)
        longest = max((len(seq) for seq in task_sequences), default=0)
        if longest > self.max_forecast_length:
            raise InvalidArgument(
                f"{field} has sequences of {longest} tasks; at most {self.max_forecast_length} are allowed",
                field=field,
            )


def _at_most(count: int, limit: int, field: str) -> None:
    if count > limit:
        raise InvalidArgument(f"{field} has {count} items; at most {limit} are allowed", field=field)


# --- request bodies --------------------------------------------------------------------------------------


class BodyTooLarge(StarletteHTTPException):
    """A request body beyond the configured limit. An HTTPException, so FastAPI's body parsing lets it through
    to each app's handlers, which answer 413 in that app's error shape."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds the limit of {limit} bytes")
        self.field = "body"


class BodyLimitMiddleware:
    """Refuses request bodies over `max_bytes` on every route: at once when `Content-Length` says so, else as
    soon as a streamed body crosses the limit. `shape(path)` tells which error shape the path answers in;
    `routes` maps paths with a limit of their own (uploads) to it."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        shape: Callable[[str], ErrorShape],
        routes: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.shape = shape
        self.routes = dict(routes or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.routes.get(scope["path"].removeprefix(scope.get("root_path", "")), self.max_bytes)
        length = Headers(scope=scope).get("content-length", "")
        if length.strip().isdigit() and int(length) > max_bytes:
            await self._refuse(scope, receive, send, max_bytes)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send, max_bytes)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        rid = scope.get("state", {}).get("request_id")
        err = BodyTooLarge(max_bytes)
        shape = self.shape(path)
        if shape is ErrorShape.COMPAT:
            body: dict[str, object] = compat_body(err.detail, rid)
        elif shape is ErrorShape.OPENAI:
            body = openai_body(err.detail, "invalid_request_error", None, PAYLOAD_TOO_LARGE.lower())
        else:
            body = error_body(PAYLOAD_TOO_LARGE, err.detail, "body", rid)
        await JSONResponse(body, status_code=413)(scope, receive, send)
