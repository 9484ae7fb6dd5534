"""The models a sampler pod serves: local directories (`name=/path`) and registry references (`name@alias`),
loaded lazily on first use and unloaded least-recently-used beyond a byte budget.

A registry reference is resolved when a session is created and the session is pinned to that version
(`name@<version>`): its token ids only make sense for that model, so moving the alias affects new sessions
only."""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from prometheus_client import Counter, Gauge

from lyceum_core.errors import FailedPrecondition, InvalidArgument, NotFound
from lyceum_core.storage import ArtifactStore
from lyceum_db.engine import create_engine
from lyceum_db.repositories.registry import ModelRepository
from lyceum_ml.causal_lm import CausalLM
from lyceum_sampler.views import Tokens

log = logging.getLogger(__name__)
LOADED = Gauge("lyceum_sampler_loaded_models", "Models loaded in this process")
MODEL_BYTES = Gauge("lyceum_sampler_model_bytes", "Bytes of parameters and buffers of loaded models")
LOADS = Counter("lyceum_sampler_model_loads_total", "Models loaded")
UNLOADS = Counter("lyceum_sampler_model_unloads_total", "Models unloaded to stay under the budget")

LOCAL = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)=(?P<path>.+)$")
REFERENCE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9._-]*)@(?P<ref>[A-Za-z0-9._-]+)$")
Loader = Callable[..., CausalLM]  # load_causal_lm(path, name=..., device=..., dtype=...)


@dataclass(frozen=True)
class ModelSpec:
    """One configured model: `name=/path` (served as `name`) or `name@alias` (served as itself)."""

    name: str
    path: Path | None = None
    registry_name: str | None = None
    ref: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        if match := LOCAL.match(text.strip()):
            return cls(match["name"], path=Path(match["path"]))
        if match := REFERENCE.match(text.strip()):
            return cls(text.strip(), registry_name=match["name"], ref=match["ref"])
        raise ValueError(f"model {text!r} is neither name=/path nor name@alias")


@dataclass(frozen=True)
class Loaded:
    key: str
    lm: CausalLM
    generation: int  # unique per load: caches built by another load of the same key are rebuilt
    nbytes: int
    tokens: Tokens  # how its tokens are shown


@dataclass(frozen=True)
class ModelDescription:
    name: str
    kind: str
    vocab_size: int
    max_context: int
    loaded: bool


def module_nbytes(lm: object) -> int:
    """Bytes of the parameters and buffers of the torch modules an LM wrapper holds (each tensor once)."""
    seen: dict[int, int] = {}
    candidates = [lm, *getattr(lm, "__dict__", {}).values()]
    modules = [m for m in candidates if isinstance(m, torch.nn.Module)]
    for module in modules:
        for t in [*module.parameters(), *module.buffers()]:
            seen[t.data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values())


class ModelPool:
    """Thread-safe lazy pool of CausalLMs keyed by served name (or pinned `name@version`)."""

    def __init__(
        self,
        specs: list[ModelSpec],
        loader: Loader,
        *,
        budget_bytes: int,
        device: torch.device,
        dtype: torch.dtype,
        database_url: str | None = None,
        registry_url: str | None = None,
        cache_dir: Path = Path("var/sampler/models"),
        on_unload: Callable[[str], None] | None = None,
    ) -> None:
        self.specs = {s.name: s for s in specs}
        self.registry_names = {s.registry_name for s in specs if s.registry_name}
        self.loader, self.budget_bytes, self.device, self.dtype = loader, budget_bytes, device, dtype
        self.cache_dir, self.on_unload = cache_dir, on_unload
        self._models: OrderedDict[str, Loaded] = OrderedDict()
        self._known: dict[str, ModelDescription] = {}  # facts of models loaded at some point
        self._lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}
        self._generation = 0
        self._registry: ModelRepository | None = None
        self._store: ArtifactStore | None = None
        if self.registry_names:
            assert database_url is not None and registry_url is not None
            self._registry = ModelRepository(create_engine(database_url))
            self._store = ArtifactStore(registry_url)

    def pin(self, name: str) -> str:
        """The key a new session of model `name` is pinned to. NotFound(field=model) if not served."""
        spec = self.specs.get(name)
        if spec is None:
            raise NotFound(f"model {name!r} is not served here; see ListModels", field="model")
        if spec.registry_name is None:
            return spec.name
        assert self._registry is not None and spec.ref is not None
        try:
            record = self._registry.resolve(spec.registry_name, spec.ref)
        except NotFound as exc:
            raise NotFound(f"model {name!r}: {exc.message}", field="model") from None
        return f"{record.name}@{record.version}"

    def get(self, key: str) -> Loaded:
        """The loaded model for a served name or a pinned key, loading it (and unloading others) if needed."""
        with self._lock:
            loaded = self._models.get(key)
            if loaded is not None:
                self._models.move_to_end(key)
                return loaded
            load_lock = self._load_locks.setdefault(key, threading.Lock())
        with load_lock:  # one load per key at a time; other models keep serving meanwhile
            with self._lock:
                if (loaded := self._models.get(key)) is not None:
                    return loaded
            lm = self._load(key)
            with self._lock:
                self._generation += 1
                loaded = Loaded(key, lm, self._generation, module_nbytes(lm), Tokens(lm))
                self._models[key] = loaded
                self._known[key] = ModelDescription(key, lm.kind, lm.vocab_size, lm.max_context, True)
                unloaded = self._evict()
                self._publish()
            LOADS.inc()
            log.info("loaded model %s (%s, %d bytes)", key, lm.kind, loaded.nbytes)
        for gone in unloaded:
            if self.on_unload is not None:
                self.on_unload(gone)
        return loaded

    def describe(self) -> list[ModelDescription]:
        """The configured models, with what is known of them (unloaded, never-loaded models show zeros)."""
        with self._lock:
            out = []
            for name, spec in self.specs.items():
                key = name if spec.registry_name is None else self._latest_key(spec.registry_name)
                known = self._known.get(key) if key else None
                if known is None:
                    out.append(ModelDescription(name, "", 0, 0, False))
                else:
                    loaded = key in self._models
                    out.append(
                        ModelDescription(name, known.kind, known.vocab_size, known.max_context, loaded)
                    )
            return out

    def _latest_key(self, registry_name: str) -> str | None:
        keys = [k for k in self._known if k.split("@", 1)[0] == registry_name]
        return keys[-1] if keys else None

    def _load(self, key: str) -> CausalLM:
        path = self._path(key)
        try:
            return self.loader(path, name=key, device=self.device, dtype=self.dtype)
        except Exception as exc:  # noqa: BLE001 - a broken model directory is a deployment problem
            log.exception("could not load model %s from %s", key, path)
            raise FailedPrecondition(f"model {key!r} could not be loaded: {exc}", field="model") from exc

    def _path(self, key: str) -> Path:
        spec = self.specs.get(key)
        if spec is not None and spec.path is not None:
            return spec.path
        name, _, version = key.partition("@")
        if name not in self.registry_names or not version.isdecimal():
            raise NotFound(f"model {key!r} is not served here; see ListModels", field="model")
        assert self._registry is not None and self._store is not None
        try:
            record = self._registry.resolve(name, version)
        except NotFound as exc:
            raise NotFound(f"model {key!r}: {exc.message}", field="model") from None
        return self._store.get_dir(record.uri, self.cache_dir / name / version)

    def _evict(self) -> list[str]:
        """Unloads least recently used models beyond the budget (the newest always stays). Holds _lock."""
        gone = []
        while sum(m.nbytes for m in self._models.values()) > self.budget_bytes and len(self._models) > 1:
            key, _ = self._models.popitem(last=False)
            gone.append(key)
            UNLOADS.inc()
            log.info("unloaded model %s (model budget %d bytes)", key, self.budget_bytes)
        return gone

    def _publish(self) -> None:
        LOADED.set(len(self._models))
        MODEL_BYTES.set(sum(m.nbytes for m in self._models.values()))


def parse_specs(models: list[str]) -> list[ModelSpec]:
    try:
        specs = [ModelSpec.parse(m) for m in models]
    except ValueError as exc:
        raise InvalidArgument(str(exc), field="models") from None
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InvalidArgument(f"model names repeat: {names}", field="models")
    return specs
