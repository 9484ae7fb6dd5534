"""Rendered rows -> token ids and labels: the loss covers only learned segments (labels of every other token
are IGNORE), truncation at max_seq_length never keeps an example without a learned token (it is dropped and
counted instead), and packing puts several examples in one row with positions restarting at 0 per example
(the model attends within an example only: lm.model.packed_mask, transformers' packed-sequence masks)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lyceum_ml.sft.templates import Segment

IGNORE = -100  # the label of a token the loss skips (transformers' and torch's convention)


@dataclass(frozen=True, slots=True)
class Example:
    input_ids: list[int]
    labels: list[int]  # labels[t] = input_ids[t] where learned, else IGNORE; predicted from tokens < t
    positions: list[int] | None = None  # packed rows only: each example's positions count up from 0

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class EncodeStats:
    examples: int = 0
    truncated: int = 0
    dropped_no_target: int = 0  # no learned token left within max_seq_length
    learned_tokens: int = 0
    tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "examples": self.examples,
            "truncated": self.truncated,
            "dropped_no_target": self.dropped_no_target,
            "learned_tokens": self.learned_tokens,
            "tokens": self.tokens,
        }


def encode(
    segments: Sequence[Segment], tokenize: Callable[[str], list[int]], bos: int | None = None
) -> Example:
    """Segments -> one example: each segment tokenized on its own (a boundary never merges a prompt token
    with a response token), `bos` first when the model expects one."""
    ids: list[int] = [] if bos is None else [bos]
    labels: list[int] = [] if bos is None else [IGNORE]
    for seg in segments:
        piece = tokenize(seg.text)
        ids += piece
        labels += piece if seg.learn else [IGNORE] * len(piece)
    return Example(ids, labels)


def has_target(example: Example) -> bool:
    """True if some token after the first is learned (the first token is never predicted)."""
    return any(label != IGNORE for label in example.labels[1:])


def truncate_all(examples: Iterable[Example], max_len: int, stats: EncodeStats) -> list[Example]:
    """Examples cut to max_len tokens; those left without a learned token are dropped (and counted)."""
    kept: list[Example] = []
    for ex in examples:
        if len(ex) > max_len:
            stats.truncated += 1
            ex = Example(ex.input_ids[:max_len], ex.labels[:max_len])
        if not has_target(ex):
            stats.dropped_no_target += 1
            continue
        kept.append(ex)
        stats.examples += 1
        stats.tokens += len(ex)
        stats.learned_tokens += sum(label != IGNORE for label in ex.labels[1:])
    return kept


def pack(examples: Sequence[Example], max_len: int) -> list[Example]:
    """Consecutive examples packed greedily into rows of at most max_len tokens, in order; positions restart
    at every example so none attends to another."""
    rows: list[Example] = []
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for ex in examples:
        if ids and len(ids) + len(ex) > max_len:
            rows.append(Example(ids, labels, positions))
            ids, labels, positions = [], [], []
        ids += ex.input_ids
        # the first token of an example is never a target of the previous one's last token
        labels += [IGNORE, *ex.labels[1:]]
        positions += list(range(len(ex)))
    if ids:
        rows.append(Example(ids, labels, positions))
    return rows


@dataclass(frozen=True, slots=True)
class Batch:
    input_ids: Tensor  # (B, T), right-padded
    labels: Tensor  # (B, T), IGNORE on padding
    positions: Tensor | None  # (B, T) for packed rows, else None (plain causal attention)
    tokens: int  # real (non-padding) tokens


def collate(rows: Sequence[Example], pad_id: int) -> Batch:
    """Rows -> one right-padded batch. Padding comes after every real token, so causal attention never lets
    a real token see it, and its labels are IGNORE."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    packed = any(r.positions is not None for r in rows)
    positions = torch.zeros((len(rows), width), dtype=torch.long) if packed else None
    for i, r in enumerate(rows):
        n = len(r)
        ids[i, :n] = torch.tensor(r.input_ids)
        labels[i, :n] = torch.tensor(r.labels)
        if positions is not None:
            own = r.positions if r.positions is not None else list(range(n))
            positions[i, :n] = torch.tensor(own)
            positions[i, n:] = torch.arange(width - n)  # padding: an example of its own
    return Batch(ids, labels, positions, tokens=sum(len(r) for r in rows))
