"""The sampler's session RPCs against a real server on a real port with sessions in real Redis, for both model
kinds: what each call returns, the threshold/Other semantics of distributions, that an appended token is
recorded as it was shown, undo, byte-form tokens, and what work each call costs."""

from __future__ import annotations

import math

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
    assert_same_distribution,
    create,
    distribution,
    ranked,
    threshold_after,
)
from fixtures.servers import rpc_error
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from lyceum_api.sampler.v1 import sampler_pb2 as pb
from lyceum_ml.causal_lm import CausalLM

pytestmark = pytest.mark.integration

SERVICE = "lyceum.sampler.v1.SamplerService"
MODELS = [LYCEUM_MODEL, HF_MODEL]
CONTEXT = {LYCEUM_MODEL: 96, HF_MODEL: 256}
VOCAB = {LYCEUM_MODEL: 384, HF_MODEL: 50257}


@pytest.fixture(params=MODELS)
def model(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def lm(model: str, request: pytest.FixtureRequest) -> CausalLM:
    """A local copy of the served model, to check token ids and bytes against."""
    return request.getfixturevalue("tiny_lyceum_lm" if model == LYCEUM_MODEL else "tiny_hf_gpt2")


# --- CreateSession / GetSession / SetPrompt / DeleteSession ----------------------------------------------
def test_create_session_with_a_prompt(sampler_stub: Stub, model: str, lm: CausalLM) -> None:
    session = create(sampler_stub, model)
    assert len(session.session_id) == 32 and session.model == model
    assert session.prompt == PROMPT and list(session.prompt_token_ids) == lm.encode(PROMPT)
    assert session.text == PROMPT and not session.generated
    assert session.context_len == len(lm.encode(PROMPT)) and session.max_context_len == CONTEXT[model]
    got = sampler_stub.GetSession(pb.GetSessionRequest(session_id=session.session_id)).session
    assert got == session


def test_a_session_without_a_prompt_needs_one_before_a_distribution(sampler_stub: Stub) -> None:
    session = create(sampler_stub, prompt=None)
    assert session.prompt == "" and session.context_len == 0
    err = rpc_error(
        lambda: distribution(sampler_stub, session.session_id), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert err.field == "prompt"
    sampler_stub.SetPrompt(pb.SetPromptRequest(session_id=session.session_id, prompt=PROMPT))
    assert_same_distribution(
        distribution(sampler_stub, session.session_id),
        distribution(sampler_stub, create(sampler_stub).session_id),
    )


def test_set_prompt_clears_the_generated_tokens(sampler_stub: Stub, model: str) -> None:
    sid = create(sampler_stub, model).session_id
    append(sampler_stub, sid, token_id=5)
    session = sampler_stub.SetPrompt(pb.SetPromptRequest(session_id=sid, prompt="The dog")).session
    assert session.prompt == "The dog" and session.text == "The dog" and not session.generated
    fresh = create(sampler_stub, model, "The dog").session_id
    assert_same_distribution(distribution(sampler_stub, sid), distribution(sampler_stub, fresh))


def test_set_prompt_reuses_the_cached_common_prefix(sampler: RunningSampler, sampler_stub: Stub) -> None:
    sid = create(sampler_stub, HF_MODEL, "Once upon a time").session_id
    lm = sampler.models[HF_MODEL]
    lm.extends.clear()
    sampler_stub.SetPrompt(pb.SetPromptRequest(session_id=sid, prompt="Once upon a time there was"))
    assert lm.extends == [2]  # " there", " was": the first four tokens stay cached
    fresh = create(sampler_stub, HF_MODEL, "Once upon a time there was").session_id
    assert_same_distribution(distribution(sampler_stub, sid), distribution(sampler_stub, fresh))


def test_delete_then_every_call_is_not_found(sampler_stub: Stub) -> None:
    sid = create(sampler_stub).session_id
    assert sampler_stub.DeleteSession(pb.DeleteSessionRequest(session_id=sid)).session_id == sid
    calls = [
        lambda: sampler_stub.GetSession(pb.GetSessionRequest(session_id=sid)),
        lambda: distribution(sampler_stub, sid),
        lambda: append(sampler_stub, sid, token_id=1),
        lambda: sampler_stub.Undo(pb.UndoRequest(session_id=sid)),
        lambda: sampler_stub.SetPrompt(pb.SetPromptRequest(session_id=sid, prompt="x")),
        lambda: sampler_stub.DeleteSession(pb.DeleteSessionRequest(session_id=sid)),
    ]
    for call in calls:
        assert rpc_error(call, grpc.StatusCode.NOT_FOUND).field == "session_id"


# --- GetDistribution -------------------------------------------------------------------------------------
@pytest.mark.parametrize("threshold", [0.0, 1e-5, 1e-3, 0.01, 0.05, 0.5, 1.0])
def test_distribution_sums_to_one_split_at_the_threshold(
    sampler_stub: Stub, model: str, threshold: float
) -> None:
    sid = create(sampler_stub, model).session_id
    d = distribution(sampler_stub, sid, threshold=threshold)
    above = [tp.probability for tp in d.above]
    assert abs(sum(above) + d.other.probability - 1) < 1e-5
    assert all(p >= threshold for p in above) and above == sorted(above, reverse=True)
    assert all(tp.probability < threshold for tp in d.other.top)
    assert len(d.other.top) == min(10, d.other.count)
    assert len(above) + d.other.count == VOCAB[model]  # every token has p > 0 without top-k/top-p
    assert d.threshold == threshold and d.context_len == len(create(sampler_stub, model).prompt_token_ids)
    for tp in [*d.above, *d.other.top]:
        assert tp.logprob == pytest.approx(math.log(tp.probability))


def test_threshold_zero_shows_everything_and_one_almost_nothing(sampler_stub: Stub) -> None:
    sid = create(sampler_stub).session_id
    everything = distribution(sampler_stub, sid, threshold=0.0)
    assert len(everything.above) == VOCAB[LYCEUM_MODEL]
    assert (everything.other.count, everything.other.probability, len(everything.other.top)) == (0, 0.0, 0)
    nothing = distribution(sampler_stub, sid, threshold=1.0)
    assert not nothing.above and nothing.other.count == VOCAB[LYCEUM_MODEL]
    assert nothing.other.probability == pytest.approx(1.0, abs=1e-9)


def test_the_other_bucket_holds_exactly_the_tokens_below_the_threshold(
    sampler_stub: Stub, model: str
) -> None:
    sid = create(sampler_stub, model).session_id
    full = ranked(sampler_stub, sid)
    threshold = threshold_after(sampler_stub, sid, 5)
    d = distribution(sampler_stub, sid, threshold=threshold, other_top_k=7)
    assert [(tp.token.id, tp.probability) for tp in d.above] == full[:5]
    assert [(tp.token.id, tp.probability) for tp in d.other.top] == full[5:12]
    assert d.other.count == len(full) - 5
    assert d.other.probability == pytest.approx(sum(p for _, p in full[5:]), abs=1e-9)


@pytest.mark.parametrize("k", [0, 1, 3, 1000])
def test_other_top_k(sampler_stub: Stub, k: int) -> None:
    sid = create(sampler_stub).session_id
    d = distribution(sampler_stub, sid, threshold=0.02, other_top_k=k)
    assert len(d.other.top) == min(k, d.other.count)
    shown = [tp.probability for tp in d.other.top]
    assert shown == sorted(shown, reverse=True)


def test_defaults_are_threshold_001_and_ten_other_tokens(sampler_stub: Stub) -> None:
    sid = create(sampler_stub).session_id
    d = distribution(sampler_stub, sid)
    assert d.threshold == 0.01 and len(d.other.top) == min(10, d.other.count)
    assert d == distribution(sampler_stub, sid, threshold=0.01, other_top_k=10)


def test_sampling_params_shape_the_distribution(sampler_stub: Stub) -> None:
    sid = create(sampler_stub).session_id
    plain = ranked(sampler_stub, sid)
    cold = ranked(sampler_stub, sid, temperature=0.5)
    assert cold[0][0] == plain[0][0] and cold[0][1] > plain[0][1]
    assert [i for i, _ in ranked(sampler_stub, sid, top_k=5)] == [i for i, _ in plain[:5]]
    nucleus = ranked(sampler_stub, sid, top_p=0.5)
    assert 0 < len(nucleus) < len(plain) and sum(p for _, p in nucleus) == pytest.approx(1.0)
    prompt_ids = set(create(sampler_stub).prompt_token_ids)
    penalised = dict(ranked(sampler_stub, sid, repetition_penalty=1.5))
    before = dict(plain)
    lowered = [i for i in prompt_ids if penalised[i] / before[i] < 1]
    assert len(lowered) >= len(prompt_ids) - 1  # penalised relative to the rest (renormalisation aside)


# --- AppendToken -----------------------------------------------------------------------------------------
def test_an_appended_token_is_recorded_as_the_distribution_showed_it(sampler_stub: Stub, model: str) -> None:
    """Probability, category and rank come from the request's threshold and params, never from defaults."""
    sid = create(sampler_stub, model).session_id
    params = {"temperature": 0.7}
    threshold = threshold_after(sampler_stub, sid, 4, **params)
    shown = distribution(sampler_stub, sid, threshold=threshold, **params)
    assert len(shown.above) >= 2 and shown.other.top
    second = shown.above[1]
    at_defaults = dict(ranked(sampler_stub, sid))
    appended = append(
        sampler_stub, sid, threshold=threshold, params=params, token_id=second.token.id
    ).appended
    assert appended.token == second.token and appended.probability == second.probability
    assert (appended.category, appended.rank) == (pb.CATEGORY_ABOVE, 1)
    assert abs(appended.probability - at_defaults[second.token.id]) > 1e-6

    shown = distribution(sampler_stub, sid, threshold=threshold, **params)
    low = shown.other.top[0]
    response = append(sampler_stub, sid, threshold=threshold, params=params, token_id=low.token.id)
    assert response.appended.probability == low.probability
    assert (response.appended.category, response.appended.rank) == (pb.CATEGORY_OTHER, len(shown.above))
    assert [g.token.id for g in response.session.generated] == [second.token.id, low.token.id]
    assert response.session.context_len == len(response.session.prompt_token_ids) + 2


def test_append_by_text(sampler_stub: Stub, model: str, lm: CausalLM) -> None:
    sid = create(sampler_stub, model).session_id
    d = distribution(sampler_stub, sid, threshold=0.0, other_top_k=0)
    shown = next(t for t in d.above if t.token.is_valid_utf8 and lm.encode(t.token.text) == [t.token.id])
    response = append(sampler_stub, sid, threshold=0.0, token_text=shown.token.text)
    assert response.appended.token == shown.token and response.appended.probability == shown.probability
    assert response.session.text == PROMPT + shown.token.text


def test_from_other_with_a_seed_is_reproducible(sampler_stub: Stub, model: str) -> None:
    threshold = 0.02 if model == LYCEUM_MODEL else 2e-5
    drawn = []
    for _ in range(2):
        sid = create(sampler_stub, model).session_id
        shown = distribution(sampler_stub, sid, threshold=threshold)
        appended = append(sampler_stub, sid, threshold=threshold, seed=1234, from_other=True).appended
        assert appended.category == pb.CATEGORY_OTHER and appended.probability < threshold
        assert appended.rank >= len(shown.above)
        drawn.append(appended.token.id)
    assert drawn[0] == drawn[1]
    sid = create(sampler_stub, model).session_id
    draws = [append(sampler_stub, sid, threshold=threshold, seed=s, from_other=True) for s in range(6)]
    seeds = {r.appended.token.id for r in draws}
    assert len(seeds) > 1


def test_from_other_without_a_seed_follows_the_sessions_stream(sampler_stub: Stub) -> None:
    """Undo then redraw gives a new draw (the stream is never rewound)."""
    sid = create(sampler_stub, HF_MODEL).session_id
    first = append(sampler_stub, sid, threshold=1e-4, from_other=True).appended
    assert first.category == pb.CATEGORY_OTHER
    sampler_stub.Undo(pb.UndoRequest(session_id=sid))
    redraws = {append(sampler_stub, sid, threshold=1e-4, from_other=True).appended.token.id}
    for _ in range(3):
        sampler_stub.Undo(pb.UndoRequest(session_id=sid))
        redraws.add(append(sampler_stub, sid, threshold=1e-4, from_other=True).appended.token.id)
    assert redraws - {first.token.id}


def test_an_append_changes_the_next_distribution(sampler_stub: Stub) -> None:
    sid = create(sampler_stub).session_id
    before = distribution(sampler_stub, sid)
    append(sampler_stub, sid, token_id=before.above[0].token.id)
    after = distribution(sampler_stub, sid)
    assert after.context_len == before.context_len + 1 and after.above != before.above


# --- Undo ------------------------------------------------------------------------------------------------
def test_undo_removes_the_last_generated_token(sampler_stub: Stub, model: str) -> None:
    sid = create(sampler_stub, model).session_id
    append(sampler_stub, sid, token_id=11)
    before = distribution(sampler_stub, sid, threshold=1e-4)
    second = append(sampler_stub, sid, threshold=1e-4, token_id=ranked(sampler_stub, sid)[2][0])
    response = sampler_stub.Undo(pb.UndoRequest(session_id=sid))
    assert response.removed == second.appended
    assert [g.token.id for g in response.session.generated] == [11]
    assert_same_distribution(distribution(sampler_stub, sid, threshold=1e-4), before)


def test_undo_with_nothing_generated_is_failed_precondition_and_keeps_the_prompt(sampler_stub: Stub) -> None:
    session = create(sampler_stub)
    append(sampler_stub, session.session_id, token_id=3)
    sampler_stub.Undo(pb.UndoRequest(session_id=session.session_id))
    before = distribution(sampler_stub, session.session_id)
    err = rpc_error(
        lambda: sampler_stub.Undo(pb.UndoRequest(session_id=session.session_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert err.field == "session_id"
    got = sampler_stub.GetSession(pb.GetSessionRequest(session_id=session.session_id)).session
    assert got.prompt == PROMPT and got.prompt_token_ids == session.prompt_token_ids and not got.generated
    assert distribution(sampler_stub, session.session_id) == before


# --- byte-form tokens ------------------------------------------------------------------------------------
def test_a_partial_utf8_token_is_shown_as_bytes(sampler_stub: Stub) -> None:
    """GPT-2 spells '’' (E2 80 99) as two tokens: 447 (E2 80) and 247 (99)."""
    sid = create(sampler_stub, HF_MODEL, "It").session_id
    d = distribution(sampler_stub, sid, threshold=0.0)
    shown = next(tp.token for tp in d.above if tp.token.id == 447)
    assert (shown.text, shown.bytes, shown.is_valid_utf8) == ("", b"\xe2\x80", False)
    first = append(sampler_stub, sid, token_id=447)
    assert first.appended.token == shown and first.session.text == "It\ufffd"
    second = append(sampler_stub, sid, token_id=247)
    assert (second.appended.token.bytes, second.appended.token.is_valid_utf8) == (b"\x99", False)
    assert second.session.text == "It\u2019"


# --- what each call costs --------------------------------------------------------------------------------
def test_forward_passes_per_call(sampler: RunningSampler, sampler_stub: Stub, model: str) -> None:
    """Create: one pass over the prompt; distribution: none; append: one token; undo: one token."""
    session = create(sampler_stub, model)
    lm = sampler.models[model]
    assert lm.extends == [len(session.prompt_token_ids)]
    distribution(sampler_stub, session.session_id)
    assert lm.extends == [len(session.prompt_token_ids)]
    lm.extends.clear()
    for token_id in (7, 8, 9):
        append(sampler_stub, session.session_id, token_id=token_id)
        distribution(sampler_stub, session.session_id)
    assert lm.extends == [1, 1, 1]
    sampler_stub.Undo(pb.UndoRequest(session_id=session.session_id))
    distribution(sampler_stub, session.session_id)
    assert lm.extends == [1, 1, 1, 1]


# --- ListModels, health ----------------------------------------------------------------------------------
def test_list_models_reports_what_is_loaded(sampler_stub: Stub) -> None:
    models = {m.name: m for m in sampler_stub.ListModels(pb.ListModelsRequest()).models}
    assert set(models) == {LYCEUM_MODEL, HF_MODEL, f"{LYCEUM_MODEL}-eos", f"{HF_MODEL}-eos"}
    assert not any(m.loaded for m in models.values())
    create(sampler_stub, LYCEUM_MODEL)
    create(sampler_stub, HF_MODEL)
    models = {m.name: m for m in sampler_stub.ListModels(pb.ListModelsRequest()).models}
    assert models[LYCEUM_MODEL] == pb.ModelDescription(
        name=LYCEUM_MODEL, kind="lyceum-lm", vocab_size=384, max_context_len=96, loaded=True, gated=True
    )
    assert models[HF_MODEL] == pb.ModelDescription(
        name=HF_MODEL, kind="hf-causal-lm", vocab_size=50257, max_context_len=256, loaded=True
    )
    assert not models[f"{HF_MODEL}-eos"].loaded


def test_health_reports_serving(sampler: RunningSampler) -> None:
    with grpc.insecure_channel(sampler.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE):
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING, service


def test_reflection_lists_the_service_without_a_tenant(sampler: RunningSampler) -> None:
    with grpc.insecure_channel(sampler.address) as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert SERVICE in names


# --- tenants ---------------------------------------------------------------------------------------------
def test_another_tenants_session_is_not_found_like_a_missing_one(sampler_stub_for: SamplerStubFor) -> None:
    acme, globex = sampler_stub_for("acme"), sampler_stub_for("globex")
    sid = create(acme).session_id
    append(acme, sid, token_id=5)
    before = acme.GetSession(pb.GetSessionRequest(session_id=sid)).session
    calls = {
        "get": lambda stub, i: stub.GetSession(pb.GetSessionRequest(session_id=i)),
        "set_prompt": lambda stub, i: stub.SetPrompt(pb.SetPromptRequest(session_id=i, prompt="Hi")),
        "distribution": lambda stub, i: distribution(stub, i, record_shown=True),
        "append": lambda stub, i: append(stub, i, token_id=5),
        "undo": lambda stub, i: stub.Undo(pb.UndoRequest(session_id=i)),
        "delete": lambda stub, i: stub.DeleteSession(pb.DeleteSessionRequest(session_id=i)),
    }
    missing_id = "f" * 32
    for name, call in calls.items():
        theirs = rpc_error(lambda c=call: c(globex, sid), grpc.StatusCode.NOT_FOUND)
        missing = rpc_error(lambda c=call: c(globex, missing_id), grpc.StatusCode.NOT_FOUND)
        assert theirs.field == missing.field == "session_id", name
        assert theirs.message.replace(sid, "X") == missing.message.replace(missing_id, "X"), name
    assert acme.GetSession(pb.GetSessionRequest(session_id=sid)).session == before


def test_the_live_session_quota_is_per_tenant(
    sampler: RunningSampler, sampler_stub_for: SamplerStubFor
) -> None:
    acme, globex = sampler_stub_for("acme"), sampler_stub_for("globex")
    first = create(acme, max_live_sessions=2).session_id
    create(acme, prompt=None, max_live_sessions=2)
    err = rpc_error(lambda: create(acme, max_live_sessions=2), grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert err.field == "max_sessions"
    create(globex, max_live_sessions=1)  # globex counts its own
    create(acme)  # 0 = no limit
    assert sampler.engine.store.live_count("acme") == 3
    acme.DeleteSession(pb.DeleteSessionRequest(session_id=first))
    rpc_error(lambda: create(acme, max_live_sessions=2), grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert create(acme, max_live_sessions=3).session_id


def test_the_session_keeps_its_times_and_the_settings_last_shown(sampler_stub: Stub) -> None:
    session = create(sampler_stub)
    assert session.created_at == session.updated_at and session.created_at.seconds > 0
    assert not session.HasField("last_shown")
    distribution(sampler_stub, session.session_id, threshold=0.05, temperature=0.7)  # not recorded
    got = sampler_stub.GetSession(pb.GetSessionRequest(session_id=session.session_id)).session
    assert got == session
    distribution(sampler_stub, session.session_id, threshold=0.05, temperature=0.7, record_shown=True)
    shown = sampler_stub.GetSession(pb.GetSessionRequest(session_id=session.session_id)).session.last_shown
    assert shown.threshold == 0.05
    assert (shown.params.temperature, shown.params.top_k, shown.params.top_p) == (0.7, 0, 1.0)
    assert shown.shown_at.ToNanoseconds() >= session.created_at.ToNanoseconds()

    drawn = append(sampler_stub, session.session_id, threshold=0.05, from_other=True).appended
    chosen = append(sampler_stub, session.session_id, token_id=5)
    assert drawn.from_other and not chosen.appended.from_other
    assert drawn.chosen_at.ToNanoseconds() <= chosen.appended.chosen_at.ToNanoseconds()
    after = chosen.session
    assert after.created_at == session.created_at and after.updated_at == chosen.appended.chosen_at
    assert [g.from_other for g in after.generated] == [True, False]
    assert after.last_shown == shown  # appends keep it; a new distribution shown replaces it
