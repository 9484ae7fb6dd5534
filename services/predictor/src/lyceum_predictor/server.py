"""Assembles the predictor: settings -> model, database, engine, gRPC server; serves until SIGTERM, drains."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import torch
from prometheus_client import Counter

from lyceum_api.predictor.v1 import predictor_pb2, predictor_pb2_grpc
from lyceum_core.grpc.server import GrpcServer
from lyceum_db.engine import create_engine
from lyceum_db.migrate import upgrade
from lyceum_db.repositories.learners import LearnerRepository
from lyceum_ml.devices import default_cache_budget, resolve_device, resolve_dtype
from lyceum_predictor.cache import LearnerCaches
from lyceum_predictor.config import Settings
from lyceum_predictor.engine import Batching, Limits, PredictorEngine
from lyceum_predictor.models import ModelSource
from lyceum_predictor.servicer import PredictorServicer

log = logging.getLogger(__name__)
MODEL_SWAPS = Counter("lyceum_predictor_model_swaps_total", "Times a new model version was swapped in")
SERVICE_NAME = predictor_pb2.DESCRIPTOR.services_by_name["PredictorService"].full_name


def model_source(settings: Settings) -> ModelSource:
    device = resolve_device(settings.device)
    return ModelSource(
        path=settings.model_path,
        reference=settings.model,
        database_url=settings.database_url,
        registry_url=settings.registry_url,
        cache_dir=settings.model_cache_dir,
        device=device,
        dtype=resolve_dtype(settings.dtype, device),
        tenant=settings.model_tenant,
    )


def build_engine(settings: Settings, source: ModelSource | None = None) -> PredictorEngine:
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    if settings.migrate_on_start:
        upgrade(settings.database_url)
    loaded = (source or model_source(settings)).load()
    limits = Limits(
        max_history_len=settings.max_history_len,
        max_tasks_per_request=settings.max_tasks_per_request,
        max_events_per_request=settings.max_events_per_request,
        max_forecast_sequences=settings.max_forecast_sequences,
        max_forecast_length=settings.max_forecast_length,
        forecast_memory_bytes=settings.forecast_memory_bytes,
        context_policy=settings.context_policy,
        context_window=settings.context_window,
        context_stride=settings.context_stride,
    )
    log.info(
        "loaded DFM %s (%d parameters, %d tasks) on %s/%s",
        settings.model or settings.model_path,
        loaded.model.num_parameters(),
        len(loaded.vocab),
        loaded.model.device,
        loaded.model.dtype,
    )
    return PredictorEngine(
        loaded,
        LearnerRepository(create_engine(settings.database_url)),
        LearnerCaches(cache_budget(settings, loaded.model.device)),
        limits,
        chunk_tokens=settings.cache_chunk_tokens,
        batching=Batching(
            max_rows=settings.batch_max_rows,
            max_delay_s=settings.batch_max_delay_ms / 1000,
            lease_s=settings.lease_s,
        ),
    )


def cache_budget(settings: Settings, device: torch.device) -> int:
    """The configured KV budget, or the default share of the memory free now that the model is loaded."""
    if settings.cache_budget_bytes is not None:
        return settings.cache_budget_bytes
    budget = default_cache_budget(device, settings.cache_memory_fraction)
    log.info("KV cache budget %.2f GiB (of free memory on %s)", budget / 2**30, device)
    return budget


class PredictorServer:
    """The running service: `await start()`, then `await wait()` (SIGTERM drains) or `await stop()`."""

    def __init__(self, settings: Settings, engine: PredictorEngine | None = None) -> None:
        self.settings = settings
        self.source = model_source(settings)
        self.engine = engine or build_engine(settings, self.source)
        self._watcher: asyncio.Task | None = None
        self.executor = ThreadPoolExecutor(settings.worker_threads, thread_name_prefix="predictor")
        self.rollouts = ThreadPoolExecutor(settings.rollout_threads, thread_name_prefix="rollout")
        servicer = PredictorServicer(self.engine, self.executor, self.rollouts)
        self.grpc = GrpcServer(
            lambda server: predictor_pb2_grpc.add_PredictorServiceServicer_to_server(servicer, server),
            [SERVICE_NAME],
            host=settings.host,
            port=settings.port,
        )
        self.grpc.on_serving = self.engine.take_leases
        self.grpc.on_not_serving = self.engine.hand_over

    @property
    def address(self) -> str:
        return self.grpc.address

    async def start(self) -> None:
        await self.grpc.start()
        await self.grpc.set_serving()
        if self.source.from_registry and self.settings.model_poll_s > 0:
            self._watcher = asyncio.create_task(self._watch_registry())

    async def check_registry(self) -> bool:
        """Swaps to the version the registry reference names now, if it changed; True if it swapped."""
        served = self.engine.served.metadata.get("registry_version")
        record = await asyncio.to_thread(self.source.newer, served)
        if record is None:
            return False
        loaded = await asyncio.to_thread(self.source.load, record)
        self.engine.swap(loaded)
        MODEL_SWAPS.inc()
        log.info("now serving %s version %s (was %s)", record.name, record.version, served)
        return True

    async def _watch_registry(self) -> None:
        while True:
            await asyncio.sleep(self.settings.model_poll_s)
            try:
                await self.check_registry()
            except Exception:  # noqa: BLE001 - keep serving the current model; retry next poll
                log.exception("model registry check failed")

    async def wait(self) -> None:
        await self.grpc.wait_for_signal(self.settings.drain_grace_s, self.settings.drain_delay_s)
        self._stop_watcher()
        self._close()

    async def stop(self, grace_s: float | None = None) -> None:
        self._stop_watcher()
        await self.grpc.drain(self.settings.drain_grace_s if grace_s is None else grace_s)
        self._close()

    def _close(self) -> None:
        self.executor.shutdown(wait=True)
        self.rollouts.shutdown(wait=True)
        self.engine.close()

    def _stop_watcher(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
