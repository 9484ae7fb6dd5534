"""Assembles the sampler: settings -> model pool, session store, caches, engine, gRPC server; serves until
SIGTERM, drains. Models load lazily, so the pod reports SERVING as soon as the store answers."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import torch

from lyceum_api.sampler.v1 import sampler_pb2, sampler_pb2_grpc
from lyceum_core.grpc.server import GrpcServer
from lyceum_core.storage import ArtifactStore
from lyceum_db.engine import create_engine
from lyceum_db.repositories.registry import ModelRepository
from lyceum_ml.causal_lm_impl import load_causal_lm
from lyceum_ml.devices import default_cache_budget, resolve_device, resolve_dtype
from lyceum_sampler.adapters import AdapterPool
from lyceum_sampler.batching import EngineLimits, Engines
from lyceum_sampler.cache import SessionCaches
from lyceum_sampler.config import Settings
from lyceum_sampler.engine import SamplerEngine
from lyceum_sampler.limits import Limits
from lyceum_sampler.models import Loader, ModelPool, parse_specs
from lyceum_sampler.policies import PolicyPool
from lyceum_sampler.recording import Recorder
from lyceum_sampler.servicer import SamplerServicer
from lyceum_sampler.sessions import open_store
from lyceum_sampler.targets import Targets

log = logging.getLogger(__name__)
SERVICE_NAME = sampler_pb2.DESCRIPTOR.services_by_name["SamplerService"].full_name


def cache_budget(settings: Settings, device: torch.device) -> int:
    """The configured KV budget, or the default share of the memory that the models' budget leaves free
    (models load lazily, so it is reserved for them up front)."""
    if settings.cache_budget_bytes is not None:
        return settings.cache_budget_bytes
    budget = default_cache_budget(device, settings.cache_memory_fraction, settings.model_budget_bytes)
    log.info("KV cache budget %.2f GiB (of free memory on %s)", budget / 2**30, device)
    return budget


def build_engine(settings: Settings, loader: Loader = load_causal_lm) -> SamplerEngine:
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    device = resolve_device(settings.device)
    caches = SessionCaches(cache_budget(settings, device))
    engines = Engines(
        EngineLimits(settings.engine_max_rows, settings.engine_step_tokens, settings.stream_buffer)
    )
    dtype = resolve_dtype(settings.dtype, device)

    def unloaded(model_key: str) -> None:
        caches.drop_model(model_key)
        engines.drop_model(model_key)
        adapters.drop_model(model_key)

    pool = ModelPool(
        parse_specs(settings.models),
        loader,
        budget_bytes=settings.model_budget_bytes,
        device=device,
        dtype=dtype,
        database_url=settings.database_url,
        registry_url=settings.registry_url,
        cache_dir=settings.model_cache_dir,
        on_unload=unloaded,
    )
    registry, artifacts = None, None
    if settings.serve_adapters or settings.serve_policies:
        registry = ModelRepository(create_engine(settings.database_url))
        artifacts = ArtifactStore(settings.registry_url)
    adapters = AdapterPool(
        registry if settings.serve_adapters else None,
        artifacts,
        engines,
        budget_bytes=settings.adapter_budget_bytes,
        cache_dir=settings.model_cache_dir / "adapters",
        device=device,
        dtype=dtype,
    )
    store = open_store(settings.session_store_url, settings.session_ttl_s, settings.session_key_prefix)
    store.ping()
    limits = Limits(
        max_prompt_tokens=settings.max_prompt_tokens,
        max_new_tokens=settings.max_new_tokens,
        default_threshold=settings.default_threshold,
        default_other_top_k=settings.default_other_top_k,
    )
    log.info("serving models %s on %s; sessions in %s", list(pool.specs), device, settings.session_store_url)
    recorder = Recorder(settings.database_url, settings.completion_retention_days)
    policies = PolicyPool(
        registry if settings.serve_policies else None,
        artifacts,
        capacity=settings.policy_cache_size,
        cache_dir=settings.model_cache_dir / "policies",
    )
    targets = Targets(pool, adapters, policies)
    return SamplerEngine(pool, store, caches, limits, targets, engines, recorder)


class SamplerServer:
    """The running service: `await start()`, then `await wait()` (SIGTERM drains) or `await stop()`."""

    def __init__(self, settings: Settings, engine: SamplerEngine | None = None) -> None:
        self.settings = settings
        self.engine = engine or build_engine(settings)
        self.executor = ThreadPoolExecutor(settings.worker_threads, thread_name_prefix="sampler")
        servicer = SamplerServicer(self.engine, self.executor)
        self.grpc = GrpcServer(
            lambda server: sampler_pb2_grpc.add_SamplerServiceServicer_to_server(servicer, server),
            [SERVICE_NAME],
            host=settings.host,
            port=settings.port,
        )

    @property
    def address(self) -> str:
        return self.grpc.address

    async def start(self) -> None:
        await self.grpc.start()
        await self.grpc.set_serving()

    async def wait(self) -> None:
        await self.grpc.wait_for_signal(self.settings.drain_grace_s, self.settings.drain_delay_s)
        self._close()

    async def stop(self, grace_s: float | None = None) -> None:
        await self.grpc.drain(self.settings.drain_grace_s if grace_s is None else grace_s)
        self._close()

    def _close(self) -> None:
        self.executor.shutdown(wait=True)
        self.engine.engines.close()
        self.engine.store.close()
        self.engine.recorder.close()
