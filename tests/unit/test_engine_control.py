"""The engine's per-step control hook: one `decide` per controller per step over all its rows, controllers
apart from each other, a failing controller failing only its rows, the decision's parameters and gate signal
reaching the choice and the next forward (`Request.gate` for the prompt), `TokenEvent.control`, `chosen`
with EOS; and the final-norm hidden state the views carry (`Feed.want_hidden`: the ragged Lyceum forward and
the Hugging Face one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from lyceum_ml.causal_lm import CausalLM, Feed
from lyceum_ml.engine import Engine, Finish, Request, TokenEvent
from lyceum_ml.engine.control import Control, ControlView
from lyceum_ml.sampling import SamplingParams

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/fixtures/lm_models.py

PROMPT = (5, 9, 14, 20)


class SpyLM:
    """A CausalLM that records each forward's feeds (tokens, gate, want_hidden) and, from `eos_after`
    cached tokens on, makes EOS all but certain."""

    def __init__(self, lm: CausalLM, eos_after: int | None = None) -> None:
        self.lm, self.eos_after = lm, eos_after
        self.forwards: list[list[tuple[tuple[int, ...], float | None, bool]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lm, name)

    def forward_rows(self, feeds: Sequence[Feed]) -> list[torch.Tensor]:
        self.forwards.append([(tuple(f.token_ids), f.gate, f.want_hidden) for f in feeds])
        out = self.lm.forward_rows(feeds)
        if self.eos_after is not None:
            for f, logits in zip(feeds, out, strict=True):
                if self.lm.cache_len(f.cache) >= self.eos_after:
                    logits[self.lm.eos_id] = 1e4
        return out


class Scripted:
    """A controller that records its calls and decides `params` and `gate(view)` for every row; it can raise
    or return too few decisions."""

    def __init__(
        self,
        params: SamplingParams | None = None,
        gate: Any = None,
        needs_hidden: bool = False,
        fail: bool = False,
        short: bool = False,
    ) -> None:
        self.params = params or SamplingParams(temperature=0.8)
        self.gate, self.needs_hidden, self.fail, self.short = gate, needs_hidden, fail, short
        self.calls: list[list[ControlView]] = []
        self.decided: list[list[Control]] = []
        self.chosen_calls: list[tuple[list[ControlView], list[Control], list[int]]] = []

    def decide(self, views: Sequence[ControlView]) -> list[Control]:
        self.calls.append(list(views))
        if self.fail:
            raise RuntimeError("controller exploded")
        gate = self.gate or (lambda v: None)
        decided = [Control(self.params, gate(v), info=(len(self.calls), v.row_id)) for v in views]
        self.decided.append(decided)
        return decided[:-1] if self.short else decided

    def chosen(
        self, views: Sequence[ControlView], controls: Sequence[Control], tokens: Sequence[int]
    ) -> None:
        self.chosen_calls.append((list(views), list(controls), list(tokens)))


def drain(engine: Engine, streams: list) -> list[list]:
    out: list[list] = [[] for _ in streams]
    while not all(o and isinstance(o[-1], Finish) for o in out):
        assert engine.step(), "the engine stalled"
        for o, s in zip(out, streams, strict=True):
            o.extend(s.poll())
    return out


def req(
    control: Any = None, n: int = 5, prompt: tuple[int, ...] = PROMPT, seed: int = 0, **kw: Any
) -> Request:
    return Request(prompt, n, SamplingParams(temperature=0.9), seed=seed, control=control, **kw)


def tokens_of(events: list) -> list[int]:
    return [e.token_id for e in events if isinstance(e, TokenEvent)]


def test_one_decide_per_step_covers_all_rows_of_a_controller(tiny_lyceum_lm: CausalLM) -> None:
    engine = Engine(tiny_lyceum_lm)
    steps: list[int] = []
    engine.on_step = lambda stats: steps.append(stats.rows)
    c = Scripted()
    streams = [engine.submit(req(c, seed=i)) for i in range(3)]
    out = drain(engine, streams)
    assert len(steps) == 5 and len(c.calls) == 5  # one decision call per engine step
    ids = sorted(s.row_id for s in streams)
    for k, views in enumerate(c.calls):
        assert sorted(v.row_id for v in views) == ids
        assert all(v.step == k and v.request.control is c for v in views)
        assert all(v.hidden is None for v in views)  # it did not ask for hidden states
    assert all(len(o) == 6 and o[-1].reason == "length" for o in out)


def test_different_controllers_are_called_separately(tiny_lyceum_lm: CausalLM) -> None:
    engine = Engine(tiny_lyceum_lm)
    a, b = Scripted(), Scripted(SamplingParams(top_k=1))
    streams = [engine.submit(req(a, seed=0)), engine.submit(req(b, seed=1)), engine.submit(req(a, seed=2))]
    plain = engine.submit(req(None, seed=3))
    drain(engine, [*streams, plain])
    assert len(a.calls) == len(b.calls) == 5
    assert all(sorted(v.row_id for v in views) == [streams[0].row_id, streams[2].row_id] for views in a.calls)
    assert all([v.row_id for v in views] == [streams[1].row_id] for views in b.calls)


def test_the_decision_chooses_the_token_and_rides_on_the_token_event(tiny_lyceum_lm: CausalLM) -> None:
    engine = Engine(tiny_lyceum_lm)
    c = Scripted(SamplingParams(top_k=1))  # greedy through the controller's parameters
    [events] = drain(engine, [engine.submit(req(c, n=4))])
    token_events = [e for e in events if isinstance(e, TokenEvent)]
    assert len(token_events) == 4
    for k, event in enumerate(token_events):
        [control] = c.decided[k]
        assert event.control is control and control.info == (k + 1, c.calls[k][0].row_id)
        assert event.token_id == int(torch.argmax(c.calls[k][0].logits))  # top_k 1, not the request's T 0.9
        assert event.probability == pytest.approx(1.0)
    [(views, controls, tokens)] = c.chosen_calls[:1]
    assert tokens == [token_events[0].token_id] and controls == c.decided[0]
    assert [t for _, _, ts in c.chosen_calls for t in ts] == tokens_of(events)


def test_a_controlled_row_does_not_disturb_an_uncontrolled_one(tiny_lyceum_lm: CausalLM) -> None:
    alone_engine = Engine(tiny_lyceum_lm)
    [alone] = drain(alone_engine, [alone_engine.submit(req(None, n=6, seed=4))])
    engine = Engine(tiny_lyceum_lm)
    c = Scripted(SamplingParams(temperature=1.5))
    out = drain(engine, [engine.submit(req(c, n=6, seed=4)), engine.submit(req(None, n=6, seed=4))])
    assert tokens_of(out[1]) == tokens_of(alone)


def test_a_raising_controller_fails_only_its_own_rows(tiny_lyceum_lm: CausalLM) -> None:
    engine = Engine(tiny_lyceum_lm)
    bad, good = Scripted(fail=True), Scripted()
    streams = [engine.submit(req(bad, seed=0)), engine.submit(req(good, seed=1)), engine.submit(req(bad))]
    plain = engine.submit(req(None, seed=2))
    out = drain(engine, [*streams, plain])
    for events in (out[0], out[2]):
        [finish] = events
        assert finish.reason == "error" and finish.token_ids == ()
        assert isinstance(finish.error, RuntimeError) and "exploded" in str(finish.error)
    assert len(bad.calls) == 1  # both its rows in the one call that failed
    for events in (out[1], out[3]):
        assert events[-1].reason == "length" and len(tokens_of(events)) == 5
    assert engine.busy_rows == 0


def test_a_controller_deciding_the_wrong_number_of_rows_fails_its_rows(tiny_lyceum_lm: CausalLM) -> None:
    engine = Engine(tiny_lyceum_lm)
    short, good = Scripted(short=True), Scripted()
    out = drain(
        engine, [engine.submit(req(short)), engine.submit(req(short, seed=1)), engine.submit(req(good))]
    )
    for events in out[:2]:
        assert events[-1].reason == "error" and "decided 1 of 2" in str(events[-1].error)
    assert out[2][-1].reason == "length"


def test_a_failing_chosen_does_not_stop_the_rows(tiny_lyceum_lm: CausalLM) -> None:
    class Noisy(Scripted):
        def chosen(
            self, views: Sequence[ControlView], controls: Sequence[Control], tokens: Sequence[int]
        ) -> None:
            raise RuntimeError("scoring failed")

    engine = Engine(tiny_lyceum_lm)
    [events] = drain(engine, [engine.submit(req(Noisy()))])
    assert events[-1].reason == "length" and len(tokens_of(events)) == 5


def test_the_prompt_takes_the_requests_gate_and_later_tokens_the_decisions(tiny_lyceum_lm: CausalLM) -> None:
    assert tiny_lyceum_lm.gated
    spy = SpyLM(tiny_lyceum_lm)
    gates = {0: 0.75, 1: None, 2: 0.125, 3: 1.0, 4: 0.0}
    c = Scripted(gate=lambda v: gates[v.step])
    engine = Engine(spy)  # type: ignore[arg-type]
    [events] = drain(engine, [engine.submit(req(c, gate=0.25))])
    fed = [f for forward in spy.forwards for f in forward]
    assert fed[0] == (PROMPT, 0.25, False)
    generated = tokens_of(events)
    # the token chosen at step k is fed (at the next step) with step k's gate
    assert [(tokens, gate) for tokens, gate, _ in fed[1:]] == [((generated[k],), gates[k]) for k in range(4)]


def test_without_a_request_gate_the_prompt_is_ungated(tiny_lyceum_lm: CausalLM) -> None:
    spy = SpyLM(tiny_lyceum_lm)
    engine = Engine(spy)  # type: ignore[arg-type]
    drain(engine, [engine.submit(req(Scripted(gate=lambda v: 0.5), n=2))])
    assert [f[1] for forward in spy.forwards for f in forward] == [None, 0.5]


def test_views_carry_hidden_states_only_when_the_controller_needs_them(tiny_lyceum_lm: CausalLM) -> None:
    spy = SpyLM(tiny_lyceum_lm)
    engine = Engine(spy)  # type: ignore[arg-type]
    wants, not_wants = Scripted(needs_hidden=True), Scripted()
    drain(
        engine, [engine.submit(req(wants, n=3)), engine.submit(req(not_wants, n=3)), engine.submit(req(n=3))]
    )
    d = tiny_lyceum_lm.model.cfg.d_model  # type: ignore[attr-defined]
    assert all(v.hidden is not None and v.hidden.shape == (d,) for views in wants.calls for v in views)
    assert all(v.hidden is None for views in not_wants.calls for v in views)
    flags = [f[2] for forward in spy.forwards for f in forward]
    assert flags.count(True) == 3  # the wanting row's prompt and its two later tokens


def test_eos_ends_a_controlled_row_and_is_told_to_chosen(tiny_lyceum_lm: CausalLM) -> None:
    spy = SpyLM(tiny_lyceum_lm, eos_after=len(PROMPT) + 2)
    engine = Engine(spy)  # type: ignore[arg-type]
    c = Scripted()
    [events] = drain(engine, [engine.submit(req(c, n=10))])
    assert events[-1].reason == "eos" and len(tokens_of(events)) == 2  # fed: prompt, t1; then EOS
    chosen = [t for _, _, ts in c.chosen_calls for t in ts]
    assert chosen == [*tokens_of(events), tiny_lyceum_lm.eos_id]


def test_a_controller_gate_on_an_ungated_model_fails_the_row(tiny_hf_gpt2: CausalLM) -> None:
    engine = Engine(tiny_hf_gpt2)
    ok = engine.submit(req(Scripted(), n=3, prompt=(464, 3797)))
    gated = engine.submit(req(Scripted(gate=lambda v: 0.5), n=3, prompt=(464, 3797)))
    out = drain(engine, [ok, gated])
    assert out[0][-1].reason == "length"
    assert out[1][-1].reason == "error" and "no gates" in str(out[1][-1].error)


# --- Feed.want_hidden: the final-norm hidden state at the last new token -----------------------------------


def reference_lyceum(lm: CausalLM, tokens: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, final-norm hidden) at the last token of one uncached TransformerLM.forward."""
    model = lm.model  # type: ignore[attr-defined]
    seen: list[torch.Tensor] = []
    handle = model.norm.register_forward_hook(lambda mod, args, out: seen.append(out))
    try:
        with torch.no_grad():
            logits = model(torch.tensor([list(tokens)]))
    finally:
        handle.remove()
    return logits[0, -1, : lm.vocab_size].float(), seen[-1][0, -1].float()


def test_the_ragged_forward_returns_the_final_norm_hidden_state(tiny_lyceum_lm: CausalLM) -> None:
    lm = tiny_lyceum_lm
    rows = [[5, 9, 14, 20, 3], [33], [40, 41, 42]]
    feeds = [Feed(lm.new_cache(), r, want_hidden=w) for r, w in zip(rows, (True, False, True), strict=True)]
    logits = lm.forward_rows(feeds)
    assert feeds[1].hidden is None
    head = lm.model.tok_emb.weight[: lm.vocab_size]  # type: ignore[attr-defined] - tied embeddings
    for i in (0, 2):
        ref_logits, ref_hidden = reference_lyceum(lm, rows[i])
        assert feeds[i].hidden is not None and feeds[i].hidden.shape == ref_hidden.shape
        assert torch.allclose(feeds[i].hidden, ref_hidden, atol=1e-5)
        assert torch.allclose(logits[i], ref_logits, atol=1e-4)
        assert torch.allclose(
            F.linear(feeds[i].hidden, head), logits[i], atol=1e-4
        )  # what the read-out reads
    # after a cache: the hidden state of the last new token, as of the whole sequence
    cache = lm.new_cache()
    lm.forward_rows([Feed(cache, rows[0][:3])])
    feed = Feed(cache, rows[0][3:], want_hidden=True)
    lm.forward_rows([feed])
    assert torch.allclose(feed.hidden, reference_lyceum(lm, rows[0])[1], atol=1e-5)  # type: ignore[arg-type]


def test_the_hf_forward_returns_the_final_norm_hidden_state(tiny_hf_gpt2: CausalLM) -> None:
    lm = tiny_hf_gpt2
    tokens = [464, 3797, 318, 257]
    feed = Feed(lm.new_cache(), tokens, want_hidden=True)
    [logits] = lm.forward_rows([feed])
    assert feed.hidden is not None and feed.hidden.shape == (64,)
    head = lm.model.get_output_embeddings()  # type: ignore[attr-defined]
    with torch.no_grad():
        assert torch.allclose(head(feed.hidden)[: lm.vocab_size], logits, atol=1e-4)  # after the final norm
    plain = Feed(lm.new_cache(), tokens)
    lm.forward_rows([plain])
    assert plain.hidden is None
    cache = lm.new_cache()
    lm.forward_rows([Feed(cache, tokens[:2])])
    cached = Feed(cache, tokens[2:], want_hidden=True)
    lm.forward_rows([cached])
    assert torch.allclose(cached.hidden, feed.hidden, atol=1e-5)  # type: ignore[arg-type]
