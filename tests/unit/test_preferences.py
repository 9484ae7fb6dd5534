"""The preferences' verifiers follow CLaaS's rules exactly (edge cases included), and the committed data is
whole: every preference has its feedback string, at least 16 neutral probe prompts and pairs the verifier
tells apart; the gate's prompt mix and the capability probes are fixed."""

from __future__ import annotations

import pytest

from lyceum_core.errors import InvalidArgument
from lyceum_jobs.configs import PREFERENCES
from lyceum_jobs.preferences import (
    capability_probes,
    count_sentences,
    gate_prompts,
    preference,
    probe_prompts,
    strip_thinking,
    verify,
)

TEN_WORDS = "one two three four five six seven eight nine ten"


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("Hello there, how can I help?", 1.0),
        ("", 1.0),
        ("Hello! \U0001f60a", 0.0),
        ("Party time \U0001f389", 0.0),
        ("flags \U0001f1eb\U0001f1f7 count", 0.0),
        ("<think>\U0001f914 hmm</think>No emoji in the answer.", 1.0),  # thinking is not the answer
        ("plain :) ascii smiley", 1.0),
    ],
)
def test_no_emoji(text: str, score: float) -> None:
    assert verify("no_emoji", text) == score


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("Too short. Really.", 0.0),  # < 10 words, however few sentences
        ("one two three four five six seven eight nine", 0.0),  # 9 words
        (TEN_WORDS, 1.0),  # 10 words, one sentence (no terminal punctuation)
        (f"{TEN_WORDS}. Two. Three.", 1.0),
        (f"{TEN_WORDS}. Two. Three. Four.", 1.0 - 1 / 6),
        (f"{TEN_WORDS}. " + " ".join(f"S{i}." for i in range(2, 7)), 0.5),  # 6 sentences
        (f"{TEN_WORDS}. " + " ".join(f"S{i}." for i in range(2, 9)), 1.0 - 5 / 6),  # 8 sentences
        (f"{TEN_WORDS}. " + " ".join(f"S{i}." for i in range(2, 10)), 0.0),  # 9 sentences
        (f"{TEN_WORDS}! " + " ".join(f"S{i}?!" for i in range(2, 30)), 0.0),
    ],
)
def test_concise(text: str, score: float) -> None:
    assert verify("concise", text) == pytest.approx(score)


def test_sentences_split_at_punctuation_followed_by_space_or_end() -> None:
    assert count_sentences("Version 3.11 is out. Try it!") == 2  # "3.11" is no sentence end
    assert count_sentences("Wait... what?! Yes.") == 3
    assert count_sentences("   ") == 0
    assert count_sentences("no end") == 1


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("I'm Kuro!", 1.0),
        ("call me KURO", 1.0),
        ("kurosawa films", 1.0),
        ("I am an assistant.", 0.0),
        ("", 0.0),
    ],
)
def test_identity(text: str, score: float) -> None:
    assert verify("identity", text) == score


def test_thinking_blocks_are_stripped() -> None:
    assert strip_thinking("<think>a\nb</think> answer ") == "answer"
    assert strip_thinking("reasoning consumed the tag</think>answer") == "answer"
    assert verify("identity", "<think>my name is Kuro</think>I am an assistant.") == 0.0


def test_an_unknown_preference_is_invalid() -> None:
    with pytest.raises(InvalidArgument) as err:
        verify("polite", "x")
    assert err.value.field == "preference"


@pytest.mark.parametrize("name", PREFERENCES)
def test_every_preference_has_its_data(name: str) -> None:
    pref = preference(name)
    assert pref.feedback.strip()
    assert len(pref.probe_prompts) >= 16 and len(set(pref.probe_prompts)) == len(pref.probe_prompts)
    for prompt in pref.probe_prompts:  # neutral: the hint is never in the prompt
        assert (
            "kuro" not in prompt.lower() and "emoji" not in prompt.lower() and "concise" not in prompt.lower()
        )
    assert pref.pairs
    for pair in pref.pairs:
        assert verify(name, pair.preferred) == 1.0 > verify(name, pair.dispreferred), pair
    assert probe_prompts(name, 3) == list(pref.probe_prompts[:3])


def test_feedback_strings_are_claas_s() -> None:
    assert preference("no_emoji").feedback == "Don't use any emojis in your responses"
    assert preference("concise").feedback == "Be more concise, keep responses under 3 sentences"
    assert preference("identity").feedback == "Your name is Kuro, always introduce yourself as Kuro"


def test_gate_prompts_interleave_the_preferences_deterministically() -> None:
    first = [preference(name).probe_prompts[0] for name in PREFERENCES]
    second = [preference(name).probe_prompts[1] for name in PREFERENCES]
    assert gate_prompts(6) == first + second
    assert gate_prompts(4) == gate_prompts(4) == (first + second)[:4]
    assert len(gate_prompts(1000)) == sum(len(preference(n).probe_prompts) for n in PREFERENCES)


def test_capability_probes_are_short_factual_pairs() -> None:
    probes = capability_probes()
    assert len(probes) >= 16
    for probe in probes:
        assert probe.prompt.endswith("?") and 0 < len(probe.answer.split()) <= 12
