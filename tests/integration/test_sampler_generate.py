"""Generate over real gRPC, for both model kinds: greedy, seeded sampling and beam search stream tokens, then
one final message (no token) with the whole continuation and why it ended: EOS, a stop string or length."""

from __future__ import annotations

import math

import pytest
from fixtures.sampler import (
    EOS_PROMPT,
    EOS_SUFFIX,
    HF_MODEL,
    LYCEUM_MODEL,
    PROMPT,
    RunningSampler,
    Stub,
    append,
    create,
    ranked,
)

from lyceum_api.sampler.v1 import sampler_pb2 as pb

pytestmark = pytest.mark.integration

GREEDY, SAMPLE, BEAM = pb.DECODING_STRATEGY_GREEDY, pb.DECODING_STRATEGY_SAMPLE, pb.DECODING_STRATEGY_BEAM


@pytest.fixture(params=[LYCEUM_MODEL, HF_MODEL])
def model(request: pytest.FixtureRequest) -> str:
    return request.param


def generate(stub: Stub, model: str, **kw: object) -> tuple[list[pb.GenerateResponse], pb.GenerateResponse]:
    """The token messages and the final one."""
    kw.setdefault("prompt", PROMPT)
    kw.setdefault("max_new_tokens", 8)
    messages = list(stub.Generate(pb.GenerateRequest(model=model, **kw)))  # type: ignore[arg-type]
    *tokens, final = messages
    assert all(m.HasField("token") and not m.finish_reason for m in tokens)
    assert not final.HasField("token") and final.finish_reason in ("eos", "stop", "length")
    return tokens, final


def decoded(tokens: list[pb.GenerateResponse]) -> str:
    return b"".join(m.token.bytes for m in tokens).decode("utf-8", errors="replace")


@pytest.mark.parametrize("strategy", [GREEDY, SAMPLE, BEAM])
def test_generate_streams_tokens_then_the_whole_text(sampler_stub: Stub, model: str, strategy: int) -> None:
    tokens, final = generate(sampler_stub, model, strategy=strategy, seed=3, num_beams=3)
    assert final.finish_reason == "length" and len(tokens) == 8
    assert final.text == decoded(tokens)
    for m in tokens:
        assert 0 < m.probability <= 1 and final.text.startswith(m.text.rstrip("\ufffd"))


def test_greedy_follows_the_most_likely_token_of_each_distribution(sampler_stub: Stub, model: str) -> None:
    """Generate and a session agree on the model's distributions."""
    tokens, _ = generate(sampler_stub, model, strategy=GREEDY, max_new_tokens=5)
    sid = create(sampler_stub, model).session_id
    for m in tokens:
        top, p = ranked(sampler_stub, sid)[0]
        assert m.token.id == top and m.probability == pytest.approx(p, rel=1e-5)
        append(sampler_stub, sid, token_id=top)
    again, _ = generate(sampler_stub, model, strategy=GREEDY, max_new_tokens=5)
    assert again == tokens


def test_sampling_is_reproducible_with_a_seed(sampler_stub: Stub, model: str) -> None:
    params = pb.SamplingParams(temperature=1.5, top_p=0.95)
    runs = [generate(sampler_stub, model, strategy=SAMPLE, seed=s, params=params) for s in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert [m.token.id for m in runs[0][0]] != [m.token.id for m in runs[2][0]]


def test_unspecified_strategy_samples(sampler_stub: Stub) -> None:
    assert generate(sampler_stub, HF_MODEL, seed=5) == generate(
        sampler_stub, HF_MODEL, seed=5, strategy=SAMPLE
    )


def test_top_k_one_sampling_is_greedy(sampler_stub: Stub, model: str) -> None:
    greedy, _ = generate(sampler_stub, model, strategy=GREEDY)
    sampled, _ = generate(sampler_stub, model, strategy=SAMPLE, seed=1, params=pb.SamplingParams(top_k=1))
    assert [m.token.id for m in sampled] == [m.token.id for m in greedy]


def test_a_stop_string_ends_generation_before_it(sampler_stub: Stub, model: str) -> None:
    tokens, full = generate(sampler_stub, model, strategy=GREEDY, max_new_tokens=12)
    text = full.text
    stop = next(text[i : i + 2] for i in range(2, len(text) - 1) if "\ufffd" not in text[i : i + 2])
    cut = text.index(stop)
    stopped, final = generate(sampler_stub, model, strategy=GREEDY, max_new_tokens=12, stop=[stop, "never"])
    assert final.finish_reason == "stop" and final.text == text[:cut]
    assert len(stopped) < len(tokens)
    assert all(stop not in m.text for m in stopped)


def test_eos_ends_generation(sampler: RunningSampler, sampler_stub: Stub, model: str) -> None:
    """`<model>-eos` has as EOS a token greedy decoding picks: generation ends just before it, unshown."""
    plain, _ = generate(sampler_stub, model, prompt=EOS_PROMPT, strategy=GREEDY, max_new_tokens=16)
    tokens, final = generate(
        sampler_stub, model + EOS_SUFFIX, prompt=EOS_PROMPT, strategy=GREEDY, max_new_tokens=16
    )
    eos_id = sampler.models[model + EOS_SUFFIX].eos_id
    expected = [m.token.id for m in plain][: [m.token.id for m in plain].index(eos_id)]
    assert final.finish_reason == "eos" and [m.token.id for m in tokens] == expected and expected
    assert final.text == decoded(tokens)


def test_beam_search_prefers_likely_continuations(sampler_stub: Stub, model: str) -> None:
    greedy, _ = generate(sampler_stub, model, strategy=GREEDY, max_new_tokens=6)
    beam, final = generate(sampler_stub, model, strategy=BEAM, num_beams=4, max_new_tokens=6)
    assert final.finish_reason in ("length", "eos") and 1 <= len(beam) <= 6

    def mean_logprob(messages: list[pb.GenerateResponse]) -> float:
        return sum(math.log(m.probability) for m in messages) / len(messages)

    assert mean_logprob(beam) >= mean_logprob(greedy) - 1e-9


def test_generation_stops_at_the_end_of_the_context(sampler_stub: Stub) -> None:
    tokens, final = generate(sampler_stub, LYCEUM_MODEL, prompt=" a" * 94, strategy=GREEDY, max_new_tokens=10)
    assert final.finish_reason == "length" and len(tokens) == 3  # 94 + 3 tokens: the last is never fed


def test_a_cancelled_stream_leaves_the_server_serving(sampler_stub: Stub) -> None:
    stream = sampler_stub.Generate(
        pb.GenerateRequest(model=HF_MODEL, prompt=PROMPT, strategy=GREEDY, max_new_tokens=200)
    )
    assert next(stream).HasField("token")
    stream.cancel()
    tokens, final = generate(sampler_stub, HF_MODEL, strategy=GREEDY, max_new_tokens=3)
    assert len(tokens) == 3 and final.finish_reason == "length"
