"""Which replica owns a key (a learner on the predictors, a session on the samplers): rendezvous
(highest-random-weight) hashing over the replicas' stable addresses, so adding or removing one only moves the
keys it gains or loses."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping
from typing import Generic, TypeVar

from lyceum_gateway.clients import Predictor, Sampler

C = TypeVar("C")


def rendezvous_score(address: str, key: str) -> int:
    """The weight of `address` for `key`; the highest weight owns the key."""
    digest = hashlib.blake2b((address + key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(addresses: list[str], key: str) -> str:
    """The address that owns `key` (ties, astronomically unlikely, go to the smallest address)."""
    return max(sorted(addresses), key=lambda address: rendezvous_score(address, key))


class ReplicaRouter(Generic[C]):
    """One client per replica address. Health-aware failover belongs here when it comes."""

    kind = "replica"

    def __init__(self, clients: Mapping[str, C]) -> None:
        if not clients:
            raise ValueError(f"a {type(self).__name__} needs at least one {self.kind}")
        self._clients = dict(clients)
        self._addresses = list(self._clients)
        self._turn = itertools.cycle(self._addresses)

    @property
    def addresses(self) -> list[str]:
        return list(self._addresses)

    def for_key(self, key: str) -> C:
        """The replica that owns `key`."""
        if len(self._addresses) == 1:
            return self._clients[self._addresses[0]]
        return self._clients[owner(self._addresses, key)]

    def any(self) -> C:
        """A replica for calls that concern no key (catalogues, model info): the first configured."""
        return self._clients[self._addresses[0]]

    def spread(self) -> C:
        """The next replica in turn, for stateless work that should share the load (generation)."""
        return self._clients[next(self._turn)]

    def all(self) -> list[C]:
        """Every replica, in configured order (probes, fleet-wide sums)."""
        return [self._clients[address] for address in self._addresses]


class PredictorRouter(ReplicaRouter[Predictor]):
    """Learners live on the predictor that owns their id (its KV caches stay warm there)."""

    kind = "predictor"

    def for_learner(self, learner_id: str) -> Predictor:
        """The replica that owns `learner_id`."""
        return self.for_key(learner_id)


class SamplerRouter(ReplicaRouter[Sampler]):
    """Sessions are durable in the samplers' shared store, so any replica can serve any session; routing each
    session's calls to the replica that owns its id keeps its KV cache warm on that one replica."""

    kind = "sampler"

    def for_session(self, session_id: str) -> Sampler:
        """The replica that owns `session_id`."""
        return self.for_key(session_id)
