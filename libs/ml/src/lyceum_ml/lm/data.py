"""LM data: text files -> documents -> one token stream (EOS after every document) split by document into
train/val, and a seeded sampler of random windows whose whole state is (seed, draws), so resume is exact."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import torch
from tokenizers import Tokenizer

from lyceum_ml.tokenization import EOS, eos_id

Separator = Literal["auto", "eot", "blank_lines"]
_BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n")

T = TypeVar("T")


def split_documents(text: str, separator: Separator = "auto") -> list[str]:
    """Documents separated by `<|endoftext|>` ("eot") or by blank lines ("blank_lines"; whitespace-only lines
    count as blank); "auto" picks "eot" when the text contains the token. Documents are stripped, empty ones
    dropped."""
    if separator == "auto":
        separator = "eot" if EOS in text else "blank_lines"
    if separator not in ("eot", "blank_lines"):
        raise ValueError(f"separator must be 'auto', 'eot' or 'blank_lines', not {separator!r}")
    parts = text.split(EOS) if separator == "eot" else _BLANK_LINES.split(text)
    return [d for d in (p.strip() for p in parts) if d]


def read_documents(paths: Iterable[str | Path], separator: Separator = "auto") -> list[str]:
    """The documents of every file, in order (the separator is decided per file under "auto"). A `.jsonl`
    file (an uploaded `text` dataset) holds one document per line, as {"text": ...}."""
    documents: list[str] = []
    for p in map(Path, paths):
        text = p.read_text(encoding="utf-8")
        if p.suffix == ".jsonl":
            documents += [json.loads(line)["text"] for line in text.splitlines() if line.strip()]
        else:
            documents += split_documents(text, separator)
    return documents


def train_val_split(
    documents: Sequence[T], val_fraction: float = 0.05, seed: int = 0
) -> tuple[list[T], list[T]]:
    """A seeded random set of whole documents is held out (at least one when val_fraction > 0); each split
    keeps the corpus order."""
    n_val = min(len(documents) - 1, max(1, round(len(documents) * val_fraction))) if val_fraction > 0 else 0
    held = set(np.random.default_rng(seed).permutation(len(documents))[:n_val].tolist())
    train = [d for i, d in enumerate(documents) if i not in held]
    return train, [d for i, d in enumerate(documents) if i in held]


def tokenize_documents(documents: Sequence[str], tokenizer: Tokenizer) -> np.ndarray:
    """One stream: each document's ids followed by EOS; uint16 when the vocabulary fits, else uint32."""
    dtype = np.uint16 if tokenizer.get_vocab_size() <= np.iinfo(np.uint16).max + 1 else np.uint32
    eos = eos_id(tokenizer)
    ids = [np.array([*enc.ids, eos], dtype=dtype) for enc in tokenizer.encode_batch(list(documents))]
    return np.concatenate(ids) if ids else np.zeros(0, dtype=dtype)


@dataclass
class BatchSampler:
    """Random windows of seq_len + 1 tokens -> (x, y) int64 tensors of shape (batch_size, seq_len).

    Draw i uses its own generator seeded by (seed, i), so the state is just the draw counter. Under data
    parallelism every rank draws the same global batch of batch_size * world_size windows and keeps its slice:
    the data seen does not depend on how the batch is sharded.
    """

    tokens: np.ndarray
    batch_size: int  # windows per rank per draw
    seq_len: int
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    draws: int = 0

    def __post_init__(self) -> None:
        if len(self.tokens) < self.seq_len + 1:
            raise ValueError(f"{len(self.tokens)} tokens cannot fill one window of {self.seq_len + 1}")

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.draws])
        starts = rng.integers(0, len(self.tokens) - self.seq_len, size=self.batch_size * self.world_size)
        starts = starts[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        window = torch.from_numpy(self.tokens[starts[:, None] + np.arange(self.seq_len + 1)].astype(np.int64))
        self.draws += 1
        return window[:, :-1].contiguous(), window[:, 1:].contiguous()  # (B, T) inputs, (B, T) targets

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "draws": self.draws}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed, self.draws = int(state["seed"]), int(state["draws"])


def eval_windows(tokens: np.ndarray, seq_len: int, n_windows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n_windows consecutive, non-overlapping windows (fewer if the stream is short): a fixed
    evaluation set, so successive evaluations are comparable. Returns (x, y) of shape (N, seq_len)."""
    n = min(n_windows, (len(tokens) - 1) // seq_len)
    if n < 1:
        raise ValueError(f"{len(tokens)} tokens cannot fill one evaluation window of {seq_len + 1}")
    starts = np.arange(n) * seq_len
    window = torch.from_numpy(tokens[starts[:, None] + np.arange(seq_len + 1)].astype(np.int64))
    return window[:, :-1].contiguous(), window[:, 1:].contiguous()
