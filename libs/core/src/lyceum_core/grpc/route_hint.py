"""How a call reached its replica, told by the gateway in one metadata header (`lyceum-route`) so that the
replica can say why it had to rebuild a cache: it was the key's owner, or it took the key over from an owner
that is down or draining (`failover`), or from one that was overloaded (`overflow`).

Client side, the gateway sets `ROUTE` around a call and `RouteHintInterceptor` copies it into the metadata;
server side, `RouteHintServerInterceptor` sets `ROUTE` from it for the handler (which carries it into its
worker thread with `contextvars.copy_context()`), and `rebuild_reason` names a cache rebuild."""

from __future__ import annotations

import enum
from contextvars import ContextVar
from typing import Any

import grpc

HEADER = "lyceum-route"


class Route(enum.StrEnum):
    OWNER = "owner"
    FAILOVER = "failover"
    OVERFLOW = "overflow"


ROUTE: ContextVar[Route] = ContextVar("lyceum_route", default=Route.OWNER)


def route_of(metadata: Any) -> Route:
    """The route a call's metadata names (`owner` when absent or unknown)."""
    for key, value in metadata or ():
        if key == HEADER:
            try:
                return Route(value)
            except ValueError:
                break
    return Route.OWNER


def rebuild_reason(resident: bool, evicted: bool, route: Route | None = None) -> str:
    """Why a replica rebuilds a cache (learner or session): `stale` (it had one, but it missed updates made
    elsewhere or is of another model), `evicted` (dropped to fit the budget), `failover` / `overflow` (first
    call here because the key's owner was away / busy), or `cold` (first call here). `route`: the call's,
    when it is not the current context's (work queued to another thread)."""
    if resident:
        return "stale"
    if evicted:
        return "evicted"
    route = ROUTE.get() if route is None else route
    return route.value if route is not Route.OWNER else "cold"


class RouteHintServerInterceptor(grpc.aio.ServerInterceptor):
    """Sets `ROUTE` from each call's metadata for its handler."""

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        ROUTE.set(route_of(handler_call_details.invocation_metadata))
        return await continuation(handler_call_details)


class RouteHintInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds the caller's `ROUTE` (when not `owner`) to every unary call's metadata."""

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        route = ROUTE.get()
        if route is not Route.OWNER:
            metadata = grpc.aio.Metadata(*(client_call_details.metadata or ()), (HEADER, route.value))
            client_call_details = client_call_details._replace(metadata=metadata)
        return await continuation(client_call_details, request)
