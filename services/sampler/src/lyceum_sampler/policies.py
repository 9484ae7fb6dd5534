"""Gating policies served per request: registry versions of kind `gating_policy` (metadata `lm` = the key of
the LM version they were trained on), resolved in the caller's tenant like adapters (its own first, then
public ones), loaded lazily and kept in an LRU of `capacity` versions (a policy is a few hundred KB).

Each loaded version has ONE learned controller per gate-signal setting, shared by every row that names it:
the engine asks a controller once per step for all its rows, so the policy runs batched across requests."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Counter, Gauge
from sqlalchemy.exc import SQLAlchemyError

from lyceum_core.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from lyceum_core.identity import model_key
from lyceum_core.storage import ArtifactStore
from lyceum_db.repositories.registry import ModelRecord, ModelRepository
from lyceum_ml.gating.control import GatingController
from lyceum_ml.gating.policy import KIND, GatingPolicy, load_policy

log = logging.getLogger(__name__)
FIELD = "gating.policy"
DEFAULT_HORIZON = 50  # a policy's episode length when its metadata does not say (the trainer's default)
LOADED = Gauge("lyceum_sampler_policies_loaded", "Gating policies loaded in this process")
LOADS = Counter("lyceum_sampler_policy_loads_total", "Gating policies loaded")


@dataclass(frozen=True)
class PolicyVersion:
    """A resolved policy version: `key` is `owner/name@version`; `lm` the LM key it was trained on ("" when
    unknown), `horizon` its episode length, `gate_signal` whether it was trained with the gate signal on."""

    key: str
    uri: str
    lm: str = ""
    horizon: int = DEFAULT_HORIZON
    gate_signal: bool = True

    @property
    def ident(self) -> str:
        """Tells two versions' weights apart (a policy re-created under its name starts at version 1)."""
        return f"{self.key}#{hashlib.blake2b(self.uri.encode(), digest_size=6).hexdigest()}"


@dataclass
class _Loaded:
    policy: GatingPolicy
    controllers: dict[bool, GatingController]


class PolicyPool:
    def __init__(
        self, registry: ModelRepository | None, store: ArtifactStore | None, *, capacity: int, cache_dir: Path
    ) -> None:
        self.registry, self.store, self.capacity, self.cache_dir = registry, store, capacity, cache_dir
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()
        self._lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}

    def resolve(self, tenant: str, reference: str) -> PolicyVersion:
        """The version `reference` (`name@alias|version`, or `name`: its serving version) names for the
        tenant. NotFound for what the tenant does not see; InvalidArgument for a model of another kind."""
        if self.registry is None:
            raise NotFound(f"gating policy {reference!r} not found: this sampler serves none", field=FIELD)
        try:
            record = self.registry.lookup(tenant, reference, FIELD)
        except NotFound:
            raise NotFound(f"gating policy {reference!r} not found", field=FIELD) from None
        except SQLAlchemyError as exc:
            log.warning("could not resolve policy %r: the registry is unavailable", reference, exc_info=True)
            raise Unavailable(f"the model registry is unavailable ({type(exc).__name__})") from None
        if record.kind != KIND:
            raise InvalidArgument(
                f"{reference!r} is a model of kind {record.kind!r}, not a {KIND}", field=FIELD
            )
        return _version(record)

    def controller(self, version: PolicyVersion, gate_signal: bool) -> GatingController:
        """The shared learned controller of a policy version (loading it if needed) for that gate setting."""
        loaded = self._get(version)
        with self._lock:
            controller = loaded.controllers.get(gate_signal)
            if controller is None:
                controller = GatingController("learned", policy=loaded.policy, gate_signal=gate_signal)
                loaded.controllers[gate_signal] = controller
            return controller

    def _get(self, version: PolicyVersion) -> _Loaded:
        with self._lock:
            loaded = self._loaded.get(version.ident)
            if loaded is not None:
                self._loaded.move_to_end(version.ident)
                return loaded
            load_lock = self._load_locks.setdefault(version.ident, threading.Lock())
        with load_lock:  # one load per version at a time; rows of loaded policies go on meanwhile
            with self._lock:
                if (loaded := self._loaded.get(version.ident)) is not None:
                    return loaded
            loaded = _Loaded(self._load(version), {})
            with self._lock:
                self._loaded[version.ident] = loaded
                while len(self._loaded) > self.capacity:  # rows still using one keep it alive
                    self._loaded.popitem(last=False)
                LOADED.set(len(self._loaded))
        LOADS.inc()
        log.info("loaded gating policy %s", version.key)
        return loaded

    def _load(self, version: PolicyVersion) -> GatingPolicy:
        assert self.store is not None
        owner, _, rest = version.key.partition("/")
        name, _, number = rest.partition("@")
        try:
            local = self.cache_dir / owner / name / number / version.ident[-12:]
            policy, _ = load_policy(self.store.get_dir(version.uri, local))
        except Exception as exc:  # noqa: BLE001 - a broken policy artifact is the policy's problem
            log.exception("could not read gating policy %s", version.key)
            message = f"gating policy {version.key!r} could not be read: {exc}"
            raise FailedPrecondition(message, field=FIELD) from exc
        return policy


def _version(record: ModelRecord) -> PolicyVersion:
    meta = record.metadata
    lm = meta.get("lm")
    horizon = meta.get("episode_length")
    return PolicyVersion(
        key=model_key(record.tenant, record.name, record.version),
        uri=record.uri,
        lm=lm if isinstance(lm, str) else "",
        horizon=horizon if isinstance(horizon, int) and horizon > 0 else DEFAULT_HORIZON,
        gate_signal=meta.get("gate_signal") is not False,
    )
