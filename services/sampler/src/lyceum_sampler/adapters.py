"""LoRA adapters served per request: registry versions of kind `adapter` (PEFT layout, metadata `base` = the
key of the base model version they were trained on), resolved in the caller's tenant on every request (so a
new version, or an alias moved, is served from the next request on), loaded lazily and kept in an LRU under a
byte budget.

Loading never pauses serving: the files are fetched and read on the requesting worker thread; only the
injection into the model runs on its engine's thread, between two steps (milliseconds). Every version is
injected under a name of its own, so a new version never replaces weights under a running request; an old
one is removed when the budget needs room and no row uses it."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.exc import SQLAlchemyError

from lyceum_core.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from lyceum_core.storage import ArtifactStore
from lyceum_db.repositories.registry import ModelRecord, ModelRepository
from lyceum_ml.adapters import read_adapter
from lyceum_sampler.batching import Engines
from lyceum_sampler.models import Loaded, registry_key

log = logging.getLogger(__name__)
ADAPTER_KIND = "adapter"
LOADED = Gauge("lyceum_sampler_adapters_loaded", "LoRA adapters injected into loaded models")
ADAPTER_BYTES = Gauge("lyceum_sampler_adapter_bytes", "Bytes of the loaded LoRA adapters' weights")
LOADS = Counter("lyceum_sampler_adapter_loads_total", "LoRA adapters loaded")
UNLOADS = Counter("lyceum_sampler_adapter_unloads_total", "LoRA adapters removed to stay under the budget")
LOAD_SECONDS = Histogram(
    "lyceum_sampler_adapter_load_seconds",
    "From an adapter's first request to its injection (fetch, read, inject)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


@dataclass(frozen=True)
class Adapter:
    """A resolved adapter version: `key` is `owner/name@version`, `base` its base model's pool key."""

    key: str
    base: str
    uri: str

    @property
    def ident(self) -> str:
        """What tells two versions' weights apart: the key and the artifact, since a deleted adapter
        re-created under its name starts its versions at 1 again."""
        return f"{self.key}#{hashlib.blake2b(self.uri.encode(), digest_size=6).hexdigest()}"

    @property
    def module_name(self) -> str:
        """Its name inside the model (peft module names take no dots)."""
        return "lora_" + hashlib.blake2b(self.ident.encode(), digest_size=8).hexdigest()


@dataclass
class _Slot:
    adapter: Adapter
    nbytes: int
    users: int = 0


class AdapterPool:
    def __init__(
        self,
        registry: ModelRepository | None,
        store: ArtifactStore | None,
        engines: Engines,
        *,
        budget_bytes: int,
        cache_dir: Path,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.registry, self.store, self.engines = registry, store, engines
        self.budget_bytes, self.cache_dir, self.device, self.dtype = budget_bytes, cache_dir, device, dtype
        self._slots: OrderedDict[tuple[str, int, str], _Slot] = OrderedDict()
        self._lock = threading.Lock()
        self._load_locks: dict[tuple[str, int, str], threading.Lock] = {}

    def resolve(self, tenant: str, reference: str, field: str = "model") -> Adapter | None:
        """The adapter version `reference` (`name` = its latest, or `name@alias|version`) names for the
        tenant; None if it names no adapter the tenant sees (a model, or nothing)."""
        if self.registry is None:
            return None
        try:
            record = self.registry.lookup(tenant, reference)
        except (InvalidArgument, NotFound):
            return None
        except SQLAlchemyError as exc:
            log.warning("could not resolve %r: the model registry is unavailable", reference, exc_info=True)
            raise Unavailable(f"the model registry is unavailable ({type(exc).__name__})") from None
        if record.kind != ADAPTER_KIND:
            return None
        return _adapter(record, field)

    def visible(self, tenant: str) -> list[tuple[str, Adapter]]:
        """(name, latest version) of every adapter the tenant sees: its own, and public ones."""
        if self.registry is None:
            return []
        latest: dict[str, ModelRecord] = {}
        try:
            records = self.registry.list(tenant)
        except SQLAlchemyError:  # listing is informational: the served models are still listed
            log.warning("could not list adapters: the model registry is unavailable", exc_info=True)
            return []
        for record in records:
            if record.kind == ADAPTER_KIND and isinstance(record.metadata.get("base"), str):
                latest[record.name] = record  # listed by name and version: the last is the latest
        return [(name, _adapter(record, "model")) for name, record in sorted(latest.items())]

    def acquire(self, loaded: Loaded, adapter: Adapter) -> str:
        """Makes sure the adapter is injected into this load of its base model and counts a user of it (call
        `release` when done); its module name. Blocks the calling thread while it loads, never the engine."""
        slot_key = (loaded.key, loaded.generation, adapter.ident)
        with self._lock:
            slot = self._slots.get(slot_key)
            if slot is not None:
                slot.users += 1
                self._slots.move_to_end(slot_key)
                return adapter.module_name
            load_lock = self._load_locks.setdefault(slot_key, threading.Lock())
        with load_lock:
            with self._lock:
                slot = self._slots.get(slot_key)  # loaded by another request meanwhile?
            if slot is None:
                slot = self._load(loaded, adapter)
            with self._lock:
                slot.users += 1
                self._slots[slot_key] = slot
                self._slots.move_to_end(slot_key)
                victims = self._victims(loaded)
                self._publish()
        self._evict(loaded, victims)
        return adapter.module_name

    def release(self, loaded: Loaded, adapter: Adapter) -> None:
        with self._lock:
            slot = self._slots.get((loaded.key, loaded.generation, adapter.ident))
            if slot is not None:
                slot.users = max(0, slot.users - 1)

    def drop_model(self, model_key: str) -> None:
        """Forgets the adapters of an unloaded model (they went with it)."""
        with self._lock:
            for key in [k for k in self._slots if k[0] == model_key]:
                del self._slots[key]
            self._publish()

    def _load(self, loaded: Loaded, adapter: Adapter) -> _Slot:
        with LOAD_SECONDS.time():
            assert self.store is not None
            owner, _, rest = adapter.key.partition("/")
            name, _, version = rest.partition("@")
            try:
                local = self.cache_dir / owner / name / version / adapter.ident[-12:]
                path = self.store.get_dir(adapter.uri, local)
                weights = read_adapter(path, device=self.device, dtype=self.dtype)
            except Exception as exc:  # noqa: BLE001 - a broken adapter artifact is the adapter's problem
                log.exception("could not read adapter %s", adapter.key)
                message = f"adapter {adapter.key!r} could not be read: {exc}"
                raise FailedPrecondition(message, field="model") from exc
            host = loaded.lm.adapters
            engine = self.engines.of(loaded)

            def inject() -> None:
                if adapter.module_name not in host.names:  # another pod instance in this process has it
                    host.add(adapter.module_name, weights)

            try:
                engine.call(inject).result()
            except ValueError as exc:
                raise FailedPrecondition(
                    f"adapter {adapter.key!r} does not fit model {loaded.key!r}: {exc}", field="model"
                ) from None
        LOADS.inc()
        log.info("loaded adapter %s into %s (%d bytes)", adapter.key, loaded.key, weights.nbytes)
        return _Slot(adapter, weights.nbytes)

    def _victims(self, loaded: Loaded) -> list[_Slot]:
        """Unused adapters of this model, least recently used first, while the budget is exceeded (another
        model's adapters leave with that model). Holds _lock."""
        victims = []
        total = sum(s.nbytes for s in self._slots.values())
        for key, slot in list(self._slots.items()):
            if total <= self.budget_bytes:
                break
            if slot.users == 0 and key[:2] == (loaded.key, loaded.generation):
                del self._slots[key]
                victims.append(slot)
                total -= slot.nbytes
        return victims

    def _evict(self, loaded: Loaded, victims: list[_Slot]) -> None:
        host = loaded.lm.adapters
        for slot in victims:
            self.engines.of(loaded).call(lambda n=slot.adapter.module_name: host.remove(n))
            UNLOADS.inc()
            log.info("removed adapter %s from %s (adapter budget)", slot.adapter.key, loaded.key)

    def _publish(self) -> None:
        LOADED.set(len(self._slots))
        ADAPTER_BYTES.set(sum(s.nbytes for s in self._slots.values()))


def _adapter(record: ModelRecord, field: str) -> Adapter:
    base = record.metadata.get("base")
    if not isinstance(base, str) or not base:
        raise FailedPrecondition(
            f"adapter {record.name!r} version {record.version} names no base model (metadata.base)",
            field=field,
        )
    return Adapter(registry_key(record.tenant, record.name, record.version), base, record.uri)
