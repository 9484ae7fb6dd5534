"""Statistics of a dataset's rows: count, characters, tokens under a tokenizer (when one is given), the
exact-duplicate rate and length percentiles in characters and tokens."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lyceum_jobs.datasets.cleaning import row_key
from lyceum_jobs.datasets.rows import row_text

if TYPE_CHECKING:  # the gateway has `tokenizers`; nothing here needs it unless a tokenizer is passed
    from tokenizers import Tokenizer

PERCENTILES = (50, 90, 99)
_ENCODE_BATCH = 1024


def describe(
    format: str, rows: Sequence[Mapping[str, Any]], tokenizer: Tokenizer | None = None
) -> dict[str, Any]:
    """`{"rows", "characters", "tokens", "duplicate_rate", "length_chars", "length_tokens"}`: lengths are of
    each row's text (`row_text`), summarised as `{"min", "p50", "p90", "p99", "max"}` (nearest-rank
    percentiles); `tokens` and `length_tokens` are None without a tokenizer (special tokens not added)."""
    texts = [row_text(format, row) for row in rows]
    chars = [len(t) for t in texts]
    distinct = len({row_key(row) for row in rows})
    tokens = None if tokenizer is None else count_tokens(tokenizer, texts)
    return {
        "rows": len(rows),
        "characters": sum(chars),
        "tokens": None if tokens is None else sum(tokens),
        "duplicate_rate": 0.0 if not rows else (len(rows) - distinct) / len(rows),
        "length_chars": summary(chars),
        "length_tokens": None if tokens is None else summary(tokens),
    }


def count_tokens(tokenizer: Tokenizer, texts: Sequence[str]) -> list[int]:
    """How many tokens each text has under `tokenizer` (a `tokenizers.Tokenizer`)."""
    counts: list[int] = []
    for start in range(0, len(texts), _ENCODE_BATCH):
        batch = tokenizer.encode_batch(list(texts[start : start + _ENCODE_BATCH]), add_special_tokens=False)
        counts.extend(len(encoding.ids) for encoding in batch)
    return counts


def summary(values: Sequence[int]) -> dict[str, int] | None:
    """min, nearest-rank p50/p90/p99 and max of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    out = {"min": ordered[0]}
    for p in PERCENTILES:
        out[f"p{p}"] = ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]
    out["max"] = ordered[-1]
    return out
