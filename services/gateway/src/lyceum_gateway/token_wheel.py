"""The token-wheel compatibility mount's memory of what the original API reported but the sampler does not
keep: when a session was created and last used, when each token was chosen and whether it was drawn from
Other, and the settings (threshold, temperature) the session's wheel was last shown with.

It is in-process and bounded (least recently used sessions are forgotten first). A session this gateway
replica has not seen, or has forgotten, still works: its times start when the replica first sees it, and an
append without remembered settings leaves them to the sampler (its defaults are the original's).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Shown:
    """The settings a wheel was drawn with."""

    threshold: float
    temperature: float


@dataclass(frozen=True, slots=True)
class Selection:
    selected_at: datetime
    sampled_from_other: bool


@dataclass(slots=True)
class WheelSession:
    created_at: datetime
    last_accessed: datetime
    shown: Shown | None = None
    selections: list[Selection | None] = field(default_factory=list)  # by position; None: chosen elsewhere

    def selection(self, position: int) -> Selection | None:
        """What is known of the generated token at `position` (None if it was chosen elsewhere)."""
        return self.selections[position] if position < len(self.selections) else None


class WheelMemo:
    """Per-session extras of the original API, for at most `max_sessions` sessions."""

    def __init__(self, max_sessions: int, clock: Callable[[], datetime] = utcnow) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self._max = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[str, WheelSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def touch(self, session_id: str) -> WheelSession:
        """The session's extras, created on first sight; marks it accessed now."""
        now = self._clock()
        session = self._sessions.get(session_id)
        if session is None:
            session = self._sessions[session_id] = WheelSession(created_at=now, last_accessed=now)
            while len(self._sessions) > self._max:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(session_id)
            session.last_accessed = now
        return session

    def shown(self, session_id: str, shown: Shown) -> None:
        self.touch(session_id).shown = shown

    def prompt_set(self, session_id: str) -> None:
        """A new prompt clears the generated tokens (the shown settings stay: they are the user's)."""
        self.touch(session_id).selections.clear()

    def appended(self, session_id: str, position: int, sampled_from_other: bool) -> None:
        """Records the token now at `position` of the generated tokens."""
        session = self.touch(session_id)
        del session.selections[position:]
        session.selections.extend([None] * (position - len(session.selections)))
        session.selections.append(Selection(self._clock(), sampled_from_other))

    def undone(self, session_id: str, remaining: int) -> None:
        """Forgets the tokens past the `remaining` generated ones."""
        del self.touch(session_id).selections[remaining:]

    def forget(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
