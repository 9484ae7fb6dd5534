"""One batched engine (`lyceum_ml.engine.Engine`) per loaded model, each on its own thread: every Generate
stream, token-wheel step and score of that model joins its forward passes. Started on a model's first use,
stopped when the model is unloaded."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from prometheus_client import Histogram

from lyceum_ml.engine import Engine, StepStats
from lyceum_sampler.models import Loaded

STEP_ROWS = Histogram(
    "lyceum_sampler_step_rows",
    "Rows (streams, token-wheel steps, scores) in one engine forward pass",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
STEP_TOKENS = Histogram(
    "lyceum_sampler_step_tokens",
    "Tokens fed in one engine forward pass",
    buckets=(1, 4, 16, 64, 256, 1024, 4096),
)
STEP_SECONDS = Histogram(
    "lyceum_sampler_step_seconds",
    "Duration of one engine step (forward pass and token choices)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)


@dataclass(frozen=True)
class EngineLimits:
    max_rows: int = 32  # rows decoding together
    step_tokens: int = 512  # tokens per forward pass (decode tokens first, then prompt chunks)
    stream_buffer: int = 64  # undelivered tokens a stream may hold before its row waits


def _observe(stats: StepStats) -> None:
    STEP_ROWS.observe(stats.rows)
    STEP_TOKENS.observe(stats.tokens)
    STEP_SECONDS.observe(stats.seconds)


class Engines:
    def __init__(self, limits: EngineLimits) -> None:
        self.limits = limits
        self._engines: dict[tuple[str, int], Engine] = {}
        self._lock = threading.Lock()

    def of(self, loaded: Loaded) -> Engine:
        """The running engine of a loaded model (this load of it)."""
        key = (loaded.key, loaded.generation)
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = Engine(
                    loaded.lm,
                    max_rows=self.limits.max_rows,
                    step_tokens=self.limits.step_tokens,
                    stream_buffer=self.limits.stream_buffer,
                    on_step=_observe,
                )
                engine.start(name=f"engine-{loaded.key}")
                self._engines[key] = engine
            return engine

    def drop_model(self, model_key: str) -> None:
        """Stops the engines of an unloaded model (their rows finish as cancelled)."""
        with self._lock:
            gone = [k for k in self._engines if k[0] == model_key]
            engines = [self._engines.pop(k) for k in gone]
        for engine in engines:
            engine.stop()

    def close(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.stop()
