"""Validated rows -> training examples for a base model: rendered through the template, tokenized with loss
masks, truncated (rows without a learned token dropped and counted) and optionally packed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from lyceum_ml.sft.base import BaseLM
from lyceum_ml.sft.examples import EncodeStats, Example, encode, pack, truncate_all
from lyceum_ml.sft.templates import render, resolve_template


def prepare(
    rows: Sequence[dict[str, Any]],
    data_format: str,
    template: str,
    base: BaseLM,
    max_len: int,
    packing: bool = False,
) -> tuple[list[Example], EncodeStats]:
    """The examples of `rows` (and what truncation did). ValueError naming the first row a template cannot
    render (1-based)."""
    resolved = resolve_template(template, data_format, base.chat_tokenizer)
    encoded = []
    for i, row in enumerate(rows, start=1):
        try:
            segments = render(row, data_format, resolved, base.eos_text, base.chat_tokenizer)
        except ValueError as exc:
            raise ValueError(f"row {i}: {exc}") from None
        encoded.append(encode(segments, base.tokenize, base.bos_id))
    stats = EncodeStats()
    examples = truncate_all(encoded, max_len, stats)
    return (pack(examples, max_len) if packing else examples), stats


def rows_sha256(rows: Sequence[dict[str, Any]]) -> str:
    """A hash of the training rows (canonical JSON, in order): which data an adapter was trained on."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()
