"""LM pretraining of the gated TransformerLM on text files; the tokenizer (GPT-2 BPE files, or a byte-level
BPE trained on the corpus) travels with every checkpoint so a resumed run tokenizes identically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lyceum_jobs.configs import LMPretrainConfig
from lyceum_ml.lm.config import LMConfig
from lyceum_ml.lm.data import read_documents, tokenize_documents, train_val_split
from lyceum_ml.lm.model import TransformerLM
from lyceum_ml.lm.train import LMTrainConfig, LMTrainer
from lyceum_ml.tokenization import load_gpt2_bpe, load_tokenizer, save_tokenizer, train_bpe
from lyceum_trainer.jobs import Built, JobContext

TOKENIZER_FILE = "tokenizer.json"


class KeepsTokenizer:
    """An LMTrainer whose checkpoints also hold its tokenizer."""

    def __init__(self, inner: LMTrainer) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def save(self, directory: Path) -> None:
        self.inner.save(directory)
        save_tokenizer(self.inner.tokenizer, Path(directory) / TOKENIZER_FILE)


def build(config: LMPretrainConfig, ctx: JobContext) -> Built:
    resume = ctx.resume
    c, t = config.corpus, config.train
    train_docs, val_docs = train_val_split(read_documents(c.paths, c.separator), c.val_fraction, t.seed)
    if resume is not None and (resume / TOKENIZER_FILE).exists():
        tokenizer = load_tokenizer(resume / TOKENIZER_FILE)
    elif config.tokenizer.kind == "gpt2":
        tokenizer = load_gpt2_bpe(config.tokenizer.path)  # type: ignore[arg-type]
    else:
        tokenizer = train_bpe(train_docs, config.tokenizer.vocab_size)
    torch.manual_seed(t.seed)
    model = TransformerLM(LMConfig(vocab_size=tokenizer.get_vocab_size(), **config.model.model_dump()))
    trainer = LMTrainer(
        model,
        tokenizer,
        tokenize_documents(train_docs, tokenizer),
        tokenize_documents(val_docs, tokenizer),
        LMTrainConfig(**t.model_dump()),  # the job's section mirrors LMTrainConfig field for field
    )
    return KeepsTokenizer(trainer), dict  # type: ignore[return-value]
