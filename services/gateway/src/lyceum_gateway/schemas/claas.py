"""Bodies of the CLaaS compatibility mount (`/claas`), shaped as CLaaS ("Continual Learning as a Service",
github.com/kfallah/CLaaS) defines them, so that its clients and its OpenClaw feedback plugin work unchanged.

What CLaaS answers, as read in its sources (`claas/api.py`, `claas/core/types.py` at commit 11e29f20 and
neighbours; `claas/inference/tinker.py`; `claas/eval/metrics/logprob.py`; `claas/training/distillation.py`;
`plugins/claas-feedback/{index.ts,src/feedback-client.ts}`):

- `POST /v1/feedback` `{requests: [{lora_id, prompt, response, feedback, training}], orchestration:
  {sleep_before, wake_after, wake_on_failure, sleep_level 1-2}}` -> 200 `{status: "ok", request_id, lora_id,
  distill_result: {lora_id, metadata: {total_loss, distill_loss, kl_reg, mean_is_ratio, clip_fraction,
  grad_norm, tokens_processed, teacher_mode, batch_size}} | null, vllm: {slept, woke}, feedback_log_path,
  timing_ms: {sleep, distill, save, wake, logprobs, total}, batch_size}`. `training` is `{learning_rate 5e-5,
  alpha 0.5 in [0,1], is_clip 5 in [1,20], max_grad_norm 1 >= 0, kl_reg_weight in [0,1], teacher_top_k 100 in
  [10,100]}` (plus `teacher_mode` "self"|"remote" in the versions the plugin talks to). Each item's `response`
  is looked up in the completion cache by sha256 of its visible text with thinking stripped and whitespace
  runs collapsed (`normalize_for_hash`); the item's `prompt` is the user prompt the teacher sees. Errors: 404
  unknown LoRA or no cached completion, 400 "all requests must use the same lora_id" / "... training config",
  422 invalid training (pydantic) or a cached completion without logprobs, 409 timed out waiting for the
  LoRA's lock, 503 vLLM not idle, 500 "Feedback update failed in phase '<phase>': ...". The plugin buffers
  `feedbackBatchSize` (4) items, POSTs `{requests, orchestration: {sleep_before: true, wake_after: true,
  wake_on_failure: true, sleep_level: 1}}` with `training: {teacher_mode: "self"}`, reads
  `timing_ms.total`, `distill_result.metadata.{total_loss, tokens_processed}`, and waits up to 10 minutes.
- `POST /v1/lora/init` `{lora_id, base_model, lora_r 32 in [4,128], lora_alpha 64 in [8,256],
  target_modules?}` -> `{lora_id}` (an existing id is re-initialised; a disallowed base is 403).
- `GET /v1/lora?prefix=` -> `{loras: [lora_id]}`; `DELETE /v1/lora?lora_id=` -> `{deleted: bool}` (false if
  missing: idempotent, never 404); `GET /v1/lora/export?lora_id=` -> a zip (`application/zip`,
  `Content-Disposition: attachment; filename=...`), 404 if missing.
- `POST /v1/score` `{model?, prompt? | messages?, completion}` -> `{logprobs: [float], tokens: [str],
  prompt_tokens, completion_tokens, logprob_sum}`; 422 if neither prompt nor messages.
- `GET /v1/health` -> `{status: "healthy" | "degraded", worker: {status, error}}`.
- `POST /v1/chat/completions`, `POST /v1/completions`: OpenAI's shapes (the served completion is cached for
  feedback).
- Errors are FastAPI's: `{"detail": "<message>"}`, and `{"detail": [{loc, msg, type, ...}]}` for a malformed
  body (422).

Lyceum keeps CLaaS's names and shapes. A LoRA id is a registry adapter name: `user/coder-v1` is the adapter
`user-coder-v1` (see `lyceum_gateway.claas.adapter_name`), and ids are answered in that form."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lyceum_core.lora import MAX_R
from lyceum_gateway.schemas.openai import ChatCompletionRequest, ChatMessageIn, CompletionRequest
from lyceum_jobs.configs import MAX_FEEDBACK_PER_JOB, SDPOTrain

# The base `lora/init` adapts when a request names none (CLaaS defaults to its deployment's base model).
DEFAULT_BASE_MODEL = "smollm2-135m-instruct@production"
# How long `feedback` waits for a training of the adapter that is already running before answering 409
# (CLaaS's FEEDBACK_LOCK_TIMEOUT_S), and for its own distillation to end (the plugin gives up after 600 s).
DEFAULT_LOCK_TIMEOUT_S = 120.0
DEFAULT_DISTILL_TIMEOUT_S = 600.0
MAX_LORA_ID_LEN = 256
MAX_TEXT_LEN = 1_000_000  # a prompt or response; the completion it names bounds it in practice


class ClaasModel(BaseModel):
    """CLaaS's bodies are plain pydantic models: keys they do not know are ignored, not refused."""

    model_config = ConfigDict(extra="ignore")


class TrainingConfig(SDPOTrain):
    """CLaaS's `training`: the SDPO step's settings under CLaaS's names (`learning_rate` is `lr`), with
    Lyceum's rules and defaults (`lyceum_jobs.configs.SDPOTrain`); `teacher_mode` is `self` only (Lyceum's
    teacher is the base model shown the feedback; CLaaS's `remote` 30B teacher does not exist here)."""

    model_config = ConfigDict(
        extra="ignore", alias_generator=lambda field: "learning_rate" if field == "lr" else field
    )

    teacher_mode: Literal["self"] = Field("self", description="Only `self`: the base model is the teacher")

    def sdpo(self) -> SDPOTrain:
        """The SDPO step's settings: equal for two requests that spell the same settings differently."""
        return SDPOTrain.model_validate(self.model_dump(exclude={"teacher_mode"}))


class FeedbackItem(ClaasModel):
    lora_id: str = Field(min_length=1, max_length=MAX_LORA_ID_LEN, examples=["openclaw/assistant-latest"])
    prompt: str = Field(
        min_length=1, max_length=MAX_TEXT_LEN, description="The user prompt the response answered"
    )
    response: str = Field(
        min_length=1,
        max_length=MAX_TEXT_LEN,
        description="The visible response text, as the chat completion answered it (found by its SHA-256 "
        "after whitespace normalisation among your recorded completions)",
    )
    feedback: str = Field(min_length=1, max_length=MAX_TEXT_LEN, description="What the user wants different")
    training: TrainingConfig = Field(default_factory=TrainingConfig)


class FeedbackOrchestration(ClaasModel):
    """Accepted for CLaaS's clients and ignored: Lyceum never pauses serving to train."""

    sleep_before: bool = True
    wake_after: bool = True
    wake_on_failure: bool = True
    sleep_level: int = Field(1, ge=1, le=2)


class FeedbackBatchRequest(ClaasModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "requests": [
                        {
                            "lora_id": "openclaw/assistant-latest",
                            "prompt": "Who are you?",
                            "response": "I am an assistant.",
                            "feedback": "Your name is Kuro.",
                            "training": {"teacher_mode": "self"},
                        }
                    ],
                    "orchestration": {"sleep_before": True, "wake_after": True},
                }
            ]
        },
    )

    requests: list[FeedbackItem] = Field(min_length=1, max_length=MAX_FEEDBACK_PER_JOB)
    orchestration: FeedbackOrchestration = Field(default_factory=FeedbackOrchestration)


class DistillResult(BaseModel):
    lora_id: str = Field(description="The adapter trained")
    metadata: dict[str, Any] = Field(
        description="CLaaS's figures (`total_loss`, `distill_loss`, `kl_reg`, `mean_is_ratio`, "
        "`clip_fraction`, `grad_norm`, `tokens_processed`, `batch_size`, `teacher_mode`) and Lyceum's: "
        "`version` (the adapter version the job registered), `job_id`, `jobs`, `feedback_ids`, `gate` "
        "and `serving` (whether the new version is served: only past the quality gate)"
    )


class VllmState(BaseModel):
    slept: bool = Field(False, description="Always false: serving is never paused")
    woke: bool = False


class TimingMs(BaseModel):
    sleep: int = 0
    distill: int = Field(0, description="From the distillation's start to its job's end")
    save: int = 0
    wake: int = 0
    logprobs: int = 0
    total: int = 0


class FeedbackResponse(BaseModel):
    status: str = "ok"
    request_id: str
    lora_id: str
    distill_result: DistillResult | None = None
    vllm: VllmState = Field(default_factory=VllmState)
    feedback_log_path: str = Field(description="Where the update is recorded: its job (`/v1/jobs/{id}`)")
    timing_ms: TimingMs
    batch_size: int


class LoraInitRequest(ClaasModel):
    lora_id: str = Field(min_length=1, max_length=MAX_LORA_ID_LEN, examples=["user123/coder-v1"])
    base_model: str | None = Field(
        None,
        description="The base language model, `name@alias` or `name@version` in the registry (default: the "
        "gateway's `claas_base_model`)",
        examples=["smollm2-135m-instruct@production"],
    )
    lora_r: int = Field(32, ge=4, le=min(128, MAX_R), description="LoRA rank")
    lora_alpha: int = Field(64, ge=8, le=256, description="LoRA alpha (scale = alpha / r)")
    target_modules: list[str] | None = Field(
        None, min_length=1, description="Modules to adapt (default: by the base's architecture)"
    )


class LoraInitResponse(BaseModel):
    lora_id: str


class LoraListResponse(BaseModel):
    loras: list[str] = Field(description="Your adapters' ids, sorted")


class LoraDeleteResponse(BaseModel):
    deleted: bool = Field(description="False if there was no such LoRA (deleting is idempotent)")


class ScoreMessage(ClaasModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: Any = ""


class ScoreRequest(ClaasModel):
    model: str | None = Field(
        None,
        max_length=MAX_LORA_ID_LEN,
        description="The LoRA (a LoRA id or adapter name) or base model (`name@alias`) to score under "
        "(default: the gateway's `claas_base_model`)",
    )
    prompt: str | None = Field(None, min_length=1, max_length=MAX_TEXT_LEN)
    messages: list[ScoreMessage] | None = Field(None, min_length=1)
    completion: str = Field(min_length=1, max_length=MAX_TEXT_LEN)

    @model_validator(mode="after")
    def _a_context(self) -> ScoreRequest:
        if self.prompt is None and self.messages is None:
            raise ValueError("either prompt or messages must be provided")
        return self


class ScoreResponse(BaseModel):
    logprobs: list[float] = Field(description="Each completion token's log-probability")
    tokens: list[str] = Field(description="Each completion token's text")
    prompt_tokens: int
    completion_tokens: int
    logprob_sum: float
    model: str = Field(description="Lyceum: what scored it, versions resolved")


class ServiceHealth(BaseModel):
    status: str
    error: str | None = None


class HealthResponse(BaseModel):
    status: str = Field(description="`healthy`, or `degraded` when the worker side is not")
    worker: ServiceHealth | None = None


class ChatMessage(ChatMessageIn):
    """A chat turn; keys CLaaS's clients send besides OpenAI's basic ones are ignored, as CLaaS does."""

    model_config = ConfigDict(extra="ignore")


class ChatRequest(ChatCompletionRequest):
    """OpenAI's chat completion request as the OpenAI-compatible mount takes it, `model` being a LoRA id (or
    a model name); parameters CLaaS ignores are ignored here too, not refused."""

    model_config = ConfigDict(extra="ignore")

    messages: list[ChatMessage] = Field(min_length=1, description="The conversation so far")  # type: ignore[assignment]


class TextRequest(CompletionRequest):
    """OpenAI's legacy completion request, `model` being a LoRA id (or a model name)."""

    model_config = ConfigDict(extra="ignore")
