"""Byte-level BPE tokenizers for the LM (the `tokenizers` library): the GPT-2 vocabulary, or a small one
trained on a corpus. Both know `<|endoftext|>` as the end-of-document token; stored as `tokenizer.json`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

EOS = "<|endoftext|>"
TOKENIZER_FILE = "tokenizer.json"


def _byte_level(tokenizer: Tokenizer) -> Tokenizer:
    """GPT-2's byte-level pipeline: no prefix space, exact round trip of any text."""
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def load_gpt2_bpe(directory: str | Path) -> Tokenizer:
    """GPT-2's BPE from `vocab.json` + `merges.txt` ("Hello world" -> [15496, 995]; EOS = 50256)."""
    directory = Path(directory)
    bpe = models.BPE.from_file(str(directory / "vocab.json"), str(directory / "merges.txt"))
    tokenizer = _byte_level(Tokenizer(bpe))
    tokenizer.add_special_tokens([EOS])  # already in the vocabulary; registering it keeps it unsplit
    return tokenizer


def train_bpe(texts: Iterable[str], vocab_size: int, special_tokens: Sequence[str] = (EOS,)) -> Tokenizer:
    """Trains a byte-level BPE of `vocab_size` tokens (special tokens first, then the 256 bytes, then merges).

    Deterministic for given texts. Small vocabularies (a few hundred to a few thousand) train in seconds."""
    if EOS not in special_tokens:
        raise ValueError(f"special_tokens must include {EOS!r}")
    if vocab_size < 256 + len(special_tokens):
        raise ValueError(
            f"vocab_size={vocab_size} is below the 256 bytes plus {len(special_tokens)} specials"
        )
    tokenizer = _byte_level(Tokenizer(models.BPE()))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def eos_id(tokenizer: Tokenizer) -> int:
    """The id of `<|endoftext|>`."""
    token_id = tokenizer.token_to_id(EOS)
    if token_id is None:
        raise ValueError(f"tokenizer has no {EOS!r} token")
    return token_id


def save_tokenizer(tokenizer: Tokenizer, path: str | Path) -> Path:
    """Writes `tokenizer.json`; `path` is the file or a directory to put it in."""
    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    tokenizer.save(str(path))
    return path


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Reads a `tokenizer.json` (the file or its directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    return Tokenizer.from_file(str(path))
