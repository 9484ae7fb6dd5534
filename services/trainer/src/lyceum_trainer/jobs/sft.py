"""Supervised fine-tuning: a registered language model (or a local Hugging Face directory, GGUF included)
fine-tuned on alpaca/chat/completion rows with LoRA, QLoRA or in full. Its results: an adapter (kind
`adapter`, its base pinned by version) and optionally the merged model, or for a full fine-tune the model.

The base is pinned at the first slice: a checkpoint remembers which version the alias named then, so a
resumed job trains on the same weights even if the alias has moved since."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lyceum_core.errors import FailedPrecondition, InvalidArgument
from lyceum_core.lora import default_target_modules
from lyceum_jobs.configs import SFTConfig
from lyceum_jobs.datasets import read_rows
from lyceum_ml.lm.data import train_val_split
from lyceum_ml.sft.base import BaseLM, load_base
from lyceum_ml.sft.prepare import prepare, rows_sha256
from lyceum_ml.sft.trainer import LoRAOptions, SFTTrainConfig, SFTTrainer
from lyceum_ml.training import Export
from lyceum_trainer.jobs import Built, JobContext, registry_key

PIN_FILE = "sft_base.json"  # in every checkpoint: the base version the job trains


class SFTJob:
    """The SFT trainer as the runner drives it: its checkpoints also pin the base, and it exports an
    adapter (and the merged model) or the fine-tuned model."""

    def __init__(self, inner: SFTTrainer, config: SFTConfig, base_key: str | None, facts: dict) -> None:
        self.inner, self.config, self.base_key, self.facts = inner, config, base_key, facts

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def save(self, directory: Path) -> None:
        self.inner.save(directory)
        (Path(directory) / PIN_FILE).write_text(json.dumps({"base": self.base_key}))

    def exports(self, directory: Path) -> list[Export]:
        """What the job registers: the adapter (+ merged model), or the fully fine-tuned model."""
        cfg, trainer = self.config, self.inner
        common = {
            **self.facts,
            "step": trainer.step,
            "train_config": asdict(trainer.cfg),
            **trainer.last_eval,
        }
        if cfg.train.method == "full":
            out = Path(directory) / "model"
            return [Export(out, "lm", None, trainer.save_model(out, {**common, "base": self.base_key}))]
        adapter = Path(directory) / "adapter"
        trainer.save_adapter(adapter)
        lora = {
            "r": cfg.lora.r,
            "alpha": cfg.lora.alpha,
            "dropout": cfg.lora.dropout,
            "target_modules": self.facts["target_modules"],
        }
        exports = [Export(adapter, "adapter", None, {**common, "base": self.base_key, "lora": lora})]
        if cfg.merged_as is not None:
            merged = Path(directory) / "merged"
            meta = trainer.save_model(merged, {**common, "merged_from": self.base_key, "lora": lora})
            exports.append(Export(merged, "lm", cfg.merged_as, meta))
        return exports


def build(config: SFTConfig, ctx: JobContext) -> Built:
    base, base_key = _base(config, ctx)
    rows = read_rows(config.data.train, config.data.format)
    if config.data.valid is not None:
        valid_rows = read_rows(config.data.valid, config.data.format)
    else:
        rows, valid_rows = train_val_split(rows, config.data.val_fraction, config.data.seed)
    d = config.data
    try:
        train, stats = prepare(rows, d.format, d.template, base, d.max_seq_length, d.packing)
        valid, _ = prepare(valid_rows, d.format, d.template, base, d.max_seq_length, d.packing)
    except ValueError as exc:
        raise InvalidArgument(f"config.data: {exc}", field="config.data") from None
    if not train:
        raise InvalidArgument(
            f"config.data: no example keeps a learned token within max_seq_length={d.max_seq_length}",
            field="config.data.max_seq_length",
        )
    targets = _target_modules(config, base)
    init = None
    if config.init_adapter is not None:
        record, init = ctx.model(config.init_adapter, "adapter", "config.init_adapter")
        if base_key is not None and record.metadata.get("base") != base_key:
            raise FailedPrecondition(
                f"config.init_adapter: {config.init_adapter} was made for {record.metadata.get('base')}, "
                f"not {base_key}",
                field="config.init_adapter",
            )
        targets = list(record.metadata.get("lora", {}).get("target_modules", targets))
    t = config.train
    trainer = SFTTrainer(
        base,
        train,
        valid,
        SFTTrainConfig(**t.model_dump()),  # the job's section mirrors SFTTrainConfig field for field
        LoRAOptions(config.lora.r, config.lora.alpha, config.lora.dropout, tuple(targets)),
        init_adapter=init,
    )
    facts = {
        "source": "sft",
        "data_sha256": rows_sha256(rows),
        "data": {**stats.as_dict(), "valid_examples": len(valid), "template": d.template},
        "target_modules": targets,
        "method": t.method,
    }
    return SFTJob(trainer, config, base_key, facts), dict  # type: ignore[return-value]


def _base(config: SFTConfig, ctx: JobContext) -> tuple[BaseLM, str | None]:
    """The base model, and its pinned registry key (None for a local directory)."""
    b, qlora = config.base, config.train.method == "qlora"
    if b.model is None:
        try:
            return load_base(b.path, b.gguf_file, quantize_4bit=qlora), None  # type: ignore[arg-type]
        except (OSError, ValueError) as exc:
            raise InvalidArgument(f"config.base.path: {exc}", field="config.base.path") from None
    ref = b.model
    if ctx.resume is not None and (ctx.resume / PIN_FILE).exists():
        pinned = json.loads((ctx.resume / PIN_FILE).read_text())["base"]
        ref = pinned.split("/", 1)[1]  # owner/name@version -> name@version
    record, path = ctx.model(ref, "lm", "config.base.model")
    try:
        return load_base(path, quantize_4bit=qlora), registry_key(record)
    except ImportError as exc:  # QLoRA without bitsandbytes, say
        raise FailedPrecondition(f"config.train.method: {exc}", field="config.train.method") from None


def _target_modules(config: SFTConfig, base: BaseLM) -> list[str]:
    if config.lora.target_modules:
        return list(config.lora.target_modules)
    default = default_target_modules(base.architecture)
    if default is None:
        raise InvalidArgument(
            f"config.lora.target_modules: no default for architecture {base.architecture!r}; name them",
            field="config.lora.target_modules",
        )
    return list(default)
