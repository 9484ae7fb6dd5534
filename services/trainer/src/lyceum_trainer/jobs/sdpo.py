"""Self-distillation of a user's adapter from feedback (SDPO, Hübotter et al. 2026): the frozen base model
shown the feedback as hindsight context is the teacher; the adapter (student) learns it on the tokens it
actually produced, read back from the recorded completions. One job trains one batch of an adapter's
feedback (the dispatcher never runs two at once for one adapter) and registers a new version of it; the
version is served (the adapter's `serving` alias moves to it) only if it passes the quality gate against
its parent.

The parent is pinned by the dispatcher (`config.parent`), so a job resumed after a crash trains the same
weights; the AdamW state travels with each version (`sdpo_optimizer.pt` beside the PEFT files), so a user's
adapter keeps its optimizer's moments across jobs. A failed gate keeps the version (its metadata says why)
and leaves serving on the parent."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from lyceum_core.errors import FailedPrecondition, InvalidArgument, NotFound
from lyceum_core.identity import SERVING_ALIAS
from lyceum_db.repositories.completions import CompletionRepository
from lyceum_db.repositories.feedback import FeedbackRepository
from lyceum_db.repositories.registry import ModelRecord
from lyceum_jobs.configs import SDPOConfig
from lyceum_ml.probes.gate import GateResult, ProbeStats, drift, gate, measure
from lyceum_ml.sdpo.step import Example, SDPOStepper, SDPOTrainSettings
from lyceum_ml.sdpo.teacher import teacher_prompt_ids
from lyceum_ml.sft.base import BaseLM, load_base
from lyceum_ml.training import Export
from lyceum_trainer.jobs import Built, JobContext, registry_key
from lyceum_trainer.jobs.evaluate import gate_probes

log = logging.getLogger(__name__)
STATE_FILE = "sdpo_state.json"  # in a checkpoint: the step reached, the parent's probe figures
ADAPTER_DIR = "adapter"


class SDPOJob:
    """The runner's view of one distillation: `steps` optimizer steps over the batch, then the gate."""

    def __init__(
        self,
        config: SDPOConfig,
        stepper: SDPOStepper,
        examples: list[Example],
        base: BaseLM,
        parent: ModelRecord,
        parent_stats: ProbeStats | None,
    ) -> None:
        self.config, self.stepper, self.examples, self.base = config, stepper, examples, base
        self.parent, self.parent_stats = parent, parent_stats
        self.total_steps, self.step = config.train.steps, 0
        self.figures: dict[str, float] = {}
        self.result: GateResult | None = None

    # --- the ResumableTrainer protocol --------------------------------------------------------------
    def run(self, n_steps: int) -> dict[str, float]:
        for _ in range(min(n_steps, self.total_steps - self.step)):
            t0 = time.perf_counter()
            figures = self.stepper.step(self.examples)
            self.step += 1
            elapsed = time.perf_counter() - t0
            self.figures = {**figures, "throughput": figures["tokens"] / elapsed if elapsed > 0 else 0.0}
        return self.figures

    def evaluate(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.figures.items() if k != "throughput"}

    def save(self, directory: Path) -> None:
        """The adapter as trained so far (with its optimizer state), the step, and the parent's probe figures
        (taken before the first step: a resumed job cannot measure its parent again)."""
        self.stepper.save_adapter(Path(directory) / ADAPTER_DIR)
        state = {
            "step": self.step,
            "figures": self.figures,
            "parent_stats": self.parent_stats.as_dict() if self.parent_stats else None,
        }
        (Path(directory) / STATE_FILE).write_text(json.dumps(state))

    def load(self, directory: Path) -> None:
        """The step and figures; the weights were loaded by `build` from the same checkpoint."""
        state = json.loads((Path(directory) / STATE_FILE).read_text())
        self.step, self.figures = int(state["step"]), dict(state["figures"])

    def exports(self, directory: Path) -> list[Export]:
        """The new version: the trained adapter with its optimizer state, and the gate's verdict."""
        out = Path(directory) / ADAPTER_DIR
        self.stepper.save_adapter(out)
        self.result = self._gate()
        metadata = {
            "base": self.parent.metadata["base"],
            "lora": self.parent.metadata.get("lora", {}),
            "source": "sdpo",
            "parent": self.parent.version,
            "feedback": list(self.config.feedback),
            "train_config": self.config.train.model_dump(),
            "sdpo": self.evaluate(),
            "gate": self.result.as_dict(),
        }
        return [Export(out, "adapter", self.config.adapter, metadata)]

    def finish(self, ctx: JobContext, registered: list[dict[str, Any]]) -> dict[str, Any]:
        """Serves the new version if it passed the gate; otherwise keeps serving the parent."""
        assert self.result is not None
        version = registered[0]["version"]
        name = self.config.adapter
        aliases = ctx.models.aliases(ctx.tenant, name)
        if self.result.passed:
            ctx.models.set_alias(ctx.tenant, name, SERVING_ALIAS, version)
            served = version
        else:
            served = aliases.get(SERVING_ALIAS, self.parent.version)
            if SERVING_ALIAS not in aliases:  # `latest` moved to the new version: pin serving to the parent
                ctx.models.set_alias(ctx.tenant, name, SERVING_ALIAS, self.parent.version)
            log.warning("adapter %s version %d failed its gate: %s", name, version, self.result.reasons)
        return {
            "adapter": {"name": name, "version": version, "parent": self.parent.version, "serving": served},
            "gate": self.result.as_dict(),
        }

    # --- the gate ------------------------------------------------------------------------------------
    def _gate(self) -> GateResult:
        settings = self.config.gate
        if not settings.enabled or self.parent_stats is None:
            return GateResult(True, [], {})
        probes = gate_probes(settings.probes)
        child = measure(self.base, self.stepper.module, settings, probes)
        moved = drift(self.base, self.stepper.module, self.parent_stats)
        return gate(self.parent_stats, child, moved, settings)


def build(config: SDPOConfig, ctx: JobContext) -> Built:
    if ctx.engine is None:
        raise FailedPrecondition("sdpo jobs need the platform database", field="engine")
    parent, parent_dir = ctx.model(f"{config.adapter}@{config.parent}", "adapter", "config.parent")
    if parent.tenant != ctx.tenant:
        raise InvalidArgument(
            f"config.adapter: {config.adapter!r} is a published adapter; only your own adapters learn",
            field="config.adapter",
        )
    base_key = parent.metadata.get("base")
    if not isinstance(base_key, str) or "/" not in base_key:
        raise FailedPrecondition(f"adapter {config.adapter} names no base", field="config.adapter")
    base_record, base_dir = ctx.model(base_key.split("/", 1)[1], "lm", "config.adapter")
    if registry_key(base_record) != base_key:
        raise FailedPrecondition(
            f"base {base_key} of {config.adapter} is not visible", field="config.adapter"
        )
    base = load_base(base_dir)
    examples = _examples(config, ctx, base, base_key)
    settings = SDPOTrainSettings(**config.train.model_dump())
    resumed = ctx.resume is not None and (ctx.resume / STATE_FILE).exists()
    if resumed:
        assert ctx.resume is not None
        stepper = SDPOStepper(base, ctx.resume / ADAPTER_DIR, settings)
        saved = json.loads((ctx.resume / STATE_FILE).read_text())["parent_stats"]
        parent_stats = ProbeStats.from_dict(saved) if saved else None
    else:
        stepper = SDPOStepper(base, parent_dir, settings)
        parent_stats = None
        if config.gate.enabled:  # before the first step: the adapter trains in place
            parent_stats = measure(base, stepper.module, config.gate, gate_probes(config.gate.probes))
    return SDPOJob(config, stepper, examples, base, parent, parent_stats), dict  # type: ignore[return-value]


def _examples(config: SDPOConfig, ctx: JobContext, base: BaseLM, base_key: str) -> list[Example]:
    """One example per feedback item: the completion as served, and the teacher's context."""
    assert ctx.engine is not None
    items = FeedbackRepository(ctx.engine).get_many(ctx.tenant, list(config.feedback))
    found = {item.feedback_id for item in items}
    missing = [i for i in config.feedback if i not in found]
    if missing:
        raise NotFound(f"feedback {missing[0]} not found", field="config.feedback")
    completions = CompletionRepository(ctx.engine)
    examples = []
    for item in items:
        completion = completions.get(ctx.tenant, item.completion_id)
        if completion is None:
            raise NotFound(
                f"completion {item.completion_id} of feedback {item.feedback_id} is gone (retention)",
                field="config.feedback",
            )
        if completion.model != base_key:
            raise FailedPrecondition(
                f"completion {completion.completion_id} was served by {completion.model}, not {base_key}",
                field="config.feedback",
            )
        if not completion.token_ids:
            continue  # nothing was sampled: nothing to learn from
        messages = completion.params.get("messages")
        teacher = teacher_prompt_ids(base, messages, completion.prompt_ids, item.text)
        examples.append(
            Example(
                prompt_ids=list(completion.prompt_ids),
                teacher_ids=teacher,
                response_ids=list(completion.token_ids),
                rollout_logprobs=list(completion.logprobs),
            )
        )
    if not examples:
        raise FailedPrecondition("no feedback item has a response to learn from", field="config.feedback")
    return examples
