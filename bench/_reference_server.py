"""The reference server of bench/predictor_throughput.py: DFM-Server v0.1's design on Lyceum's model code.

One FastAPI + uvicorn process; per-learner KV caches in memory (lyceum_ml.dfm.inference prefill/extend); one
forward per requested task (a k-task predict is k calls of `inference.predict` on one task); appends extend
the cache in memory; a forecast forks the cache for all S sequences at once (v0.1's BatchedKVCache); no
database; synchronous endpoints in FastAPI's thread pool (`--threads` of them; 0: FastAPI's 40). Answers
`/v1`'s learner paths with the bodies the gateway takes, so one client drives both.

    python bench/_reference_server.py --model <checkpoint> --port <port> [--torch-threads 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import torch
import uvicorn
from anyio import to_thread
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from lyceum_ml.checkpoint import load_dfm
from lyceum_ml.dfm import inference
from lyceum_ml.kv_cache import KVCache


class RefEvent(BaseModel):
    task: str
    outcome: float


class RefRegister(BaseModel):
    learner_id: str
    history: list[RefEvent] = []


class RefPredict(BaseModel):
    tasks: list[str]


class RefAppend(BaseModel):
    events: list[RefEvent]


class RefForecast(BaseModel):
    task_sequences: list[list[str]]


def serve(model_path: Path, port: int, torch_threads: int, threads: int) -> None:
    """Serves the model at `model_path` on 127.0.0.1:`port` until SIGTERM."""
    torch.set_num_threads(torch_threads)
    loaded = load_dfm(model_path)
    model, vocab = loaded.model, loaded.vocab
    caches: dict[str, KVCache] = {}
    locks: dict[str, threading.Lock] = {}

    def index(tasks: Sequence[str]) -> torch.Tensor:
        try:
            return torch.tensor(vocab.encode(tasks), dtype=torch.long)
        except KeyError as err:
            raise HTTPException(400, f"unknown task {err}") from None

    def cache_of(learner_id: str) -> KVCache:
        if learner_id not in caches:
            raise HTTPException(404, f"learner {learner_id!r} not found")
        return caches[learner_id]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if threads:  # FastAPI's default is 40 threads, which thrash on a small machine (measured)
            to_thread.current_default_thread_limiter().total_tokens = threads
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/learners", status_code=201)
    def register(body: RefRegister) -> dict[str, Any]:
        if body.learner_id in caches:
            raise HTTPException(409, "exists")
        outcomes = torch.tensor([e.outcome for e in body.history], dtype=torch.float32)
        caches[body.learner_id] = inference.prefill(model, index([e.task for e in body.history]), outcomes)
        locks[body.learner_id] = threading.Lock()
        return {"learner_id": body.learner_id, "history_len": len(body.history)}

    @app.post("/v1/learners/{learner_id}/predictions")
    def predict(learner_id: str, body: RefPredict) -> dict[str, Any]:
        cache = cache_of(learner_id)
        rows = index(body.tasks)
        probs = [float(inference.predict(model, cache, rows[i : i + 1])[0]) for i in range(len(rows))]
        return {"learner_id": learner_id, "probabilities": probs}

    @app.post("/v1/learners/{learner_id}/events")
    def append(learner_id: str, body: RefAppend) -> dict[str, Any]:
        cache = cache_of(learner_id)
        rows = index([e.task for e in body.events])
        outcomes = torch.tensor([e.outcome for e in body.events], dtype=torch.float32)
        with locks[learner_id]:
            priors, kv = inference.extend(model, cache, rows, outcomes)
            cache.append(kv)
        return {"learner_id": learner_id, "prior_probabilities": priors.tolist()}

    @app.post("/v1/learners/{learner_id}/forecasts")
    def forecast(learner_id: str, body: RefForecast) -> dict[str, Any]:
        cache = cache_of(learner_id)
        rows = torch.stack([index(seq) for seq in body.task_sequences])
        return {"learner_id": learner_id, "predictions": inference.forecast(model, cache, rows).tolist()}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    serve(args.model, args.port, args.torch_threads, args.threads)


if __name__ == "__main__":
    main()
