"""The model a fine-tuning job starts from, whichever kind it is: a Lyceum LM checkpoint or a Hugging Face
causal LM directory (safetensors, or a GGUF file dequantised; optionally quantised to 4-bit NF4 for QLoRA).
It offers what SFT needs of both the same way: tokenizing, the logits of a (packed) batch, and writing the
whole model back out in its own format."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lyceum_ml.architecture import architecture, describe
from lyceum_ml.lm.checkpoint import load_lm, save_lm
from lyceum_ml.lm.model import DynamicGate
from lyceum_ml.tokenization import EOS

Kind = Literal["lyceum", "hf"]


@dataclass
class BaseLM:
    model: nn.Module
    tokenizer: Any  # tokenizers.Tokenizer (Lyceum LM) or a transformers tokenizer
    kind: Kind
    source: Path

    @property
    def architecture(self) -> str:
        return architecture(self.model)

    # --- text --------------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text`, without special tokens added around it."""
        if self.kind == "lyceum":
            return self.tokenizer.encode(text, add_special_tokens=False).ids
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @property
    def eos_text(self) -> str:
        return EOS if self.kind == "lyceum" else (self.tokenizer.eos_token or "")

    @property
    def bos_id(self) -> int | None:
        """The id to start every example with, where the tokenizer would add one."""
        if self.kind == "hf" and getattr(self.tokenizer, "add_bos_token", False):
            return self.tokenizer.bos_token_id
        return None

    @property
    def pad_id(self) -> int:
        if self.kind == "lyceum":
            return self.tokenizer.token_to_id(EOS) or 0
        tok = self.tokenizer
        return next(i for i in (tok.pad_token_id, tok.eos_token_id, 0) if i is not None)

    @property
    def chat_tokenizer(self) -> Any | None:
        """The tokenizer whose chat template the `tokenizer` template uses (None: it has none)."""
        return self.tokenizer if self.kind == "hf" else None

    # --- compute -----------------------------------------------------------------------------------
    def forward(self, module: nn.Module) -> Callable[[Tensor, Tensor | None], Tensor]:
        """(input_ids, positions or None) -> logits through `module` (the model, or a DDP wrapper of it)."""
        if self.kind == "lyceum":
            return lambda ids, positions: module(ids, positions=positions)
        return lambda ids, positions: module(input_ids=ids, position_ids=positions, use_cache=False).logits

    def freeze_gates(self) -> None:
        """A Lyceum LM's DynamicGates stay at identity (nothing feeds them a signal in SFT)."""
        for module in self.model.modules():
            if isinstance(module, DynamicGate):
                module.requires_grad_(False)

    # --- output ------------------------------------------------------------------------------------
    def save(self, directory: Path, metadata: dict[str, Any]) -> dict[str, Any]:
        """Writes the whole model (weights + tokenizer) in its own format; returns the registry metadata of
        a language model (architecture, linear modules, `metadata`)."""
        full = {**metadata, **describe(self.model)}
        if self.kind == "lyceum":
            save_lm(directory, self.model, self.tokenizer, full)  # type: ignore[arg-type]
        else:
            self.model.save_pretrained(directory, safe_serialization=True)
            self.tokenizer.save_pretrained(directory)
        return full


def load_base(
    path: str | Path,
    gguf_file: str | None = None,
    quantize_4bit: bool = False,
    device: str | torch.device = "cpu",
) -> BaseLM:
    """Loads the model at `path` in fp32 (local files only). ValueError naming what is wrong otherwise."""
    path = Path(path)
    config = path / "config.json"
    if gguf_file is None and not config.exists():
        raise ValueError(f"base model {path} has no config.json")
    doc = json.loads(config.read_text()) if config.exists() else {}
    if doc.get("kind") == "lm":
        if quantize_4bit:
            raise ValueError("train.method 'qlora' needs a Hugging Face base model, not a Lyceum LM")
        loaded = load_lm(path, device=device, dtype=torch.float32)
        return BaseLM(loaded.model, loaded.tokenizer, "lyceum", path)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    options: dict[str, Any] = {"local_files_only": True, "dtype": torch.float32}
    if gguf_file is not None:
        options["gguf_file"] = gguf_file
    tokenizer = AutoTokenizer.from_pretrained(path, **{k: v for k, v in options.items() if k != "dtype"})
    if quantize_4bit:
        from transformers import BitsAndBytesConfig

        options["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        )
    model = AutoModelForCausalLM.from_pretrained(path, **options)
    if quantize_4bit:
        _keep_4bit_trainable(model)
    else:
        model = model.to(device)
    model.config.use_cache = False
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return BaseLM(model, tokenizer, "hf", path)


def _keep_4bit_trainable(model: nn.Module) -> None:
    """On CPUs with AVX512-BF16, bitsandbytes repacks a 4-bit layer's weight for a faster kernel the first
    time it runs in eval mode, and never back: every later forward, training included, takes that kernel,
    which has no backward, so the LoRA above it gets zero gradients after the first evaluation. Training
    models opt out."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
