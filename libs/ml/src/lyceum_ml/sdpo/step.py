"""One SDPO optimizer step over a batch of served completions: the adapter (student) is trained towards the
frozen base shown the feedback (teacher) on the response ids it actually sampled. The base is never trained:
the teacher and the base log-probs are the same weights with the adapter disabled.

AdamW's state persists with the adapter (`sdpo_optimizer.pt` beside the PEFT files), so successive jobs on
one adapter continue one optimisation instead of restarting its moments each time."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lyceum_ml.sdpo.loss import sdpo_token_loss
from lyceum_ml.sft.base import BaseLM

OPTIMIZER_FILE = "sdpo_optimizer.pt"
BETAS = (0.9, 0.999)
FIGURES = ("distill_loss", "kl_reg", "is_ratio_mean", "clip_fraction")  # token-weighted across examples


@dataclass(frozen=True)
class SDPOTrainSettings:
    """The step's hyperparameters: the fields of lyceum_jobs.configs.SDPOTrain (CLaaS's defaults)."""

    lr: float = 3e-5
    weight_decay: float = 0.01
    alpha: float = 0.5
    is_clip: float = 5.0
    max_grad_norm: float = 1.0  # 0 = no clipping (the norm is still reported)
    kl_reg_weight: float = 0.0
    teacher_top_k: int = 100
    steps: int = 1  # optimizer steps the caller takes over its batch
    seed: int = 0


@dataclass(frozen=True)
class Example:
    """One completion to learn from. rollout_logprobs: the log-prob of each response token recorded when it
    was sampled (None: unknown, taken as on-policy, i.e. importance ratio 1)."""

    prompt_ids: Sequence[int]
    teacher_ids: Sequence[int]
    response_ids: Sequence[int]
    rollout_logprobs: Sequence[float] | None = None

    def check(self) -> None:
        if not self.prompt_ids or not self.teacher_ids:
            raise ValueError("an example needs prompt ids and teacher ids")
        if not self.response_ids:
            raise ValueError("an example needs at least one response token")
        if self.rollout_logprobs is not None and len(self.rollout_logprobs) != len(self.response_ids):
            raise ValueError(
                f"{len(self.rollout_logprobs)} rollout log-probs for {len(self.response_ids)} response tokens"
            )


class SDPOStepper:
    """The adapter at `adapter_dir` made trainable over `base` (its LoRA weights only), with AdamW."""

    def __init__(
        self,
        base: BaseLM,
        adapter_dir: Path,
        cfg: SDPOTrainSettings,
        device: str | torch.device | None = None,
    ) -> None:
        from peft import PeftModel

        self.base, self.cfg = base, cfg
        if device is not None:
            base.model.to(device)
        self.device = next(base.model.parameters()).device
        torch.manual_seed(cfg.seed)
        self.peft = PeftModel.from_pretrained(base.model, str(adapter_dir), is_trainable=True)
        if base.kind == "lyceum":
            base.freeze_gates()
        # Named and in module order: the optimizer's state is saved against these names.
        self.named = [(n, p) for n, p in self.peft.named_parameters() if p.requires_grad]
        if not self.named or any("lora_" not in n for n, _ in self.named):
            raise ValueError(f"{adapter_dir}: expected only LoRA weights to train")
        self.params = [p for _, p in self.named]
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, betas=BETAS, weight_decay=cfg.weight_decay)
        self.steps_done = 0  # optimizer steps this adapter has taken, across jobs
        self.load_optimizer(adapter_dir)

    @property
    def module(self) -> nn.Module:
        """The peft model (adapter on; `module.disable_adapter()` for the base), for probes."""
        return self.peft

    # --- the step ----------------------------------------------------------------------------------
    def step(self, examples: Sequence[Example]) -> dict[str, float]:
        """One AdamW step on the token-mean SDPO loss over every response token of `examples`. Examples run
        one at a time (each backward scaled by its share of the tokens), so memory is one example's."""
        if not examples:
            raise ValueError("no examples")
        for ex in examples:
            ex.check()
        cfg, total = self.cfg, sum(len(ex.response_ids) for ex in examples)
        self.peft.eval()  # no dropout: the student's log-probs are the policy's, so on-policy ratios are 1
        self.opt.zero_grad(set_to_none=True)
        sums = dict.fromkeys(FIGURES, 0.0)
        loss_sum = 0.0
        for ex in examples:
            n = len(ex.response_ids)
            response = torch.tensor(list(ex.response_ids), dtype=torch.long, device=self.device)
            student_ids = [*ex.prompt_ids, *ex.response_ids]
            with torch.no_grad(), self.peft.disable_adapter():
                teacher_logits = self._response_logits([*ex.teacher_ids, *ex.response_ids], n)
                base_logits = self._response_logits(student_ids, n)
                base_lp = _chosen(base_logits, response)
            student_logits = self._response_logits(student_ids, n)
            if ex.rollout_logprobs is None:
                rollout = _chosen(student_logits.detach(), response)
            else:
                rollout = torch.tensor(list(ex.rollout_logprobs), dtype=torch.float32, device=self.device)
            loss, figures = sdpo_token_loss(
                student_logits,
                teacher_logits,
                base_lp,
                rollout,
                response,
                torch.ones(n, device=self.device),
                alpha=cfg.alpha,
                is_clip=cfg.is_clip,
                kl_reg_weight=cfg.kl_reg_weight,
                top_k=cfg.teacher_top_k,
            )
            (loss * (n / total)).backward()
            loss_sum += loss.item() * n
            for name in FIGURES:
                sums[name] += getattr(figures, name) * n
        limit = cfg.max_grad_norm if cfg.max_grad_norm > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, limit).item()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.steps_done += 1
        return {
            **{name: value / total for name, value in sums.items()},
            "loss": loss_sum / total,
            "grad_norm": grad_norm,
            "tokens": float(total),
        }

    def _response_logits(self, ids: list[int], n_response: int) -> Tensor:
        """Logits [n_response, V] at the positions that predict the last n_response tokens of `ids`."""
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        model = self.base.model  # LoRA is injected in place; peft's disable_adapter() switches it off
        if self.base.kind == "hf":  # only the last positions' logits are computed
            logits = model(input_ids=x, use_cache=False, logits_to_keep=n_response + 1).logits
        else:
            logits = self.base.forward(model)(x, None)
        return logits[0, -(n_response + 1) : -1]

    # --- persistence -------------------------------------------------------------------------------
    def save_adapter(self, directory: Path) -> None:
        """The trained LoRA in the PEFT layout (adapter_config.json + adapter_model.safetensors) and the
        optimizer's state beside it."""
        directory = Path(directory)
        self.peft.save_pretrained(str(directory))
        self.save_optimizer(directory)

    def save_optimizer(self, directory: Path) -> None:
        """Writes `sdpo_optimizer.pt` into the adapter directory (atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "names": [n for n, _ in self.named],
            "optimizer": self.opt.state_dict(),
            "steps": self.steps_done,
        }
        fd, tmp = tempfile.mkstemp(prefix=".sdpo_optimizer.", dir=directory)
        os.close(fd)
        torch.save(state, tmp)
        os.replace(tmp, directory / OPTIMIZER_FILE)

    def load_optimizer(self, directory: Path) -> bool:
        """Restores the optimizer's moments from the adapter directory (False, fresh state, if it has none);
        the step's own hyperparameters (lr, betas, weight decay) replace the saved ones. ValueError if the
        state was saved for other weights."""
        path = Path(directory) / OPTIMIZER_FILE
        if not path.exists():
            return False
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        names = [n for n, _ in self.named]
        if state.get("names") != names:
            raise ValueError(f"{path} was saved for other weights than this adapter's")
        self.opt.load_state_dict(state["optimizer"])
        for group in self.opt.param_groups:
            group.update(lr=self.cfg.lr, betas=BETAS, weight_decay=self.cfg.weight_decay)
        self.steps_done = int(state.get("steps", 0))
        return True


def _chosen(logits: Tensor, ids: Tensor) -> Tensor:
    """log-softmax(logits)[t, ids[t]] for each t: [T, V], [T] -> [T] (fp32)."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
