"""LM data: documents from either separator, a token stream with EOS after each document, a document-level
train/val split, and a seeded window sampler whose state (seed, draws) resumes and shards exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures.data import require_shared

from lyceum_ml.lm.data import (
    BatchSampler,
    eval_windows,
    read_documents,
    split_documents,
    tokenize_documents,
    train_val_split,
)
from lyceum_ml.tokenization import train_bpe


def test_documents_split_on_either_separator() -> None:
    text = "One.\n\nTwo\nlines.\n  \nThree.\n"
    assert split_documents(text) == ["One.", "Two\nlines.", "Three."]
    assert split_documents("a<|endoftext|>\n\nb\n\nc<|endoftext|>  ") == ["a", "b\n\nc"]
    assert split_documents("a<|endoftext|>b", separator="blank_lines") == ["a<|endoftext|>b"]
    assert split_documents("a\n\nb", separator="eot") == ["a\n\nb"]
    with pytest.raises(ValueError, match="separator"):
        split_documents("a", separator="eos")  # type: ignore[arg-type]


def test_shared_corpora_read_as_documents() -> None:
    stories = require_shared("tinystories")
    sample = read_documents([stories / "tinystories_sample.txt"])
    assert len(sample) == 5  # <|endoftext|>-separated
    head = read_documents([stories / "tinystories_val_head.txt"])
    # the README's 4,300 "\n\n" paragraphs, plus 2 split at lines holding only a space (blank to a reader)
    assert len(head) == 4302 and head[0].startswith("Spot. Spot saw the shiny car")


def test_stream_has_eos_after_each_document_and_split_is_by_document() -> None:
    docs = [f"Story number {i} about a cat." for i in range(40)]
    tok = train_bpe(docs, 300)
    stream = tokenize_documents(docs, tok)
    assert stream.dtype == np.uint16
    assert (stream == 0).sum() == 40 and stream[-1] == 0
    assert tok.decode(stream[: np.argmax(stream == 0)].tolist()) == docs[0]

    train, val = train_val_split(docs, 0.1, seed=3)
    assert len(val) == 4 and sorted(train + val) == sorted(docs)
    assert train == [d for d in docs if d in train]  # corpus order kept
    assert train_val_split(docs, 0.1, seed=3) == (train, val)
    assert train_val_split(docs, 0.1, seed=4)[1] != val
    assert train_val_split(docs[:1], 0.5)[1] == []  # never everything


def test_sampler_is_seeded_resumable_and_shardable() -> None:
    tokens = np.arange(1000, dtype=np.uint16)
    a = BatchSampler(tokens, batch_size=4, seq_len=16, seed=5)
    x, y = a.next()
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:, -1], x[:, -1] + 1)  # consecutive windows
    assert int(y.max()) <= 999

    b = BatchSampler(tokens, batch_size=4, seq_len=16, seed=5)
    b.load_state_dict(a.state_dict())  # resume mid-stream
    assert all(torch.equal(p, q) for p, q in zip(a.next(), b.next(), strict=True))
    c = BatchSampler(tokens, batch_size=4, seq_len=16, seed=6)
    assert not torch.equal(c.next()[0], x)

    whole = BatchSampler(tokens, batch_size=4, seq_len=16, seed=9).next()[0]
    shards = [BatchSampler(tokens, 2, 16, seed=9, rank=r, world_size=2).next()[0] for r in range(2)]
    assert torch.equal(torch.cat(shards), whole)

    with pytest.raises(ValueError):
        BatchSampler(tokens[:16], batch_size=1, seq_len=16)


def test_eval_windows_are_fixed_and_capped() -> None:
    tokens = np.arange(100, dtype=np.uint16)
    x, y = eval_windows(tokens, seq_len=10, n_windows=50)
    assert x.shape == (9, 10) and x[1, 0] == 10 and y[0, -1] == 10
    with pytest.raises(ValueError):
        eval_windows(tokens[:10], seq_len=10, n_windows=1)
