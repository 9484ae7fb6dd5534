"""Gated generation in the engine: the observation a controller sees during a cached, batched, chunked
rollout equals the observation recomputed from one uncached forward over the same context (training's and
serving's observation are one); the gate signal changes the gated LM's logits when on and not when off, in a
forward and through the engine; fresh (identity) gates ignore it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from lyceum_ml.causal_lm import CausalLM, Feed
from lyceum_ml.causal_lm_impl import load_causal_lm
from lyceum_ml.engine import Engine, Finish, Request
from lyceum_ml.engine.control import Control, ControlView
from lyceum_ml.gating.control import GatingController, GatingStep, observe
from lyceum_ml.gating.modulator import NEUTRAL_MODULATION, modulate
from lyceum_ml.gating.policy import GatingPolicy
from lyceum_ml.gating.rollout import run_episodes
from lyceum_ml.sampling import SamplingParams

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/fixtures/lm_models.py

PROMPTS = [[5, 9, 14, 20, 3, 8, 60, 61, 70, 71, 72], [33, 34], [40, 41, 42, 43, 44]]
TOKENS = [40, 41, 42, 43, 44, 45, 46]


@pytest.fixture(scope="module")
def gated_lm(tiny_lyceum_lm_dir: Path) -> CausalLM:
    """The tiny LM (its own copy) with gates that do something: a fresh gate's output layer is zero."""
    lm = load_causal_lm(tiny_lyceum_lm_dir)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for block in lm.model.blocks:  # type: ignore[attr-defined]
            for gate in (block.attn_gate, block.mlp_gate):
                gate.out.weight.normal_(0, 1.0, generator=g)
                gate.out.bias.normal_(0, 0.5, generator=g)
    return lm


def seeded_policy(seed: int = 0) -> GatingPolicy:
    torch.manual_seed(seed)
    policy = GatingPolicy().eval()
    with torch.no_grad():  # actions spread over [0, 1] rather than ~Beta(1.7, 1.7)
        policy.actor[-1].weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(seed))
    return policy


def uncached(lm: CausalLM, context: Sequence[int], gates: Sequence[float] | None) -> tuple[torch.Tensor, ...]:
    """(logits, final-norm hidden) at the last token of one uncached TransformerLM.forward over the whole
    context, each token with its own gate signal."""
    model = lm.model  # type: ignore[attr-defined]
    seen: list[torch.Tensor] = []
    handle = model.norm.register_forward_hook(lambda mod, args, out: seen.append(out))
    gate = None if gates is None else torch.tensor([list(gates)], dtype=torch.float32)
    try:
        with torch.no_grad():
            logits = model(torch.tensor([list(context)]), gate=gate)
    finally:
        handle.remove()
    return logits[0, -1, : lm.vocab_size].float(), seen[-1][0, -1].float()


def recomputed_obs(
    prompt: Sequence[int],
    generated: Sequence[int],
    length: int,
    previous: float | None,
    logits: torch.Tensor,
    hidden: torch.Tensor,
) -> torch.Tensor:
    """`observe` of a view built here, from the context and a fresh forward's logits and hidden state."""
    before = None if previous is None else Control(modulate(previous), previous, GatingStep(previous))
    view = ControlView(0, Request(tuple(prompt), length), logits, hidden, tuple(generated), before)
    return observe([view])[0]


# --- the observation in training and serving ---------------------------------------------------------------


def test_rollout_observations_equal_an_uncached_recomputation(gated_lm: CausalLM) -> None:
    """A learned, sampled rollout with the gate signal on (the prompt at 0.5, each token at the m it was
    chosen under), three rows of different lengths, the long prompt fed in chunks."""
    engine = Engine(gated_lm, max_rows=3, step_tokens=6)
    torch.manual_seed(3)
    length = 6
    episodes = run_episodes(
        engine,
        PROMPTS,
        "learned",
        length=length,
        seed=4,
        policy=seeded_policy(),
        sample=True,
        gate_signal=True,
    )
    checked = 0
    for ep in episodes:
        assert len(ep.obs) == len(ep.tokens) == length
        ms = [float(m) for m in ep.modulations]  # type: ignore[arg-type]
        assert len(set(ms)) > 1  # sampled: the gate signal varies along the row
        for s, obs in enumerate(ep.obs):
            context = [*ep.prompt_ids, *ep.tokens[:s]]
            gates = [NEUTRAL_MODULATION] * len(ep.prompt_ids) + ms[:s]
            logits, hidden = uncached(gated_lm, context, gates)
            previous = ms[s - 1] if s else None
            expected = recomputed_obs(ep.prompt_ids, ep.tokens[:s], length, previous, logits, hidden)
            assert torch.allclose(obs, expected, atol=1e-5), (s, (obs - expected).abs().max())
            checked += 1
    assert checked == 3 * length


def test_serving_observations_equal_a_fresh_forward_on_an_hf_model(tiny_hf_gpt2: CausalLM) -> None:
    """The controller's view in a batched engine (learned, sampling only: GPT-2 has no gates) against
    `observe` over `forward_rows` of the whole context in a fresh cache."""
    lm = tiny_hf_gpt2
    seen: list[tuple[ControlView, Control]] = []
    controller = GatingController(
        "learned",
        policy=seeded_policy(1),
        gate_signal=False,
        on_chosen=lambda views, controls, tokens: seen.extend(zip(views, controls, strict=True)),
    )
    assert controller.prompt_gate() is None
    engine = Engine(lm)
    prompts = [(464, 3797, 318), (40, 1101)]
    streams = [
        engine.submit(Request(p, 4, seed=i, gate=controller.prompt_gate(), control=controller))
        for i, p in enumerate(prompts)
    ]
    pending = list(streams)
    while pending:
        assert engine.step()
        pending = [s for s in pending if not any(isinstance(e, Finish) for e in s.poll())]
    assert len(seen) == 8
    modulations: dict[int, list[float]] = {}
    for view, control in seen:
        step: GatingStep = control.info
        assert step.modulation is not None and step.obs is not None and control.gate is None
        feed = Feed(lm.new_cache(), list(view.context_ids), want_hidden=True)
        [logits] = lm.forward_rows([feed])
        assert feed.hidden is not None
        ms = modulations.setdefault(view.row_id, [])
        previous = ms[-1] if ms else None
        expected = recomputed_obs(
            view.request.prompt_ids, view.generated_ids, 4, previous, logits, feed.hidden
        )
        assert torch.allclose(step.obs, expected, atol=1e-5)
        assert control.params == modulate(step.modulation)
        ms.append(step.modulation)


# --- the gate signal --------------------------------------------------------------------------------------


def forward(lm: CausalLM, gate: float | None) -> torch.Tensor:
    return lm.forward_rows([Feed(lm.new_cache(), TOKENS, gate=gate)])[0]


def test_the_gate_signal_changes_the_logits_of_a_gated_lm(gated_lm: CausalLM) -> None:
    assert not torch.allclose(forward(gated_lm, 0.0), forward(gated_lm, 1.0), atol=1e-3)
    assert not torch.allclose(forward(gated_lm, 0.5), forward(gated_lm, None), atol=1e-3)
    assert torch.equal(forward(gated_lm, None), forward(gated_lm, None))
    assert torch.equal(forward(gated_lm, 0.3), forward(gated_lm, 0.3))


def test_fresh_gates_ignore_the_gate_signal(tiny_lyceum_lm: CausalLM) -> None:
    """Why the demo LM's gates are inert: a fresh gate's output layer is zero, so its scale is exactly 1."""
    assert tiny_lyceum_lm.gated
    ungated = forward(tiny_lyceum_lm, None)
    for g in (0.0, 0.5, 1.0):
        assert torch.allclose(forward(tiny_lyceum_lm, g), ungated, atol=1e-6)


def engine_logits(lm: CausalLM, gate_signal: bool, m: float = 1.0) -> list[torch.Tensor]:
    """Each step's logits of one fixed-m row whose prompt is ungated (so only the chosen tokens' forwards
    can carry m)."""
    logits: list[torch.Tensor] = []
    controller = GatingController(
        "fixed",
        modulation=m,
        gate_signal=gate_signal,
        on_chosen=lambda views, controls, tokens: logits.extend(v.logits for v in views),
    )
    engine = Engine(lm)
    stream = engine.submit(Request(tuple(TOKENS), 4, seed=5, control=controller))
    while not any(isinstance(e, Finish) for e in stream.poll()):
        assert engine.step()
    return logits


def test_through_the_engine_the_chosen_tokens_forward_carries_m(gated_lm: CausalLM) -> None:
    on, off = engine_logits(gated_lm, True), engine_logits(gated_lm, False)
    assert len(on) == len(off) == 4
    assert torch.equal(on[0], off[0])  # the same ungated prompt: step 1 alike
    for a, b in zip(on[1:], off[1:], strict=True):
        assert not torch.allclose(a, b, atol=1e-3)


def test_through_the_engine_fresh_gates_change_nothing(tiny_lyceum_lm: CausalLM) -> None:
    on, off = engine_logits(tiny_lyceum_lm, True), engine_logits(tiny_lyceum_lm, False)
    assert len(on) == len(off) == 4
    for a, b in zip(on, off, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_trajectories_record_the_gate_and_the_modulated_parameters(gated_lm: CausalLM) -> None:
    controller = GatingController("fixed", modulation=0.0)
    engine = Engine(gated_lm)
    stream = engine.submit(
        Request(tuple(TOKENS), 5, SamplingParams(), seed=1, gate=controller.prompt_gate(), control=controller)
    )
    events = []
    while not (events and isinstance(events[-1], Finish)):
        assert engine.step()
        events += stream.poll()
    trajectory = [e.control for e in events if not isinstance(e, Finish)]
    assert len(trajectory) == 5
    for control in trajectory:
        assert control.info.modulation == 0.0 and control.gate == 0.0
        p = control.params
        assert (p.temperature, p.top_k, p.top_p, p.repetition_penalty) == pytest.approx((0.3, 5, 0.7, 1.2))


def test_a_shared_learned_controller_decides_each_row_as_if_alone(gated_lm: CausalLM) -> None:
    """One controller per policy serves every row that names it: batching rows through it changes nothing."""

    def trajectories(rows: list[int], shared: bool) -> list[list[tuple[int, float]]]:
        policy = seeded_policy(2)
        engine = Engine(gated_lm)
        one = GatingController("learned", policy=policy)
        streams = []
        for i in rows:
            c = one if shared else GatingController("learned", policy=policy)
            streams.append(
                engine.submit(Request(tuple(PROMPTS[i]), 5, seed=i, gate=c.prompt_gate(), control=c))
            )
        out: list[list] = [[] for _ in streams]
        while not all(o and isinstance(o[-1], Finish) for o in out):
            assert engine.step()
            for o, s in zip(out, streams, strict=True):
                o.extend(s.poll())
        return [[(e.token_id, e.control.info.modulation) for e in o[:-1]] for o in out]

    together = trajectories(list(range(len(PROMPTS))), shared=True)
    alone = [trajectories([i], shared=False)[0] for i in range(len(PROMPTS))]
    for t, a in zip(together, alone, strict=True):
        assert [tok for tok, _ in t] == [tok for tok, _ in a]
        assert [m for _, m in t] == pytest.approx([m for _, m in a], abs=1e-5)
