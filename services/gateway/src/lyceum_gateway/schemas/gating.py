"""Gated generation's bodies, shared by `/v1/generate`, the OpenAI API (an extension), sessions and the token
wheel: the `gating` a request asks for, how it was served, and the trajectory of modulations. Shapes and
ranges are checked here (422); the rules between fields (modulation only with fixed, a policy only with
learned, no sampling knobs or gate_signal beside gating, sampling only) are the samplers' (400 naming the
field)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from lyceum_core.errors import InvalidArgument
from lyceum_fleet import sampler as clients
from lyceum_fleet.gating import Gating, GatingMode, GatingReport, GatingStep
from lyceum_gateway.schemas.common import MAX_MODEL_REF_LEN

MODULATOR = (
    "m in [0, 1] sets temperature 0.3 + 1.7m, top_k round(5 + 95m), top_p 0.7 + 0.3m and repetition_penalty "
    "1.2(1 + 2.5m), and on a gated model the gate signal (m)"
)


class GatingIn(BaseModel):
    """Each step a modulation m, conservative (0) to exploratory (1), sets the sampling parameters."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "description": f"Gated generation: {MODULATOR}. Replaces the sampling knobs and gate_signal "
            "(giving them too is a 400); needs strategy `sample`.",
            "examples": [
                {"mode": "fixed", "modulation": 0.2},
                {"mode": "random", "seed": 7},
                {"mode": "learned", "policy": "gating@latest"},
            ],
        },
    )

    mode: GatingMode = Field(
        description="`none` (the request's own knobs), `fixed` (one m), `random` (m ~ U(0, 1) per step) or "
        "`learned` (a gating policy observing the generation)"
    )
    modulation: float | None = Field(
        None, ge=0.0, le=1.0, allow_inf_nan=False, description="`fixed` only, required there: m"
    )
    policy: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_MODEL_REF_LEN,
        description="`learned` only, required there: a registry model of kind `gating_policy` "
        "(`name@alias`, `name@version`, or `name`), yours or a public one",
        examples=["gating@latest"],
    )
    seed: int | None = Field(
        None, ge=0, lt=2**64, strict=True, description="`random` only: the modulations' seed (default `seed`)"
    )

    def to_domain(self) -> Gating:
        return Gating(self.mode, self.modulation, self.policy, self.seed)


class GatingOut(BaseModel):
    """How the gating was served."""

    mode: GatingMode
    gate_signal: bool = Field(
        description="Whether m reached the model's gates; false: through sampling only (a model without "
        "gates, or a policy trained without them)"
    )
    policy: str | None = Field(None, description="`learned`: the policy version that served it")
    policy_lm: str | None = Field(None, description="`learned`: the LM version the policy was trained on")
    lm_mismatch: bool | None = Field(
        None, description="`learned`: served on another model than `policy_lm` (allowed; flagged here)"
    )
    modulation: float | None = Field(None, description="`fixed`: m")
    seed: int | None = Field(None, description="`random`: the seed the modulations were drawn with")

    @classmethod
    def from_domain(cls, report: GatingReport) -> GatingOut:
        learned = report.mode is GatingMode.LEARNED
        return cls(
            mode=report.mode,
            gate_signal=report.gate_signal,
            policy=report.policy,
            policy_lm=report.policy_lm,
            lm_mismatch=report.lm_mismatch if learned else None,
            modulation=report.modulation,
            seed=report.seed,
        )


class GatingStepOut(BaseModel):
    """A step's decision: its modulation and the sampling parameters it set."""

    modulation: float = Field(examples=[0.5])
    temperature: float = Field(examples=[1.15])
    top_k: int = Field(examples=[52])
    top_p: float = Field(examples=[0.85])
    repetition_penalty: float = Field(examples=[2.7])
    gate_signal: float | None = Field(None, description="The gate signal the token is fed with (if gated)")

    @classmethod
    def from_domain(cls, step: GatingStep) -> GatingStepOut:
        return cls(
            modulation=step.modulation,
            temperature=step.temperature,
            top_k=step.top_k,
            top_p=step.top_p,
            repetition_penalty=step.repetition_penalty,
            gate_signal=step.gate_signal,
        )


class TrajectoryStep(GatingStepOut):
    """One generated token of a gated generation with the decision it was chosen under."""

    token: str = Field(description="The token's text (its bytes decoded with replacement if not UTF-8 alone)")
    token_id: int

    @classmethod
    def from_step(cls, step: clients.GenerationStep) -> TrajectoryStep | None:
        """The entry of a token step (None for an ungated one)."""
        if step.token is None or step.gating_step is None:
            return None
        token = step.token
        text = token.text if token.is_valid_utf8 else token.data.decode("utf-8", errors="replace")
        return cls(token=text, token_id=token.id, **GatingStepOut.from_domain(step.gating_step).model_dump())


# --- Tidal's inference sidecar shape (`POST /v1/gating/generate`) ----------------------------------------


class SidecarRequest(BaseModel):
    """Tidal's sidecar request, camelCase as there; `model` and `seed` are Lyceum's additions."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "prompt": "Once upon a time",
                    "maxTokens": 50,
                    "gatingMode": "learned",
                    "policy": "gating@latest",
                }
            ]
        },
    )

    prompt: str = Field(min_length=1)
    maxTokens: int = Field(50, ge=1, le=4096, strict=True)  # noqa: N815 - Tidal's names
    temperature: float | None = Field(
        None, gt=0.0, allow_inf_nan=False, description="Mode `none` only (gating sets it otherwise)"
    )
    topK: int | None = Field(None, ge=0, description="Mode `none` only (gating sets it otherwise)")  # noqa: N815
    gatingMode: GatingMode = GatingMode.LEARNED  # noqa: N815
    policy: str | None = Field(None, min_length=1, max_length=MAX_MODEL_REF_LEN)
    modulation: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    model: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_MODEL_REF_LEN,
        description="Lyceum: the model (default: the first the samplers serve)",
    )
    seed: int | None = Field(None, ge=0, lt=2**64, strict=True, description="Lyceum: reproducible sampling")

    def to_domain(self, model: str) -> clients.GenerateSpec:
        gated = self.gatingMode is not GatingMode.NONE
        if gated and (self.temperature is not None or self.topK is not None):
            field = "temperature" if self.temperature is not None else "topK"
            raise InvalidArgument(f"gatingMode {self.gatingMode} sets {field}; leave it out", field=field)
        return clients.GenerateSpec(
            model=model,
            prompt=self.prompt,
            max_new_tokens=self.maxTokens,
            params=clients.SamplingParams(temperature=self.temperature, top_k=self.topK),
            seed=self.seed,
            gating=Gating(self.gatingMode, self.modulation, self.policy) if gated else None,
        )


class SidecarResponse(BaseModel):
    text: str
    tokensGenerated: int  # noqa: N815 - Tidal's names
    elapsedMs: float  # noqa: N815
    trajectory: list[TrajectoryStep]
    model: str = Field(description="Lyceum: what served it")
    gating: GatingOut | None = Field(None, description="Lyceum: how the gating was served")
