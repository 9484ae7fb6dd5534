"""The models a sampler pod serves: local directories (`name=/path`) and registry references (`name@alias`),
loaded lazily on first use and unloaded least-recently-used beyond a byte budget.

A registry reference is resolved in the caller's tenant (its own model of that name first, then a public
one) when a session is created, and the session is pinned to that artifact (`<owner>/<name>@<version>`): its
token ids only make sense for that model, so moving the alias affects new sessions only. Loaded models are
keyed by the artifact, so two tenants' same-named models never mix."""

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
from lyceum_core.identity import ModelRef, model_key
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
        try:
            ref = ModelRef.parse(text.strip())
        except InvalidArgument:
            pass
        else:
            return cls(str(ref), registry_name=ref.name, ref=ref.ref)
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
    base: str = ""  # adapters: the model they apply to
    gated: bool = False


def module_nbytes(lm: object) -> int:
    """Bytes of the parameters and buffers of the torch modules an LM wrapper holds (each tensor once)."""
    seen: dict[int, int] = {}
    candidates = [lm, *getattr(lm, "__dict__", {}).values()]
    modules = [m for m in candidates if isinstance(m, torch.nn.Module)]
    for module in modules:
        for t in [*module.parameters(), *module.buffers()]:
            seen[t.data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values())


def registry_key(owner: str, name: str, version: int) -> str:
    """The pool key of a registry artifact: its owner tenant, name and version (`acme/story-lm@3`)."""
    return model_key(owner, name, version)


def parse_registry_key(key: str) -> tuple[str, str, int] | None:
    """(owner, name, version) of a registry key; None for a local model's key (a plain served name)."""
    owner, slash, rest = key.partition("/")
    name, at, version = rest.partition("@")
    if not (slash and at and version.isdecimal()):
        return None
    return owner, name, int(version)


class ModelPool:
    """Thread-safe lazy pool of CausalLMs keyed by served name (local models, served to every tenant) or by
    resolved registry artifact (`owner/name@version`)."""

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
        self._public: dict[str, bool] = {}  # registry keys resolved so far: whether every tenant may read it
        self._lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}
        self._generation = 0
        self._registry: ModelRepository | None = None
        self._store: ArtifactStore | None = None
        if self.registry_names:
            assert database_url is not None and registry_url is not None
            self._registry = ModelRepository(create_engine(database_url))
            self._store = ArtifactStore(registry_url)

    def pin(self, tenant: str, name: str) -> str:
        """The key a new session of model `name` is pinned to, resolved in `tenant` (its own model first,
        then a public one). NotFound(field=model) if not served, or not resolvable for the tenant."""
        spec = self.specs.get(name)
        if spec is None:
            if isinstance(name, str) and "@" in name:
                ModelRef.parse(name)  # a malformed reference is INVALID_ARGUMENT, a well-formed one unknown
            raise NotFound(self._not_served(name), field="model")
        if spec.registry_name is None:
            return spec.name
        assert self._registry is not None and spec.ref is not None
        try:
            record = self._registry.resolve(tenant, spec.registry_name, spec.ref)
        except NotFound as exc:
            raise NotFound(f"model {name!r}: {exc.message}", field="model") from None
        key = registry_key(record.tenant, record.name, record.version)
        with self._lock:
            self._public[key] = bool(record.public)
        return key

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
                self._known[key] = ModelDescription(
                    key, lm.kind, lm.vocab_size, lm.max_context, True, gated=lm.gated
                )
                unloaded = self._evict()
                self._publish()
            LOADS.inc()
            log.info("loaded model %s (%s, %d bytes)", key, lm.kind, loaded.nbytes)
        for gone in unloaded:
            if self.on_unload is not None:
                self.on_unload(gone)
        return loaded

    def describe(self, tenant: str) -> list[ModelDescription]:
        """The configured models, with what is known of them as `tenant` sees them (unloaded, never-loaded
        models show zeros; a registry name shows the tenant's own artifact, else a public one)."""
        with self._lock:
            out = []
            for name, spec in self.specs.items():
                key = name if spec.registry_name is None else self._latest_key(tenant, spec.registry_name)
                known = self._known.get(key) if key else None
                if known is None:
                    out.append(ModelDescription(name, "", 0, 0, False))
                else:
                    loaded = key in self._models
                    out.append(
                        ModelDescription(
                            name, known.kind, known.vocab_size, known.max_context, loaded, gated=known.gated
                        )
                    )
            return out

    def _latest_key(self, tenant: str, registry_name: str) -> str | None:
        """The most recently loaded artifact of `registry_name` the tenant may see: its own, else public."""
        own, public = None, None
        for key in self._known:
            parsed = parse_registry_key(key)
            if parsed is None or parsed[1] != registry_name:
                continue
            if parsed[0] == tenant:
                own = key
            elif self._public.get(key):
                public = key
        return own or public

    def _not_served(self, name: object) -> str:
        """NotFound's message for a model name no spec has; names the served references to `name` when it is
        a registry name served at an alias (`smollm2` -> `smollm2@production`)."""
        served = sorted(
            s.name for s in self.specs.values() if s.registry_name is not None and s.registry_name == name
        )
        if served:
            return f"model {name!r} is served by reference: use {' or '.join(map(repr, served))}"
        return f"model {name!r} is not served here; the model list names those that are"

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
        parsed = parse_registry_key(key)
        if parsed is None or parsed[1] not in self.registry_names:
            raise NotFound(self._not_served(key), field="model")
        owner, name, version = parsed
        assert self._registry is not None and self._store is not None
        record = self._registry.get(owner, name, version)
        if record is None:
            raise NotFound(f"model {key!r} is not in the registry", field="model")
        with self._lock:
            self._public[key] = bool(record.public)
        return self._store.get_dir(record.uri, self.cache_dir / owner / name / str(version))

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
