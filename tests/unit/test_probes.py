"""Probes: collapse figures on constructed inputs (a uniform distribution's entropy is log V, identical
samples have self-ROUGE-L 1), the gate's pass and fail cases, and sampling on a tiny Llama (and a tiny Lyceum
LM): seeded and reproducible, its log-probs the teacher-forced ones, the same with a peft adapter switched
off as without one, and no drift from itself but some from a changed adapter. Plots are written as PNGs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lyceum_jobs.configs import GateSettings
from lyceum_ml.probes.capability import capability, logprob_margin
from lyceum_ml.probes.collapse import logprob_drift, mean_entropy, rouge_l, self_rouge_l, token_entropy
from lyceum_ml.probes.gate import ProbeSet, ProbeStats, drift, gate, measure
from lyceum_ml.probes.generate import chat_prompt, generate, generate_many, score
from lyceum_ml.probes.plots import CAPABILITY, COLLAPSE, COMPLIANCE, MARGIN, write_plots
from lyceum_ml.sft.base import BaseLM, load_base

PNG = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def llama(tiny_llama_dir: Path) -> BaseLM:
    return load_base(tiny_llama_dir)


def peft_over(base: BaseLM, seed: int) -> torch.nn.Module:
    """A randomly initialised LoRA (B nonzero, so it changes the outputs) over the base, adapter on."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    return get_peft_model(base.model, config)


# --- collapse figures -------------------------------------------------------------------------------------


def test_the_entropy_of_a_uniform_distribution_is_log_v() -> None:
    assert token_entropy(torch.zeros(3, 50)).tolist() == pytest.approx([math.log(50)] * 3)
    assert token_entropy(torch.tensor([0.0, -1e9])).item() == pytest.approx(0.0, abs=1e-6)
    assert mean_entropy([[1.0, 2.0], [3.0]]) == 2.0 and mean_entropy([]) == 0.0


def test_rouge_l_over_whitespace_words() -> None:
    assert rouge_l("the cat sat", "the cat sat") == 1.0
    assert rouge_l("a b", "c d") == 0.0
    assert rouge_l("a b c d", "a c") == pytest.approx(2 * (1.0 * 0.5) / 1.5)  # lcs 2: P 1, R 1/2
    assert rouge_l("a b c d", "a c") == rouge_l("a c", "a b c d")
    assert rouge_l("", "") == 1.0 and rouge_l("", "a") == 0.0
    assert rouge_l("Hi \U0001f60a", "Hi \U0001f60a") == 1.0  # emoji are words too


def test_self_rouge_l_of_identical_samples_is_one() -> None:
    assert self_rouge_l(["same words here"] * 3) == 1.0
    assert self_rouge_l(["a b", "c d", "a b"]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        self_rouge_l(["alone"])


def test_logprob_drift_is_the_mean_gap_on_the_parents_tokens() -> None:
    assert logprob_drift([[-1.0, -2.0], [-1.0]], [[-2.0, -2.0], [-4.0]]) == pytest.approx(4 / 3)
    assert logprob_drift([[-1.0]], [[-0.5]]) == -0.5
    with pytest.raises(ValueError):
        logprob_drift([[-1.0]], [[-1.0, -2.0]])


# --- the gate ---------------------------------------------------------------------------------------------


def stats(entropy: float = 2.0, rouge: float = 0.3, cap: float | None = -1.0) -> ProbeStats:
    return ProbeStats([], entropy, rouge, cap)


def test_a_child_like_its_parent_passes() -> None:
    result = gate(stats(), stats(entropy=1.9, rouge=0.4, cap=-1.05), 0.1, GateSettings())
    assert result.passed and result.reasons == []
    assert result.figures["entropy_ratio"] == pytest.approx(0.95)
    assert result.figures["capability_fraction"] == pytest.approx(math.exp(-0.05))
    assert result.figures["logprob_drift"] == 0.1


@pytest.mark.parametrize(
    ("child", "drift_", "reason"),
    [
        (stats(entropy=1.1), 0.0, "entropy ratio"),  # 0.55 < 0.6
        (stats(rouge=0.9), 0.0, "self-ROUGE-L"),
        (stats(), 2.5, "log-prob drift"),
        (stats(), float("nan"), "log-prob drift"),
        (stats(cap=-1.2), 0.0, "capability"),  # exp(-0.2) = 0.82 < 0.9
    ],
)
def test_each_check_can_fail_the_gate(child: ProbeStats, drift_: float, reason: str) -> None:
    result = gate(stats(), child, drift_, GateSettings())
    assert not result.passed
    assert len(result.reasons) == 1 and result.reasons[0].startswith(reason)


def test_capability_compares_likelihoods_and_limits_are_the_settings() -> None:
    # exp(-0.1) = 0.905: passes a 0.9 fraction, fails a 0.95 one
    assert gate(stats(), stats(cap=-1.1), 0.0, GateSettings()).passed
    assert not gate(stats(), stats(cap=-1.1), 0.0, GateSettings(min_capability_fraction=0.95)).passed
    assert gate(stats(), stats(cap=None), 0.0, GateSettings()).passed  # not measured: not checked
    everything_bad = gate(stats(), stats(entropy=0.1, rouge=1.0, cap=-9.0), 9.0, GateSettings())
    assert len(everything_bad.reasons) == 4
    disabled = gate(stats(), stats(entropy=0.1, rouge=1.0, cap=-9.0), 9.0, GateSettings(enabled=False))
    assert disabled.passed and disabled.reasons == [] and disabled.figures == everything_bad.figures


# --- sampling on real models ------------------------------------------------------------------------------


def test_sampling_is_seeded_and_its_logprobs_are_the_teacher_forced_ones(llama: BaseLM) -> None:
    ids, stops = chat_prompt(llama, "Who are you?")
    run = lambda seed: generate(  # noqa: E731
        llama, llama.model, ids, n=3, max_new_tokens=12, temperature=1.0, seed=seed, stops=stops
    )
    a, b, c = run(7), run(7), run(8)
    assert [s.response_ids for s in a] == [s.response_ids for s in b]
    assert [s.response_ids for s in a] != [s.response_ids for s in c]
    assert len({tuple(s.response_ids) for s in a}) > 1  # rows draw their own numbers
    for s in a:
        assert len(s.response_ids) == len(s.logprobs) == len(s.entropies) == 12
        assert all(0 <= e <= math.log(50257) + 1e-4 for e in s.entropies)
        assert score(llama, llama.model, ids, s.response_ids) == pytest.approx(s.logprobs, abs=1e-4)
    greedy = generate(llama, llama.model, ids, n=2, max_new_tokens=6, temperature=0.0, seed=0)
    assert greedy[0].response_ids == greedy[1].response_ids


def test_prompts_decoded_together_sample_what_they_do_alone(llama: BaseLM) -> None:
    """Left-padded rows of several prompts (of different lengths) sample what each does on its own."""
    prompts = [chat_prompt(llama, q)[0] for q in ("Hi", "What is the capital of France, please?", "Why?")]
    assert len({len(p) for p in prompts}) > 1
    together = generate_many(
        llama, llama.model, prompts, n=2, max_new_tokens=10, temperature=1.0, seeds=[4, 5, 6]
    )
    for prompt, seed, row in zip(prompts, (4, 5, 6), together, strict=True):
        alone = generate(llama, llama.model, prompt, n=2, max_new_tokens=10, temperature=1.0, seed=seed)
        assert [s.response_ids for s in row] == [s.response_ids for s in alone]
        for a, b in zip(row, alone, strict=True):
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
            assert a.entropies == pytest.approx(b.entropies, abs=1e-4)


def test_an_adapter_switched_off_samples_what_the_base_does(llama: BaseLM, tiny_llama_dir: Path) -> None:
    base = load_base(tiny_llama_dir)  # its own copy: peft injects layers in place
    ids, _ = chat_prompt(base, "Hey, what's up?")
    plain = generate(base, base.model, ids, n=2, max_new_tokens=8, temperature=1.0, seed=3)
    model = peft_over(base, seed=1)
    on = generate(base, model, ids, n=2, max_new_tokens=8, temperature=1.0, seed=3)
    with model.disable_adapter():
        off = generate(base, model, ids, n=2, max_new_tokens=8, temperature=1.0, seed=3)
    assert [s.response_ids for s in off] == [s.response_ids for s in plain]
    flat = lambda samples: [lp for s in samples for lp in s.logprobs]  # noqa: E731
    assert flat(off) == pytest.approx(flat(plain), abs=1e-5)
    assert flat(on) != pytest.approx(flat(plain), abs=1e-3)


def test_measure_and_drift_on_a_peft_model(tiny_llama_dir: Path) -> None:
    base = load_base(tiny_llama_dir)
    model = peft_over(base, seed=2)
    settings = GateSettings(samples=2, probes=2, max_new_tokens=6)
    probes = ProbeSet(("Who are you?", "What is cloud computing?"), (("What is 2 + 2?", "4."),))
    parent = measure(base, model, settings, probes)
    assert len(parent.samples) == 2 and all(len(row) == 2 for row in parent.samples)
    assert 0 <= parent.self_rouge_l <= 1 and parent.entropy > 0 and parent.capability < 0
    assert ProbeStats.from_dict(parent.as_dict()) == parent
    assert drift(base, model, parent) == pytest.approx(0.0, abs=1e-4)
    again = measure(base, model, settings, probes)
    assert again.figures() == parent.figures()  # seeded: the same weights measure the same
    with torch.no_grad():  # the adapter changes: the child sees the parent's samples differently
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(-3.0)
    assert abs(drift(base, model, parent)) > 1e-3
    with model.disable_adapter():
        base_cap = capability(base, model, probes.capability)
    assert base_cap != pytest.approx(parent.capability)


def test_margins_are_summed_log_prob_differences(llama: BaseLM) -> None:
    from lyceum_ml.probes.capability import response_logprobs

    good, bad = "I'm Kuro!", "I am an assistant."
    expected = sum(response_logprobs(llama, llama.model, "Who?", good)) - sum(
        response_logprobs(llama, llama.model, "Who?", bad)
    )
    assert logprob_margin(llama, llama.model, [("Who?", good, bad)]) == pytest.approx(expected)
    assert logprob_margin(llama, llama.model, [("Who?", bad, good)]) == pytest.approx(-expected)
    assert logprob_margin(llama, llama.model, [("Who?", good, good)]) == 0.0


def test_sampling_a_lyceum_lm(tiny_lyceum_lm_dir: Path) -> None:
    base = load_base(tiny_lyceum_lm_dir)
    ids, stops = chat_prompt(base, "Tell me a story.")
    a = generate(base, base.model, ids, n=2, max_new_tokens=10, temperature=0.8, seed=1, stops=stops)
    b = generate(base, base.model, ids, n=2, max_new_tokens=10, temperature=0.8, seed=1, stops=stops)
    assert [s.response_ids for s in a] == [s.response_ids for s in b]
    for s in a:
        assert score(base, base.model, ids, s.response_ids) == pytest.approx(s.logprobs, abs=1e-4)


# --- plots ------------------------------------------------------------------------------------------------


def test_plots_are_pngs_with_fixed_names(tmp_path: Path) -> None:
    results = [
        {
            "ref": "kuro@1",
            "compliance": {"identity": 0.0, "concise": 0.5},
            "margin": {"identity": -3.0},
            "capability": -2.0,
            "collapse": {"entropy": 3.0, "self_rouge_l": 0.2},
        },
        {
            "ref": "kuro@2",
            "compliance": {"identity": 0.5, "concise": 0.5},
            "margin": {"identity": 1.0},
            "capability": -2.1,
            "collapse": {"entropy": 2.8, "self_rouge_l": 0.3, "logprob_drift": 0.2},
        },
    ]
    names = write_plots(results, tmp_path)
    assert names == [COMPLIANCE, MARGIN, CAPABILITY, COLLAPSE]
    for name in names:
        assert (tmp_path / name).read_bytes().startswith(PNG)
    assert write_plots([{"ref": "m@1", "compliance": {"identity": 1.0}}], tmp_path / "one") == [COMPLIANCE]
