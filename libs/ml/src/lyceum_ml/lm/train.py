"""Training of the TransformerLM as a ResumableTrainer: random windows from a token stream, AdamW (decay /
no-decay groups) with warmup + cosine, gradient accumulation and clipping, bf16 autocast on CUDA, optional
torch.compile, and DDP when launched by torchrun (WORLD_SIZE > 1). Resume is exact: see save/load."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tokenizers import Tokenizer
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from lyceum_ml.architecture import describe
from lyceum_ml.distributed import (
    Precision,
    autocast,
    autocast_dtype,
    barrier,
    dist_env,
    init_distributed,
    no_sync,
)
from lyceum_ml.lm.checkpoint import save_lm
from lyceum_ml.lm.data import BatchSampler, eval_windows
from lyceum_ml.lm.model import DynamicGate, TransformerLM
from lyceum_ml.training import load_train_state, rng_state, save_train_state, set_rng_state, warmup_cosine


@dataclass(frozen=True)
class LMTrainConfig:
    steps: int = 1000  # optimizer steps
    batch_size: int = 16  # sequences per micro-batch per process
    seq_len: int = 256
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1  # on matrices and embeddings only
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    eval_every: int = 0  # evaluate inside run() every this many steps; 0 = only when asked
    eval_batches: int = 8  # evaluation set: eval_batches * batch_size fixed val windows per process
    seed: int = 0  # the batch sampler's seed
    precision: Precision = "auto"  # bf16 autocast only on CUDA ("auto": when supported); fp32 elsewhere
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', not {self.precision!r}")
        if min(self.steps, self.batch_size, self.seq_len, self.grad_accum, self.eval_batches) < 1:
            raise ValueError("steps, batch_size, seq_len, grad_accum and eval_batches must be positive")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: matrices and embeddings decay; norm gains and biases do not; frozen ones are left out."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


class LMTrainer:
    """Trains the plain (ungated) LM: no gate signal is fed, so the DynamicGates are frozen at identity
    (requires_grad False; AdamW and DDP ignore them) and exported as such, ready for a later gated stage.

    Throughput is global tokens per second: batch_size * seq_len * grad_accum * world_size per step."""

    def __init__(
        self,
        model: TransformerLM,
        tokenizer: Tokenizer,
        train_tokens: np.ndarray,
        val_tokens: np.ndarray,
        cfg: LMTrainConfig,
        device: str | torch.device | None = None,
    ) -> None:
        if cfg.seq_len > model.cfg.max_seq_len:
            raise ValueError(f"seq_len={cfg.seq_len} exceeds the model's max_seq_len={model.cfg.max_seq_len}")
        self.cfg, self.tokenizer, self.dist = cfg, tokenizer, dist_env()
        self.total_steps, self.step = cfg.steps, 0
        if self.dist.world_size > 1:
            device = init_distributed(self.dist)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.amp_dtype = autocast_dtype(cfg.precision, self.device)

        self.raw_model = model.to(self.device)
        for module in model.modules():
            if isinstance(module, DynamicGate):
                module.requires_grad_(False)
        self.opt = torch.optim.AdamW(
            param_groups(model, cfg.weight_decay),
            lr=cfg.lr,
            betas=cfg.betas,
            fused=True if self.device.type == "cuda" else None,  # None: torch's default elsewhere
        )
        self.params = [p for group in self.opt.param_groups for p in group["params"]]
        self.ddp: DistributedDataParallel | None = None
        # what the step calls: the model, its DDP wrapper, or their compiled form
        self.model: nn.Module = model
        if self.dist.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = self.ddp = DistributedDataParallel(model, device_ids=ids)
        if cfg.compile:
            self.model = torch.compile(self.model)  # type: ignore[assignment]

        self.sampler = BatchSampler(
            train_tokens, cfg.batch_size, cfg.seq_len, cfg.seed, self.dist.rank, self.dist.world_size
        )
        n_eval = (
            cfg.eval_batches * cfg.batch_size * self.dist.world_size
        )  # the same set whatever the sharding
        self.val_x, self.val_y = eval_windows(val_tokens, cfg.seq_len, n_eval)
        self.tokens_per_step = cfg.batch_size * cfg.seq_len * cfg.grad_accum * self.dist.world_size
        self.last_eval: dict[str, float] = {}

    # --- training ---------------------------------------------------------------------------------
    def run(self, n_steps: int) -> dict[str, float]:
        """Up to n_steps optimizer steps (never past total_steps); returns step, loss (the last step's mean),
        lr, grad_norm, throughput (tokens/s, evaluation time excluded) and, when evaluated, val metrics."""
        n = min(n_steps, self.total_steps - self.step)
        if n <= 0:
            return {"step": self.step, "loss": math.nan, "throughput": 0.0}
        self.model.train()
        start, eval_time = time.perf_counter(), 0.0
        metrics: dict[str, float] = {}
        for _ in range(n):
            loss, grad_norm = self._train_step()
            if self.cfg.eval_every and self.step % self.cfg.eval_every == 0:
                t = time.perf_counter()
                metrics = self.evaluate()
                eval_time += time.perf_counter() - t
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - start - eval_time
        if self.dist.world_size > 1:
            dist.all_reduce(loss, op=dist.ReduceOp.AVG)
        return {
            "step": self.step,
            "loss": loss.item(),
            "lr": self.opt.param_groups[0]["lr"],
            "grad_norm": math.nan if grad_norm is None else grad_norm.item(),
            "throughput": n * self.tokens_per_step / elapsed,
            **metrics,
        }

    def _train_step(self) -> tuple[Tensor, Tensor | None]:
        """One optimizer step over grad_accum micro-batches; returns the mean loss and pre-clip grad norm."""
        cfg = self.cfg
        lr = warmup_cosine(
            self.step,
            lr=cfg.lr,
            warmup_steps=cfg.warmup_steps,
            total_steps=cfg.steps,
            min_lr_ratio=cfg.min_lr_ratio,
        )
        for group in self.opt.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.device)
        for micro in range(cfg.grad_accum):
            x, y = self._to_device(*self.sampler.next())
            with self._no_sync(micro < cfg.grad_accum - 1):
                with self._autocast():
                    _, loss = self.model(x, targets=y)
                (loss / cfg.grad_accum).backward()
            total += loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip) if cfg.grad_clip > 0 else None
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        return total / cfg.grad_accum, grad_norm

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean token loss over the fixed evaluation windows (sharded over ranks) and its perplexity."""
        was_training = self.raw_model.training
        self.raw_model.eval()
        rows = slice(self.dist.rank, None, self.dist.world_size)
        xs, ys = self.val_x[rows], self.val_y[rows]
        stats = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss sum, token count
        for i in range(0, len(xs), self.cfg.batch_size):
            x, y = self._to_device(xs[i : i + self.cfg.batch_size], ys[i : i + self.cfg.batch_size])
            with self._autocast():
                _, loss = self.raw_model(x, targets=y)
            stats += torch.stack([loss.double() * y.numel(), torch.tensor(y.numel(), device=self.device)])
        if self.dist.world_size > 1:
            dist.all_reduce(stats)
        self.raw_model.train(was_training)
        val_loss = (stats[0] / stats[1]).item()
        self.last_eval = {"val_loss": val_loss, "perplexity": math.exp(min(val_loss, 700.0))}
        return self.last_eval

    # --- checkpoints ------------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Weights, optimizer, step, RNG and sampler position in one train_state.pt (rank 0 writes)."""
        if self.dist.rank == 0:
            state = {
                "model": self.raw_model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "step": self.step,
                "rng": rng_state(),
                "sampler": self.sampler.state_dict(),
                "config": asdict(self.cfg),
            }
            save_train_state(Path(directory), state)
        self._barrier()

    def load(self, directory: Path) -> None:
        state = load_train_state(Path(directory), map_location="cpu")
        self.raw_model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        set_rng_state(state["rng"])
        self.sampler.load_state_dict(state["sampler"])

    def export(self, directory: Path) -> dict[str, Any]:
        """The servable checkpoint (save_lm: weights, config, tokenizer); returns its metadata."""
        metadata = {
            "step": self.step,
            "tokens_seen": self.step * self.tokens_per_step,
            "n_parameters": self.raw_model.num_parameters(),
            "train_config": asdict(self.cfg),
            **self.last_eval,
            **describe(self.raw_model),
        }
        if self.dist.rank == 0:
            save_lm(directory, self.raw_model, self.tokenizer, metadata)
        self._barrier()
        return metadata

    # --- plumbing ---------------------------------------------------------------------------------
    def _to_device(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.device.type == "cuda":
            x, y = x.pin_memory(), y.pin_memory()
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.amp_dtype, self.device)

    def _no_sync(self, skip: bool) -> contextlib.AbstractContextManager[Any]:
        return no_sync(self.ddp, skip)

    def _barrier(self) -> None:
        barrier(self.dist)
