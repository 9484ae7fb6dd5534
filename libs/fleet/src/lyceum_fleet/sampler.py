"""A sampler as its callers (the gateway, jobs) see it: a small `Sampler` Protocol over plain dataclasses
(`sampler_types`: token-wheel sessions, next-token distributions, streamed generation, scoring; imported from
here too), and `GrpcSampler`, its implementation over one replica's grpc.aio channel. Protos stop here."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Protocol

import grpc

from lyceum_api.sampler.v1 import sampler_pb2 as pb
from lyceum_api.sampler.v1 import sampler_pb2_grpc as pb_grpc
from lyceum_core.context import RequestContext
from lyceum_core.errors import InvalidArgument
from lyceum_core.grpc.errors import from_rpc_error
from lyceum_fleet.gating import Gating, report_of, step_of
from lyceum_fleet.gating import to_pb as gating_to_pb
from lyceum_fleet.grpc_client import GrpcClient
from lyceum_fleet.sampler_types import (
    AppendedToken,
    Category,
    ChatMessage,
    DecodingStrategy,
    Distribution,
    GenerateSpec,
    GenerationStep,
    HistoryEntry,
    LanguageModel,
    OtherBucket,
    SamplingParams,
    ScoreResult,
    ScoreSpec,
    Session,
    ShownSettings,
    Token,
    TokenChoice,
    TokenProbability,
    UndoneToken,
)

SAMPLER_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SamplerService"].full_name


class Sampler(Protocol):
    """What callers need from the samplers (one replica, or the routed fleet). Every call acts for `ctx` (its
    tenant owns the session); every failure is a `LyceumError`."""

    async def create_session(
        self,
        ctx: RequestContext,
        model: str,
        prompt: str | None = None,
        *,
        max_live_sessions: int = 0,
        adapter: str = "",
        gate_signal: float | None = None,
        gating: Gating | None = None,
    ) -> Session:
        """A new session of `ctx`'s tenant (under an adapter and a gate signal or a gating, when given);
        RESOURCE_EXHAUSTED if the tenant already has `max_live_sessions` live ones (0: no limit)."""
        ...

    async def get_session(self, ctx: RequestContext, session_id: str) -> Session: ...

    async def set_prompt(self, ctx: RequestContext, session_id: str, prompt: str) -> Session: ...

    async def get_distribution(
        self,
        ctx: RequestContext,
        session_id: str,
        threshold: float | None = None,
        other_top_k: int | None = None,
        params: SamplingParams | None = None,
        *,
        record_shown: bool = False,
    ) -> Distribution:
        """With `record_shown`, the sampler keeps threshold and params as the session's `last_shown`."""
        ...

    async def append_token(
        self,
        ctx: RequestContext,
        session_id: str,
        choice: TokenChoice,
        threshold: float | None = None,
        params: SamplingParams | None = None,
        seed: int | None = None,
        expected_context_len: int | None = None,
    ) -> AppendedToken: ...

    async def undo(self, ctx: RequestContext, session_id: str) -> UndoneToken: ...

    async def delete_session(self, ctx: RequestContext, session_id: str) -> None: ...

    def generate(self, ctx: RequestContext, spec: GenerateSpec) -> AsyncGenerator[GenerationStep, None]:
        """The generation's messages as the sampler streams them; closing the iterator cancels the call."""
        ...

    async def score(self, ctx: RequestContext, spec: ScoreSpec) -> ScoreResult: ...

    async def list_models(self, ctx: RequestContext) -> list[LanguageModel]: ...

    async def health(self) -> bool:
        """True when a replica reports SERVING; never raises."""
        ...


_CATEGORY = {pb.CATEGORY_ABOVE: Category.ABOVE, pb.CATEGORY_OTHER: Category.OTHER}
_STRATEGY_PB = {
    DecodingStrategy.GREEDY: pb.DECODING_STRATEGY_GREEDY,
    DecodingStrategy.SAMPLE: pb.DECODING_STRATEGY_SAMPLE,
    DecodingStrategy.BEAM: pb.DECODING_STRATEGY_BEAM,
}


def _token(msg: pb.TokenInfo) -> Token:
    return Token(id=msg.id, text=msg.text, data=bytes(msg.bytes), is_valid_utf8=msg.is_valid_utf8)


def _probability(msg: pb.TokenProbability) -> TokenProbability:
    return TokenProbability(token=_token(msg.token), probability=msg.probability, logprob=msg.logprob)


def _entry(msg: pb.HistoryEntry) -> HistoryEntry:
    # An unspecified category (a sampler that does not say) reads as "other": never claim "above" unasked.
    category = _CATEGORY.get(msg.category, Category.OTHER)
    return HistoryEntry(
        token=_token(msg.token),
        probability=msg.probability,
        category=category,
        rank=msg.rank,
        chosen_at=_time(msg, "chosen_at"),
        from_other=msg.from_other,
        gating=step_of(msg, "gating"),
    )


def _time(msg: object, name: str) -> datetime | None:
    """A Timestamp field as an aware UTC datetime; None when unset."""
    if not msg.HasField(name):  # type: ignore[attr-defined]
        return None
    return getattr(msg, name).ToDatetime(tzinfo=UTC)


def _shown(msg: pb.Session) -> ShownSettings | None:
    if not msg.HasField("last_shown"):
        return None
    shown = msg.last_shown
    p = shown.params
    params = SamplingParams(
        temperature=p.temperature if p.HasField("temperature") else None,
        top_k=p.top_k if p.HasField("top_k") else None,
        top_p=p.top_p if p.HasField("top_p") else None,
        repetition_penalty=p.repetition_penalty if p.HasField("repetition_penalty") else None,
    )
    shown_at = _time(shown, "shown_at") or datetime.fromtimestamp(0, UTC)
    return ShownSettings(threshold=shown.threshold, params=params, shown_at=shown_at)


def _session(msg: pb.Session) -> Session:
    return Session(
        session_id=msg.session_id,
        model=msg.model,
        prompt=msg.prompt,
        prompt_token_ids=list(msg.prompt_token_ids),
        generated=[_entry(e) for e in msg.generated],
        text=msg.text,
        context_len=msg.context_len,
        max_context_len=msg.max_context_len,
        created_at=_time(msg, "created_at"),
        updated_at=_time(msg, "updated_at"),
        last_shown=_shown(msg),
        adapter=msg.adapter,
        gate_signal=msg.gate_signal if msg.HasField("gate_signal") else None,
        gating=report_of(msg),
    )


def _int32(value: int | None, field: str) -> int | None:
    """`value` if a proto int32 holds it; else the caller's mistake, not a crash in the conversion."""
    if value is not None and not -(2**31) <= value < 2**31:
        raise InvalidArgument(f"{field} is out of range", field=field)
    return value


def _params(params: SamplingParams | None) -> pb.SamplingParams | None:
    if params is None:
        return None
    return pb.SamplingParams(
        temperature=params.temperature,
        top_k=_int32(params.top_k, "top_k"),
        top_p=params.top_p,
        repetition_penalty=params.repetition_penalty,
        presence_penalty=params.presence_penalty,
        frequency_penalty=params.frequency_penalty,
    )


def _messages(messages: list[ChatMessage]) -> list[pb.ChatMessage]:
    return [pb.ChatMessage(role=m.role, content=m.content) for m in messages]


def _token_ids(ids: list[int], field: str) -> list[int]:
    for i, token_id in enumerate(ids):
        _int32(token_id, f"{field}[{i}]")
    return ids


def _step(msg: pb.GenerateResponse) -> GenerationStep:
    return GenerationStep(
        token=_token(msg.token) if msg.HasField("token") else None,
        probability=msg.probability,
        text=msg.text,
        finish_reason=msg.finish_reason,
        logprob=msg.logprob,
        top_logprobs=[_probability(p) for p in msg.top_logprobs],
        prompt_tokens=msg.prompt_tokens,
        completion_tokens=msg.completion_tokens,
        completion_id=msg.completion_id or None,
        model=msg.model or None,
        gating_step=step_of(msg, "gating_step"),
        gating=report_of(msg),
    )


class GrpcSampler(GrpcClient):
    """A `Sampler` over one grpc.aio channel; an async context manager that owns the channel."""

    role = "sampler"
    service_name = SAMPLER_SERVICE_NAME

    def __init__(
        self,
        address: str,
        *,
        timeout_s: float,
        generate_timeout_s: float | None = None,
        health_timeout_s: float = 2.0,
    ) -> None:
        super().__init__(address, timeout_s=timeout_s, health_timeout_s=health_timeout_s)
        self._generate_timeout_s = generate_timeout_s or timeout_s
        self._stub: pb_grpc.SamplerServiceStub | None = None

    def _open(self, channel: grpc.aio.Channel) -> None:
        self._stub = pb_grpc.SamplerServiceStub(channel)

    def _close(self) -> None:
        self._stub = None

    @property
    def stub(self) -> pb_grpc.SamplerServiceStub:
        if self._stub is None:
            raise self._closed()
        return self._stub

    async def create_session(
        self,
        ctx: RequestContext,
        model: str,
        prompt: str | None = None,
        *,
        max_live_sessions: int = 0,
        adapter: str = "",
        gate_signal: float | None = None,
        gating: Gating | None = None,
    ) -> Session:
        request = pb.CreateSessionRequest(
            model=model,
            prompt=prompt,
            max_live_sessions=_int32(max_live_sessions, "max_live_sessions"),
            adapter=adapter,
            gate_signal=gate_signal,
            gating=gating_to_pb(gating),
        )
        response = await self._call(self.stub.CreateSession, request, ctx)
        return _session(response.session)

    async def get_session(self, ctx: RequestContext, session_id: str) -> Session:
        response = await self._call(self.stub.GetSession, pb.GetSessionRequest(session_id=session_id), ctx)
        return _session(response.session)

    async def set_prompt(self, ctx: RequestContext, session_id: str, prompt: str) -> Session:
        request = pb.SetPromptRequest(session_id=session_id, prompt=prompt)
        response = await self._call(self.stub.SetPrompt, request, ctx)
        return _session(response.session)

    async def get_distribution(
        self,
        ctx: RequestContext,
        session_id: str,
        threshold: float | None = None,
        other_top_k: int | None = None,
        params: SamplingParams | None = None,
        *,
        record_shown: bool = False,
    ) -> Distribution:
        request = pb.GetDistributionRequest(
            session_id=session_id,
            threshold=threshold,
            other_top_k=_int32(other_top_k, "other_top_k"),
            params=_params(params),
            record_shown=record_shown,
        )
        r = await self._call(self.stub.GetDistribution, request, ctx)
        return Distribution(
            session_id=r.session_id,
            above=[_probability(p) for p in r.above],
            other=OtherBucket(
                probability=r.other.probability,
                count=r.other.count,
                top=[_probability(p) for p in r.other.top],
            ),
            threshold=r.threshold,
            context_len=r.context_len,
            gating=step_of(r, "gating"),
        )

    async def append_token(
        self,
        ctx: RequestContext,
        session_id: str,
        choice: TokenChoice,
        threshold: float | None = None,
        params: SamplingParams | None = None,
        seed: int | None = None,
        expected_context_len: int | None = None,
    ) -> AppendedToken:
        request = pb.AppendTokenRequest(
            session_id=session_id,
            threshold=threshold,
            params=_params(params),
            seed=seed,
            expected_context_len=expected_context_len,
        )
        if choice.from_other:
            request.from_other = True
        elif choice.spin:
            request.spin = True
        elif choice.token_id is not None:
            request.token_id = _int32(choice.token_id, "token_id")  # type: ignore[assignment]
        elif choice.token_text is not None:
            request.token_text = choice.token_text
        response = await self._call(self.stub.AppendToken, request, ctx)
        return AppendedToken(session=_session(response.session), appended=_entry(response.appended))

    async def undo(self, ctx: RequestContext, session_id: str) -> UndoneToken:
        response = await self._call(self.stub.Undo, pb.UndoRequest(session_id=session_id), ctx)
        return UndoneToken(session=_session(response.session), removed=_entry(response.removed))

    async def delete_session(self, ctx: RequestContext, session_id: str) -> None:
        await self._call(self.stub.DeleteSession, pb.DeleteSessionRequest(session_id=session_id), ctx)

    async def generate(self, ctx: RequestContext, spec: GenerateSpec) -> AsyncGenerator[GenerationStep, None]:
        request = pb.GenerateRequest(
            model=spec.model,
            prompt=spec.prompt,
            strategy=_STRATEGY_PB[spec.strategy],
            params=_params(spec.params),
            max_new_tokens=_int32(spec.max_new_tokens, "max_new_tokens"),
            stop=spec.stop,
            seed=spec.seed,
            num_beams=_int32(spec.num_beams, "num_beams"),
            messages=_messages(spec.messages),
            prompt_token_ids=_token_ids(spec.prompt_token_ids, "prompt_token_ids"),
            adapter=spec.adapter or "",
            gate_signal=spec.gate_signal,
            top_logprobs=_int32(spec.top_logprobs, "top_logprobs"),
            record=spec.record,
            subject=spec.subject or "",
            gating=gating_to_pb(spec.gating),
        )
        timeout = ctx.timeout(self._generate_timeout_s)
        call = self.stub.Generate(request, metadata=ctx.metadata(), timeout=timeout)
        try:
            async for msg in call:
                yield _step(msg)
        except grpc.RpcError as exc:
            raise self._public(from_rpc_error(exc), timeout) from None
        finally:
            call.cancel()  # a no-op once the stream ended; stops the sampler when the client left early

    async def score(self, ctx: RequestContext, spec: ScoreSpec) -> ScoreResult:
        request = pb.ScoreRequest(
            model=spec.model,
            adapter=spec.adapter or "",
            prompt=spec.prompt,
            messages=_messages(spec.messages),
            prompt_token_ids=_token_ids(spec.prompt_token_ids, "prompt_token_ids"),
            completion=spec.completion,
            completion_token_ids=_token_ids(spec.completion_token_ids, "completion_token_ids"),
            gate_signal=spec.gate_signal,
        )
        r = await self._call(self.stub.Score, request, ctx)
        return ScoreResult(
            tokens=[_probability(p) for p in r.tokens],
            prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens,
            sum_logprob=r.sum_logprob,
            model=r.model,
        )

    async def list_models(self, ctx: RequestContext) -> list[LanguageModel]:
        response = await self._call(self.stub.ListModels, pb.ListModelsRequest(), ctx)
        return [
            LanguageModel(
                name=m.name,
                kind=m.kind or None,  # proto3 defaults: the sampler has not loaded it, so does not know
                vocab_size=m.vocab_size or None,
                max_context_len=m.max_context_len or None,
                loaded=m.loaded,
                base=m.base or None,
                gated=m.gated,
            )
            for m in response.models
        ]


__all__ = [
    "SAMPLER_SERVICE_NAME",
    "GrpcSampler",
    "Sampler",
    "Token",
    "TokenProbability",
    "OtherBucket",
    "Category",
    "HistoryEntry",
    "ShownSettings",
    "Session",
    "SamplingParams",
    "Distribution",
    "TokenChoice",
    "AppendedToken",
    "UndoneToken",
    "DecodingStrategy",
    "ChatMessage",
    "GenerateSpec",
    "GenerationStep",
    "ScoreSpec",
    "ScoreResult",
    "LanguageModel",
]
