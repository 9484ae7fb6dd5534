"""Supervised fine-tuning as a ResumableTrainer: LoRA (peft) over a frozen base, QLoRA over a 4-bit base, or
the full model; AdamW, warmup then cosine/linear/constant, gradient accumulation and clipping, bf16 autocast
on CUDA, and DDP when launched by torchrun (gloo on CPUs, NCCL on GPUs).

The loss is the mean over every learned token of an optimizer step, across micro-batches and ranks: each
micro-batch adds its summed token losses divided by the step's global count of learned tokens (times the
world size, which DDP's gradient averaging divides back out). N processes with batch_size B therefore take
the same steps as one process with batch_size N*B, and a step never over-weights short examples.

Data order is a function of the seed and the step (each epoch a fresh seeded permutation), so a resumed run
continues exactly: the state saved is the trainable weights, optimizer, step and RNG states."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from lyceum_ml.distributed import (
    DistEnv,
    autocast,
    autocast_dtype,
    barrier,
    dist_env,
    init_distributed,
    no_sync,
)
from lyceum_ml.lm.train import param_groups
from lyceum_ml.sft.base import BaseLM
from lyceum_ml.sft.examples import IGNORE, Batch, Example, collate
from lyceum_ml.training import load_train_state, rng_state, save_train_state, scheduled_lr, set_rng_state

Method = Literal["lora", "qlora", "full"]


@dataclass(frozen=True)
class SFTTrainConfig:
    method: Method = "lora"
    epochs: int = 1
    max_steps: int = 0  # 0: what epochs make
    batch_size: int = 4  # examples per micro-batch per process
    grad_accum: int = 1
    lr: float = 2e-4
    schedule: str = "cosine"
    warmup_ratio: float = 0.03
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # 0 = off
    eval_batches: int = 16
    precision: str = "auto"
    seed: int = 0

    def steps_for(self, n_examples: int, world_size: int) -> int:
        """Optimizer steps of the run: max_steps, else enough for `epochs` passes over the examples."""
        if self.max_steps:
            return self.max_steps
        per_step = self.batch_size * self.grad_accum * world_size
        return max(1, math.ceil(self.epochs * n_examples / per_step))


@dataclass(frozen=True)
class LoRAOptions:
    r: int = 8
    alpha: float = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ()


def token_loss_sum(logits: Tensor, labels: Tensor) -> Tensor:
    """Summed fp32 cross-entropy of each position's prediction of the next token, over the tokens whose
    label is not IGNORE: logits (B, T, V), labels (B, T)."""
    predicted, targets = logits[:, :-1].float().flatten(0, 1), labels[:, 1:].flatten()
    return F.cross_entropy(predicted, targets, ignore_index=IGNORE, reduction="sum")


class ExampleOrder:
    """Which examples make global batch `b`: the stream of epoch permutations (epoch e shuffled with the
    seed and e), cut into consecutive global batches; rank r takes its contiguous share of each."""

    def __init__(self, n: int, batch_size: int, seed: int, dist_: DistEnv) -> None:
        if n < 1:
            raise ValueError("no training examples")
        self.n, self.batch_size, self.seed, self.dist = n, batch_size, seed, dist_
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def batch(self, b: int) -> list[int]:
        global_size = self.batch_size * self.dist.world_size
        start = b * global_size + self.dist.rank * self.batch_size
        return [self._at(p) for p in range(start, start + self.batch_size)]

    def _at(self, p: int) -> int:
        epoch = p // self.n
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return int(self._perm[p % self.n])


class SFTTrainer:
    """Fine-tunes `base` on encoded examples. With method lora/qlora the base is frozen and a peft LoRA
    (new, or `init_adapter`'s weights) is trained; with full every weight is."""

    def __init__(
        self,
        base: BaseLM,
        train: list[Example],
        valid: list[Example],
        cfg: SFTTrainConfig,
        lora: LoRAOptions | None = None,
        init_adapter: Path | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.base, self.cfg, self.train_rows, self.valid_rows = base, cfg, train, valid
        self.dist = dist_env()
        if self.dist.world_size > 1:
            device = init_distributed(self.dist)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.amp_dtype = autocast_dtype(cfg.precision, self.device)  # type: ignore[arg-type]
        self.step = 0
        self.total_steps = cfg.steps_for(len(train), self.dist.world_size)
        self.warmup_steps = math.ceil(cfg.warmup_ratio * self.total_steps)
        self.order = ExampleOrder(len(train), cfg.batch_size, cfg.seed, self.dist)
        self.last_eval: dict[str, float] = {}

        if cfg.method != "qlora":  # a 4-bit base was placed when it was loaded
            base.model.to(self.device)
        self.peft: nn.Module | None = None
        if cfg.method != "full":
            self.peft = self._with_lora(lora or LoRAOptions(), init_adapter)
        base.freeze_gates()
        self.model = base.model  # the modules the step runs (LoRA injected in place)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("nothing to train: no parameter requires a gradient")
        self.opt = torch.optim.AdamW(
            param_groups(self.model, cfg.weight_decay),
            lr=cfg.lr,
            fused=True if self.device.type == "cuda" else None,
        )
        self.ddp: DistributedDataParallel | None = None
        runner: nn.Module = self.model
        if self.dist.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            runner = self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        self._logits = base.forward(runner)
        self._eval_logits = base.forward(self.model)

    # --- setup -------------------------------------------------------------------------------------
    def _with_lora(self, lora: LoRAOptions, init_adapter: Path | None) -> nn.Module:
        from peft import LoraConfig, PeftModel, get_peft_model

        model = self.base.model
        # LoRA's A matrices come from the global generator: seeded here, so every rank (and a resumed run,
        # before loading its weights over them) builds the same adapter.
        torch.manual_seed(self.cfg.seed)
        if init_adapter is not None:
            peft = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
        else:
            config = LoraConfig(
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=list(lora.target_modules),
                fan_in_fan_out=self.base.architecture == "gpt2",  # GPT-2's Conv1D stores weights transposed
            )
            peft = get_peft_model(model, config)  # peft puts each LoRA weight on its layer's device
        return peft

    # --- training ----------------------------------------------------------------------------------
    def run(self, n_steps: int) -> dict[str, float]:
        n = min(n_steps, self.total_steps - self.step)
        if n <= 0:
            return {"step": self.step, "loss": math.nan, "throughput": 0.0}
        self.model.train()
        start, tokens = time.perf_counter(), 0
        loss, grad_norm = torch.zeros(()), None
        for _ in range(n):
            loss, grad_norm, step_tokens = self._train_step()
            tokens += step_tokens
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - start
        return {
            "step": self.step,
            "loss": loss.item(),
            "lr": self.opt.param_groups[0]["lr"],
            "grad_norm": math.nan if grad_norm is None else grad_norm.item(),
            "throughput": tokens / elapsed,
        }

    def _train_step(self) -> tuple[Tensor, Tensor | None, int]:
        cfg = self.cfg
        lr = scheduled_lr(
            cfg.schedule,
            self.step,
            lr=cfg.lr,
            warmup_steps=self.warmup_steps,
            total_steps=self.total_steps,
            min_lr_ratio=cfg.min_lr_ratio,
        )
        for group in self.opt.param_groups:
            group["lr"] = lr
        batches = [self._batch(self.step * cfg.grad_accum + m) for m in range(cfg.grad_accum)]
        counts = torch.tensor(
            [sum(int((b.labels[:, 1:] != IGNORE).sum()) for b in batches), sum(b.tokens for b in batches)],
            dtype=torch.float64,
        )
        if self.dist.world_size > 1:
            dist.all_reduce(counts)
        learned = max(counts[0].item(), 1.0)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        for m, batch in enumerate(batches):
            with self._no_sync(m < len(batches) - 1):
                loss_sum = self._loss_sum(self._logits, batch)
                (loss_sum * (self.dist.world_size / learned)).backward()
            total += loss_sum.detach().double()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip) if cfg.grad_clip > 0 else None
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        if self.dist.world_size > 1:
            dist.all_reduce(total)
        return (total / learned).float().cpu(), grad_norm, int(counts[1].item())

    def _batch(self, b: int) -> Batch:
        return collate([self.train_rows[i] for i in self.order.batch(b)], self.base.pad_id)

    def _loss_sum(self, logits_fn: Any, batch: Batch) -> Tensor:
        """The summed cross-entropy of the batch's learned tokens (fp32)."""
        ids = batch.input_ids.to(self.device)
        positions = None if batch.positions is None else batch.positions.to(self.device)
        labels = batch.labels.to(self.device)
        with self._autocast():
            logits = logits_fn(ids, positions)
        return token_loss_sum(logits, labels)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss over the validation examples' learned tokens (at most eval_batches micro-batches,
        sharded over ranks) and its perplexity; {} without validation examples."""
        if not self.valid_rows:
            return {}
        was_training = self.model.training
        self.model.eval()
        size = self.cfg.batch_size
        chunks = [self.valid_rows[i : i + size] for i in range(0, len(self.valid_rows), size)]
        chunks = chunks[: self.cfg.eval_batches][self.dist.rank :: self.dist.world_size]
        stats = torch.zeros(2, dtype=torch.float64, device=self.device)
        for rows in chunks:
            batch = collate(rows, self.base.pad_id)
            stats[0] += self._loss_sum(self._eval_logits, batch).double()
            stats[1] += int((batch.labels[:, 1:] != IGNORE).sum())
        if self.dist.world_size > 1:
            dist.all_reduce(stats)
        self.model.train(was_training)
        val_loss = (stats[0] / stats[1].clamp(min=1)).item()
        self.last_eval = {"val_loss": val_loss, "perplexity": math.exp(min(val_loss, 700.0))}
        return self.last_eval

    # --- checkpoints -------------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, Tensor]:
        names = {id(p) for p in self.params}
        return {k: v.detach().cpu() for k, v in self.model.named_parameters() if id(v) in names}

    def save(self, directory: Path) -> None:
        if self.dist.rank == 0:
            state = {
                "trainable": self.trainable_state(),
                "optimizer": self.opt.state_dict(),
                "step": self.step,
                "rng": rng_state(),
                "config": asdict(self.cfg),
            }
            save_train_state(Path(directory), state)
        self._barrier()

    def load(self, directory: Path) -> None:
        state = load_train_state(Path(directory), map_location="cpu")
        own = dict(self.model.named_parameters())
        missing = set(self.trainable_state()) - set(state["trainable"])
        if missing:
            raise ValueError(f"checkpoint lacks trainable weights: {sorted(missing)[:3]}")
        with torch.no_grad():
            for name, value in state["trainable"].items():
                own[name].copy_(value)
        self.opt.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        set_rng_state(state["rng"])

    # --- output ----------------------------------------------------------------------------------
    def save_adapter(self, directory: Path) -> None:
        """The trained LoRA in the PEFT layout (adapter_config.json + adapter_model.safetensors)."""
        if self.peft is None:
            raise ValueError("a full fine-tune has no adapter")
        if self.dist.rank == 0:
            self.peft.save_pretrained(str(directory))
        self._barrier()

    def save_model(self, directory: Path, metadata: dict[str, Any]) -> dict[str, Any]:
        """The whole fine-tuned model in the base's format, the adapter merged in (after which the adapter
        is gone: call save_adapter first); returns its registry metadata."""
        if self.peft is not None:
            if self.cfg.method == "qlora":
                raise ValueError("a QLoRA adapter is not merged into its 4-bit base")
            self.base.model = self.peft.merge_and_unload()  # type: ignore[operator]
            self.peft = None
        full = {**metadata}
        if self.dist.rank == 0:
            full = self.base.save(Path(directory), metadata)
        self._barrier()
        return full

    # --- plumbing ----------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.amp_dtype, self.device)

    def _no_sync(self, skip: bool) -> contextlib.AbstractContextManager[Any]:
        return no_sync(self.ddp, skip)

    def _barrier(self) -> None:
        barrier(self.dist)
