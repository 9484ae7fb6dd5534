"""Following a job to its end: over the gateway's event stream (reconnecting where it left off), or by
polling when the stream is unavailable or unwanted. Returns the terminal job."""

from __future__ import annotations

import time
from typing import Any

from lyceum_client.client import LyceumClient, LyceumClientError
from lyceum_client.render import FollowDisplay

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
MAX_RECONNECTS = 5


def follow(
    client: LyceumClient, job_id: str, display: FollowDisplay, *, poll: bool = False, poll_s: float = 1.0
) -> dict[str, Any]:
    """Feeds `display` until the job is terminal and returns the terminal job."""
    if not poll:
        job = _follow_stream(client, job_id, display)
        if job is not None:
            return job
        display.console.print("[yellow]the event stream keeps failing; polling instead[/yellow]")
    return _follow_polling(client, job_id, display, poll_s)


def _follow_stream(client: LyceumClient, job_id: str, display: FollowDisplay) -> dict[str, Any] | None:
    """The terminal job, or None after MAX_RECONNECTS broken streams in a row."""
    after_step: int | None = None
    failures = 0
    while failures <= MAX_RECONNECTS:
        try:
            for event in client.follow_job(job_id, after_step=after_step):
                failures = 0
                if event.event == "progress":
                    display.progress(event.data)
                elif event.event == "metrics":
                    display.metrics(event.data)
                    after_step = event.data["step"]
                elif event.event == "end":
                    display.progress(event.data)
                    return event.data
                elif event.event == "error":
                    error = event.data.get("error", {})
                    raise LyceumClientError(error.get("message", "stream error"), code=error.get("code", "?"))
        except LyceumClientError as err:
            if err.status is not None and err.status < 500:
                raise  # unknown job, bad key: reconnecting cannot help
        failures += 1
        time.sleep(min(0.25 * 2**failures, 5.0))
    return None


def _follow_polling(
    client: LyceumClient, job_id: str, display: FollowDisplay, poll_s: float
) -> dict[str, Any]:
    after_step: int | None = None
    while True:
        # The job first, then its points: a job read as terminal has recorded all its points.
        job = client.get_job(job_id)
        for point in client.job_metrics(job_id, after_step=after_step):
            display.metrics(point)
            after_step = point["step"]
        display.progress(job)
        if job["state"] in TERMINAL:
            return job
        time.sleep(poll_s)
