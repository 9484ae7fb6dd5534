"""LM checkpoints as plain directories: `config.json` (kind "lm", model config, metadata), `model.safetensors`
(weights) and `tokenizer.json`. Written atomically; loading never unpickles anything."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer

from lyceum_ml.checkpoint import CONFIG_FILE, WEIGHTS_FILE, write_checkpoint
from lyceum_ml.lm.config import LMConfig
from lyceum_ml.lm.model import TransformerLM
from lyceum_ml.tokenization import TOKENIZER_FILE, eos_id, load_gpt2_bpe, load_tokenizer, save_tokenizer


@dataclass
class LoadedLM:
    model: TransformerLM
    tokenizer: Tokenizer
    metadata: dict[str, Any] = field(default_factory=dict)


def as_tokenizer(tokenizer: Tokenizer | str | Path) -> Tokenizer:
    """A Tokenizer, or a directory holding `tokenizer.json` or GPT-2 style `vocab.json` + `merges.txt`."""
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    path = Path(tokenizer)
    if path.is_file() or (path / TOKENIZER_FILE).exists():
        return load_tokenizer(path)
    return load_gpt2_bpe(path)


def save_lm(
    path: str | Path,
    model: TransformerLM,
    tokenizer: Tokenizer | str | Path,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Writes an LM checkpoint atomically (a temporary sibling directory renamed into place)."""
    path = Path(path)
    tokenizer = as_tokenizer(tokenizer)
    if tokenizer.get_vocab_size() > model.cfg.vocab_size:
        raise ValueError(
            f"tokenizer has {tokenizer.get_vocab_size()} tokens, model only {model.cfg.vocab_size}"
        )
    doc = {"kind": "lm", "config": model.cfg.to_dict(), "eos_id": eos_id(tokenizer)}
    doc["metadata"] = metadata or {}
    return write_checkpoint(path, model, doc, lambda d: save_tokenizer(tokenizer, d / TOKENIZER_FILE))


def load_lm(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> LoadedLM:
    """Reads an LM checkpoint into an eval-mode model on `device` in `dtype`, with its tokenizer."""
    path = Path(path)
    doc = json.loads((path / CONFIG_FILE).read_text())
    if doc.get("kind") != "lm":
        raise ValueError(f"{path} is not an LM checkpoint (kind={doc.get('kind')!r})")
    model = TransformerLM(LMConfig.from_dict(doc["config"]))
    model.load_state_dict(load_file(path / WEIGHTS_FILE))
    model.to(device=device, dtype=dtype).eval()
    return LoadedLM(
        model=model, tokenizer=load_tokenizer(path / TOKENIZER_FILE), metadata=doc.get("metadata", {})
    )
