"""General capability, cheaply: short factual questions with reference answers, scored by the mean per-token
log-prob of the reference answer under the model, teacher-forced after the chat-rendered question. No
generation and no judge, so it is deterministic, fast and monotone in how well the model still knows plain
facts; log-prob margins of preferred over dispreferred responses use the same scoring."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from lyceum_ml.probes.generate import chat_prompt, score
from lyceum_ml.sft.base import BaseLM


def response_logprobs(base: BaseLM, module: nn.Module, prompt: str, response: str) -> list[float]:
    """Per-token log-probs of `response` as the assistant's answer to the one-turn chat `prompt`."""
    prompt_ids, _ = chat_prompt(base, prompt)
    response_ids = base.tokenize(response)
    return score(base, module, prompt_ids, response_ids)


def capability(base: BaseLM, module: nn.Module, probes: Sequence[tuple[str, str]]) -> float:
    """Mean over (question, answer) probes of the answer's mean per-token log-prob (nats, <= 0; higher is
    better). exp() of it is a per-token likelihood, which is what a fraction of the parent's compares."""
    if not probes:
        raise ValueError("no capability probes")
    means = []
    for prompt, answer in probes:
        lps = response_logprobs(base, module, prompt, answer)
        means.append(sum(lps) / len(lps))
    return sum(means) / len(means)


def logprob_margin(base: BaseLM, module: nn.Module, pairs: Sequence[tuple[str, str, str]]) -> float:
    """Mean over (prompt, preferred, dispreferred) of sum log p(preferred) - sum log p(dispreferred) (CLaaS's
    margin, in nats): it rises as the model moves towards the preferred kind of answer."""
    if not pairs:
        raise ValueError("no pairs")
    margins = [
        sum(response_logprobs(base, module, prompt, good)) - sum(response_logprobs(base, module, prompt, bad))
        for prompt, good, bad in pairs
    ]
    return sum(margins) / len(margins)
