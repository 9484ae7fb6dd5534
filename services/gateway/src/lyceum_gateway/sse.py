"""Server-Sent Events framing (the WHATWG `text/event-stream` format): events, comments, the retry hint."""

from __future__ import annotations

MEDIA_TYPE = "text/event-stream"
# Proxies buffer or cut idle streams; EventSource clients and nginx expect these.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(name: str, data: str, event_id: str | None = None) -> str:
    """One event; `data` may span lines (each becomes its own `data:` line)."""
    lines = [f"event: {name}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.extend(f"data: {line}" for line in data.splitlines() or [""])
    return "\n".join(lines) + "\n\n"


def data(payload: str) -> str:
    """An unnamed event (a `message`), as OpenAI streams its chunks; `payload` may span lines."""
    return "\n".join(f"data: {line}" for line in payload.splitlines() or [""]) + "\n\n"


def comment(text: str) -> str:
    """A comment line: clients ignore it; it keeps an idle connection open and reveals a departed client."""
    return f": {text}\n\n"


def retry(ms: int) -> str:
    """Tells the client how long to wait before reconnecting."""
    return f"retry: {ms}\n\n"


def accepts_event_stream(accept: str) -> bool:
    """True when an Accept header asks for `text/event-stream`."""
    return any(part.split(";")[0].strip() == MEDIA_TYPE for part in accept.split(","))
