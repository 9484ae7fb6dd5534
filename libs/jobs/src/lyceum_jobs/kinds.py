"""The job kinds Lyceum runs: each names its config model and the queue it runs on by default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from lyceum_core.errors import InvalidArgument
from lyceum_jobs.configs import DFMPretrainConfig, LMPretrainConfig

QUEUES = ("gpu", "cpu")


@dataclass(frozen=True)
class JobKind:
    name: str
    config: type[BaseModel]
    default_queue: str
    summary: str


KINDS: dict[str, JobKind] = {
    k.name: k
    for k in (
        JobKind("dfm_pretrain", DFMPretrainConfig, "gpu", "pretrain a DFM on learner histories"),
        JobKind("lm_pretrain", LMPretrainConfig, "gpu", "pretrain the gated TransformerLM on a text corpus"),
    )
}


def parse_config(kind: str, config: dict[str, Any]) -> BaseModel:
    """The validated config for a kind; InvalidArgument naming the first offending field otherwise."""
    if kind not in KINDS:
        raise InvalidArgument(f"unknown job kind {kind!r}; known: {', '.join(sorted(KINDS))}", field="kind")
    try:
        return KINDS[kind].config.model_validate(config)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in ("config", *err["loc"]))
        raise InvalidArgument(f"{where}: {err['msg']}", field=where) from None
