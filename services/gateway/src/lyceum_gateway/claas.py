"""CLaaS ("Continual Learning as a Service") on Lyceum's parts, for the `/claas` mount. A LoRA id is one of
the tenant's registry adapters (`adapter_name`); `lora/init` registers an empty version of it, `lora` lists
and deletes them, `lora/export` packs the version served; `score` asks a sampler; `feedback` stores CLaaS's
batch as durable feedback items on the recorded completions its responses name, has them distilled at once
and waits for the distillation job (never pausing serving, as CLaaS does). Knows nothing of HTTP."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from anyio import to_thread
from sqlalchemy import Engine, text

from lyceum_core.context import RequestContext
from lyceum_core.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    clip,
)
from lyceum_core.identity import MODEL_NAME_MAX_LEN, MODEL_NAME_PATTERN, SERVING_ALIAS, check_model_name
from lyceum_core.storage import ArtifactStore
from lyceum_db.repositories.completions import CompletionRecord, response_digest
from lyceum_db.repositories.feedback import FeedbackRecord, FeedbackState
from lyceum_db.repositories.jobs import JobRecord, JobRepository
from lyceum_db.repositories.registry import (
    LATEST,
    SERVED_ALIASES,
    ModelRecord,
    ModelRepository,
    served_version,
)
from lyceum_fleet import sampler as clients
from lyceum_fleet.routed import SamplerRouter
from lyceum_gateway.adapters import ADAPTER_KIND, AdapterService, Export
from lyceum_gateway.feedback import FeedbackService, check_text
from lyceum_gateway.registry import RegistryService
from lyceum_gateway.schemas.claas import (
    DEFAULT_BASE_MODEL,
    DEFAULT_DISTILL_TIMEOUT_S,
    DEFAULT_LOCK_TIMEOUT_S,
    DistillResult,
    FeedbackBatchRequest,
    FeedbackItem,
    FeedbackResponse,
    HealthResponse,
    LoraInitRequest,
    ScoreRequest,
    ScoreResponse,
    ServiceHealth,
    TimingMs,
)

log = logging.getLogger(__name__)

LORA_DROPOUT = 0.0  # CLaaS's adapters have none
CANDIDATES = 20  # recorded completions of one response text weighed to find the one an item means
# CLaaS's names for the SDPO job's figures (its `distill_result.metadata`) and Lyceum's (`SDPOStepper.step`).
CLAAS_METRICS = (
    ("total_loss", "loss"),
    ("distill_loss", "distill_loss"),
    ("kl_reg", "kl_reg"),
    ("mean_is_ratio", "is_ratio_mean"),
    ("clip_fraction", "clip_fraction"),
    ("grad_norm", "grad_norm"),
    ("tokens_processed", "tokens"),
)
_DONE = frozenset({FeedbackState.APPLIED, FeedbackState.FAILED})
_NOT_NAME = re.compile(r"[^a-z0-9._-]+")
_NAME = re.compile(MODEL_NAME_PATTERN)


@dataclass(frozen=True, slots=True)
class ClaasOptions:
    """The mount's settings: the base `lora/init` adapts by default (also what `score` uses when no model
    is named), how long `feedback` waits for a training of the adapter already running (then 409) and for
    its own distillation (then 504), how often it looks, and the monotonic clock (seconds) timing those."""

    base_model: str = DEFAULT_BASE_MODEL
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
    distill_timeout_s: float = DEFAULT_DISTILL_TIMEOUT_S
    poll_s: float = 0.5
    clock: Callable[[], float] = time.monotonic


def adapter_name(lora_id: str, field: str = "lora_id") -> str:
    """The registry adapter a CLaaS LoRA id names: lowercased, each run of characters a model name cannot
    hold made one `-` (CLaaS's own rule for the name vLLM serves a LoRA under: `user/coder-v1` is
    `user-coder-v1`), trimmed to start and end with a letter or digit. A valid name is itself."""
    name = _NOT_NAME.sub("-", lora_id.lower()).strip("-._")
    if len(name) > MODEL_NAME_MAX_LEN:
        name = name[:MODEL_NAME_MAX_LEN].rstrip("-._")
    return check_model_name(name, field=field)


def name_prefix(prefix: str) -> str:
    """A LoRA id prefix (`user123/`) as a prefix of adapter names (`user123-`)."""
    return _NOT_NAME.sub("-", prefix.lower()).lstrip("-._")


def served_model(model: str, field: str = "model") -> str:
    """What a CLaaS request's `model` asks the samplers for: a registry reference (`name@alias`) or a valid
    model name as it is, else the adapter its LoRA id names (served at its `serving` alias, else `latest`)."""
    if "@" in model or _NAME.fullmatch(model):
        return model
    return adapter_name(model, field=field)


def own_adapter(models: ModelRepository, tenant: str, name: str) -> list[ModelRecord]:
    """The tenant's own versions of the adapter `name` (a public adapter of that name is not the tenant's to
    train or delete); empty if it has none, or `name` is no adapter."""
    records = [r for r in models.list(tenant, name) if r.tenant == tenant]
    return records if records and all(r.kind == ADAPTER_KIND for r in records) else []


def lora_not_found(lora_id: str) -> NotFound:
    return NotFound(f"LoRA not found: {clip(lora_id)}", field="lora_id")


class Loras:
    """CLaaS's LoRA operations on the tenant's registry adapters; synchronous, like the registry and store."""

    def __init__(self, registry: RegistryService, store: ArtifactStore) -> None:
        self.registry, self.store = registry, store
        self.adapters = AdapterService(registry, store)

    def init(self, tenant: str, request: LoraInitRequest, default_base: str) -> str:
        """Registers an empty version (B = 0) of the LoRA over the base; an existing LoRA is re-initialised,
        as CLaaS does: the new version is what it serves from now on (its `serving` alias moves too)."""
        name = adapter_name(request.lora_id)
        view = self.adapters.create_empty(
            tenant,
            name,
            request.base_model or default_base,
            r=request.lora_r,
            alpha=request.lora_alpha,
            dropout=LORA_DROPOUT,
            target_modules=request.target_modules,
            seed=0,
        )
        version = view.record.version
        if self.registry.models.aliases(tenant, name).get(SERVING_ALIAS, version) != version:
            self.registry.set_alias(tenant, name, SERVING_ALIAS, version)
        return name

    def names(self, tenant: str, prefix: str = "") -> list[str]:
        """The ids of the tenant's own LoRAs that start with `prefix` (as a LoRA id prefix), sorted."""
        start = name_prefix(prefix)
        return [
            view.name
            for view in self.registry.of_kind(tenant, ADAPTER_KIND)
            if view.versions[0].record.tenant == tenant and view.name.startswith(start)
        ]

    def delete(self, tenant: str, lora_id: str) -> bool:
        """Deletes the tenant's LoRA: every version, alias and artifact. False if there was none."""
        try:
            name = adapter_name(lora_id)
        except InvalidArgument:  # an id that can name no adapter names none to delete
            return False
        if not own_adapter(self.registry.models, tenant, name):
            return False
        for record in self.registry.delete(tenant, name):
            try:
                self.store.delete(record.uri)
            except Exception:  # noqa: BLE001 - the registry no longer names it; an orphan file is harmless
                log.warning("could not delete the files of %s@%d at %s", name, record.version, record.uri)
        return True

    def served_ref(self, tenant: str, name: str) -> str:
        """The alias a bare adapter name is served at: `serving` if it has one, else `latest`."""
        aliases = self.registry.models.aliases(tenant, name)
        return next((alias for alias in SERVED_ALIASES if alias in aliases), LATEST)

    def export(self, tenant: str, lora_id: str) -> Export:
        """The version of the LoRA that is served, as a zip of its PEFT directory."""
        name = adapter_name(lora_id)
        try:
            return self.adapters.export(tenant, name, self.served_ref(tenant, name), "zip")
        except NotFound:
            raise lora_not_found(lora_id) from None


async def score(
    ctx: RequestContext, samplers: SamplerRouter, request: ScoreRequest, default_model: str
) -> ScoreResponse:
    """The completion's log-probabilities after the prompt (or the chat messages, which win if both are
    given, as in CLaaS) under the LoRA or model named, at temperature 1."""
    messages = [
        clients.ChatMessage("system" if m.role == "developer" else m.role, _text(m.content))
        for m in request.messages or ()
    ]
    spec = clients.ScoreSpec(
        model=served_model(request.model or default_model),
        prompt="" if messages else request.prompt or "",
        messages=messages,
        completion=request.completion,
    )
    # Scoring changes nothing: safe to re-send past a replica that broke mid-call.
    result = await samplers.any().score(ctx, spec)
    return ScoreResponse(
        logprobs=[t.logprob for t in result.tokens],
        tokens=[t.token.text for t in result.tokens],
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        logprob_sum=result.sum_logprob,
        model=result.model,
    )


def _text(content: object) -> str:
    """A chat message's content as text, as CLaaS coerces it: a string; the strings, `text`s or `content`s of
    a list of parts, one per line; a part's `text`."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p if isinstance(p, str) else _part(p) for p in content]
        return "\n".join(p for p in parts if p is not None)
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return content["text"]
    return str(content)


def _part(part: object) -> str | None:
    if not isinstance(part, dict):
        return None
    value = part["text"] if isinstance(part.get("text"), str) else part.get("content")
    return value if isinstance(value, str) else None


async def health(engine: Engine) -> HealthResponse:
    """Healthy when the database the distillations run through answers; degraded (still 200) otherwise."""

    def ping() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    try:
        await to_thread.run_sync(ping)
    except Exception as exc:  # noqa: BLE001 - reported, not raised: a health check answers
        return HealthResponse(status="degraded", worker=ServiceHealth(status="unhealthy", error=str(exc)))
    return HealthResponse(status="healthy", worker=ServiceHealth(status="healthy"))


# --- feedback ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Batch:
    """A checked CLaaS batch: the adapter it trains, its items and each item's recorded completion."""

    name: str
    items: list[FeedbackItem]
    completions: list[CompletionRecord]


class Distillation:
    """CLaaS's `feedback`: one batch of one LoRA, distilled now, answered when its job ends. Each item is a
    durable feedback record on the completion its response names (`FeedbackService`); the job is the one
    `sdpo` job the dispatcher allows per adapter at a time. The wait survives nothing: a client that gives up
    leaves its items to be trained (they are pending or training, and the job runs on)."""

    def __init__(self, service: FeedbackService, jobs: JobRepository, options: ClaasOptions) -> None:
        self.service, self.jobs, self.options = service, jobs, options

    async def run(
        self,
        tenant: str,
        request: FeedbackBatchRequest,
        *,
        request_id: str,
        idempotency_key: str | None = None,
    ) -> FeedbackResponse:
        """Checks the batch (400 mixed LoRAs or settings, 404 unknown LoRA or response, 400 a completion of
        another base), waits while the LoRA trains already (409 past `lock_timeout_s`), stores the items,
        distils exactly them and waits for their job (504 past `distill_timeout_s`; 500 if it failed)."""
        clock = self.options.clock
        started = clock()
        batch = await to_thread.run_sync(self._check, tenant, request)
        keys = [
            None if idempotency_key is None else f"{idempotency_key}:{i}" for i in range(len(batch.items))
        ]
        find = self.service.feedback.find_by_idempotency_key
        if keys[0] is None or await to_thread.run_sync(find, tenant, keys[0]) is None:
            await self._wait_for_lock(tenant, batch.name, request.requests[0].lora_id)
        records = await to_thread.run_sync(self._store, tenant, batch, keys)
        distilling = clock()
        records = await self._distil(tenant, batch.name, [r.feedback_id for r in records])
        ended = clock()
        failed = [r for r in records if r.state is FeedbackState.FAILED]
        if failed:
            raise Internal(
                f"Feedback update failed in phase 'distill': {failed[0].error or 'the job failed'}"
            )
        result = await to_thread.run_sync(self._result, tenant, batch.name, records)
        last_job = result.metadata["job_id"]
        return FeedbackResponse(
            request_id=request_id,
            lora_id=batch.name,
            distill_result=result,
            feedback_log_path=f"/v1/jobs/{last_job}",
            timing_ms=TimingMs(distill=_ms(ended - distilling), total=_ms(clock() - started)),
            batch_size=len(records),
        )

    def _check(self, tenant: str, request: FeedbackBatchRequest) -> _Batch:
        first = request.requests[0]
        training = first.training.sdpo()
        for item in request.requests[1:]:
            if item.lora_id != first.lora_id:
                raise InvalidArgument("all requests must use the same lora_id", field="lora_id")
            if item.training.sdpo() != training:
                raise InvalidArgument("all requests must use the same training config", field="training")
        name = adapter_name(first.lora_id)
        if not own_adapter(self.service.models, tenant, name):
            raise lora_not_found(first.lora_id)
        completions = [self._completion(tenant, name, item) for item in request.requests]
        for item, completion in zip(request.requests, completions, strict=True):
            check_text(item.feedback)
            self.service.check_adapter(tenant, name, completion.model)
        return _Batch(name, list(request.requests), completions)

    def _completion(self, tenant: str, name: str, item: FeedbackItem) -> CompletionRecord:
        """The recorded completion whose response the item quotes: of those with its text (digest of the
        whitespace-normalised text), the newest made with this LoRA whose last user turn the item's prompt
        contains, else the newest made with it, else the newest."""
        digest = response_digest(item.response)
        found = self.service.completions.find_by_response(tenant, digest, CANDIDATES)
        if not found:
            raise NotFound(
                f"No recorded completion for this response (sha256 {digest[:16]}...)", field="response"
            )
        prompt, mine = " ".join(item.prompt.split()), f"{tenant}/{name}@"

        def fit(completion: CompletionRecord) -> tuple[bool, bool]:
            asked = _asked(completion)
            return (completion.adapter or "").startswith(mine), bool(asked) and asked in prompt

        return max(found, key=fit)  # the first (newest) of the best

    async def _wait_for_lock(self, tenant: str, name: str, lora_id: str) -> None:
        """Returns once no job trains the adapter; FailedPrecondition (409) past `lock_timeout_s`."""
        deadline = self.options.clock() + self.options.lock_timeout_s
        while await to_thread.run_sync(self._training, tenant, name):
            if self.options.clock() >= deadline:
                raise FailedPrecondition(
                    f"Timed out waiting for lock on LoRA '{clip(lora_id)}'", field="lora_id"
                )
            await asyncio.sleep(self.options.poll_s)

    def _training(self, tenant: str, name: str) -> bool:
        """Whether a job of the adapter is queued or running (a slot whose job ended is free to take)."""
        holder = self.service.feedback.holder(tenant, name)
        job = None if holder is None else self.jobs.get(tenant, holder)
        return job is not None and not job.state.terminal

    def _store(self, tenant: str, batch: _Batch, keys: list[str | None]) -> list[FeedbackRecord]:
        training = batch.items[0].training.sdpo()
        return [
            self.service.submit(
                tenant,
                completion.completion_id,
                item.feedback,
                adapter=batch.name,
                training=training,
                idempotency_key=key,
                offer=False,
            )
            for item, completion, key in zip(batch.items, batch.completions, keys, strict=True)
        ]

    async def _distil(self, tenant: str, name: str, feedback_ids: list[str]) -> list[FeedbackRecord]:
        """Has the items distilled (again while some are pending: a job that raced in may have left them)
        and waits until each is applied or failed; DeadlineExceeded (504) past `distill_timeout_s`."""
        deadline = self.options.clock() + self.options.distill_timeout_s
        while True:
            records = await to_thread.run_sync(self.service.feedback.get_many, tenant, feedback_ids)
            if all(r.state in _DONE for r in records):
                return records
            if await to_thread.run_sync(self.service.settle_ended, tenant, records):
                continue  # their job had ended: read them again
            pending = [r.feedback_id for r in records if r.state is FeedbackState.PENDING]
            if pending:
                try:
                    await to_thread.run_sync(
                        partial(self.service.distill, tenant, name, feedback_ids=pending)
                    )
                except (FailedPrecondition, InvalidArgument):
                    pass  # a job of the adapter runs (it may hold ours), or took them meanwhile: wait
            if self.options.clock() >= deadline:
                jobs = ", ".join(sorted({r.job_id for r in records if r.job_id})) or "none started"
                raise DeadlineExceeded(
                    f"the distillation of LoRA {name!r} did not end within "
                    f"{self.options.distill_timeout_s:g} s (jobs: {jobs}); the feedback stays queued and "
                    "will be trained"
                )
            await asyncio.sleep(self.options.poll_s)

    def _result(self, tenant: str, name: str, records: list[FeedbackRecord]) -> DistillResult:
        """CLaaS's `distill_result` from the (last) job that trained the items, with Lyceum's facts."""
        job_ids = list(dict.fromkeys(r.job_id for r in records if r.job_id))
        job = self.jobs.get(tenant, job_ids[-1])
        assert job is not None, "an applied item names its job"
        version = next((r.version for r in reversed(records) if r.version is not None), None)
        aliases = self.service.models.aliases(tenant, name)
        served = served_version(aliases)  # what the bare name is served at
        metadata: dict[str, object] = {
            claas: job.metrics[lyceum] for claas, lyceum in CLAAS_METRICS if lyceum in job.metrics
        }
        metadata |= {
            "batch_size": len(records),
            "teacher_mode": "self",
            "version": version,
            "serving": version is not None and served == version,
            "gate": _gate(job),
            "job_id": job.job_id,
            "jobs": job_ids,
            "feedback_ids": [r.feedback_id for r in records],
            "metrics": job.metrics,
        }
        return DistillResult(lora_id=name, metadata=metadata)


def _asked(completion: CompletionRecord) -> str:
    """The last user turn of a recorded chat completion, whitespace-normalised ("" for a legacy one)."""
    messages = completion.params.get("messages") or []
    users = [m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return " ".join(str(users[-1]).split()) if users else ""


def _gate(job: JobRecord) -> object:
    """What the SDPO job's quality gate decided, as its result records it (None if it does not)."""
    return (job.result or {}).get("gate")


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
