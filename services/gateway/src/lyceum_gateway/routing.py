"""Which predictor replica owns a learner: rendezvous (highest-random-weight) hashing over the
replicas' stable addresses, so adding or removing one only moves the learners it gains or loses."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from lyceum_gateway.clients import Predictor


def rendezvous_score(address: str, learner_id: str) -> int:
    """The weight of `address` for `learner_id`; the highest weight owns the learner."""
    digest = hashlib.blake2b((address + learner_id).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(addresses: list[str], learner_id: str) -> str:
    """The address that owns `learner_id` (ties, astronomically unlikely, go to the smallest address)."""
    return max(sorted(addresses), key=lambda address: rendezvous_score(address, learner_id))


class PredictorRouter:
    """One client per predictor address. Health-aware failover belongs here when it comes."""

    def __init__(self, clients: Mapping[str, Predictor]) -> None:
        if not clients:
            raise ValueError("a PredictorRouter needs at least one predictor")
        self._clients = dict(clients)
        self._addresses = list(self._clients)

    @property
    def addresses(self) -> list[str]:
        return list(self._addresses)

    def for_learner(self, learner_id: str) -> Predictor:
        """The replica that owns `learner_id`."""
        if len(self._addresses) == 1:
            return self._clients[self._addresses[0]]
        return self._clients[owner(self._addresses, learner_id)]

    def any(self) -> Predictor:
        """A replica for calls that concern no learner (tasks, model info)."""
        return self._clients[self._addresses[0]]

    def all(self) -> list[Predictor]:
        """Every replica, in configured order (probes, fleet-wide sums)."""
        return [self._clients[address] for address in self._addresses]
