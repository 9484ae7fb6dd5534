"""This process's leases on learners, as the batch thread believes them.

A learner whose lease this process holds is current as cached: no other process may write it, so a call needs
no database read. A lease is believed until shortly before the database's clock ends it (`LEASE_MARGIN`), and
only within the current leasing term: a hand-over (draining) ends every lease at once, and a lease granted
before it is never believed again, even by a renewal that raced it.
"""

from __future__ import annotations

import threading
import time

from lyceum_db.repositories.learners import LearnerRepository
from lyceum_predictor.cache import RENEWALS, Entry, LearnerCaches

LEASE_MARGIN = 0.1  # of the lease: believed over this much sooner than the database's clock says


class Leases:
    def __init__(self, repo: LearnerRepository, caches: LearnerCaches, *, owner: str, lease_s: float) -> None:
        self.repo, self.caches, self.owner, self.lease_s = repo, caches, owner, lease_s
        self.leasing = True  # False once draining: learners are checked against the database on every call
        self.term = 0  # bumped by a hand-over: leases granted before it are never believed again
        self._term_lock = threading.Lock()  # a hand-over and a renewal's bookkeeping do not interleave

    @property
    def requested_s(self) -> float:
        """The lease a claim or a write asks the database for: none while draining."""
        return self.lease_s if self.leasing else 0.0

    def believed(self, entry: Entry, generation: int, now: float) -> bool:
        """Whether `entry` is current without asking the database: this process holds its lease, granted in
        this term for a cache of the served model's `generation` (the renewer extends the leases in use ahead
        of time, so a steadily used learner never loses its own)."""
        return (
            self.leasing
            and entry.generation == generation
            and entry.lease_term == self.term
            and entry.leased(now)
        )

    def grant(self, entry: Entry, started: float, owned: bool) -> None:
        """Records the lease a statement sent at `started` (monotonic) granted (or not): believed until
        shortly before the database's clock ends it, and only within this term of leasing."""
        entry.lease_deadline = self._deadline(started) if owned and self.leasing else 0.0
        entry.lease_term = self.term
        entry.used_at = time.monotonic()

    def renew(self) -> int:
        """Extends, in one statement and off the batch thread, the leases of the learners called within the
        last lease term whose lease has run past its middle, so calls keep finding them leased and the batch
        never waits for the database to renew one. Returns how many it renewed."""
        if not self.leasing or self.lease_s <= 0:
            return 0
        now, term = time.monotonic(), self.term
        due = [
            (key, entry)
            for key, entry in self.caches.items()
            if entry.lease_term == term
            and now - entry.used_at < self.lease_s
            and 0 < entry.lease_deadline - now < self.lease_s / 2
        ]
        if not due:
            return 0
        with self._term_lock:  # a hand-over waits: no lease is renewed after it released them
            if term != self.term or not self.leasing:
                return 0
            started = time.monotonic()
            leases = [(k.tenant, k.learner_id, e.epoch) for k, e in due]
            renewed = self.repo.renew(self.owner, leases, self.lease_s)
            for key, entry in due:
                if (key.tenant, key.learner_id) in renewed:
                    entry.lease_deadline = max(entry.lease_deadline, self._deadline(started))
        RENEWALS.inc(len(renewed))
        return len(renewed)

    def hand_over(self) -> int:
        """From now on no lease is taken or believed; the leases held end now, so other predictors take this
        process's learners over without waiting. Returns how many leases ended."""
        with self._term_lock:
            self.leasing = False
            self.term += 1
            return self.repo.release(self.owner)

    def take(self) -> None:
        """Serving (again): learners are leased as they are used (undoes `hand_over`)."""
        self.leasing = True

    def _deadline(self, started: float) -> float:
        return started + self.lease_s * (1 - LEASE_MARGIN)
