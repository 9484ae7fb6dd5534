"""Tokenizers for the LM: the GPT-2 BPE gives GPT-2's ids, a trained byte-level BPE is deterministic and
lossless, both treat `<|endoftext|>` as one token, and tokenizer.json round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.data import require_shared

from lyceum_ml.tokenization import EOS, eos_id, load_gpt2_bpe, load_tokenizer, save_tokenizer, train_bpe


@pytest.fixture(scope="module")
def gpt2() -> Path:
    return require_shared("gpt2_tokenizer")


@pytest.fixture(scope="module")
def text() -> str:
    return require_shared("tinystories", "tinystories_val_head.txt").read_text()[:20_000]


def test_gpt2_bpe_gives_gpt2_ids(gpt2: Path) -> None:
    tok = load_gpt2_bpe(gpt2)
    assert tok.encode("Hello world").ids == [15496, 995]
    assert tok.encode(" Once upon a time").ids == [4874, 2402, 257, 640]
    assert eos_id(tok) == 50256 and tok.get_vocab_size() == 50257
    assert tok.encode(f"The end.{EOS}Once").ids[-2:] == [50256, 7454]
    sample = "Spot saw the shiny car!\n\n  Ünïcode ✓"
    assert tok.decode(tok.encode(sample).ids) == sample


def test_trained_bpe_is_deterministic_and_lossless(tmp_path: Path, text: str) -> None:
    a, b = train_bpe([text], 512), train_bpe([text], 512)
    assert a.to_str() == b.to_str()
    assert a.get_vocab_size() == 512 and eos_id(a) == 0
    ids = a.encode(text[:2000]).ids
    assert a.decode(ids) == text[:2000]
    assert len(ids) < 2000 / 2  # merges compress the text
    assert a.encode(f"a{EOS}b").ids == [*a.encode("a").ids, 0, *a.encode("b").ids]
    assert a.decode(a.encode("😀 never seen").ids) == "😀 never seen"  # byte fallback

    path = save_tokenizer(a, tmp_path)
    assert path.name == "tokenizer.json"
    loaded = load_tokenizer(tmp_path)
    assert loaded.encode(text[:500]).ids == a.encode(text[:500]).ids
    assert eos_id(loaded) == 0


def test_train_bpe_rejects_bad_arguments(text: str) -> None:
    with pytest.raises(ValueError, match="256"):
        train_bpe([text], 200)
    with pytest.raises(ValueError, match="special_tokens"):
        train_bpe([text], 512, special_tokens=["<pad>"])
