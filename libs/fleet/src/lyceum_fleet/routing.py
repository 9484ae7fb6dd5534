"""Which replica serves a call. Keyed calls (a learner on the predictors, a session on the samplers) go to the
key's owner: the replica with the highest rendezvous (highest-random-weight) score over the current
membership, so every caller (each gateway replica, each job) picks the same owner with no shared store, and
adding or removing a replica moves only the keys it gains or loses (about 1/N). A key belongs to a tenant:
the routed string is `routing_key(tenant, key)`, so equal ids in two tenants are routed independently.

Each replica is watched with grpc.health.v1: a Watch stream for prompt news, and a Check every second that
must be answered (a frozen replica, or one behind a silent network, answers neither while its connection may
look alive for minutes). One that is down, hung or draining (NOT_SERVING) gets no calls, and its keys go to
the next replica in their rendezvous order, which rebuilds the learner's cache from its stored history (or
the session's from the shared store). A call whose replica turns out unreachable is re-routed with that
replica excluded, when that is safe: always if the call never reached it, otherwise only for calls that
change nothing (a write that may have run is answered UNAVAILABLE, never run twice); each typed routed method
(`lyceum_fleet.routed`) states which it is. With `overflow_factor` set, an owner running more than its share
of calls (bounded-load hashing) passes new ones to the next replica in rendezvous order. Every choice is
counted (`lyceum_gateway_*` metrics, labelled by service).

Staleness is the replicas' concern, not the router's: a replica serves from a cache only if it holds exactly
the stored history, so an owner that returns after missing updates rebuilds rather than answering stale.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from lyceum_core.errors import Unavailable
from lyceum_core.grpc.route_hint import ROUTE, Route
from lyceum_fleet.grpc_client import ReplicaUnreachable
from lyceum_fleet.membership import Membership, MembershipSource

log = logging.getLogger(__name__)


class WatchedClient(AbstractAsyncContextManager[Any], Protocol):
    """What the router needs of a replica's client (besides the service's own methods)."""

    address: str

    def watch_health(self) -> AsyncIterator[bool]: ...

    async def check(self) -> bool | None: ...


C = TypeVar("C", bound=WatchedClient)
T = TypeVar("T")


def routing_key(tenant: str, key: str) -> str:
    """The string a tenant's key (a learner id, a session id) is routed by: equal keys of two tenants are
    independent (each has its own owner)."""
    return f"{tenant}/{key}"


def rendezvous_score(address: str, key: str) -> int:
    """The weight of `address` for `key`; the highest weight owns the key."""
    digest = hashlib.blake2b((address + key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rendezvous_order(addresses: Sequence[str], key: str) -> list[str]:
    """`addresses` by decreasing weight for `key`: the owner first, then who takes over if it is away (ties,
    astronomically unlikely, go to the smaller address)."""
    return sorted(addresses, key=lambda address: (-rendezvous_score(address, key), address))


def owner(addresses: Sequence[str], key: str) -> str:
    """The address that owns `key`."""
    return rendezvous_order(addresses, key)[0]


class ReplicaState(enum.StrEnum):
    STARTING = "starting"  # no health answer yet; routed to (a failed call marks it down at once)
    SERVING = "serving"
    DRAINING = "draining"  # answers NOT_SERVING: loading, or stopping
    DOWN = "down"  # unreachable


ROUTABLE = (ReplicaState.STARTING, ReplicaState.SERVING)


class Rebind(enum.StrEnum):
    """Why a keyed call went to a replica other than its key's owner."""

    POD_DOWN = "pod_down"
    DRAINING = "draining"
    OVERLOAD = "overload"


class RoutingMetrics:
    """A caller's routing instruments (one set for all its routers, labelled by service), named
    `lyceum_gateway_*` (their names predate the move out of the gateway; dashboards and alerts use them)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.routed = Counter(
            "lyceum_gateway_routed_requests",
            "Keyed calls by service and target: the key's owner or another replica",
            ["service", "target"],
            registry=registry,
        )
        self.rebinds = Counter(
            "lyceum_gateway_rebinds",
            "Keyed calls served by a replica other than the key's owner, by reason",
            ["service", "reason"],
            registry=registry,
        )
        self.failovers = Counter(
            "lyceum_gateway_failovers",
            "Calls re-sent to another replica after theirs proved unreachable",
            ["service"],
            registry=registry,
        )
        self.latency = Histogram(
            "lyceum_gateway_routing_seconds",
            "Time to choose the replica of a call",
            ["service"],
            buckets=(1e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3),
            registry=registry,
        )
        self.replicas = Gauge(
            "lyceum_gateway_replicas",
            "Replicas by service and state",
            ["service", "state"],
            registry=registry,
        )
        self.membership_version = Gauge(
            "lyceum_gateway_membership_version",
            "Version of the service's membership (bumped when replicas join or leave)",
            ["service"],
            registry=registry,
        )


@dataclass(eq=False)
class Replica(Generic[C]):
    address: str
    client: C
    state: ReplicaState = ReplicaState.STARTING
    inflight: int = 0
    watcher: asyncio.Task[None] | None = None


class ReplicaRouter(Generic[C]):
    """The replicas of one service: their clients, health, membership, and the routing of calls to them.

    An async context manager: entering resolves the membership, opens a client per replica and starts the
    health watches (and, for a dynamic membership, its refresh)."""

    kind = "replica"

    def __init__(
        self,
        source: MembershipSource,
        connect: Callable[[str], C],
        metrics: RoutingMetrics,
        *,
        refresh_s: float = 5.0,
        overflow_factor: float = 0.0,
        overflow_min_inflight: int = 8,
        watch_retry_s: float = 0.5,
        probe_interval_s: float = 1.0,
        probe_misses: int = 3,
    ) -> None:
        self._source = source
        self._connect = connect
        self._metrics = metrics
        self._refresh_s = refresh_s
        self._overflow_factor = overflow_factor
        self._overflow_min = overflow_min_inflight
        self._watch_retry_s = watch_retry_s
        self._probe_interval_s = probe_interval_s
        self._probe_misses = probe_misses
        self._replicas: dict[str, Replica[C]] = {}
        self._membership = Membership(0, ())
        self._turn = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        self._refresher: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self._apply(await self._source.resolve())
        if not self._replicas:
            log.warning("%s membership %s resolves to no replica (yet)", self.kind, self._source.description)
        if self._source.dynamic:
            self._refresher = asyncio.create_task(self._refresh_forever())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        for replica in list(self._replicas.values()):
            await self._remove(replica, grace_s=0)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._replicas.clear()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                addresses = await self._source.resolve()
            except Exception:  # noqa: BLE001 - a bad read keeps the membership we have
                log.warning("could not resolve %s membership", self.kind, exc_info=True)
                continue
            if not addresses and self._replicas:
                log.warning("%s membership resolved to nothing; keeping the current one", self.kind)
                continue
            await self._apply(addresses)

    async def _apply(self, addresses: Sequence[str]) -> None:
        """Makes the membership `addresses`: opens clients for newcomers, closes those of leavers."""
        if set(addresses) == set(self._membership.addresses):
            return
        for address in addresses:
            if address not in self._replicas:
                client = await self._connect(address).__aenter__()
                replica = Replica(address, client)
                self._replicas[address] = replica
                replica.watcher = self._spawn(self._watch(replica))
        for address in [a for a in self._replicas if a not in addresses]:
            await self._remove(self._replicas.pop(address), grace_s=30.0)
        self._membership = Membership(self._membership.version + 1, tuple(addresses))
        self._metrics.membership_version.labels(self.kind).set(self._membership.version)
        self._publish()
        log.info("%s membership v%d: %s", self.kind, self._membership.version, ", ".join(addresses))

    async def _remove(self, replica: Replica[C], grace_s: float) -> None:
        if replica.watcher is not None:
            replica.watcher.cancel()

        async def close() -> None:
            deadline = time.monotonic() + grace_s
            while replica.inflight and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await replica.client.__aexit__(None, None, None)

        if grace_s:
            self._spawn(close())
        else:
            await close()

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- health ---------------------------------------------------------------------------------------------
    async def _watch(self, replica: Replica[C]) -> None:
        """Follows the replica's health until its Watch stream breaks or it stops answering Checks; then it is
        down until a new watch connects."""
        while True:
            follow = asyncio.create_task(self._follow(replica))
            probe = asyncio.create_task(self._probe(replica))
            try:
                await asyncio.wait({follow, probe}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (follow, probe):
                    task.cancel()
                await asyncio.gather(follow, probe, return_exceptions=True)
            self._set_state(replica, ReplicaState.DOWN)
            await asyncio.sleep(self._watch_retry_s)

    async def _follow(self, replica: Replica[C]) -> None:
        """The replica's grpc.health.v1 Watch stream; returns when it ends or breaks."""
        try:
            async for serving in replica.client.watch_health():
                self._set_state(replica, ReplicaState.SERVING if serving else ReplicaState.DRAINING)
        except grpc.RpcError:
            pass
        except Exception:  # noqa: BLE001 - a watch must outlive any one failure
            log.warning("health watch of %s %s failed", self.kind, replica.address, exc_info=True)

    async def _probe(self, replica: Replica[C]) -> None:
        """Checks the replica every `probe_interval_s`; returns after `probe_misses` Checks in a row go
        unanswered (a hung process keeps its connection open, so its stream alone would never say)."""
        misses = 0
        while misses < self._probe_misses:
            await asyncio.sleep(self._probe_interval_s)
            misses = misses + 1 if await replica.client.check() is None else 0
        log.warning("%s %s answered no health check %d times in a row", self.kind, replica.address, misses)

    def _set_state(self, replica: Replica[C], state: ReplicaState) -> None:
        if replica.state is state:
            return
        log.info("%s %s: %s -> %s", self.kind, replica.address, replica.state.value, state.value)
        replica.state = state
        self._publish()

    def _mark_down(self, replica: Replica[C]) -> None:
        """A call found the replica unreachable: route around it now, and re-watch it from scratch (its old
        stream may not have noticed yet)."""
        if replica.address not in self._replicas:
            return
        self._set_state(replica, ReplicaState.DOWN)
        if replica.watcher is not None:
            replica.watcher.cancel()
        replica.watcher = self._spawn(self._watch(replica))

    def _publish(self) -> None:
        counts = dict.fromkeys(ReplicaState, 0)
        for replica in self._replicas.values():
            counts[replica.state] += 1
        for state, n in counts.items():
            self._metrics.replicas.labels(self.kind, state.value).set(n)

    # --- routing --------------------------------------------------------------------------------------------
    @property
    def membership(self) -> Membership:
        return self._membership

    @property
    def addresses(self) -> list[str]:
        return list(self._membership.addresses)

    def states(self) -> dict[str, ReplicaState]:
        """Each replica's state, in membership order."""
        return {a: self._replicas[a].state for a in self._membership.addresses if a in self._replicas}

    def target(self, key: str) -> str | None:
        """The address `route(key)` would pick now (None: no replica can serve), without recording a call:
        for grouping a batch of keys by the replica each will reach."""
        chosen, _, _ = self._choose(key, frozenset())
        return None if chosen is None else chosen.address

    def route(self, key: str, exclude: frozenset[str] = frozenset()) -> tuple[Replica[C], Route]:
        """The replica that serves `key` now, and how it was reached. Raises Unavailable if none can."""
        start = time.perf_counter()
        chosen, order, reason = self._choose(key, exclude)
        if chosen is None:
            raise Unavailable(f"no {self.kind} is serving; retry later")
        is_owner = chosen is order[0]
        self._metrics.routed.labels(self.kind, "owner" if is_owner else "other").inc()
        route = Route.OWNER
        if not is_owner and reason is not None:
            self._metrics.rebinds.labels(self.kind, reason.value).inc()
            route = Route.OVERFLOW if reason is Rebind.OVERLOAD else Route.FAILOVER
        self._metrics.latency.labels(self.kind).observe(time.perf_counter() - start)
        return chosen, route

    def _choose(
        self, key: str, exclude: frozenset[str]
    ) -> tuple[Replica[C] | None, list[Replica[C]], Rebind | None]:
        """The first replica in `key`'s rendezvous order that can take the call (the owner, unless it is
        down, draining or overloaded), the order, and why the owner was passed over."""
        order = [self._replicas[a] for a in rendezvous_order(self._membership.addresses, key)]
        reason: Rebind | None = None
        chosen: Replica[C] | None = None
        for replica in order:
            if replica.address in exclude or replica.state is ReplicaState.DOWN:
                reason = reason or Rebind.POD_DOWN
            elif replica.state is ReplicaState.DRAINING:
                reason = reason or Rebind.DRAINING
            elif self._overloaded(replica):
                chosen = chosen or replica  # the owner still, should every other one be loaded too
                reason = reason or Rebind.OVERLOAD
            else:
                chosen = replica
                break
        return chosen, order, reason

    def _overloaded(self, replica: Replica[C]) -> bool:
        """Bounded-load hashing: a replica may run at most `overflow_factor` times the mean in-flight calls
        of the routable replicas (and always `overflow_min_inflight`)."""
        if self._overflow_factor <= 0:
            return False
        routable = [r for r in self._replicas.values() if r.state in ROUTABLE]
        total = sum(r.inflight for r in routable) + 1
        capacity = max(self._overflow_min, math.ceil(self._overflow_factor * total / max(len(routable), 1)))
        return replica.inflight + 1 > capacity

    def _next_routable(self, exclude: frozenset[str]) -> Replica[C]:
        """The next routable replica in turn, for calls that concern no key."""
        candidates = [
            self._replicas[a]
            for a in self._membership.addresses
            if a not in exclude and self._replicas[a].state in ROUTABLE
        ]
        if not candidates:
            raise Unavailable(f"no {self.kind} is serving; retry later")
        return candidates[next(self._turn) % len(candidates)]

    async def call(self, key: str | None, run: Callable[[C], Awaitable[T]], *, retry_delivered: bool) -> T:
        """`run(client)` on the replica serving `key` (a `routing_key`; None: any replica, in turn), re-routed
        past replicas that prove unreachable: always when the call never reached one, and after a connection
        broke mid-call only if `retry_delivered` (the call changes nothing, so running it twice is safe)."""
        exclude: frozenset[str] = frozenset()
        while True:
            if key is None:
                replica, route = self._next_routable(exclude), Route.OWNER
            else:
                replica, route = self.route(key, exclude)
            replica.inflight += 1
            token = ROUTE.set(route)
            try:
                return await run(replica.client)
            except ReplicaUnreachable as err:
                self._mark_down(replica)
                if err.delivered and not retry_delivered:
                    raise
                exclude |= {replica.address}
                self._metrics.failovers.labels(self.kind).inc()
            finally:
                ROUTE.reset(token)
                replica.inflight -= 1

    def spread(self) -> C:
        """The next routable replica's own client (no failover), for streams: stateless, sharing the load."""
        return self._next_routable(frozenset()).client

    def serving(self) -> list[C]:
        """The clients of the replicas currently routable, in membership order (fleet-wide reads)."""
        return [self._replicas[a].client for a, s in self.states().items() if s in ROUTABLE]
