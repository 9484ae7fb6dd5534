"""Tokenizers for the LM: the GPT-2 BPE gives GPT-2's ids, a trained byte-level BPE is deterministic and
lossless, both treat `<|endoftext|>` as one token, and tokenizer.json round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from lyceum_ml.tokenization import EOS, eos_id, load_gpt2_bpe, load_tokenizer, save_tokenizer, train_bpe

DATA = Path("/work/shared/data")
GPT2 = DATA / "gpt2_tokenizer"
TEXT = (DATA / "tinystories" / "tinystories_val_head.txt").read_text()[:20_000]

pytestmark = pytest.mark.skipif(not GPT2.exists(), reason="shared data not present")


def test_gpt2_bpe_gives_gpt2_ids() -> None:
    tok = load_gpt2_bpe(GPT2)
    assert tok.encode("Hello world").ids == [15496, 995]
    assert tok.encode(" Once upon a time").ids == [4874, 2402, 257, 640]
    assert eos_id(tok) == 50256 and tok.get_vocab_size() == 50257
    assert tok.encode(f"The end.{EOS}Once").ids[-2:] == [50256, 7454]
    sample = "Spot saw the shiny car!\n\n  Ünïcode ✓"
    assert tok.decode(tok.encode(sample).ids) == sample


def test_trained_bpe_is_deterministic_and_lossless(tmp_path: Path) -> None:
    a, b = train_bpe([TEXT], 512), train_bpe([TEXT], 512)
    assert a.to_str() == b.to_str()
    assert a.get_vocab_size() == 512 and eos_id(a) == 0
    ids = a.encode(TEXT[:2000]).ids
    assert a.decode(ids) == TEXT[:2000]
    assert len(ids) < 2000 / 2  # merges compress the text
    assert a.encode(f"a{EOS}b").ids == [*a.encode("a").ids, 0, *a.encode("b").ids]
    assert a.decode(a.encode("😀 never seen").ids) == "😀 never seen"  # byte fallback

    path = save_tokenizer(a, tmp_path)
    assert path.name == "tokenizer.json"
    loaded = load_tokenizer(tmp_path)
    assert loaded.encode(TEXT[:500]).ids == a.encode(TEXT[:500]).ids
    assert eos_id(loaded) == 0


def test_train_bpe_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="256"):
        train_bpe([TEXT], 200)
    with pytest.raises(ValueError, match="special_tokens"):
        train_bpe([TEXT], 512, special_tokens=["<pad>"])
