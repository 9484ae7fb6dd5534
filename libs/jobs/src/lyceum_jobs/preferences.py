"""The preferences a user can teach an adapter in words, each with its verifier, the feedback string that
asks for it, its probe prompts and preferred/dispreferred response pairs; and the general capability probes
(prompt -> short factual reference answer). Data in `preferences.json` (committed beside this module); the
verifiers are CLaaS's, rule for rule, so compliance figures compare with CLaaS's own evaluation:

- `no_emoji`: 1 if the text has no emoji (`emoji.emoji_count`), else 0.
- `concise`: fewer than 10 words -> 0 (not substantive); else by sentences n: n <= 3 -> 1, n >= 9 -> 0,
  otherwise 1 - (n - 3) / 6.
- `identity`: 1 if "kuro" appears, case-insensitive, else 0.

Every verifier first drops `<think>...</think>` blocks (reasoning models). Torch-free: the gateway, the
trainer and the evaluation job all import it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources

import emoji

from lyceum_core.errors import InvalidArgument
from lyceum_jobs.configs import PREFERENCES

DATA_FILE = "preferences.json"
CONCISE_MIN_WORDS = 10  # fewer words is not a substantive answer, however short
CONCISE_MAX_SENTENCES = 3  # at most this many: fully concise
CONCISE_ZERO_SENTENCES = 9  # at least this many: not concise at all

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")


@dataclass(frozen=True)
class Pair:
    """A prompt with a response that honours the preference and one that does not (for log-prob margins)."""

    prompt: str
    preferred: str
    dispreferred: str


@dataclass(frozen=True)
class Preference:
    name: str
    feedback: str  # what a user says to ask for it (CLaaS's wording)
    probe_prompts: tuple[str, ...]  # neutral prompts: none contains the hint
    pairs: tuple[Pair, ...]


@dataclass(frozen=True)
class CapabilityProbe:
    """A short factual question and its reference answer, scored by the answer's mean per-token log-prob."""

    prompt: str
    answer: str


# --- verifiers ------------------------------------------------------------------------------------------


def strip_thinking(text: str) -> str:
    """The visible answer: `<think>` blocks removed, and anything before an orphaned `</think>` (a template
    that consumed the opening tag), then stripped."""
    text = _THINK.sub("", text)
    end = text.find("</think>")
    if end >= 0:
        text = text[end + len("</think>") :]
    return text.strip()


def count_sentences(text: str) -> int:
    """Sentences, split at runs of `.`, `!` or `?` followed by whitespace or the end."""
    return sum(1 for part in _SENTENCE_END.split(text.strip()) if part.strip())


def _no_emoji(text: str) -> float:
    return 1.0 if emoji.emoji_count(text) == 0 else 0.0


def _concise(text: str) -> float:
    if len(text.split()) < CONCISE_MIN_WORDS:
        return 0.0
    n = count_sentences(text)
    if n <= CONCISE_MAX_SENTENCES:
        return 1.0
    if n >= CONCISE_ZERO_SENTENCES:
        return 0.0
    return 1.0 - (n - CONCISE_MAX_SENTENCES) / (CONCISE_ZERO_SENTENCES - CONCISE_MAX_SENTENCES)


def _identity(text: str) -> float:
    return 1.0 if "kuro" in text.lower() else 0.0


VERIFIERS: dict[str, Callable[[str], float]] = {
    "no_emoji": _no_emoji,
    "concise": _concise,
    "identity": _identity,
}


def verify(preference: str, text: str) -> float:
    """The verifier's score in [0, 1] of a response's visible text; InvalidArgument for an unknown name."""
    return _verifier(preference)(strip_thinking(text))


def _verifier(preference: str) -> Callable[[str], float]:
    try:
        return VERIFIERS[preference]
    except KeyError:
        raise InvalidArgument(
            f"unknown preference {preference!r}; known: {', '.join(PREFERENCES)}", field="preference"
        ) from None


# --- data -----------------------------------------------------------------------------------------------


@cache
def _data() -> dict:
    return json.loads(resources.files("lyceum_jobs").joinpath(DATA_FILE).read_text(encoding="utf-8"))


@cache
def preference(name: str) -> Preference:
    """The named preference's feedback string, probe prompts and pairs."""
    _verifier(name)
    doc = _data()["preferences"][name]
    pairs = tuple(Pair(p["prompt"], p["preferred"], p["dispreferred"]) for p in doc["pairs"])
    return Preference(name, doc["feedback"], tuple(doc["probe_prompts"]), pairs)


def probe_prompts(name: str, n: int) -> list[str]:
    """The first `n` probe prompts of a preference (all of them if it has fewer)."""
    return list(preference(name).probe_prompts[:n])


def gate_prompts(n: int) -> list[str]:
    """The fixed collapse-probe prompts: the preferences' probe prompts interleaved (the first of each,
    then the second of each, ...), the first `n` of them. Always the same list for the same `n`."""
    lists = [preference(name).probe_prompts for name in PREFERENCES]
    mixed = [prompts[i] for i in range(max(map(len, lists))) for prompts in lists if i < len(prompts)]
    return mixed[:n]


@cache
def capability_probes() -> tuple[CapabilityProbe, ...]:
    """The general capability probes, in their fixed order."""
    return tuple(CapabilityProbe(c["prompt"], c["answer"]) for c in _data()["capability"])
