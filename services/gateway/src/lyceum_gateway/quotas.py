"""Per-tenant quotas: the defaults from the settings, each tenant's overrides (its `quotas` in the tenants
table, cached briefly), a requests-per-second token bucket per tenant (in Redis when several gateways share
one, in memory otherwise), and the count checks made before a learner is registered or a job submitted.

Every refusal is a `QuotaExceeded` (RESOURCE_EXHAUSTED, HTTP 429) whose `field` names the quota.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

from lyceum_core.errors import InvalidArgument, ResourceExhausted

log = logging.getLogger(__name__)

Clock = Callable[[], float]

RPS = "rps"
BURST = "burst"
MAX_LEARNERS = "max_learners"
MAX_SESSIONS = "max_sessions"
MAX_JOBS = "max_jobs"
QUOTA_NAMES = (RPS, BURST, MAX_LEARNERS, MAX_SESSIONS, MAX_JOBS)


class QuotaExceeded(ResourceExhausted):
    """A tenant's quota refused the request; `field` is the quota's name. `retry_after_s`, when known, is
    when the request would pass (sent as `Retry-After`)."""

    def __init__(self, message: str, *, quota: str, retry_after_s: float | None = None) -> None:
        super().__init__(message, field=quota)
        self.quota = quota
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class TenantQuotas:
    """One tenant's effective quotas (0 = no limit)."""

    rps: float = 0.0
    burst: int = 0
    max_learners: int = 0
    max_sessions: int = 0
    max_jobs: int = 0

    @property
    def bucket_size(self) -> float:
        """The token bucket's capacity: `burst`, or twice `rps` (at least 1)."""
        return float(self.burst) if self.burst > 0 else max(1.0, 2.0 * self.rps)

    def overridden(self, overrides: Mapping[str, Any] | None) -> TenantQuotas:
        """These quotas with a tenant's overrides applied (unknown names ignored, already validated)."""
        if not overrides:
            return self
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in overrides.items() if k in known and v is not None})


def check_overrides(quotas: Mapping[str, Any], field: str = "quotas") -> dict[str, Any]:
    """A tenant's quota overrides, checked: known names, non-negative numbers (integers except rps)."""
    checked: dict[str, Any] = {}
    for name, value in quotas.items():
        if name not in QUOTA_NAMES:
            raise InvalidArgument(f"unknown quota {name!r}; known: {', '.join(QUOTA_NAMES)}", field=field)
        number_ok = isinstance(value, int | float) and not isinstance(value, bool)
        if name != RPS:
            number_ok = number_ok and float(value).is_integer()
        if not number_ok or value < 0 or not math.isfinite(value):
            kind = "a non-negative number" if name == RPS else "a non-negative integer"
            raise InvalidArgument(f"quota {name!r} must be {kind}", field=f"{field}.{name}")
        checked[name] = float(value) if name == RPS else int(value)
    return checked


class QuotaBook:
    """Effective quotas per tenant: the defaults with the tenant's overrides, read through `load` (the
    tenants table) at most every `ttl_s` seconds per tenant. Thread-safe; `get` may block on the database."""

    def __init__(
        self,
        defaults: TenantQuotas,
        load: Callable[[str], Mapping[str, Any] | None],
        *,
        ttl_s: float = 5.0,
        max_tenants: int = 10_000,
        clock: Clock = time.monotonic,
    ) -> None:
        self.defaults = defaults
        self._load = load
        self._ttl_s = ttl_s
        self._max = max_tenants
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, TenantQuotas]] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, tenant: str) -> TenantQuotas | None:
        """The tenant's quotas if they were read less than `ttl_s` ago; None otherwise. Never blocks."""
        now = self._clock()
        with self._lock:
            hit = self._cache.get(tenant)
        return hit[1] if hit is not None and now - hit[0] < self._ttl_s else None

    def get(self, tenant: str) -> TenantQuotas:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(tenant)
            if hit is not None and now - hit[0] < self._ttl_s:
                return hit[1]
        try:
            quotas = self.defaults.overridden(self._load(tenant))
        except Exception:  # noqa: BLE001 - a database hiccup must not refuse requests: keep the last known
            log.warning("could not read the quotas of tenant %s", tenant, exc_info=True)
            quotas = hit[1] if hit is not None else self.defaults
        with self._lock:
            self._cache[tenant] = (now, quotas)
            self._cache.move_to_end(tenant)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return quotas

    def forget(self, tenant: str) -> None:
        """Drops a tenant's cached quotas (after this gateway changed them)."""
        with self._lock:
            self._cache.pop(tenant, None)


class TokenBuckets(Protocol):
    async def take(self, key: str, rate: float, size: float) -> float:
        """Takes one token from `key`'s bucket; 0 if granted, else seconds until one is available."""
        ...

    async def aclose(self) -> None: ...


class LocalBuckets:
    """Token buckets in this process (one gateway replica, or replicas that each allow the full rate)."""

    def __init__(self, *, clock: Clock = time.monotonic, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._max = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    async def take(self, key: str, rate: float, size: float) -> float:
        now = self._clock()
        tokens, at = self._buckets.get(key, (size, now))
        tokens = min(size, tokens + max(0.0, now - at) * rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / rate
        self._buckets[key] = (tokens, max(now, at))
        self._buckets.move_to_end(key)
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return wait

    async def aclose(self) -> None:
        return None


# One atomic step of a token bucket kept in a Redis hash: refill for the time elapsed, take a token if there
# is one, and answer the wait otherwise (as a string: Lua numbers would be truncated to integers).
TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local size = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = size
  at = now
end
if now > at then
  tokens = math.min(size, tokens + (now - at) * rate)
  at = now
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(at))
redis.call('PEXPIRE', KEYS[1], math.ceil(size / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisBuckets:
    """Token buckets in Redis, shared by every gateway replica: one Lua script per request, atomic. The
    time is the gateways' wall clock (injectable), so replicas need roughly synchronised clocks."""

    def __init__(self, url: str, *, clock: Clock = time.time, prefix: str = "lyceum:quota:rps:") -> None:
        import redis.asyncio as aioredis  # imported here: only deployments with a quota Redis need it

        self._redis = aioredis.from_url(url)
        self._script = self._redis.register_script(TOKEN_BUCKET_LUA)
        self._clock = clock
        self._prefix = prefix

    async def take(self, key: str, rate: float, size: float) -> float:
        wait = await self._script(keys=[self._prefix + key], args=[rate, size, repr(self._clock())])
        return float(wait)

    async def aclose(self) -> None:
        await self._redis.aclose()


class Quotas:
    """The quota checks the gateway makes. `count_learners` / `count_jobs` are the repositories' counts
    (synchronous; run in a worker thread by the async checks)."""

    def __init__(
        self,
        book: QuotaBook,
        buckets: TokenBuckets,
        *,
        count_learners: Callable[[str], int] | None = None,
        count_jobs: Callable[[str], int] | None = None,
        on_refusal: Callable[[str], None] | None = None,
    ) -> None:
        self.book = book
        self.buckets = buckets
        self._count_learners = count_learners
        self._count_jobs = count_jobs
        self._on_refusal = on_refusal or (lambda quota: None)

    async def for_tenant(self, tenant: str) -> TenantQuotas:
        """The tenant's quotas: from the cache on the event loop, else read in a worker thread."""
        quotas = self.book.cached(tenant)
        return quotas if quotas is not None else await asyncio.to_thread(self.book.get, tenant)

    async def check_rate(self, tenant: str) -> None:
        """Takes a token from the tenant's bucket; QuotaExceeded (with the wait) when it is empty."""
        quotas = await self.for_tenant(tenant)
        if quotas.rps <= 0:
            return
        wait = await self.buckets.take(tenant, quotas.rps, quotas.bucket_size)
        if wait > 0:
            self._on_refusal(RPS)
            raise QuotaExceeded(
                f"tenant {tenant!r} exceeds its request rate ({quotas.rps:g} per second); retry later",
                quota=RPS,
                retry_after_s=wait,
            )

    async def check_learners(self, tenant: str) -> None:
        """Before a register: QuotaExceeded when the tenant already has `max_learners`."""
        await asyncio.to_thread(self._check_learners, tenant)

    def _check_learners(self, tenant: str) -> None:
        limit = self.book.get(tenant).max_learners
        if limit > 0 and self._count_learners is not None and self._count_learners(tenant) >= limit:
            self._refuse(MAX_LEARNERS, f"tenant {tenant!r} has reached its quota of {limit} learners")

    def check_jobs(self, tenant: str) -> None:
        """Before a submit: QuotaExceeded when `max_jobs` of the tenant's jobs are queued or running."""
        limit = self.book.get(tenant).max_jobs
        if limit > 0 and self._count_jobs is not None and self._count_jobs(tenant) >= limit:
            self._refuse(
                MAX_JOBS, f"tenant {tenant!r} has reached its quota of {limit} queued or running jobs"
            )

    async def max_sessions(self, tenant: str) -> int:
        """The tenant's live-session limit, which the sampler enforces (0 = no limit)."""
        return (await self.for_tenant(tenant)).max_sessions

    def _refuse(self, quota: str, message: str) -> None:
        self._on_refusal(quota)
        raise QuotaExceeded(message, quota=quota)


def retry_after_header(seconds: float) -> str:
    """`Retry-After` is whole seconds: round up, so a client that waits that long passes."""
    return str(max(1, math.ceil(seconds)))
