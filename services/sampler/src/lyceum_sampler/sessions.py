"""Durable session state: a small dataclass stored as JSON in a `SessionStore` (in memory for one process,
Redis in deployments) with an idle TTL refreshed on every access. Writes are compare-and-set on `version`,
so two pods serving one session can never lose each other's appends.

A session belongs to a tenant: the store's keys include it, so another tenant's session id is simply not
there. Each tenant's live sessions are also kept in a set scored by expiry time, so that its quota of live
sessions counts only unexpired ones."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import redis
from redis.exceptions import RedisError, WatchError

from lyceum_core.errors import Aborted, InvalidArgument, ResourceExhausted, Unavailable
from lyceum_ml.sampling import SamplingParams
from lyceum_sampler.gating import Gating

SCHEMA = 4  # 4: gating, Generated.modulation (absent in 3: none); 3: adapter, adapter_uri, gate
KEY_PREFIX = "lyceum:sampler:session:"
QUOTA_FIELD = "max_sessions"
Clock = Callable[[], float]


@dataclass(frozen=True)
class Generated:
    """A generated token and how it was shown: probability, "above"/"other", rank (0 = most likely); when it
    was chosen and whether it was drawn from the Other bucket."""

    token_id: int
    probability: float
    category: str
    rank: int
    chosen_at: float = 0.0  # time.time() seconds
    from_other: bool = False
    modulation: float | None = None  # gated sessions: the modulation it was chosen under


@dataclass(frozen=True)
class Shown:
    """The settings a session's distribution was last shown with (so any front end can score an append
    under them)."""

    threshold: float
    params: SamplingParams
    shown_at: float  # time.time() seconds


@dataclass(frozen=True)
class SessionState:
    tenant: str  # the owner: another tenant never sees the session
    session_id: str
    model: str  # as the client named it (e.g. "lm@production")
    model_key: (
        str  # what it was pinned to at creation (e.g. "platform/lm@3"): token ids only make sense for it
    )
    prompt: str = ""
    prompt_ids: tuple[int, ...] = ()
    generated: tuple[Generated, ...] = ()
    seed: int = field(default_factory=lambda: secrets.randbits(63))  # the Other-sampling RNG stream
    draws: int = 0  # Other samples taken from the stream so far (never rewound: undo + redraw differs)
    shown: Shown | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    version: int = 0  # bumped by every write
    adapter: str = ""  # the adapter version it is served with (`owner/name@version`), pinned; "" = none
    adapter_uri: str = ""  # where that adapter's files are
    gate: float | None = None  # the gate signal of every token (gated models)
    gating: Gating | None = None  # pinned at creation: each step's parameters and gate signal

    @property
    def token_ids(self) -> list[int]:
        return [*self.prompt_ids, *(g.token_id for g in self.generated)]

    def token_gates(self) -> list[float | None]:
        """The gate signal each token of `token_ids` is fed with: the session's, or under gating the prompt's
        and then each generated token's own."""
        if self.gating is None:
            return [self.gate] * (len(self.prompt_ids) + len(self.generated))
        prompt = [self.gating.prompt_gate()] * len(self.prompt_ids)
        return prompt + [self.gating.step_gate(g.modulation) for g in self.generated]

    def next_draw_seed(self) -> int:
        """The seed of the stream's next Other draw: a function of (seed, draws) only, so it replays."""
        digest = hashlib.blake2b(f"{self.seed}:{self.draws}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") >> 1

    def evolve(self, *, now: float | None = None, **changes: Any) -> SessionState:
        """The state with `changes`, stamped as updated `now` (default: time.time())."""
        return replace(self, **changes, updated_at=time.time() if now is None else now)

    def to_json(self) -> str:
        doc = asdict(self)
        doc["schema"] = SCHEMA
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> SessionState:
        doc = json.loads(text)
        doc.pop("schema", None)
        doc["prompt_ids"] = tuple(doc["prompt_ids"])
        doc["generated"] = tuple(Generated(**g) for g in doc["generated"])
        if doc.get("shown") is not None:
            shown = doc["shown"]
            doc["shown"] = Shown(shown["threshold"], SamplingParams(**shown["params"]), shown["shown_at"])
        if doc.get("gating") is not None:
            doc["gating"] = Gating(**doc["gating"])
        return cls(**doc)


class SessionStore(Protocol):
    def create(self, state: SessionState, max_live: int = 0) -> None:
        """Stores a new session (its id is fresh). With `max_live` > 0, ResourceExhausted (field
        "max_sessions") if its tenant already has that many live sessions."""
        ...

    def get(self, tenant: str, session_id: str) -> SessionState | None:
        """The tenant's session, or None if unknown, expired or another tenant's; refreshes its TTL."""
        ...

    def update(self, state: SessionState) -> SessionState:
        """Writes `state` (read at `state.version`) as the next version and returns it. Aborted if the stored
        session is at another version (a concurrent write won) or is gone."""
        ...

    def delete(self, tenant: str, session_id: str) -> bool: ...

    def live_count(self, tenant: str) -> int:
        """How many unexpired sessions the tenant has."""
        ...

    def ping(self) -> None: ...

    def close(self) -> None: ...


def open_store(url: str, ttl_s: float, key_prefix: str = KEY_PREFIX) -> SessionStore:
    """The store a URL names: `memory://` or `redis://...` / `rediss://...`."""
    if url == "memory://":
        return MemorySessionStore(ttl_s)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisSessionStore(url, ttl_s, key_prefix)
    raise InvalidArgument(f"unsupported session store {url!r}", field="session_store_url")


class MemorySessionStore:
    """One process's sessions, kept as JSON (so it behaves exactly like the Redis store). `clock` gives the
    seconds the idle TTL is measured in (monotonic by default)."""

    def __init__(self, ttl_s: float, clock: Clock = time.monotonic) -> None:
        self.ttl_s, self.clock = ttl_s, clock
        self._items: dict[tuple[str, str], tuple[str, float]] = {}  # (tenant, id) -> (json, expires at)
        self._live: dict[str, dict[str, float]] = {}  # tenant -> {id: expires at}
        self._lock = threading.Lock()

    def _text(self, key: tuple[str, str], now: float) -> str | None:
        item = self._items.get(key)
        if item is None or item[1] <= now:
            self._forget(key)
            return None
        return item[0]

    def _put(self, key: tuple[str, str], text: str, now: float) -> None:
        expires = now + self.ttl_s
        self._items[key] = (text, expires)
        self._live.setdefault(key[0], {})[key[1]] = expires

    def _forget(self, key: tuple[str, str]) -> None:
        self._items.pop(key, None)
        live = self._live.get(key[0])
        if live is not None:
            live.pop(key[1], None)
            if not live:
                del self._live[key[0]]

    def _count(self, tenant: str, now: float) -> int:
        live = self._live.get(tenant, {})
        for expired in [sid for sid, exp in live.items() if exp <= now]:
            self._forget((tenant, expired))
        return len(live)

    def create(self, state: SessionState, max_live: int = 0) -> None:
        with self._lock:
            now = self.clock()
            for expired in [k for k, (_, exp) in self._items.items() if exp <= now]:
                self._forget(expired)
            if max_live > 0 and self._count(state.tenant, now) >= max_live:
                raise _exhausted(state.tenant, max_live)
            self._put((state.tenant, state.session_id), state.to_json(), now)

    def get(self, tenant: str, session_id: str) -> SessionState | None:
        with self._lock:
            now, key = self.clock(), (tenant, session_id)
            text = self._text(key, now)
            if text is None:
                return None
            self._put(key, text, now)
            return SessionState.from_json(text)

    def update(self, state: SessionState) -> SessionState:
        with self._lock:
            now, key = self.clock(), (state.tenant, state.session_id)
            text = self._text(key, now)
            if text is None or SessionState.from_json(text).version != state.version:
                raise _conflict(state.session_id)
            new = replace(state, version=state.version + 1)
            self._put(key, new.to_json(), now)
            return new

    def delete(self, tenant: str, session_id: str) -> bool:
        with self._lock:
            key = (tenant, session_id)
            found = self._text(key, self.clock()) is not None
            self._forget(key)
            return found

    def live_count(self, tenant: str) -> int:
        with self._lock:
            return self._count(tenant, self.clock())

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass


# Atomically: forget the tenant's expired sessions, check its quota, store the session and count it live.
# KEYS: the session, the tenant's live set; ARGV: json, ttl ms, now ms, limit (0 = none), session id.
CREATE_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
local limit = tonumber(ARGV[4])
if limit > 0 and redis.call('ZCARD', KEYS[2]) >= limit then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], tonumber(ARGV[3]) + tonumber(ARGV[2]), ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""


class RedisSessionStore:
    """Sessions at `<prefix><tenant>:<id>` with a millisecond TTL; updates are WATCH/MULTI/EXEC. Each
    tenant's live sessions are a sorted set at `<prefix><tenant>` scored by expiry time (`clock()` ms; the
    set itself expires with its last member). Tenant ids hold no ':', so the two kinds of key never meet."""

    def __init__(
        self, url: str, ttl_s: float, key_prefix: str = KEY_PREFIX, clock: Clock = time.time
    ) -> None:
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.key_prefix, self.clock = key_prefix, clock
        self.redis = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
        self._create = self.redis.register_script(CREATE_SCRIPT)

    def _key(self, tenant: str, session_id: str) -> str:
        return f"{self.key_prefix}{tenant}:{session_id}"

    def _live_key(self, tenant: str) -> str:
        return self.key_prefix + tenant

    def _now_ms(self) -> int:
        return round(self.clock() * 1000)

    def create(self, state: SessionState, max_live: int = 0) -> None:
        keys = [self._key(state.tenant, state.session_id), self._live_key(state.tenant)]
        args = [state.to_json(), self.ttl_ms, self._now_ms(), max(0, max_live), state.session_id]
        with _unavailable():
            stored = self._create(keys=keys, args=args)
        if not stored:
            raise _exhausted(state.tenant, max_live)

    def get(self, tenant: str, session_id: str) -> SessionState | None:
        live = self._live_key(tenant)
        with _unavailable(), self.redis.pipeline(transaction=False) as pipe:
            pipe.getex(self._key(tenant, session_id), px=self.ttl_ms)
            pipe.zadd(live, {session_id: self._now_ms() + self.ttl_ms}, xx=True)
            pipe.pexpire(live, self.ttl_ms)
            raw, _, _ = pipe.execute()
        if raw is None:
            with _unavailable():
                self.redis.zrem(live, session_id)
            return None
        return SessionState.from_json(raw)

    def update(self, state: SessionState) -> SessionState:
        key, live = self._key(state.tenant, state.session_id), self._live_key(state.tenant)
        new = replace(state, version=state.version + 1)
        with _unavailable(), self.redis.pipeline() as pipe:
            try:
                pipe.watch(key)
                raw = pipe.get(key)
                if raw is None or SessionState.from_json(raw).version != state.version:
                    raise _conflict(state.session_id)
                pipe.multi()
                pipe.set(key, new.to_json(), px=self.ttl_ms)
                pipe.zadd(live, {state.session_id: self._now_ms() + self.ttl_ms})
                pipe.pexpire(live, self.ttl_ms)
                pipe.execute()
            except WatchError:
                raise _conflict(state.session_id) from None
        return new

    def delete(self, tenant: str, session_id: str) -> bool:
        with _unavailable(), self.redis.pipeline() as pipe:
            pipe.delete(self._key(tenant, session_id))
            pipe.zrem(self._live_key(tenant), session_id)
            deleted, _ = pipe.execute()
        return bool(deleted)

    def live_count(self, tenant: str) -> int:
        live = self._live_key(tenant)
        with _unavailable(), self.redis.pipeline() as pipe:
            pipe.zremrangebyscore(live, "-inf", self._now_ms())
            pipe.zcard(live)
            _, count = pipe.execute()
        return int(count)

    def ping(self) -> None:
        with _unavailable():
            self.redis.ping()

    def close(self) -> None:
        self.redis.close()


def _conflict(session_id: str) -> Aborted:
    return Aborted(f"session {session_id!r} was changed or deleted concurrently; retry", field="session_id")


def _exhausted(tenant: str, limit: int) -> ResourceExhausted:
    return ResourceExhausted(
        f"tenant {tenant!r} has {limit} live sessions, its limit; delete one or wait for one to expire",
        field=QUOTA_FIELD,
    )


@contextmanager
def _unavailable() -> Iterator[None]:
    """Reports the store being unreachable as Unavailable (the caller may retry, on any pod)."""
    try:
        yield
    except RedisError as exc:
        raise Unavailable(f"session store unavailable: {exc}") from exc
