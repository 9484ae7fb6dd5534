"""Checkpoints as plain directories: `config.json` (kind, model config, task vocabulary, metadata) and
`model.safetensors` (weights). Loading never unpickles anything."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from lyceum_ml.dfm.config import DFMConfig
from lyceum_ml.dfm.model import DFM
from lyceum_ml.dfm.vocab import TaskVocab

FORMAT = 1
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


@dataclass
class LoadedDFM:
    model: DFM
    vocab: TaskVocab
    metadata: dict[str, Any] = field(default_factory=dict)


def write_checkpoint(
    path: str | Path, model: torch.nn.Module, doc: dict[str, Any], extra: Callable[[Path], None] | None = None
) -> Path:
    """Writes a checkpoint directory atomically: weights (fp32 safetensors), `doc` as config.json, and
    whatever `extra` writes into it (a tokenizer, say); built in a temporary sibling, then renamed in."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
        save_file(state, tmp / WEIGHTS_FILE)
        if extra is not None:
            extra(tmp)
        (tmp / CONFIG_FILE).write_text(json.dumps({"format": FORMAT, **doc}, indent=1))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def save_dfm(path: str | Path, model: DFM, vocab: TaskVocab, metadata: dict[str, Any] | None = None) -> Path:
    """Writes a DFM checkpoint (config, task vocabulary, metadata, weights) atomically."""
    doc = {"kind": "dfm", "config": model.cfg.to_dict(), "tasks": vocab.tasks, "metadata": metadata or {}}
    return write_checkpoint(path, model, doc)


def load_dfm(
    path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> LoadedDFM:
    """Reads a DFM checkpoint into an eval-mode model on `device` in `dtype`."""
    path = Path(path)
    doc = json.loads((path / CONFIG_FILE).read_text())
    if doc.get("kind") != "dfm":
        raise ValueError(f"{path} is not a DFM checkpoint (kind={doc.get('kind')!r})")
    model = DFM(DFMConfig.from_dict(doc["config"]))
    model.load_state_dict(load_file(path / WEIGHTS_FILE))
    model.to(device=device, dtype=dtype).eval()
    return LoadedDFM(model=model, vocab=TaskVocab(doc["tasks"]), metadata=doc.get("metadata", {}))
