"""The fleet's gRPC clients (`GrpcPredictor`, `GrpcSampler`) send the caller's request context with every
call: its metadata (tenant, request id, subject) and a timeout cut to its deadline. The generated stub is
replaced by a recorder (no network): what is under test is what each method hands to gRPC."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lyceum_api.predictor.v1 import predictor_pb2
from lyceum_api.sampler.v1 import sampler_pb2
from lyceum_core.context import RequestContext
from lyceum_fleet.predictor import Event, GrpcPredictor, Predictor, SearchSpec
from lyceum_fleet.sampler import GenerateSpec, GrpcSampler, Sampler, ScoreSpec, TokenChoice

TIMEOUT_S = 30.0
GENERATE_TIMEOUT_S = 120.0


class Stream:
    """A server stream that ends at once."""

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        raise StopAsyncIteration

    def cancel(self) -> None:
        return None


class RecordingStub:
    """Answers every RPC with an empty response of its type, recording (rpc, metadata, timeout)."""

    def __init__(self, pb: Any, service: str) -> None:
        self._pb = pb
        self._service = pb.DESCRIPTOR.services_by_name[service]
        self.calls: list[tuple[str, tuple[tuple[str, str], ...], float]] = []

    def __getattr__(self, rpc: str) -> Any:
        method = self._service.methods_by_name[rpc]

        def call(request: Any, *, metadata: tuple[tuple[str, str], ...], timeout: float) -> Any:
            self.calls.append((rpc, metadata, timeout))
            if method.server_streaming:
                return Stream()

            async def respond() -> Any:
                return getattr(self._pb, method.output_type.name)()

            return respond()

        return call


PREDICTOR_CALLS = {
    "register_learner": lambda p, ctx: p.register_learner(ctx, "ada", [Event("t", 1.0)]),
    "get_learner": lambda p, ctx: p.get_learner(ctx, "ada"),
    "predict": lambda p, ctx: p.predict(ctx, "ada", ["t"]),
    "append_events": lambda p, ctx: p.append_events(ctx, "ada", [Event("t", 0.0)]),
    "forecast": lambda p, ctx: p.forecast(ctx, "ada", [["t"]]),
    "delete_learner": lambda p, ctx: p.delete_learner(ctx, "ada"),
    "list_tasks": lambda p, ctx: p.list_tasks(ctx),
    "get_model_info": lambda p, ctx: p.get_model_info(ctx),
    "predict_many": lambda p, ctx: p.predict_many(ctx, []),
    "search_curriculum": lambda p, ctx: p.search_curriculum(ctx, "ada", SearchSpec(["t"], ["t"], 1)),
    "collect_garbage": lambda p, ctx: p.collect_garbage(ctx),
}


async def _drain(steps: Any) -> None:
    async for _ in steps:
        pass


SAMPLER_CALLS = {
    "create_session": lambda s, ctx: s.create_session(ctx, "lm", "hi", max_live_sessions=3),
    "get_session": lambda s, ctx: s.get_session(ctx, "s1"),
    "set_prompt": lambda s, ctx: s.set_prompt(ctx, "s1", "hi"),
    "get_distribution": lambda s, ctx: s.get_distribution(ctx, "s1", 0.1),
    "append_token": lambda s, ctx: s.append_token(ctx, "s1", TokenChoice(token_id=3)),
    "undo": lambda s, ctx: s.undo(ctx, "s1"),
    "delete_session": lambda s, ctx: s.delete_session(ctx, "s1"),
    "list_models": lambda s, ctx: s.list_models(ctx),
    "score": lambda s, ctx: s.score(ctx, ScoreSpec(model="lm", prompt="hi", completion="!")),
    "generate": lambda s, ctx: _drain(
        s.generate(ctx, GenerateSpec(model="lm", prompt="hi", max_new_tokens=1))
    ),
}


def methods(protocol: type) -> set[str]:
    return {n for n, _ in inspect.getmembers(protocol, inspect.isfunction) if not n.startswith("_")} - {
        "health"
    }


def test_every_rpc_is_checked_here() -> None:
    assert methods(Predictor) == set(PREDICTOR_CALLS)
    assert methods(Sampler) == set(SAMPLER_CALLS)


def test_every_client_method_takes_the_context_first() -> None:
    for client, names in ((GrpcPredictor, PREDICTOR_CALLS), (GrpcSampler, SAMPLER_CALLS)):
        for name in names:
            params = list(inspect.signature(getattr(client, name)).parameters)
            assert params[:2] == ["self", "ctx"], f"{client.__name__}.{name}"


def clients() -> tuple[GrpcPredictor, RecordingStub, GrpcSampler, RecordingStub]:
    predictor = GrpcPredictor("predictor:1", timeout_s=TIMEOUT_S)
    sampler = GrpcSampler("sampler:1", timeout_s=TIMEOUT_S, generate_timeout_s=GENERATE_TIMEOUT_S)
    p_stub = RecordingStub(predictor_pb2, "PredictorService")
    s_stub = RecordingStub(sampler_pb2, "SamplerService")
    predictor._stub, sampler._stub = p_stub, s_stub  # type: ignore[assignment]
    return predictor, p_stub, sampler, s_stub


@pytest.mark.parametrize("deadline_s", [None, 2.0])
def test_every_call_carries_the_context_and_its_deadline(deadline_s: float | None) -> None:
    ctx = RequestContext.new("acme", subject="user-1", timeout_s=deadline_s)
    predictor, p_stub, sampler, s_stub = clients()

    async def main() -> None:
        for call in PREDICTOR_CALLS.values():
            await call(predictor, ctx)
        for call in SAMPLER_CALLS.values():
            await call(sampler, ctx)

    asyncio.run(main())
    assert len(p_stub.calls) == len(PREDICTOR_CALLS) and len(s_stub.calls) == len(SAMPLER_CALLS)
    for rpc, metadata, timeout in p_stub.calls + s_stub.calls:
        assert dict(metadata) == {
            "lyceum-tenant": "acme",
            "lyceum-request-id": ctx.request_id,
            "lyceum-subject": "user-1",
        }, rpc
        default = GENERATE_TIMEOUT_S if rpc == "Generate" else TIMEOUT_S
        if deadline_s is None:
            assert timeout == default, rpc
        else:
            assert 0 < timeout <= deadline_s, rpc  # cut to what is left of the request's deadline
