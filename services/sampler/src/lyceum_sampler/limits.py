"""The sampler's request limits and the checks every entry point shares: sampling parameters and prompts."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lyceum_core.errors import InvalidArgument
from lyceum_ml.causal_lm import CausalLM
from lyceum_ml.sampling import SamplingParams


@dataclass(frozen=True)
class Limits:
    max_prompt_tokens: int | None = None  # None = as many as the model's context holds
    max_new_tokens: int = 4096
    default_threshold: float = 0.01
    default_other_top_k: int = 10


def check_params(params: SamplingParams | None) -> SamplingParams:
    """The shaping params (defaults if None), each checked with the offending field named."""
    params = params or SamplingParams()
    checks = [
        ("temperature", params.temperature > 0 and math.isfinite(params.temperature), "must be > 0"),
        ("top_k", params.top_k >= 0, "must be >= 0 (0 = off)"),
        ("top_p", 0 < params.top_p <= 1, "must be in (0, 1]"),
        (
            "repetition_penalty",
            1 <= params.repetition_penalty < float("inf"),
            "must be >= 1 (1 = off)",
        ),
        ("presence_penalty", -2 <= params.presence_penalty <= 2, "must be in [-2, 2] (0 = off)"),
        ("frequency_penalty", -2 <= params.frequency_penalty <= 2, "must be in [-2, 2] (0 = off)"),
    ]
    for name, ok, rule in checks:
        if not ok:
            raise InvalidArgument(f"params.{name} {rule}", field=f"params.{name}")
    try:
        params.validate()
    except ValueError as exc:
        raise InvalidArgument(str(exc), field="params") from None
    return params


def prompt_ids(lm: CausalLM, prompt: str, limits: Limits, field: str = "prompt") -> list[int]:
    """A prompt's token ids, checked: not empty, within the prompt limit and the model's context."""
    if not prompt:
        raise InvalidArgument(f"{field} must not be empty", field=field)
    ids = lm.encode(prompt)
    limit = min(lm.max_context, limits.max_prompt_tokens or lm.max_context)
    if not ids:
        raise InvalidArgument(f"the {field} encodes to no tokens", field=field)
    if len(ids) > limit:
        raise InvalidArgument(f"the {field} is {len(ids)} tokens long; the limit is {limit}", field=field)
    return ids
