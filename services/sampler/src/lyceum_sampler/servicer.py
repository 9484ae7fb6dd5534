"""The thin gRPC edge of the sampler: converts protos to plain values, runs the engine off the event loop
for the caller's tenant (the bound request context), converts results back. Unary errors are mapped by
lyceum_core's interceptor; the interceptors do not wrap server-streaming methods, so Generate maps its own
(with the same `to_status`) and counts its own calls."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from lyceum_api.sampler.v1 import sampler_pb2 as pb
from lyceum_api.sampler.v1 import sampler_pb2_grpc
from lyceum_core.context import current_context
from lyceum_core.errors import Internal, InvalidArgument, LyceumError
from lyceum_core.grpc.errors import GRPC_CODE, to_status
from lyceum_core.identity import check_subject
from lyceum_core.metrics import GRPC_LATENCY, GRPC_REQUESTS
from lyceum_ml import chat
from lyceum_ml.sampling import SamplingParams
from lyceum_sampler.engine import Choice, SamplerEngine
from lyceum_sampler.gating import Decision, Gating, GatingSpec
from lyceum_sampler.generation import GenerateSpec, Generation, Prompt
from lyceum_sampler.sessions import Shown
from lyceum_sampler.views import HistoryItem, SessionView, Token, TokenProb

log = logging.getLogger(__name__)
T = TypeVar("T")
CATEGORY = {"above": pb.CATEGORY_ABOVE, "other": pb.CATEGORY_OTHER}
STRATEGY = {
    pb.DECODING_STRATEGY_UNSPECIFIED: "sample",
    pb.DECODING_STRATEGY_GREEDY: "greedy",
    pb.DECODING_STRATEGY_SAMPLE: "sample",
    pb.DECODING_STRATEGY_BEAM: "beam",
}
PARAM_FIELDS = (
    "temperature",
    "top_k",
    "top_p",
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
)
DEFAULT_BEAMS = 4
GATING_MODE = {
    pb.GATING_MODE_UNSPECIFIED: "none",
    pb.GATING_MODE_NONE: "none",
    pb.GATING_MODE_FIXED: "fixed",
    pb.GATING_MODE_RANDOM: "random",
    pb.GATING_MODE_LEARNED: "learned",
}
GATING_MODE_PB = {name: mode for mode, name in GATING_MODE.items() if mode != pb.GATING_MODE_UNSPECIFIED}


def _params(msg: pb.SamplingParams) -> SamplingParams:
    """Unset fields take SamplingParams' defaults."""
    return SamplingParams(**{f: getattr(msg, f) for f in PARAM_FIELDS if msg.HasField(f)})


def _gating(msg: Any, field: str = "gating") -> GatingSpec | None:
    """The request's `gating`, None when unset."""
    if not msg.HasField(field):
        return None
    g = getattr(msg, field)
    if g.mode not in GATING_MODE:
        raise InvalidArgument(f"unknown gating mode {g.mode}", field="gating.mode")
    return GatingSpec(GATING_MODE[g.mode], _optional(g, "modulation"), g.policy, _optional(g, "seed"))


def _gating_report(gating: Gating) -> pb.GatingReport:
    return pb.GatingReport(
        mode=GATING_MODE_PB[gating.mode],
        policy=gating.policy,
        gate_signal=gating.gate_signal,
        policy_lm=gating.policy_lm,
        lm_mismatch=gating.lm_mismatch,
        modulation=gating.modulation,
        seed=gating.seed,
    )


def _gating_step(decision: Decision) -> pb.GatingStep:
    p = decision.params
    params = pb.SamplingParams(
        temperature=p.temperature,
        top_k=p.top_k,
        top_p=p.top_p,
        repetition_penalty=p.repetition_penalty,
        presence_penalty=p.presence_penalty,
        frequency_penalty=p.frequency_penalty,
    )
    return pb.GatingStep(modulation=decision.modulation, params=params, gate_signal=decision.gate)


def _prompt(text: str, messages: Any, token_ids: Any) -> Prompt:
    return Prompt(text, tuple(chat.Message(m.role, m.content) for m in messages), tuple(token_ids))


def _tenant() -> str:
    """The caller's tenant, from the request context the server's interceptor bound for this call."""
    return current_context().tenant


def _timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(round(seconds * 1e9))
    return ts


def _shown(shown: Shown) -> pb.ShownSettings:
    p = shown.params
    return pb.ShownSettings(
        threshold=shown.threshold,
        params=pb.SamplingParams(
            temperature=p.temperature,
            top_k=p.top_k,
            top_p=p.top_p,
            repetition_penalty=p.repetition_penalty,
        ),
        shown_at=_timestamp(shown.shown_at),
    )


def _optional(msg: Any, field: str) -> Any:
    return getattr(msg, field) if msg.HasField(field) else None


def _token(token: Token) -> pb.TokenInfo:
    return pb.TokenInfo(id=token.id, text=token.text, bytes=token.raw, is_valid_utf8=token.is_valid_utf8)


def _token_prob(tp: TokenProb) -> pb.TokenProbability:
    return pb.TokenProbability(token=_token(tp.token), probability=tp.probability, logprob=tp.logprob)


def _history(item: HistoryItem) -> pb.HistoryEntry:
    return pb.HistoryEntry(
        token=_token(item.token),
        probability=item.probability,
        category=CATEGORY[item.category],
        rank=item.rank,
        chosen_at=_timestamp(item.chosen_at),
        from_other=item.from_other,
        gating=_gating_step(item.gating) if item.gating is not None else None,
    )


def _session(s: SessionView) -> pb.Session:
    return pb.Session(
        session_id=s.session_id,
        model=s.model,
        prompt=s.prompt,
        prompt_token_ids=s.prompt_ids,
        generated=[_history(g) for g in s.generated],
        text=s.text,
        context_len=s.context_len,
        max_context_len=s.max_context_len,
        created_at=_timestamp(s.created_at),
        updated_at=_timestamp(s.updated_at),
        last_shown=_shown(s.shown) if s.shown is not None else None,
        adapter=s.adapter,
        gate_signal=s.gate,
        gating=_gating_report(s.gating) if s.gating is not None else None,
    )


def _choice(request: pb.AppendTokenRequest) -> Choice:
    which = request.WhichOneof("choice")
    if which == "token_id":
        return Choice(token_id=request.token_id)
    if which == "token_text":
        return Choice(token_text=request.token_text)
    if which == "from_other" and request.from_other:
        return Choice(from_other=True)
    if which == "spin" and request.spin:
        return Choice(spin=True)
    if which in ("from_other", "spin"):
        raise InvalidArgument(f"{which} must be true when set", field=which)
    raise InvalidArgument("set one of token_id, token_text, from_other or spin", field="choice")


class SamplerServicer(sampler_pb2_grpc.SamplerServiceServicer):
    def __init__(self, engine: SamplerEngine, executor: ThreadPoolExecutor) -> None:
        self.engine = engine
        self.executor = executor

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs engine work on the executor, in the call's context (its route hint included)."""
        call = contextvars.copy_context().run
        return await asyncio.get_running_loop().run_in_executor(self.executor, call, fn, *args)

    async def CreateSession(self, request: pb.CreateSessionRequest, context: grpc.aio.ServicerContext):
        session = await self._run(
            self.engine.create,
            _tenant(),
            request.model,
            _optional(request, "prompt"),
            request.max_live_sessions,
            request.adapter,
            _optional(request, "gate_signal"),
            _gating(request),
        )
        return pb.CreateSessionResponse(session=_session(session))

    async def GetSession(self, request: pb.GetSessionRequest, context: grpc.aio.ServicerContext):
        return pb.GetSessionResponse(
            session=_session(await self._run(self.engine.get, _tenant(), request.session_id))
        )

    async def SetPrompt(self, request: pb.SetPromptRequest, context: grpc.aio.ServicerContext):
        session = await self._run(self.engine.set_prompt, _tenant(), request.session_id, request.prompt)
        return pb.SetPromptResponse(session=_session(session))

    async def GetDistribution(self, request: pb.GetDistributionRequest, context: grpc.aio.ServicerContext):
        d = await self._run(
            self.engine.distribution,
            _tenant(),
            request.session_id,
            _optional(request, "threshold"),
            _optional(request, "other_top_k"),
            _params(request.params),
            request.record_shown,
        )
        return pb.GetDistributionResponse(
            session_id=d.session_id,
            above=[_token_prob(tp) for tp in d.above],
            other=pb.OtherBucket(
                probability=d.other_probability,
                count=d.other_count,
                top=[_token_prob(tp) for tp in d.other_top],
            ),
            threshold=d.threshold,
            context_len=d.context_len,
            gating=_gating_step(d.gating) if d.gating is not None else None,
        )

    async def AppendToken(self, request: pb.AppendTokenRequest, context: grpc.aio.ServicerContext):
        session, appended = await self._run(
            self.engine.append,
            _tenant(),
            request.session_id,
            _choice(request),
            _optional(request, "threshold"),
            _params(request.params),
            _optional(request, "seed"),
            _optional(request, "expected_context_len"),
        )
        return pb.AppendTokenResponse(session=_session(session), appended=_history(appended))

    async def Undo(self, request: pb.UndoRequest, context: grpc.aio.ServicerContext):
        session, removed = await self._run(self.engine.undo, _tenant(), request.session_id)
        return pb.UndoResponse(session=_session(session), removed=_history(removed))

    async def DeleteSession(self, request: pb.DeleteSessionRequest, context: grpc.aio.ServicerContext):
        await self._run(self.engine.delete, _tenant(), request.session_id)
        return pb.DeleteSessionResponse(session_id=request.session_id)

    async def ListModels(self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext):
        models = await self._run(self.engine.list_models, _tenant())
        return pb.ListModelsResponse(
            models=[
                pb.ModelDescription(
                    name=m.name,
                    kind=m.kind,
                    vocab_size=m.vocab_size,
                    max_context_len=m.max_context,
                    loaded=m.loaded,
                    base=m.base,
                    gated=m.gated,
                )
                for m in models
            ]
        )

    async def Score(self, request: pb.ScoreRequest, context: grpc.aio.ServicerContext):
        target, prompt_ids, ids, logprobs = await self._run(
            self.engine.generations.score,
            _tenant(),
            request.model,
            request.adapter,
            _prompt(request.prompt, request.messages, request.prompt_token_ids),
            request.completion,
            list(request.completion_token_ids),
            _optional(request, "gate_signal"),
        )
        tokens = target.loaded.tokens
        return pb.ScoreResponse(
            tokens=[
                pb.TokenProbability(token=_token(tokens(i)), probability=math.exp(lp), logprob=lp)
                for i, lp in zip(ids, logprobs, strict=True)
            ],
            prompt_tokens=len(prompt_ids),
            completion_tokens=len(ids),
            sum_logprob=math.fsum(logprobs),
            model=target.label,
        )

    async def Generate(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateResponse]:
        start, code = time.perf_counter(), "OK"
        generation: Generation | None = None
        try:
            if request.strategy not in STRATEGY:
                raise InvalidArgument(f"unknown decoding strategy {request.strategy}", field="strategy")
            spec = GenerateSpec(
                model=request.model,
                prompt=_prompt(request.prompt, request.messages, request.prompt_token_ids),
                strategy=STRATEGY[request.strategy],
                params=_params(request.params),
                max_new_tokens=request.max_new_tokens,
                stop=tuple(request.stop),
                seed=_optional(request, "seed"),
                num_beams=request.num_beams or DEFAULT_BEAMS,
                adapter=request.adapter,
                gate=_optional(request, "gate_signal"),
                top_logprobs=request.top_logprobs,
                gating=_gating(request),
            )
            # a subject bound to the caller's key (or set by the gateway) wins over one the request names
            tenant, subject = _tenant(), current_context().subject or request.subject
            if subject:
                check_subject(subject)
            generation = await self._run(self.engine.generations.start, tenant, spec)
            async for event in generation.events(self._run):
                message = pb.GenerateResponse(
                    token=_token(event.token) if event.token is not None else None,
                    probability=event.probability,
                    text=event.text,
                    finish_reason=event.finish_reason,
                    logprob=event.logprob,
                    top_logprobs=[_token_prob(tp) for tp in event.top],
                    gating_step=_gating_step(event.gating_step) if event.gating_step else None,
                )
                if event.finish_reason:
                    message.prompt_tokens = event.prompt_tokens
                    message.completion_tokens = event.completion_tokens
                    message.model = event.model
                    if event.gating is not None:
                        message.gating.CopyFrom(_gating_report(event.gating))
                    if request.record and generation.completed is not None:
                        message.completion_id = await self._run(
                            self.engine.recorder.record, tenant, subject, generation.completed, event.text
                        )
                yield message
        except LyceumError as err:
            code = GRPC_CODE[err.code].name
            await context.abort_with_status(to_status(err))
        except (grpc.aio.AbortError, asyncio.CancelledError, GeneratorExit):
            code = "CANCELLED"
            raise
        except Exception:  # noqa: BLE001 - last line of defence; logged with the traceback
            log.exception("unhandled error in Generate")
            code = "INTERNAL"
            await context.abort_with_status(to_status(Internal("internal error")))
        finally:
            if generation is not None:
                generation.close()
            GRPC_REQUESTS.labels("Generate", code).inc()
            GRPC_LATENCY.labels("Generate").observe(time.perf_counter() - start)
