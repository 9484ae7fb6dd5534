"""Durable session state: a small dataclass stored as JSON in a `SessionStore` (in memory for one process,
Redis in deployments) with an idle TTL refreshed on every access. Writes are compare-and-set on `version`,
so two pods serving one session can never lose each other's appends."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import redis
from redis.exceptions import RedisError, WatchError

from lyceum_core.errors import Aborted, InvalidArgument, Unavailable

SCHEMA = 1
KEY_PREFIX = "lyceum:sampler:session:"


@dataclass(frozen=True)
class Generated:
    """A generated token and how it was shown: probability, "above"/"other", rank (0 = most likely)."""

    token_id: int
    probability: float
    category: str
    rank: int


@dataclass(frozen=True)
class SessionState:
    session_id: str
    model: str  # as the client named it (e.g. "lm@production")
    model_key: str  # what it was pinned to at creation (e.g. "lm@3"): token ids only make sense for it
    prompt: str = ""
    prompt_ids: tuple[int, ...] = ()
    generated: tuple[Generated, ...] = ()
    seed: int = field(default_factory=lambda: secrets.randbits(63))  # the Other-sampling RNG stream
    draws: int = 0  # Other samples taken from the stream so far (never rewound: undo + redraw differs)
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    version: int = 0  # bumped by every write

    @property
    def token_ids(self) -> list[int]:
        return [*self.prompt_ids, *(g.token_id for g in self.generated)]

    def next_draw_seed(self) -> int:
        """The seed of the stream's next Other draw: a function of (seed, draws) only, so it replays."""
        digest = hashlib.blake2b(f"{self.seed}:{self.draws}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") >> 1

    def evolve(self, **changes: Any) -> SessionState:
        return replace(self, **changes, updated_at=time.time())

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
        return cls(**doc)


class SessionStore(Protocol):
    def create(self, state: SessionState) -> None:
        """Stores a new session (its id is fresh)."""
        ...

    def get(self, session_id: str) -> SessionState | None:
        """The session, or None if unknown or expired; refreshes its TTL."""
        ...

    def update(self, state: SessionState) -> SessionState:
        """Writes `state` (read at `state.version`) as the next version and returns it. Aborted if the stored
        session is at another version (a concurrent write won) or is gone."""
        ...

    def delete(self, session_id: str) -> bool: ...

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
    """One process's sessions, kept as JSON (so it behaves exactly like the Redis store)."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._items: dict[str, tuple[str, float]] = {}  # id -> (json, expires at, monotonic)
        self._lock = threading.Lock()

    def _live(self, session_id: str, now: float) -> str | None:
        item = self._items.get(session_id)
        if item is None or item[1] <= now:
            self._items.pop(session_id, None)
            return None
        return item[0]

    def create(self, state: SessionState) -> None:
        with self._lock:
            now = time.monotonic()
            for expired in [k for k, (_, exp) in self._items.items() if exp <= now]:
                del self._items[expired]
            self._items[state.session_id] = (state.to_json(), now + self.ttl_s)

    def get(self, session_id: str) -> SessionState | None:
        with self._lock:
            now = time.monotonic()
            text = self._live(session_id, now)
            if text is None:
                return None
            self._items[session_id] = (text, now + self.ttl_s)
            return SessionState.from_json(text)

    def update(self, state: SessionState) -> SessionState:
        with self._lock:
            now = time.monotonic()
            text = self._live(state.session_id, now)
            if text is None or SessionState.from_json(text).version != state.version:
                raise _conflict(state.session_id)
            new = replace(state, version=state.version + 1)
            self._items[state.session_id] = (new.to_json(), now + self.ttl_s)
            return new

    def delete(self, session_id: str) -> bool:
        with self._lock:
            found = self._live(session_id, time.monotonic()) is not None
            self._items.pop(session_id, None)
            return found

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass


class RedisSessionStore:
    """Sessions at `lyceum:sampler:session:<id>` with a millisecond TTL; updates are WATCH/MULTI/EXEC."""

    def __init__(self, url: str, ttl_s: float, key_prefix: str = KEY_PREFIX) -> None:
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.key_prefix = key_prefix
        self.redis = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)

    def create(self, state: SessionState) -> None:
        with _unavailable():
            self.redis.set(self.key_prefix + state.session_id, state.to_json(), px=self.ttl_ms)

    def get(self, session_id: str) -> SessionState | None:
        with _unavailable():
            raw = self.redis.getex(self.key_prefix + session_id, px=self.ttl_ms)
        return None if raw is None else SessionState.from_json(raw)

    def update(self, state: SessionState) -> SessionState:
        key = self.key_prefix + state.session_id
        new = replace(state, version=state.version + 1)
        with _unavailable(), self.redis.pipeline() as pipe:
            try:
                pipe.watch(key)
                raw = pipe.get(key)
                if raw is None or SessionState.from_json(raw).version != state.version:
                    raise _conflict(state.session_id)
                pipe.multi()
                pipe.set(key, new.to_json(), px=self.ttl_ms)
                pipe.execute()
            except WatchError:
                raise _conflict(state.session_id) from None
        return new

    def delete(self, session_id: str) -> bool:
        with _unavailable():
            return bool(self.redis.delete(self.key_prefix + session_id))

    def ping(self) -> None:
        with _unavailable():
            self.redis.ping()

    def close(self) -> None:
        self.redis.close()


def _conflict(session_id: str) -> Aborted:
    return Aborted(f"session {session_id!r} was changed or deleted concurrently; retry", field="session_id")


@contextmanager
def _unavailable() -> Iterator[None]:
    """Reports the store being unreachable as Unavailable (the caller may retry, on any pod)."""
    try:
        yield
    except RedisError as exc:
        raise Unavailable(f"session store unavailable: {exc}") from exc
