"""The quality gate a new adapter version passes before it is served: collapse probes against its parent on
fixed probe prompts, and the capability probe not below a fraction of the parent's.

How a training job uses it (the parent's figures must be taken before the step changes the weights, since
the adapter trains in place; `peft_model` is e.g. SDPOStepper.module):

    probes = gate_probes(settings.probes)   # lyceum_trainer.jobs.evaluate: the mixed preference prompts
                                            # (lyceum_jobs.preferences.gate_prompts) + capability probes
    parent = measure(base, peft_model, settings, probes)      # before the step
    ...  # train
    child = measure(base, peft_model, settings, probes)       # after
    result = gate(parent, child, drift(base, peft_model, parent), settings)
    result.passed, result.reasons, result.figures              # result.as_dict() is JSON-ready

`settings` is any object with GateSettings' fields (lyceum_jobs.configs.GateSettings is one). The checks:
- entropy ratio child / parent >= min_entropy_ratio (mean token entropy of the probe samples);
- child self-ROUGE-L <= max_self_rouge_l (mean pairwise over each prompt's `samples` samples);
- drift <= max_logprob_drift (nats/token: mean over the parent's sampled tokens of parent log-prob - child
  log-prob, the same tokens scored teacher-forced under the child);
- capability: exp(child) >= min_capability_fraction * exp(parent). Capability is a mean per-token log-prob,
  so it is compared as a per-token likelihood (exp), where a fraction means something; in log space this
  is child - parent >= log(fraction).
Probes sample at PROBE_TEMPERATURE (CLaaS's, which its thresholds assume) with seeds fixed per prompt, so the
parent and the child draw the same random numbers and differ only by their weights."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from torch import nn

from lyceum_ml.probes.capability import capability as capability_score
from lyceum_ml.probes.collapse import logprob_drift, mean_entropy, self_rouge_l
from lyceum_ml.probes.generate import Sample, chat_prompt, generate_many, score
from lyceum_ml.sft.base import BaseLM

PROBE_TEMPERATURE = 0.7
SEED_STRIDE = 10_007  # prompt i samples with seed * SEED_STRIDE + i


class GateLimits(Protocol):
    """The fields of lyceum_jobs.configs.GateSettings the probes and the gate read."""

    enabled: bool
    min_entropy_ratio: float
    max_self_rouge_l: float
    max_logprob_drift: float
    min_capability_fraction: float
    samples: int
    probes: int
    max_new_tokens: int
    seed: int


@dataclass(frozen=True)
class ProbeSet:
    """The fixed probe prompts, and the capability probes as (question, reference answer) pairs (none:
    capability is not measured)."""

    prompts: tuple[str, ...]
    capability: tuple[tuple[str, str], ...] = ()


@dataclass
class ProbeStats:
    """What `measure` found: the samples (per prompt), their mean token entropy, the mean self-ROUGE-L
    over prompts, and the capability (None: not measured)."""

    samples: list[list[Sample]]
    entropy: float
    self_rouge_l: float
    capability: float | None = None
    tokens: int = field(default=0)

    def figures(self) -> dict[str, float]:
        out = {"entropy": self.entropy, "self_rouge_l": self.self_rouge_l}
        if self.capability is not None:
            out["capability"] = self.capability
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": [[s.as_dict() for s in row] for row in self.samples],
            "entropy": self.entropy,
            "self_rouge_l": self.self_rouge_l,
            "capability": self.capability,
            "tokens": self.tokens,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ProbeStats:
        samples = [[Sample.from_dict(s) for s in row] for row in doc["samples"]]
        return cls(samples, doc["entropy"], doc["self_rouge_l"], doc["capability"], doc.get("tokens", 0))


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str]  # one line per failed check; empty when passed
    figures: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": list(self.reasons), "figures": dict(self.figures)}


def sample_probes(
    base: BaseLM,
    module: nn.Module,
    prompts: tuple[str, ...] | list[str],
    *,
    samples: int,
    max_new_tokens: int,
    seed: int,
    temperature: float = PROBE_TEMPERATURE,
) -> list[list[Sample]]:
    """`samples` responses to each prompt (a one-turn chat), seeded per prompt."""
    rendered = [chat_prompt(base, prompt) for prompt in prompts]
    stops = rendered[0][1] if rendered else ()  # one template: the same stops for every prompt
    return generate_many(
        base,
        module,
        [ids for ids, _ in rendered],
        n=samples,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seeds=[seed * SEED_STRIDE + i for i in range(len(prompts))],
        stops=stops,
    )


def measure(base: BaseLM, module: nn.Module, settings: GateLimits, probes: ProbeSet) -> ProbeStats:
    """Samples the probe prompts (settings.samples each, at most settings.max_new_tokens) and scores the
    capability probes, on `module` as it is now."""
    if settings.samples < 2:
        raise ValueError("self-ROUGE-L needs at least two samples per prompt")
    if not probes.prompts:
        raise ValueError("no probe prompts")
    rows = sample_probes(
        base,
        module,
        probes.prompts,
        samples=settings.samples,
        max_new_tokens=settings.max_new_tokens,
        seed=settings.seed,
    )
    rouge = sum(self_rouge_l([s.text for s in row]) for row in rows) / len(rows)
    cap = capability_score(base, module, probes.capability) if probes.capability else None
    entropies = [s.entropies for row in rows for s in row]
    tokens = sum(len(s.response_ids) for row in rows for s in row)
    return ProbeStats(rows, mean_entropy(entropies), rouge, cap, tokens)


def drift(base: BaseLM, module: nn.Module, parent: ProbeStats) -> float:
    """Log-prob drift of `module` (the child) from the parent whose probes `parent` holds: nats/token."""
    kept = [s for row in parent.samples for s in row if s.response_ids]
    child = [score(base, module, s.prompt_ids, s.response_ids) for s in kept]
    return logprob_drift([s.logprobs for s in kept], child)


def gate(parent: ProbeStats, child: ProbeStats, drift: float, settings: GateLimits) -> GateResult:
    """Whether the child may be served in place of the parent, why not, and the figures compared."""
    ratio = child.entropy / parent.entropy if parent.entropy > 0 else 1.0
    figures: dict[str, float] = {
        "entropy_parent": parent.entropy,
        "entropy_child": child.entropy,
        "entropy_ratio": ratio,
        "self_rouge_l_parent": parent.self_rouge_l,
        "self_rouge_l": child.self_rouge_l,
        "logprob_drift": drift,
    }
    reasons = []
    if ratio < settings.min_entropy_ratio:
        reasons.append(f"entropy ratio {ratio:.3f} < {settings.min_entropy_ratio}")
    if child.self_rouge_l > settings.max_self_rouge_l:
        reasons.append(f"self-ROUGE-L {child.self_rouge_l:.3f} > {settings.max_self_rouge_l}")
    if not drift <= settings.max_logprob_drift:  # NaN fails too
        reasons.append(f"log-prob drift {drift:.3f} nats/token > {settings.max_logprob_drift}")
    if parent.capability is not None and child.capability is not None:
        fraction = math.exp(child.capability - parent.capability)
        figures |= {
            "capability_parent": parent.capability,
            "capability_child": child.capability,
            "capability_fraction": fraction,
        }
        if fraction < settings.min_capability_fraction:
            reasons.append(f"capability {fraction:.3f} of the parent's < {settings.min_capability_fraction}")
    if not settings.enabled:
        return GateResult(True, [], figures)
    return GateResult(not reasons, reasons, figures)
