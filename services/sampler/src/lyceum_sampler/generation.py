"""Stateless generation and scoring through the models' engines: a request is validated in full and resolved
(model, adapter, prompt tokens) before anything runs; greedy and sampled streams are rows of the model's
engine (batched with every other stream and token-wheel step of that model), beam search runs its beams
through the same engine's steps. Knows nothing of gRPC; every failure is a lyceum_core error."""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from lyceum_core.errors import InvalidArgument
from lyceum_ml import chat
from lyceum_ml.causal_lm import CausalLM, Feed
from lyceum_ml.engine import Finish, GenStep, Request, Stream, TokenEvent, beam_search, engine_forward
from lyceum_ml.engine.choose import log_prob
from lyceum_ml.engine.request import MAX_TOP_LOGPROBS
from lyceum_ml.sampling import SamplingParams
from lyceum_sampler import gating
from lyceum_sampler.batching import Engines
from lyceum_sampler.limits import Limits, check_params, prompt_ids
from lyceum_sampler.targets import Target, Targets
from lyceum_sampler.views import GenEvent, TokenProb, Tokens

STRATEGIES = ("greedy", "sample", "beam")
MAX_STOP_STRINGS = 16


@dataclass(frozen=True)
class Prompt:
    """Exactly one of: text, chat messages (rendered with the model's template), token ids."""

    text: str = ""
    messages: tuple[chat.Message, ...] = ()
    token_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class GenerateSpec:
    model: str
    prompt: Prompt
    strategy: str = "sample"
    params: SamplingParams = field(default_factory=SamplingParams)
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()
    seed: int | None = None
    num_beams: int = 4
    adapter: str = ""
    gate: float | None = None
    top_logprobs: int = 0
    gating: gating.GatingSpec | None = None


@dataclass(frozen=True)
class Completed:
    """The final facts of a generation (what a recorded completion holds)."""

    target: Target
    prompt_ids: tuple[int, ...]
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    params: dict[str, object]
    finish_reason: str


class Generation:
    """A running generation: `events()` streams GenEvents (the last with finish_reason) and `completed`
    holds its facts once finished. `close()` (always) cancels it if unfinished and releases its adapter."""

    def __init__(
        self,
        targets: Targets,
        target: Target,
        tokens: Tokens,
        ids: list[int],
        spec: GenerateSpec,
        stream: Stream | None,
        steps: Iterator[GenStep] | None,
        gated: gating.Gating | None = None,
    ) -> None:
        self.targets, self.target, self.tokens, self.prompt_ids = targets, target, tokens, tuple(ids)
        self.spec, self.stream, self.steps, self.gating = spec, stream, steps, gated
        self.completed: Completed | None = None
        self._closed = False

    async def events(self, run_sync: object) -> AsyncIterator[GenEvent]:
        if self.stream is not None:
            async for event in _stream_events(self.stream):
                yield self._event(event)
            return
        assert self.steps is not None and callable(run_sync)
        ids: list[int] = []
        logprobs: list[float] = []
        while (step := await run_sync(next, self.steps, None)) is not None:
            if step.token_id is not None:
                ids.append(step.token_id)
                logprobs.append(log_prob(step.probability))
                yield GenEvent(
                    self.tokens(step.token_id), step.probability, step.text_so_far, "", logprobs[-1]
                )
            elif step.finish_reason:
                yield self._event(
                    Finish(
                        step.text_so_far,
                        step.finish_reason,
                        tuple(ids),
                        tuple(logprobs),
                        len(self.prompt_ids),
                    )
                )
                return

    def _event(self, event: TokenEvent | Finish) -> GenEvent:
        if isinstance(event, TokenEvent):
            top = [TokenProb(self.tokens(i), math.exp(lp)) for i, lp in event.top]
            return GenEvent(
                self.tokens(event.token_id),
                event.probability,
                event.text,
                "",
                event.logprob,
                top,
                gating_step=gating.decision(event.control),
            )
        if event.error is not None:
            raise event.error
        spec = self.spec
        params = {**vars(spec.params), "strategy": spec.strategy, "max_new_tokens": spec.max_new_tokens}
        params |= {"seed": spec.seed, "stop": list(spec.stop), "gate_signal": spec.gate}
        if self.gating is not None:
            params["gating"] = {k: v for k, v in vars(self.gating).items() if k != "policy_uri"}
        if spec.prompt.messages:  # the turns as sent: feedback distillation rebuilds the prompt from them
            params["messages"] = [{"role": m.role, "content": m.content} for m in spec.prompt.messages]
        self.completed = Completed(
            self.target, self.prompt_ids, event.token_ids, event.logprobs, params, event.reason
        )
        return GenEvent(
            None,
            0.0,
            event.text,
            event.reason,
            prompt_tokens=event.prompt_tokens,
            completion_tokens=len(event.token_ids),
            model=self.target.label,
            gating=self.gating,
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.stream is not None:
            self.stream.cancel()
        if self.steps is not None and hasattr(self.steps, "close"):
            self.steps.close()  # type: ignore[attr-defined]
        if self.target.adapter is not None:
            self.targets.adapters.release(self.target.loaded, self.target.adapter)


async def _stream_events(stream: Stream) -> AsyncIterator[TokenEvent | Finish]:
    """A stream's events on the event loop: the engine thread wakes us as they arrive."""
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    stream.on_ready = lambda: loop.call_soon_threadsafe(ready.set)
    while True:
        events = stream.poll()
        if not events:
            await ready.wait()
            ready.clear()
            continue
        for event in events:
            yield event
            if isinstance(event, Finish):
                return


class GenerationService:
    def __init__(self, targets: Targets, engines: Engines, limits: Limits) -> None:
        self.targets, self.engines, self.limits = targets, engines, limits

    def start(self, tenant: str, spec: GenerateSpec) -> Generation:
        """Validates and resolves everything, then starts the generation (its first events follow)."""
        params = check_params(spec.params)
        if spec.strategy not in STRATEGIES:
            raise InvalidArgument(f"strategy must be one of {STRATEGIES}", field="strategy")
        if not 1 <= spec.max_new_tokens <= self.limits.max_new_tokens:
            raise InvalidArgument(
                f"max_new_tokens must be in [1, {self.limits.max_new_tokens}]", field="max_new_tokens"
            )
        if spec.strategy == "beam" and not 2 <= spec.num_beams <= 16:
            raise InvalidArgument("num_beams must be in [2, 16]", field="num_beams")
        if len(spec.stop) > MAX_STOP_STRINGS or any(not s for s in spec.stop):
            raise InvalidArgument(f"at most {MAX_STOP_STRINGS} non-empty stop strings", field="stop")
        if not 0 <= spec.top_logprobs <= MAX_TOP_LOGPROBS:
            raise InvalidArgument(f"top_logprobs must be in [0, {MAX_TOP_LOGPROBS}]", field="top_logprobs")
        if spec.strategy == "beam" and spec.top_logprobs:
            raise InvalidArgument("top_logprobs is not available with beam search", field="top_logprobs")
        check_gate(spec.gate)
        if spec.gating is not None:
            gating.check(spec.gating, params=params, gate=spec.gate, strategy=spec.strategy)
        target = self.targets.resolve(tenant, spec.model, spec.adapter)
        lm = target.loaded.lm
        if spec.gate is not None and not lm.gated:
            raise InvalidArgument(f"model {spec.model!r} has no gates; omit gate_signal", field="gate_signal")
        ids, chat_stops = self.prompt(lm, spec.prompt)
        stop = (*spec.stop, *chat_stops)
        room = lm.max_context - len(ids) + 1  # the last new token is chosen, never fed
        max_new = min(spec.max_new_tokens, room)
        seed = secrets.randbits(63) if spec.seed is None else spec.seed
        spec = GenerateSpec(**{**vars(spec), "params": params, "seed": seed})
        policies = self.targets.policies
        gated = None
        if spec.gating is not None:
            gated = gating.resolve(spec.gating, tenant, lm, target.loaded.key, policies, seed)
        control = gating.controller(gated, policies) if gated is not None else None
        gate = gated.prompt_gate() if gated is not None and gated.gated else spec.gate
        module = self.targets.adapters.acquire(target.loaded, target.adapter) if target.adapter else None
        engine = self.engines.of(target.loaded)
        stream, steps = None, None
        try:
            if spec.strategy == "beam":
                forward = engine_forward(engine)
                steps = beam_search(
                    lm, forward, ids, params, max_new, stop, spec.num_beams, module, spec.gate
                )
            else:
                request = Request(
                    tuple(ids),
                    max_new,
                    params,
                    greedy=spec.strategy == "greedy",
                    seed=seed,
                    stop=stop,
                    adapter=module,
                    gate=gate,
                    top_logprobs=spec.top_logprobs,
                    control=control,
                )
                stream = engine.submit(request)
        except ValueError as exc:
            if target.adapter is not None:
                self.targets.adapters.release(target.loaded, target.adapter)
            raise InvalidArgument(str(exc), field="prompt") from None
        return Generation(self.targets, target, target.loaded.tokens, ids, spec, stream, steps, gated)

    def prompt(self, lm: CausalLM, prompt: Prompt) -> tuple[list[int], tuple[str, ...]]:
        """(token ids, stop strings a chat template adds)."""
        given = [bool(prompt.text), bool(prompt.messages), bool(prompt.token_ids)]
        if sum(given) != 1:
            raise InvalidArgument("give exactly one of prompt, messages, prompt_token_ids", field="prompt")
        if prompt.messages:
            try:
                text, stops = chat.render(prompt.messages, getattr(lm, "tokenizer", None))
            except ValueError as exc:
                raise InvalidArgument(str(exc), field="messages") from None
            return prompt_ids(lm, text, self.limits, field="messages"), stops
        if prompt.token_ids:
            check_token_ids(lm, prompt.token_ids, "prompt_token_ids", self.limits)
            return list(prompt.token_ids), ()
        return prompt_ids(lm, prompt.text, self.limits), ()

    def score(
        self,
        tenant: str,
        model: str,
        adapter: str,
        prompt: Prompt,
        completion: str,
        completion_ids: Sequence[int],
        gate: float | None,
    ) -> tuple[Target, list[int], list[int], list[float]]:
        """Teacher-forced log-probs of a completion after a prompt (temperature 1, no shaping):
        (target, prompt ids, completion ids, one log-prob per completion token)."""
        check_gate(gate)
        target = self.targets.resolve(tenant, model, adapter)
        lm = target.loaded.lm
        if gate is not None and not lm.gated:
            raise InvalidArgument(f"model {model!r} has no gates; omit gate_signal", field="gate_signal")
        ids, _ = self.prompt(lm, prompt)
        if bool(completion) == bool(completion_ids):
            raise InvalidArgument("give exactly one of completion, completion_token_ids", field="completion")
        if completion:
            tail = lm.encode(completion)
            if not tail:
                raise InvalidArgument("the completion encodes to no tokens", field="completion")
        else:
            tail = list(completion_ids)
            check_token_ids(lm, tail, "completion_token_ids", self.limits)
        if len(ids) + len(tail) > lm.max_context:
            raise InvalidArgument(
                f"prompt and completion are {len(ids) + len(tail)} tokens; "
                f"the context holds {lm.max_context}",
                field="completion",
            )
        with self.targets.using(target) as module:
            feed = Feed(lm.new_cache(), [*ids, *tail], gate=gate, adapter=module, all_logits=True)
            logits = self.engines.of(target.loaded).forward(feed).result()  # (P + C, V)
        predicted = torch.log_softmax(logits[len(ids) - 1 : -1].double(), dim=-1)  # rows predicting the tail
        logprobs = predicted.gather(1, torch.tensor(tail)[:, None])[:, 0].tolist()
        return target, ids, tail, logprobs


def check_gate(gate: float | None) -> None:
    if gate is not None and not (math.isfinite(gate) and 0 <= gate <= 1):
        raise InvalidArgument("gate_signal must be in [0, 1]", field="gate_signal")


def check_token_ids(lm: CausalLM, ids: Sequence[int], field: str, limits: Limits) -> None:
    limit = min(lm.max_context, limits.max_prompt_tokens or lm.max_context)
    if len(ids) > limit:
        raise InvalidArgument(f"{field} holds {len(ids)} tokens; the limit is {limit}", field=field)
    if any(not 0 <= i < lm.vocab_size for i in ids):
        raise InvalidArgument(f"{field} must be token ids in [0, {lm.vocab_size})", field=field)
