"""Evaluation jobs: each model of the config (a language model, or an adapter over its pinned base; a series
of adapter versions, say) in turn, one step per model: compliance with each preference (the verifier's mean
score over sampled answers to its probe prompts), the log-prob margin of preferred over dispreferred answers,
the capability probes, and the collapse probes (the gate's: entropy, self-ROUGE-L, and log-prob drift from
the first model where it shares its base). Preference data comes from lyceum_jobs.preferences, the compute
from lyceum_ml.probes.

Result: nothing is registered; `finish` stores the plots and `results.json` under `jobs/{id}/artifacts`
and adds `{"artifacts": {"uri", "files"}, "evaluation": {"models": [...]}}` to the job's result. Metrics:
`<name@version>/compliance/<pref>`, `.../margin/<pref>`, `.../capability`, `.../entropy`,
`.../self_rouge_l`, `.../logprob_drift` per model, and the last model's without the prefix.

The versions are pinned at the first slice (a checkpoint keeps them and the results so far), so a resumed
job evaluates what it started on; each base model is loaded once however many of its adapters follow."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from lyceum_core.errors import FailedPrecondition, InvalidArgument
from lyceum_core.identity import ModelRef
from lyceum_jobs.configs import EvalConfig, GateSettings
from lyceum_jobs.preferences import capability_probes, gate_prompts, preference, probe_prompts, verify
from lyceum_ml.devices import resolve_device
from lyceum_ml.probes.capability import capability, logprob_margin
from lyceum_ml.probes.gate import SEED_STRIDE, ProbeSet, ProbeStats, drift, measure
from lyceum_ml.probes.generate import chat_prompt, generate_many
from lyceum_ml.probes.plots import write_plots
from lyceum_ml.sft.base import BaseLM, load_base
from lyceum_trainer.jobs import Built, JobContext, registry_key

STATE_FILE = "eval_state.json"  # in every checkpoint: the pinned models and the results so far
RESULTS_FILE = "results.json"  # an artifact: every model's results, with example answers
EXAMPLES = 4  # answers kept per preference in results.json


def capability_pairs() -> tuple[tuple[str, str], ...]:
    """The capability probes as (question, reference answer) pairs."""
    return tuple((c.prompt, c.answer) for c in capability_probes())


def gate_probes(n: int) -> ProbeSet:
    """The gate's fixed probes: the first `n` mixed preference prompts and every capability probe."""
    return ProbeSet(tuple(gate_prompts(n)), capability_pairs())


@dataclass(frozen=True)
class Target:
    """One model to evaluate, pinned: as configured (`ref`), its version (`label`: name@version, unique in
    the job), registry kind, registry key, and the key of the base it runs on (itself for a model)."""

    ref: str
    label: str
    kind: str
    key: str
    base: str
    uri: str

    def as_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


@dataclass
class Loaded:
    base: BaseLM
    peft: Any = None  # the PeftModel once an adapter of this base was loaded
    adapters: tuple[str, ...] = ()  # the target keys loaded into it, by index = adapter name


class EvalJob:
    """Evaluates one model per step; resumable from its checkpoint."""

    def __init__(self, config: EvalConfig, ctx: JobContext, targets: list[Target]) -> None:
        self.config, self.ctx, self.targets = config, ctx, targets
        self.total_steps, self.step = len(targets), 0
        self.results: list[dict[str, Any]] = []
        self.first_probes: tuple[str, ProbeStats] | None = None  # (base key, the first model's probes)
        self._loaded: dict[str, Loaded] = {}
        self._gate = GateSettings(seed=config.seed)

    # --- the runner's protocol -----------------------------------------------------------------------
    def run(self, n_steps: int) -> dict[str, float]:
        figures: dict[str, float] = {}
        for _ in range(min(n_steps, self.total_steps - self.step)):
            t0 = time.perf_counter()
            result = self._evaluate(self.targets[self.step])
            self.results.append(result)
            self.step += 1
            seconds = max(time.perf_counter() - t0, 1e-9)
            figures = _flat(result, prefix="") | {
                "tokens": float(result["tokens"]),
                "throughput": result["tokens"] / seconds,
            }
        return figures

    def evaluate(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for result in self.results:
            metrics |= _flat(result, prefix=f"{result['model']}/")
        if self.results:
            metrics |= _flat(self.results[-1], prefix="")
        return metrics

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "targets": [t.as_dict() for t in self.targets],
            "results": self.results,
            "first_probes": None
            if self.first_probes is None
            else {"base": self.first_probes[0], "stats": self.first_probes[1].as_dict()},
        }
        (directory / STATE_FILE).write_text(json.dumps(state))

    def load(self, directory: Path) -> None:
        state = json.loads((Path(directory) / STATE_FILE).read_text())
        self.results = state["results"]
        self.step = len(self.results)
        first = state["first_probes"]
        self.first_probes = None if first is None else (first["base"], ProbeStats.from_dict(first["stats"]))

    def exports(self, directory: Path) -> list:
        return []  # an evaluation registers nothing

    def finish(self, context: JobContext, registered: list[dict]) -> dict[str, Any]:
        """Writes the plots and results.json, stores them as the job's artifacts, and returns what the
        job's result gains."""
        folder = context.workdir / "artifacts"
        files = write_plots(self.results, folder)
        (folder / RESULTS_FILE).write_text(json.dumps({"models": self.results}, indent=2))
        files.append(RESULTS_FILE)
        uri = context.store.put_dir(folder, f"jobs/{context.job_id}/artifacts")
        summary = [{k: v for k, v in r.items() if k != "examples"} for r in self.results]
        return {"artifacts": {"uri": uri, "files": files}, "evaluation": {"models": summary}}

    # --- one model -----------------------------------------------------------------------------------
    def _evaluate(self, target: Target) -> dict[str, Any]:
        base, module, scope = self._module(target)
        cfg = self.config
        shown = {k: v for k, v in target.as_dict().items() if k not in ("label", "uri")}  # no storage paths
        result: dict[str, Any] = {"model": target.label, **shown}
        compliance, margin, examples, tokens = {}, {}, {}, 0
        with scope:
            for p, name in enumerate(cfg.preferences):
                compliance[name], examples[name], used = self._preference(base, module, p, name)
                pairs = [(q.prompt, q.preferred, q.dispreferred) for q in preference(name).pairs]
                margin[name] = logprob_margin(base, module, pairs)
                tokens += used
            result |= {"compliance": compliance, "margin": margin, "examples": examples}
            result["capability"] = capability(base, module, capability_pairs()) if cfg.capability else None
            result["collapse"] = self._collapse(target, base, module) if cfg.collapse else None
        if result["collapse"] is not None:
            tokens += result["collapse"].pop("tokens")
        result["tokens"] = tokens
        return result

    def _preference(
        self, base: BaseLM, module: nn.Module, index: int, name: str
    ) -> tuple[float, list[dict[str, str]], int]:
        """(compliance, example answers, tokens sampled): the verifier's mean score over the answers to
        the preference's probe prompts."""
        cfg = self.config
        prompts = probe_prompts(name, cfg.prompts)
        rendered = [chat_prompt(base, prompt) for prompt in prompts]
        rows = generate_many(
            base,
            module,
            [ids for ids, _ in rendered],
            n=cfg.samples,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            # the same seeds for every model: the models' answers are paired draws
            seeds=[cfg.seed * SEED_STRIDE + index * 1000 + i for i in range(len(prompts))],
            stops=rendered[0][1],
        )
        answers = [(prompt, s) for prompt, row in zip(prompts, rows, strict=True) for s in row]
        scores = [verify(name, s.text) for _, s in answers]
        texts = [{"prompt": prompt, "response": s.text} for prompt, s in answers[:EXAMPLES]]
        return sum(scores) / len(scores), texts, sum(len(s.response_ids) for _, s in answers)

    def _collapse(self, target: Target, base: BaseLM, module: nn.Module) -> dict[str, Any]:
        probes = ProbeSet(tuple(gate_prompts(self._gate.probes)))  # capability is measured on its own
        stats = measure(base, module, self._gate, probes)
        out: dict[str, Any] = {
            "entropy": stats.entropy,
            "self_rouge_l": stats.self_rouge_l,
            "tokens": stats.tokens,
        }
        if self.first_probes is None:
            self.first_probes = (target.base, stats)
            out["logprob_drift"] = 0.0  # the reference of the series
        elif self.first_probes[0] == target.base:  # drift needs the same tokenizer: the same base
            out["logprob_drift"] = drift(base, module, self.first_probes[1])
        return out

    def _module(self, target: Target) -> tuple[BaseLM, nn.Module, contextlib.AbstractContextManager]:
        """The base and the module to run for `target`, and the context to run it in (a base model whose
        weights carry adapters runs with them switched off)."""
        loaded = self._loaded.get(target.base)
        if loaded is None:
            for other in list(self._loaded):  # one base in memory at a time
                del self._loaded[other]
            path = self.ctx.store.get_dir(
                self._base_uri(target), self.ctx.workdir / "models" / _safe(target.base)
            )
            loaded = self._loaded[target.base] = Loaded(load_base(path, device=resolve_device("auto")))
        base = loaded.base
        if target.kind == "lm":
            if loaded.peft is None:
                return base, base.model, contextlib.nullcontext()
            return base, loaded.peft, loaded.peft.disable_adapter()
        if target.key not in loaded.adapters:
            adapter_dir = self.ctx.store.get_dir(target.uri, self.ctx.workdir / "models" / _safe(target.key))
            name = f"a{len(loaded.adapters)}"
            if loaded.peft is None:
                from peft import PeftModel

                loaded.peft = PeftModel.from_pretrained(base.model, str(adapter_dir), adapter_name=name)
            else:
                loaded.peft.load_adapter(str(adapter_dir), adapter_name=name)
            loaded.adapters += (target.key,)
        loaded.peft.set_adapter(f"a{loaded.adapters.index(target.key)}")
        return base, loaded.peft, contextlib.nullcontext()

    def _base_uri(self, target: Target) -> str:
        if target.kind == "lm":
            return target.uri
        owner, _, rest = target.base.partition("/")
        name, _, version = rest.rpartition("@")
        record = self.ctx.models.get(self.ctx.tenant, name, int(version)) if version.isdecimal() else None
        if record is None or record.tenant != owner or record.kind != "lm":
            raise FailedPrecondition(
                f"config.models: the base {target.base} of {target.label} is not available",
                field="config.models",
            )
        return record.uri


def build(config: EvalConfig, ctx: JobContext) -> Built:
    if ctx.resume is not None and (ctx.resume / STATE_FILE).exists():
        pinned = json.loads((ctx.resume / STATE_FILE).read_text())["targets"]
        targets = [Target(**t) for t in pinned]
    else:
        targets = _pin(config, ctx)
    return EvalJob(config, ctx, targets), dict  # type: ignore[return-value]


def _pin(config: EvalConfig, ctx: JobContext) -> list[Target]:
    targets: list[Target] = []
    labels: set[str] = set()
    for i, ref in enumerate(config.models):
        field = f"config.models[{i}]"
        parsed = ModelRef.parse(ref, field)
        record = ctx.models.resolve(ctx.tenant, parsed.name, parsed.ref)
        key = registry_key(record)
        if record.kind == "lm":
            base = key
        elif record.kind == "adapter":
            base = record.metadata.get("base")
            if not isinstance(base, str) or "/" not in base or "@" not in base:
                raise FailedPrecondition(f"{field}: adapter {ref} names no base model", field=field)
        else:
            raise InvalidArgument(
                f"{field}: {ref} is a {record.kind!r} model, not lm or adapter", field=field
            )
        label = f"{record.name}@{record.version}"
        if label in labels:
            label = f"{label}#{i}"
        labels.add(label)
        targets.append(Target(ref, label, record.kind, key, base, record.uri))
    return targets


def _flat(result: dict[str, Any], prefix: str) -> dict[str, float]:
    """A model's figures as flat metrics: compliance/<pref>, margin/<pref>, capability, collapse figures."""
    out: dict[str, float] = {}
    for group in ("compliance", "margin"):
        for name, value in (result.get(group) or {}).items():
            out[f"{prefix}{group}/{name}"] = value
    if result.get("capability") is not None:
        out[f"{prefix}capability"] = result["capability"]
    for name, value in (result.get("collapse") or {}).items():
        out[f"{prefix}{name}"] = value
    return out


def _safe(key: str) -> str:
    """A registry key as one folder name."""
    return key.replace("/", "-").replace("@", "-")
