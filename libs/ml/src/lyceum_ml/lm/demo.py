"""Builds the demo language model that `make run` serves in the token wheel: a small gated TransformerLM and a
byte-level BPE, both trained here by Lyceum's own code on the TinyStories sample in ../shared/data (or, where
that is missing, on the text passed with --corpus).

    python -m lyceum_ml.lm.demo --out var/models/lm-demo [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lyceum_ml.lm.config import LMConfig
from lyceum_ml.lm.data import read_documents, tokenize_documents, train_val_split
from lyceum_ml.lm.model import TransformerLM
from lyceum_ml.lm.train import LMTrainConfig, LMTrainer
from lyceum_ml.tokenization import train_bpe

DEFAULT_CORPUS = (
    Path(__file__).resolve().parents[5].parent / "shared/data/tinystories/tinystories_val_head.txt"
)


def build(out: Path, corpus: Path, steps: int = 300, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    train_docs, val_docs = train_val_split(read_documents([corpus]), 0.05, seed)
    tokenizer = train_bpe(train_docs, vocab_size=1024)
    model = TransformerLM(
        LMConfig(
            vocab_size=tokenizer.get_vocab_size(),
            d_model=128,
            n_layer=3,
            n_head=4,
            n_kv_head=2,
            max_seq_len=256,
        )
    )
    cfg = LMTrainConfig(steps=steps, batch_size=16, seq_len=128, lr=3e-3, warmup_steps=20, seed=seed)
    trainer = LMTrainer(
        model,
        tokenizer,
        tokenize_documents(train_docs, tokenizer),
        tokenize_documents(val_docs, tokenizer),
        cfg,
        device="cpu",
    )
    start = time.perf_counter()
    for _ in range(0, steps, 50):
        figures = trainer.run(50)
        print(f"  step {trainer.step}: loss {figures['loss']:.3f}", flush=True)
    metrics = trainer.evaluate()
    metadata = trainer.export(out)
    return {"train_seconds": round(time.perf_counter() - start, 1), **metrics, "metadata": metadata}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("var/models/lm-demo"))
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    if not args.corpus.exists():
        raise SystemExit(
            f"corpus {args.corpus} not found; pass --corpus FILE (text, stories separated by blank lines)"
        )
    print(f"training the demo LM on {args.corpus} -> {args.out}", flush=True)
    result = build(args.out, args.corpus, args.steps)
    print(json.dumps({k: v for k, v in result.items() if k != "metadata"}, indent=1))


if __name__ == "__main__":
    main()
