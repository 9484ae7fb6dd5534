"""Generation over a CausalLM: greedy is the argmax chain, one-beam search is greedy, wider beams find better
sequences, seeded sampling repeats, and EOS, stop strings, max_new_tokens and the context limit end it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch

from lyceum_ml.causal_lm import CausalLM, Feed
from lyceum_ml.engine import GenStep, generate
from lyceum_ml.sampling import SamplingParams

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/fixtures/lm_models.py

PIECES = [b"<eos>", b"a", b"b", b"c", b" ", b"\xc3", b"\xa9", b"x"]  # ids 5 + 6 spell "é"
EOS = 0


class ToyLM:
    """A CausalLM over PIECES whose next-token logits are a function of the context (the cache is the list
    of token ids)."""

    kind, name, vocab_size, eos_id = "toy", "toy", len(PIECES), EOS
    gated, shares_prefix = False, False

    def __init__(self, next_logits: Callable[[list[int]], list[float]], max_context: int = 64) -> None:
        self.next_logits, self.max_context = next_logits, max_context

    def new_cache(self) -> list[int]:
        return []

    def cache_len(self, cache: list[int]) -> int:
        return len(cache)

    def cache_nbytes(self, cache: list[int]) -> int:
        return 8 * len(cache)

    def extend(self, cache: list[int], token_ids: list[int]) -> torch.Tensor:
        if len(cache) + len(token_ids) > self.max_context:
            raise ValueError(f"exceeds max_context={self.max_context}")
        cache += token_ids
        return torch.tensor(self.next_logits(cache), dtype=torch.float32)

    def forward_rows(self, feeds: Sequence[Feed]) -> list[torch.Tensor]:
        return [self.extend(f.cache, list(f.token_ids)) for f in feeds]

    def copy_cache(self, cache: list[int]) -> list[int]:
        return list(cache)

    def truncate(self, cache: list[int], length: int) -> None:
        del cache[length:]

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, token_ids: list[int]) -> str:
        return b"".join(PIECES[i] for i in token_ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        return PIECES[token_id]


PROMPT = [1, 4]  # "a "


def scripted(script: list[int]) -> ToyLM:
    """Strongly prefers script[i] as the i-th generated token (then "x" forever)."""

    def next_logits(ctx: list[int]) -> list[float]:
        i = len(ctx) - len(PROMPT)
        logits = [0.0] * len(PIECES)
        logits[script[i] if i < len(script) else 7] = 8.0
        return logits

    return ToyLM(next_logits)


def run(lm: CausalLM, **kwargs: object) -> tuple[list[GenStep], GenStep]:
    steps = list(generate(lm, kwargs.pop("prompt", PROMPT), **kwargs))  # type: ignore[arg-type]
    assert steps[-1].token_id is None and all(s.token_id is not None for s in steps[:-1])
    assert all(not s.finish_reason for s in steps[:-1])
    return steps[:-1], steps[-1]


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_eos_stops_without_being_yielded(strategy: str) -> None:
    tokens, end = run(scripted([2, 3, EOS, 1]), strategy=strategy, max_new_tokens=10)
    assert [t.token_id for t in tokens] == [2, 3]
    assert (end.text_so_far, end.finish_reason) == ("bc", "eos")
    assert all(0.9 < t.probability <= 1 for t in tokens)


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_max_new_tokens_stops_by_length(strategy: str) -> None:
    tokens, end = run(scripted([2, 3, 1, 2]), strategy=strategy, max_new_tokens=3)
    assert [t.token_id for t in tokens] == [2, 3, 1]
    assert (end.text_so_far, end.finish_reason) == ("bca", "length")


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_stop_string_cuts_the_text_and_is_never_shown(strategy: str) -> None:
    tokens, end = run(scripted([2, 1, 2, 3, 1]), strategy=strategy, max_new_tokens=10, stop=["xyz", "bc"])
    assert [t.token_id for t in tokens] == [2, 1, 2, 3]  # the token completing "bc" is the last one
    assert [t.text_so_far for t in tokens] == ["", "ba", "ba", "ba"]  # a possible stop's start is held back
    assert (end.text_so_far, end.finish_reason) == ("ba", "stop")


def test_partial_utf8_waits_for_its_next_bytes() -> None:
    tokens, end = run(scripted([5, 6, 1]), strategy="greedy", max_new_tokens=3)
    assert [t.text_so_far for t in tokens] == ["", "é", "éa"]
    tokens, end = run(scripted([1, 5]), strategy="greedy", max_new_tokens=2)
    assert end.text_so_far == "a\ufffd"  # a dangling byte becomes U+FFFD only at the end


def test_context_limit_ends_by_length() -> None:
    lm = scripted([1, 2, 3, 1, 2, 3])
    lm.max_context = 4
    tokens, end = run(lm, strategy="greedy", max_new_tokens=10)
    assert [t.token_id for t in tokens] == [1, 2, 3]  # the last one predicted from a full context
    assert end.finish_reason == "length"


def test_beam_search_finds_what_greedy_misses() -> None:
    """First token: "a" 0.6 vs "b" 0.4. After "a" every token is equally likely; after "b", "c" has 0.9."""

    def next_logits(ctx: list[int]) -> list[float]:
        n = len(ctx) - len(PROMPT)
        p = [1e-9] * len(PIECES)
        if n == 0:
            p[1], p[2] = 0.6, 0.4
        elif n == 1 and ctx[-1] == 2:
            p[3] = 0.9
            p[1] = p[7] = 0.05
        else:
            p[1:] = [1 / 7] * 7
        return torch.tensor(p).log().tolist()

    lm = ToyLM(next_logits)
    greedy, _ = run(lm, strategy="greedy", max_new_tokens=2)
    beam, end = run(lm, strategy="beam", num_beams=2, max_new_tokens=2)
    assert [t.token_id for t in greedy][0] == 1
    assert [t.token_id for t in beam] == [2, 3] and end.finish_reason == "length"
    assert [t.probability for t in beam] == pytest.approx([0.4, 0.9])
    one_beam, _ = run(lm, strategy="beam", num_beams=1, max_new_tokens=2)
    assert [t.token_id for t in one_beam] == [t.token_id for t in greedy]


def test_generate_rejects_bad_arguments() -> None:
    lm = scripted([1])
    with pytest.raises(ValueError, match="strategy"):
        run(lm, strategy="nucleus")
    with pytest.raises(ValueError, match="max_new_tokens"):
        run(lm, max_new_tokens=0)
    with pytest.raises(ValueError, match="top_p"):
        run(lm, params=SamplingParams(top_p=0))
    with pytest.raises(ValueError, match="num_beams"):
        run(lm, strategy="beam", num_beams=0)
    with pytest.raises(ValueError, match="empty"):
        run(lm, prompt=[])


# --- over the real adapters -------------------------------------------------------------------------------


def argmax_chain(lm: CausalLM, prompt: list[int], n: int, params: SamplingParams) -> list[int]:
    """Greedy by brute force: a fresh full forward over the whole context for every token."""
    from lyceum_ml.sampling import shape

    ids = list(prompt)
    for _ in range(n):
        logits = lm.extend(lm.new_cache(), ids)
        ids.append(int(torch.argmax(shape(logits, params, ids))))
    return ids[len(prompt) :]


@pytest.mark.parametrize("params", [SamplingParams(), SamplingParams(repetition_penalty=1.3, top_k=20)])
def test_greedy_is_the_argmax_chain(causal_lm: CausalLM, params: SamplingParams) -> None:
    prompt = causal_lm.encode("Once upon a time")
    tokens, end = run(causal_lm, prompt=prompt, strategy="greedy", params=params, max_new_tokens=12)
    ids = [t.token_id for t in tokens]
    if end.finish_reason == "eos":  # possible with a random model: the chain then continues with EOS
        assert argmax_chain(causal_lm, prompt, len(ids) + 1, params) == [*ids, causal_lm.eos_id]
    else:
        assert end.finish_reason == "length" and len(ids) == 12
        assert argmax_chain(causal_lm, prompt, 12, params) == ids
    assert end.text_so_far == causal_lm.decode(ids)


def test_one_beam_is_greedy(causal_lm: CausalLM) -> None:
    prompt = causal_lm.encode("The little dog")
    greedy, g_end = run(causal_lm, prompt=prompt, strategy="greedy", max_new_tokens=10)
    beam, b_end = run(causal_lm, prompt=prompt, strategy="beam", num_beams=1, max_new_tokens=10)
    assert [(t.token_id, t.text_so_far) for t in beam] == [(t.token_id, t.text_so_far) for t in greedy]
    assert [t.probability for t in beam] == pytest.approx([t.probability for t in greedy])
    assert (b_end.text_so_far, b_end.finish_reason) == (g_end.text_so_far, g_end.finish_reason)


def test_wide_beam_runs_over_real_caches(causal_lm: CausalLM) -> None:
    prompt = causal_lm.encode("The little dog")
    tokens, end = run(causal_lm, prompt=prompt, strategy="beam", num_beams=4, max_new_tokens=8)
    assert 1 <= len(tokens) <= 8 and end.finish_reason in ("eos", "length")
    assert end.text_so_far == causal_lm.decode([t.token_id for t in tokens])
    # each token's probability is the model's, given the hypothesis so far
    ids = list(prompt)
    for t in tokens:
        probs = torch.softmax(causal_lm.extend(causal_lm.new_cache(), ids).double(), 0)
        assert t.probability == pytest.approx(float(probs[t.token_id]), abs=1e-5)
        ids.append(t.token_id)


def test_seeded_sampling_repeats(causal_lm: CausalLM) -> None:
    prompt = causal_lm.encode("Once upon a time")
    params = SamplingParams(temperature=1.5)

    def sample(seed: int) -> list[int | None]:
        return [s.token_id for s in generate(causal_lm, prompt, "sample", params, 16, seed=seed)]

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


def test_stop_string_on_a_real_model(tiny_hf_gpt2: CausalLM) -> None:
    prompt = tiny_hf_gpt2.encode("Hello")
    _, free = run(tiny_hf_gpt2, prompt=prompt, strategy="greedy", max_new_tokens=20)
    text = free.text_so_far
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    assert len(stop) == 3
    tokens, end = run(tiny_hf_gpt2, prompt=prompt, strategy="greedy", max_new_tokens=20, stop=[stop])
    assert (end.text_so_far, end.finish_reason) == (text[: text.find(stop)], "stop")
    assert all(stop not in t.text_so_far for t in tokens)
