"""Bad requests to the sampler over real gRPC: each is INVALID_ARGUMENT (or NOT_FOUND / FAILED_PRECONDITION)
naming the offending field, and leaves the session exactly as it was: its stored state, its distribution and
its cache (no forward pass runs)."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from fixtures.sampler import (
    HF_MODEL,
    LYCEUM_MODEL,
    PROMPT,
    RunningSampler,
    SamplerStubFor,
    Stub,
    append,
    create,
    distribution,
)
from fixtures.servers import rpc_error, tenant_channel

from lyceum_api.sampler.v1 import sampler_pb2 as pb
from lyceum_api.sampler.v1 import sampler_pb2_grpc
from lyceum_core.identity import DEFAULT_TENANT
from lyceum_ml.causal_lm import CausalLM

pytestmark = pytest.mark.integration

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
NAN, INF = float("nan"), float("inf")
Call = Callable[[Stub, str], object]


def dist(**kw: object) -> Call:
    return lambda stub, sid: distribution(stub, sid, **kw)  # type: ignore[arg-type]


def app(**kw: object) -> Call:
    kw.setdefault("token_id", 1)
    return lambda stub, sid: append(stub, sid, **kw)  # type: ignore[arg-type]


def app_params(**params: float) -> Call:
    return lambda stub, sid: append(stub, sid, token_id=1, params=params)


def set_prompt(prompt: str) -> Call:
    return lambda stub, sid: stub.SetPrompt(pb.SetPromptRequest(session_id=sid, prompt=prompt))


BAD_SESSION_CALLS: list[tuple[str, Call, grpc.StatusCode, str]] = [
    ("threshold below 0", dist(threshold=-0.01), INVALID, "threshold"),
    ("threshold above 1", dist(threshold=1.5), INVALID, "threshold"),
    ("threshold nan", dist(threshold=NAN), INVALID, "threshold"),
    ("other_top_k negative", dist(other_top_k=-1), INVALID, "other_top_k"),
    ("other_top_k too large", dist(other_top_k=1001), INVALID, "other_top_k"),
    ("temperature zero", dist(temperature=0.0), INVALID, "params.temperature"),
    ("temperature negative", dist(temperature=-1.0), INVALID, "params.temperature"),
    ("temperature nan", dist(temperature=NAN), INVALID, "params.temperature"),
    ("temperature inf", dist(temperature=INF), INVALID, "params.temperature"),
    ("top_k negative", dist(top_k=-1), INVALID, "params.top_k"),
    ("top_p zero", dist(top_p=0.0), INVALID, "params.top_p"),
    ("top_p above 1", dist(top_p=1.01), INVALID, "params.top_p"),
    ("repetition_penalty below 1", dist(repetition_penalty=0.5), INVALID, "params.repetition_penalty"),
    ("repetition_penalty nan", dist(repetition_penalty=NAN), INVALID, "params.repetition_penalty"),
    ("append: token_id negative", app(token_id=-1), INVALID, "token_id"),
    ("append: token_id past the vocabulary", app(token_id=384), INVALID, "token_id"),
    ("append: token_text of two tokens", app(token_id=None, token_text="Once upon"), INVALID, "token_text"),
    ("append: empty token_text", app(token_id=None, token_text=""), INVALID, "token_text"),
    ("append: from_other false", app(token_id=None, from_other=False), INVALID, "from_other"),
    ("append: no choice", app(token_id=None), INVALID, "choice"),
    ("append: empty Other bucket", app(token_id=None, from_other=True, threshold=0.0), INVALID, "from_other"),
    ("append: threshold above 1", app(threshold=2.0), INVALID, "threshold"),
    ("append: temperature zero", app_params(temperature=0.0), INVALID, "params.temperature"),
    ("append: top_p above 1", app_params(top_p=2.0), INVALID, "params.top_p"),
    ("set an empty prompt", set_prompt(""), INVALID, "prompt"),
    ("set a prompt longer than the context", set_prompt(" a" * 200), INVALID, "prompt"),
]


def snapshot(sampler: RunningSampler, stub: Stub, sid: str) -> tuple[object, ...]:
    session = stub.GetSession(pb.GetSessionRequest(session_id=sid)).session
    shown = distribution(stub, sid, threshold=0.02, temperature=0.9)
    return (
        session,
        shown,
        sampler.engine.store.get(DEFAULT_TENANT, sid),
        len(sampler.models[LYCEUM_MODEL].extends),
    )


@pytest.mark.parametrize(
    ("case", "call", "code", "field"), BAD_SESSION_CALLS, ids=[c[0] for c in BAD_SESSION_CALLS]
)
def test_a_bad_request_names_its_field_and_changes_nothing(
    sampler: RunningSampler, sampler_stub: Stub, case: str, call: Call, code: grpc.StatusCode, field: str
) -> None:
    sid = create(sampler_stub, LYCEUM_MODEL).session_id
    append(sampler_stub, sid, token_id=5)
    before = snapshot(sampler, sampler_stub, sid)
    err = rpc_error(lambda: call(sampler_stub, sid), code)
    assert err.field == field, err
    after = snapshot(sampler, sampler_stub, sid)
    assert after[:2] == before[:2]
    assert after[2].version == before[2].version  # type: ignore[attr-defined]
    assert after[3] == before[3]  # no forward pass: the cache was neither extended nor rebuilt


@pytest.mark.parametrize(
    "call",
    [
        lambda stub: stub.GetSession(pb.GetSessionRequest(session_id="0" * 32)),
        lambda stub: distribution(stub, "0" * 32),
        lambda stub: append(stub, "0" * 32, token_id=1),
        lambda stub: stub.Undo(pb.UndoRequest(session_id="0" * 32)),
        lambda stub: stub.SetPrompt(pb.SetPromptRequest(session_id="0" * 32, prompt="x")),
        lambda stub: stub.DeleteSession(pb.DeleteSessionRequest(session_id="0" * 32)),
    ],
    ids=["get", "distribution", "append", "undo", "set_prompt", "delete"],
)
def test_an_unknown_session_is_not_found(sampler_stub: Stub, call: Callable[[Stub], object]) -> None:
    assert rpc_error(lambda: call(sampler_stub), NOT_FOUND).field == "session_id"


@pytest.mark.parametrize("session_id", ["", "has space", "x" * 65, "slash/es", "ünïcode"])
def test_a_malformed_session_id_is_invalid(sampler_stub: Stub, session_id: str) -> None:
    err = rpc_error(lambda: sampler_stub.GetSession(pb.GetSessionRequest(session_id=session_id)), INVALID)
    assert err.field == "session_id"


def test_create_session_validates_model_and_prompt(
    sampler: RunningSampler, sampler_stub: Stub, sampler_key_prefix: str
) -> None:
    err = rpc_error(lambda: create(sampler_stub, "no-such-model"), NOT_FOUND)
    assert err.field == "model"
    assert rpc_error(lambda: create(sampler_stub, LYCEUM_MODEL, ""), INVALID).field == "prompt"
    assert rpc_error(lambda: create(sampler_stub, LYCEUM_MODEL, " a" * 97), INVALID).field == "prompt"
    assert not sampler.engine.store.redis.keys(sampler_key_prefix + "*")  # type: ignore[attr-defined]


def test_a_prompt_as_long_as_the_context_has_a_distribution_but_no_room_to_append(
    sampler: RunningSampler, sampler_stub: Stub, tiny_lyceum_lm: CausalLM
) -> None:
    prompt = " a" * 96
    assert len(tiny_lyceum_lm.encode(prompt)) == 96
    session = create(sampler_stub, LYCEUM_MODEL, prompt)
    shown = distribution(sampler_stub, session.session_id)
    assert shown.context_len == 96 == session.max_context_len
    err = rpc_error(lambda: append(sampler_stub, session.session_id, token_id=1), INVALID)
    assert err.field == "session_id" and "full" in (err.message or "")
    assert distribution(sampler_stub, session.session_id) == shown


def test_max_prompt_tokens_caps_prompts(make_sampler: Callable[..., RunningSampler]) -> None:
    sampler = make_sampler(max_prompt_tokens=8)
    with tenant_channel(sampler.address) as channel:
        stub = sampler_pb2_grpc.SamplerServiceStub(channel)
        assert rpc_error(lambda: create(stub, LYCEUM_MODEL, PROMPT), INVALID).field == "prompt"
        assert create(stub, LYCEUM_MODEL, " a" * 8).context_len == 8


def generate(stub: Stub, **kw: object) -> list[pb.GenerateResponse]:
    kw.setdefault("model", HF_MODEL)
    kw.setdefault("prompt", "Hello")
    kw.setdefault("max_new_tokens", 4)
    return list(stub.Generate(pb.GenerateRequest(**kw)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "code", "field"),
    [
        ({"model": "nope"}, NOT_FOUND, "model"),
        ({"prompt": ""}, INVALID, "prompt"),
        ({"prompt": " a" * 300}, INVALID, "prompt"),
        ({"max_new_tokens": 0}, INVALID, "max_new_tokens"),
        ({"max_new_tokens": 4097}, INVALID, "max_new_tokens"),
        ({"strategy": pb.DECODING_STRATEGY_BEAM, "num_beams": 1}, INVALID, "num_beams"),
        ({"strategy": pb.DECODING_STRATEGY_BEAM, "num_beams": 17}, INVALID, "num_beams"),
        ({"strategy": 42}, INVALID, "strategy"),
        ({"stop": [""]}, INVALID, "stop"),
        ({"stop": ["x"] * 17}, INVALID, "stop"),
        ({"params": pb.SamplingParams(temperature=0.0)}, INVALID, "params.temperature"),
        ({"params": pb.SamplingParams(top_k=-2)}, INVALID, "params.top_k"),
    ],
    ids=lambda v: str(v) if not isinstance(v, dict) else ",".join(v),
)
def test_generate_validates_before_streaming(
    sampler_stub: Stub, kw: dict[str, object], code: grpc.StatusCode, field: str
) -> None:
    assert rpc_error(lambda: generate(sampler_stub, **kw), code).field == field


# --- malformed calls straight to the service: never UNKNOWN or INTERNAL -----------------------------------
SID = "0" * 32
EVERY_RPC: dict[str, Callable[[Stub], object]] = {
    "create": lambda stub: create(stub, LYCEUM_MODEL),
    "get": lambda stub: stub.GetSession(pb.GetSessionRequest(session_id=SID)),
    "set_prompt": lambda stub: stub.SetPrompt(pb.SetPromptRequest(session_id=SID, prompt="x")),
    "distribution": lambda stub: distribution(stub, SID),
    "append": lambda stub: append(stub, SID, token_id=1),
    "undo": lambda stub: stub.Undo(pb.UndoRequest(session_id=SID)),
    "delete": lambda stub: stub.DeleteSession(pb.DeleteSessionRequest(session_id=SID)),
    "generate": lambda stub: generate(stub),
    "list_models": lambda stub: stub.ListModels(pb.ListModelsRequest()),
}


@pytest.mark.parametrize("call", list(EVERY_RPC.values()), ids=list(EVERY_RPC))
def test_a_call_without_a_tenant_is_unauthenticated(
    sampler: RunningSampler, sampler_stub_for: SamplerStubFor, call: Callable[[Stub], object]
) -> None:
    err = rpc_error(lambda: call(sampler_stub_for(None)), grpc.StatusCode.UNAUTHENTICATED)
    assert err.field == "tenant"
    assert not sampler.engine.store.live_count(DEFAULT_TENANT)


@pytest.mark.parametrize("tenant", ["Upper", "a/b", "x" * 64, "-lead", "a:b"])
def test_a_malformed_tenant_is_invalid(sampler_stub_for: SamplerStubFor, tenant: str) -> None:
    for call in EVERY_RPC.values():
        rpc_error(lambda c=call: c(sampler_stub_for(tenant)), INVALID)


EMPTY_REQUESTS: dict[str, tuple[Callable[[Stub], object], str]] = {
    "create": (lambda stub: stub.CreateSession(pb.CreateSessionRequest()), "model"),
    "get": (lambda stub: stub.GetSession(pb.GetSessionRequest()), "session_id"),
    "set_prompt": (lambda stub: stub.SetPrompt(pb.SetPromptRequest()), "session_id"),
    "distribution": (lambda stub: stub.GetDistribution(pb.GetDistributionRequest()), "session_id"),
    "append": (lambda stub: stub.AppendToken(pb.AppendTokenRequest()), "choice"),
    "undo": (lambda stub: stub.Undo(pb.UndoRequest()), "session_id"),
    "delete": (lambda stub: stub.DeleteSession(pb.DeleteSessionRequest()), "session_id"),
    "generate": (lambda stub: list(stub.Generate(pb.GenerateRequest())), "max_new_tokens"),
}


@pytest.mark.parametrize(("call", "field"), list(EMPTY_REQUESTS.values()), ids=list(EMPTY_REQUESTS))
def test_an_empty_request_is_invalid(sampler_stub: Stub, call: Callable[[Stub], object], field: str) -> None:
    assert rpc_error(lambda: call(sampler_stub), INVALID).field == field


MALFORMED: dict[str, tuple[Callable[[Stub, str], object], str]] = {
    "create: model too long": (lambda stub, sid: create(stub, "m" * 1000), "model"),
    "create: malformed reference": (lambda stub, sid: create(stub, "Bad Name@x y"), "model"),
    "create: negative quota": (
        lambda stub, sid: create(stub, LYCEUM_MODEL, max_live_sessions=-1),
        "max_live_sessions",
    ),
    "generate: malformed reference": (lambda stub, sid: generate(stub, model="a@b@c"), "model"),
    "generate: empty model": (lambda stub, sid: generate(stub, model=""), "model"),
    "get: huge id": (
        lambda stub, sid: stub.GetSession(pb.GetSessionRequest(session_id="x" * 100_000)),
        "session_id",
    ),
    "append: huge token_text": (app(token_id=None, token_text="word " * 20_000), "token_text"),
    "append: token_id past int32 range": (app(token_id=2**31 - 1), "token_id"),
    "append: negative expected_context_len": (app(expected_context_len=-1), "expected_context_len"),
    "distribution: huge other_top_k": (dist(other_top_k=2**31 - 1), "other_top_k"),
    "distribution: top_k past the vocabulary": (dist(top_k=2**31 - 1, threshold=0.5), ""),
    "set_prompt: huge prompt": (set_prompt("a " * 100_000), "prompt"),
}


@pytest.mark.parametrize(("call", "field"), list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_requests_are_invalid(
    sampler_stub: Stub, call: Callable[[Stub, str], object], field: str
) -> None:
    sid = create(sampler_stub, LYCEUM_MODEL).session_id
    if field:
        assert rpc_error(lambda: call(sampler_stub, sid), INVALID).field == field
    else:
        call(sampler_stub, sid)  # valid after all: a top_k larger than the vocabulary keeps every token


def test_any_seed_is_accepted(sampler_stub: Stub) -> None:
    sid = create(sampler_stub, LYCEUM_MODEL).session_id
    for seed in (0, 2**63, 2**64 - 1):
        generate(sampler_stub, model=LYCEUM_MODEL, seed=seed)
        append(sampler_stub, sid, seed=seed, threshold=0.5, token_id=None, from_other=True)
