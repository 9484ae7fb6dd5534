"""The job kinds Lyceum runs, registered once: each names its config model, the queue it runs on by default,
a summary, the registry kind of the model it exports and the unit of its throughput. The trainer maps each
kind to the function that builds its trainer, and refuses to start if one is missing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from lyceum_core.errors import InvalidArgument
from lyceum_jobs.configs import DFMPretrainConfig, EvalConfig, LMPretrainConfig, SDPOConfig, SFTConfig
from lyceum_jobs.gating import GatingPPOConfig

QUEUES = ("gpu", "cpu")


@dataclass(frozen=True)
class JobKind:
    name: str
    config: type[BaseModel]
    default_queue: str
    summary: str
    model_kind: str  # the registry kind of the model the job exports ("" : none)
    unit: str  # what its throughput counts


KINDS: dict[str, JobKind] = {
    k.name: k
    for k in (
        JobKind(
            "dfm_pretrain",
            DFMPretrainConfig,
            "gpu",
            "pretrain a DFM on learner histories",
            model_kind="dfm",
            unit="events/s",
        ),
        JobKind(
            "lm_pretrain",
            LMPretrainConfig,
            "gpu",
            "pretrain the gated TransformerLM on a text corpus",
            model_kind="lm",
            unit="tokens/s",
        ),
        JobKind(
            "sft",
            SFTConfig,
            "gpu",
            "fine-tune a language model on instructions or chats (LoRA, QLoRA or full)",
            model_kind="adapter",  # the merged model, and a full fine-tune, are kind lm
            unit="tokens/s",
        ),
        JobKind(
            "sdpo",
            SDPOConfig,
            "gpu",
            "distil feedback into a user's adapter (self-distillation), gated before it is served",
            model_kind="adapter",
            unit="tokens/s",
        ),
        JobKind(
            "eval",
            EvalConfig,
            "gpu",
            "evaluate models or adapters: preference compliance, capability, collapse; plots",
            model_kind="",
            unit="tokens/s",
        ),
        JobKind(
            "gating_ppo",
            GatingPPOConfig,
            "gpu",
            "train a gating policy (PPO) modulating a frozen LM's sampling and gates; ablation at the end",
            model_kind="gating_policy",
            unit="steps/s",  # environment steps (generated tokens) per second of rollout
        ),
    )
}


def job_kind(kind: str) -> JobKind:
    """The registered kind; InvalidArgument naming the known ones otherwise."""
    try:
        return KINDS[kind]
    except KeyError:
        known = ", ".join(sorted(KINDS))
        raise InvalidArgument(f"unknown job kind {kind!r}; known: {known}", field="kind") from None


def parse_config(kind: str, config: dict[str, Any]) -> BaseModel:
    """The validated config for a kind; InvalidArgument naming the first offending field otherwise."""
    model = job_kind(kind).config
    try:
        return model.model_validate(config)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in ("config", *err["loc"]))
        raise InvalidArgument(f"{where}: {err['msg']}", field=where) from None
