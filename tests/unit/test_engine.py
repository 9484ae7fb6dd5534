"""The batched engine: a row's tokens and log-probs do not depend on its batch mates, rows join and leave
between steps, prompts are chunked under the step budget, a slow consumer pauses only its own row, a
cancelled row is freed at once, the step hook can choose, gate signals reach the model's gates, mixed-adapter
batches equal each adapter alone, and beam search shares the prompt's cache."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model

from lyceum_ml.adapters import AdapterWeights, read_adapter
from lyceum_ml.causal_lm import CausalLM, Feed
from lyceum_ml.causal_lm_impl import load_causal_lm
from lyceum_ml.engine import Engine, Finish, Request, TokenEvent, generate
from lyceum_ml.lm.checkpoint import load_lm, save_lm
from lyceum_ml.sampling import SamplingParams

LORA_TARGETS = ["q_proj", "kv_proj", "o_proj", "up", "down"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/fixtures/lm_models.py


@pytest.fixture(scope="module")
def gated_lm_dir(tiny_lyceum_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny LM with gates that do something (a fresh gate is exactly 1)."""
    loaded = load_lm(tiny_lyceum_lm_dir)
    torch.manual_seed(1)
    for block in loaded.model.blocks:
        for gate in (block.attn_gate, block.mlp_gate):
            torch.nn.init.normal_(gate.out.weight, std=1.0)
    return save_lm(tmp_path_factory.mktemp("gated") / "lm", loaded.model, loaded.tokenizer)


@pytest.fixture(scope="module")
def adapter_dirs(tiny_lyceum_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two LoRA adapters of the tiny LM in the PEFT layout, with non-zero B (they change the outputs)."""
    dirs = []
    for seed in range(2):
        model = load_lm(tiny_lyceum_lm_dir).model
        peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS))
        g = torch.Generator().manual_seed(seed)
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.data.normal_(0, 0.3, generator=g)
        path = tmp_path_factory.mktemp("adapter") / f"a{seed}"
        peft_model.save_pretrained(path)
        dirs.append(path)
    return dirs


def lm_of(path: Path) -> CausalLM:
    return load_causal_lm(path)


def drain(engine: Engine, streams: list) -> list[list]:
    """Steps a driven engine until every stream has finished; each stream's events."""
    out: list[list] = [[] for _ in streams]
    while not all(o and isinstance(o[-1], Finish) for o in out):
        engine.step()
        for o, s in zip(out, streams, strict=True):
            o.extend(s.poll())
    return out


def request(prompt: list[int], seed: int = 0, n: int = 12, **kwargs: object) -> Request:
    return Request(tuple(prompt), n, SamplingParams(temperature=0.9), seed=seed, **kwargs)


PROMPTS = [
    [5, 9, 14, 20],
    [33],
    [40, 41, 42, 43, 44, 45, 46],
    [7, 7],
    [100, 3, 9],
    [60] * 12,
    [2, 4],
    [11, 90],
]


def test_a_row_does_not_depend_on_its_batch_mates(tiny_lyceum_lm: CausalLM) -> None:
    alone_engine = Engine(tiny_lyceum_lm)
    [alone] = drain(alone_engine, [alone_engine.submit(request(PROMPTS[0], seed=7))])
    engine = Engine(tiny_lyceum_lm)
    others = [
        Request(tuple(p), 10 + i, SamplingParams(temperature=0.5 + i / 10, top_k=i * 3), seed=i)
        for i, p in enumerate(PROMPTS[1:])
    ]
    streams = [engine.submit(r) for r in others[:3]]
    engine.step()  # the row joins a batch already under way
    streams.append(engine.submit(request(PROMPTS[0], seed=7)))
    streams += [engine.submit(r) for r in others[3:]]
    together = drain(engine, streams)[3]
    assert [e.token_id for e in together[:-1]] == [e.token_id for e in alone[:-1]]
    for a, b in zip(alone[:-1], together[:-1], strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-5)
    assert together[-1].token_ids == alone[-1].token_ids
    assert together[-1].reason == alone[-1].reason


def test_rows_join_up_to_max_rows_and_leave_as_they_finish(tiny_lyceum_lm: CausalLM) -> None:
    engine = Engine(tiny_lyceum_lm, max_rows=2)
    seen_rows = []
    engine.on_step = lambda stats: seen_rows.append(stats.rows)
    streams = [engine.submit(request(p, n=3 + i)) for i, p in enumerate(PROMPTS[:5])]
    out = drain(engine, streams)
    assert max(seen_rows) == 2
    assert [len(o) - 1 for o in out] == [3, 4, 5, 6, 7]  # tokens, then the Finish
    assert all(o[-1].reason == "length" for o in out)
    assert engine.busy_rows == 0


def test_long_prompts_are_fed_in_chunks_with_the_same_result(tiny_lyceum_lm: CausalLM) -> None:
    prompt = list(range(3, 43))
    results = []
    for step_tokens in (512, 7):
        engine = Engine(tiny_lyceum_lm, step_tokens=step_tokens)
        tokens: list[int] = []
        engine.on_step = lambda stats, t=tokens: t.append(stats.tokens)
        [events] = drain(engine, [engine.submit(request(prompt, seed=3))])
        results.append([e.token_id for e in events[:-1]])
        assert max(tokens) <= step_tokens
    assert results[0] == results[1]


def test_a_slow_consumer_pauses_only_its_own_row(tiny_lyceum_lm: CausalLM) -> None:
    engine = Engine(tiny_lyceum_lm, stream_buffer=2)
    slow = engine.submit(request(PROMPTS[0], n=10))
    fast = engine.submit(request(PROMPTS[1], n=10))
    fast_events: list = []
    while not (fast_events and isinstance(fast_events[-1], Finish)):
        engine.step()
        fast_events += fast.poll()
    assert len(fast_events) == 11
    held = slow.poll()
    assert len(held) == 2  # it waited with a full buffer meanwhile
    rest = drain(engine, [slow])[0]
    assert len(held) + len(rest) == 11


def test_a_cancelled_row_is_freed_before_the_next_step(tiny_lyceum_lm: CausalLM) -> None:
    engine = Engine(tiny_lyceum_lm)
    stream = engine.submit(request(PROMPTS[0], n=50))
    other = engine.submit(request(PROMPTS[1], n=50))
    engine.step()
    engine.step()
    stream.cancel()
    rows = []
    engine.on_step = lambda stats: rows.append(stats.rows)
    engine.step()
    assert rows == [1]
    assert not any(isinstance(e, Finish) for e in stream.poll()[2:])
    other.cancel()
    assert engine.step() is False and engine.busy_rows == 0


def test_the_step_hook_chooses_tokens(tiny_lyceum_lm: CausalLM) -> None:
    seen = []

    def hook(view):  # forces 17, 18, 19 ... and sees the growing history
        seen.append(view.generated_ids)
        return 17 + view.step

    engine = Engine(tiny_lyceum_lm)
    [events] = drain(engine, [engine.submit(request(PROMPTS[0], n=4, hook=hook))])
    assert [e.token_id for e in events[:-1]] == [17, 18, 19, 20]
    assert seen == [(), (17,), (17, 18), (17, 18, 19)]
    assert all(e.logprob <= 0 for e in events[:-1])


def test_greedy_reports_logprobs_and_top_alternatives(tiny_lyceum_lm: CausalLM) -> None:
    engine = Engine(tiny_lyceum_lm)
    req = Request(tuple(PROMPTS[2]), 5, greedy=True, top_logprobs=3)
    [events] = drain(engine, [engine.submit(req)])
    for event in events[:-1]:
        assert isinstance(event, TokenEvent)
        assert event.top[0][0] == event.token_id  # greedy takes the most likely
        assert event.top[0][1] == pytest.approx(event.logprob)
        assert [lp for _, lp in event.top] == sorted((lp for _, lp in event.top), reverse=True)
    assert events[-1].logprobs == tuple(e.logprob for e in events[:-1])


def test_gate_signals_reach_the_gates(gated_lm_dir: Path, tiny_hf_gpt2: CausalLM) -> None:
    lm = lm_of(gated_lm_dir)
    prompt = PROMPTS[2]
    logits = {g: lm.forward_rows([Feed(lm.new_cache(), prompt, gate=g)])[0] for g in (None, 0.0, 1.0)}
    assert not torch.allclose(logits[0.0], logits[1.0], atol=1e-3)
    mixed = lm.forward_rows([Feed(lm.new_cache(), prompt, gate=g) for g in (None, 0.0, 1.0)])
    for got, g in zip(mixed, (None, 0.0, 1.0), strict=True):
        assert torch.allclose(got, logits[g], atol=1e-5)
    with pytest.raises(ValueError, match="no gates"):
        Engine(tiny_hf_gpt2).submit(request([464, 3797], gate=0.5))


def test_mixed_adapter_batches_equal_each_adapter_alone(
    tiny_lyceum_lm_dir: Path, adapter_dirs: list[Path]
) -> None:
    lm = lm_of(tiny_lyceum_lm_dir)
    weights: list[AdapterWeights] = [read_adapter(d) for d in adapter_dirs]
    engine = Engine(lm)
    for name, w in zip(("a0", "a1"), weights, strict=True):
        engine.call(lambda name=name, w=w: lm.adapters.add(name, w))
    engine.step()
    assert lm.adapters.names == {"a0", "a1"}
    names = ["a0", None, "a1", "a0"]
    mixed = lm.forward_rows([Feed(lm.new_cache(), PROMPTS[i], adapter=a) for i, a in enumerate(names)])
    for i, a in enumerate(names):
        alone = lm.forward_rows([Feed(lm.new_cache(), PROMPTS[i], adapter=a)])[0]
        assert torch.allclose(mixed[i], alone, atol=1e-5)
    base = lm.forward_rows([Feed(lm.new_cache(), PROMPTS[0])])[0]
    assert not torch.allclose(mixed[0], base, atol=1e-2)  # the adapter does change the model
    # generation: each adapter's row among others equals that adapter alone
    streams = [engine.submit(request(PROMPTS[0], seed=1, adapter=a)) for a in ("a0", "a1", None)]
    together = drain(engine, streams)
    for a, events in zip(("a0", "a1", None), together, strict=True):
        alone = drain(engine, [engine.submit(request(PROMPTS[0], seed=1, adapter=a))])[0]
        assert [e.token_id for e in events[:-1]] == [e.token_id for e in alone[:-1]]
    engine.call(lambda: lm.adapters.remove("a0"))
    engine.step()
    failed = drain(engine, [engine.submit(request(PROMPTS[0], adapter="a0"))])[0]
    assert failed[-1].reason == "error" and isinstance(failed[-1].error, KeyError)


def test_beam_search_shares_the_prompt_cache_with_the_same_result(tiny_lyceum_lm: CausalLM) -> None:
    def beams(shares: bool) -> list:
        tiny_lyceum_lm.shares_prefix = shares
        try:
            return list(generate(tiny_lyceum_lm, PROMPTS[2], "beam", max_new_tokens=8, num_beams=3))
        finally:
            tiny_lyceum_lm.shares_prefix = True

    shared, copied = beams(True), beams(False)
    assert [s.token_id for s in shared] == [s.token_id for s in copied]
    for a, b in zip(shared, copied, strict=True):
        assert a.probability == pytest.approx(b.probability, abs=1e-6)


def test_a_started_engine_serves_concurrent_callers(tiny_lyceum_lm: CausalLM) -> None:
    engine = Engine(tiny_lyceum_lm)
    engine.start()
    try:
        results: dict[int, list[int]] = {}

        def run(i: int) -> None:
            steps = generate(tiny_lyceum_lm, PROMPTS[i], "sample", seed=i, max_new_tokens=6, engine=engine)
            results[i] = [s.token_id for s in steps if s.token_id is not None]

        threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        logits = engine.forward(Feed(tiny_lyceum_lm.new_cache(), PROMPTS[0])).result(10)
        assert logits.shape == (tiny_lyceum_lm.vocab_size,)
    finally:
        engine.stop()
    for i in range(6):
        alone = [s.token_id for s in generate(tiny_lyceum_lm, PROMPTS[i], "sample", seed=i, max_new_tokens=6)]
        assert results[i] == [t for t in alone if t is not None]
