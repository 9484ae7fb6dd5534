"""The fleets as their callers use them: `PredictorRouter` and `SamplerRouter` hand out `RoutedPredictor` and
`RoutedSampler`, which look like one replica's client but send each call to the replica that serves it.

Each RPC is one explicit method that states the key it is routed by (the learner or session of the caller's
tenant, or none) and whether it may be re-sent after a connection broke mid-call (`retry_delivered`: only
calls that change nothing). Renaming or adding a method cannot silently turn failover on or off: there is no
list of names to keep in step. A batch of predictions, keyed per item, is split by replica (`predict_many`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Protocol

from lyceum_core.context import RequestContext
from lyceum_core.errors import LyceumError, Unavailable
from lyceum_fleet.gating import Gating
from lyceum_fleet.predictor import (
    AppendResult,
    CurriculumSearch,
    Event,
    Feedback,
    Forecast,
    ItemFailure,
    Learner,
    ModelInfo,
    Predictions,
    PredictItem,
    Predictor,
    SearchSpec,
)
from lyceum_fleet.routing import ReplicaRouter, WatchedClient, routing_key
from lyceum_fleet.sampler import (
    AppendedToken,
    Distribution,
    GenerateSpec,
    GenerationStep,
    LanguageModel,
    Sampler,
    SamplingParams,
    ScoreResult,
    ScoreSpec,
    Session,
    TokenChoice,
    UndoneToken,
)


class PredictorReplica(Predictor, WatchedClient, Protocol):
    """One predictor replica's client, as a router holds it (`GrpcPredictor`)."""


class SamplerReplica(Sampler, WatchedClient, Protocol):
    """One sampler replica's client, as a router holds it (`GrpcSampler`)."""


class _Handle:
    """A routed handle, optionally pinned to one key: a pinned handle refuses calls about another key (a
    wiring bug), so `for_learner(ctx, "ada").predict(ctx, "bob", ...)` cannot go to the wrong owner."""

    def __init__(self, pinned: str | None) -> None:
        self._pinned = pinned

    def _key(self, ctx: RequestContext, key: str) -> str:
        routed = routing_key(ctx.tenant, key)
        if self._pinned is not None and routed != self._pinned:
            raise ValueError(f"a handle for {self._pinned!r} was used for {routed!r}")
        return routed


class RoutedPredictor(_Handle):
    """A `Predictor` over the fleet: a learner's calls go to the owner of (tenant, learner id); calls that
    concern no learner go to any serving replica, in turn."""

    def __init__(self, router: ReplicaRouter[PredictorReplica], pinned: str | None = None) -> None:
        super().__init__(pinned)
        self._router = router

    async def register_learner(
        self, ctx: RequestContext, learner_id: str, history: Sequence[Event] = ()
    ) -> Learner:
        return await self._router.call(
            self._key(ctx, learner_id),
            lambda c: c.register_learner(ctx, learner_id, history),
            retry_delivered=False,  # a write
        )

    async def get_learner(self, ctx: RequestContext, learner_id: str) -> Learner:
        return await self._router.call(
            self._key(ctx, learner_id), lambda c: c.get_learner(ctx, learner_id), retry_delivered=True
        )

    async def predict(self, ctx: RequestContext, learner_id: str, tasks: Sequence[str]) -> Predictions:
        return await self._router.call(
            self._key(ctx, learner_id), lambda c: c.predict(ctx, learner_id, tasks), retry_delivered=True
        )

    async def append_events(
        self,
        ctx: RequestContext,
        learner_id: str,
        events: Sequence[Event],
        expected_history_len: int | None = None,
    ) -> AppendResult:
        return await self._router.call(
            self._key(ctx, learner_id),
            lambda c: c.append_events(ctx, learner_id, events, expected_history_len),
            retry_delivered=False,  # a write
        )

    async def forecast(
        self,
        ctx: RequestContext,
        learner_id: str,
        task_sequences: Sequence[Sequence[str]],
        feedback: Feedback = Feedback.EXPECTED,
        seed: int | None = None,
    ) -> Forecast:
        return await self._router.call(
            self._key(ctx, learner_id),
            lambda c: c.forecast(ctx, learner_id, task_sequences, feedback, seed),
            retry_delivered=True,  # rolls out from the state; stores nothing
        )

    async def delete_learner(self, ctx: RequestContext, learner_id: str) -> None:
        await self._router.call(
            self._key(ctx, learner_id),
            lambda c: c.delete_learner(ctx, learner_id),
            retry_delivered=False,  # a write: a second run would answer 404
        )

    async def search_curriculum(
        self, ctx: RequestContext, learner_id: str, spec: SearchSpec
    ) -> CurriculumSearch:
        return await self._router.call(
            self._key(ctx, learner_id),
            lambda c: c.search_curriculum(ctx, learner_id, spec),
            retry_delivered=True,  # scores rollouts from the state; stores nothing
        )

    async def predict_many(
        self, ctx: RequestContext, items: Sequence[PredictItem]
    ) -> list[Predictions | ItemFailure]:
        """Each item on its learner's owner (one call per replica, concurrently); see `predict_many`."""
        for item in items:
            self._key(ctx, item.learner_id)
        return await predict_many(self._router, ctx, items)

    async def list_tasks(self, ctx: RequestContext) -> list[str]:
        return await self._router.call(None, lambda c: c.list_tasks(ctx), retry_delivered=True)

    async def get_model_info(self, ctx: RequestContext) -> ModelInfo:
        return await self._router.call(None, lambda c: c.get_model_info(ctx), retry_delivered=True)

    async def collect_garbage(self, ctx: RequestContext) -> int:
        """Frees what the next serving replica can (to free every replica, call each of `serving()`)."""
        return await self._router.call(None, lambda c: c.collect_garbage(ctx), retry_delivered=True)

    async def health(self) -> bool:
        """True when a serving replica reports SERVING; never raises."""
        try:
            return await self._router.call(None, lambda c: c.health(), retry_delivered=True)
        except Unavailable:
            return False


async def predict_many(
    router: ReplicaRouter[PredictorReplica], ctx: RequestContext, items: Sequence[PredictItem]
) -> list[Predictions | ItemFailure]:
    """Predictions for many learners: the items are grouped by the replica each learner's calls go to (its
    owner, or while the owner is away the replica that stands in for it), each group is sent as one
    PredictMany, the groups concurrently, and the answers come back in item order. A group whose replica
    fails as a whole (after the router's usual failover, which re-sends reads) answers each of its items
    with that error (e.g. UNAVAILABLE); the other groups are unaffected."""
    keys = [routing_key(ctx.tenant, item.learner_id) for item in items]
    groups: dict[str | None, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(router.target(key), []).append(i)  # None: `call` answers Unavailable
    out: dict[int, Predictions | ItemFailure] = {}

    async def send(indices: list[int]) -> None:
        batch = [items[i] for i in indices]
        try:
            # Routed by the first item's key: every item of the group has the same target.
            results = await router.call(
                keys[indices[0]], lambda c: c.predict_many(ctx, batch), retry_delivered=True
            )
        except LyceumError as err:
            results = [ItemFailure(item.learner_id, err) for item in batch]
        out.update(zip(indices, results, strict=True))

    await asyncio.gather(*(send(indices) for indices in groups.values()))
    return [out[i] for i in range(len(items))]


class RoutedSampler(_Handle):
    """A `Sampler` over the fleet: a session's calls go to the owner of (tenant, session id), whose KV cache
    is warm; new sessions and model lists go to any serving replica, in turn, and generation (stateless) to
    the next one, sharing the load."""

    def __init__(self, router: ReplicaRouter[SamplerReplica], pinned: str | None = None) -> None:
        super().__init__(pinned)
        self._router = router

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
        # No id yet to route by; sessions live in the shared store, so any replica may create one.
        return await self._router.call(
            None,
            lambda c: c.create_session(
                ctx,
                model,
                prompt,
                max_live_sessions=max_live_sessions,
                adapter=adapter,
                gate_signal=gate_signal,
                gating=gating,
            ),
            retry_delivered=False,  # a write
        )

    async def get_session(self, ctx: RequestContext, session_id: str) -> Session:
        return await self._router.call(
            self._key(ctx, session_id), lambda c: c.get_session(ctx, session_id), retry_delivered=True
        )

    async def set_prompt(self, ctx: RequestContext, session_id: str, prompt: str) -> Session:
        return await self._router.call(
            self._key(ctx, session_id),
            lambda c: c.set_prompt(ctx, session_id, prompt),
            retry_delivered=False,  # a write
        )

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
        return await self._router.call(
            self._key(ctx, session_id),
            lambda c: c.get_distribution(
                ctx, session_id, threshold, other_top_k, params, record_shown=record_shown
            ),
            retry_delivered=True,
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
        return await self._router.call(
            self._key(ctx, session_id),
            lambda c: c.append_token(ctx, session_id, choice, threshold, params, seed, expected_context_len),
            retry_delivered=False,  # a write
        )

    async def undo(self, ctx: RequestContext, session_id: str) -> UndoneToken:
        return await self._router.call(
            self._key(ctx, session_id), lambda c: c.undo(ctx, session_id), retry_delivered=False
        )

    async def delete_session(self, ctx: RequestContext, session_id: str) -> None:
        await self._router.call(
            self._key(ctx, session_id), lambda c: c.delete_session(ctx, session_id), retry_delivered=False
        )

    def generate(self, ctx: RequestContext, spec: GenerateSpec) -> AsyncGenerator[GenerationStep, None]:
        """A stream on the next serving replica; never re-sent (its steps may already have been shown)."""
        return self._router.spread().generate(ctx, spec)

    async def score(self, ctx: RequestContext, spec: ScoreSpec) -> ScoreResult:
        # Stateless and read-only: any replica, and safe to re-send past one that broke mid-call.
        return await self._router.call(None, lambda c: c.score(ctx, spec), retry_delivered=True)

    async def list_models(self, ctx: RequestContext) -> list[LanguageModel]:
        return await self._router.call(None, lambda c: c.list_models(ctx), retry_delivered=True)

    async def health(self) -> bool:
        """True when a serving replica reports SERVING; never raises."""
        try:
            return await self._router.call(None, lambda c: c.health(), retry_delivered=True)
        except Unavailable:
            return False


class PredictorRouter(ReplicaRouter[PredictorReplica]):
    """Learners live on the predictor that owns (tenant, learner id): its KV caches stay warm there."""

    kind = "predictor"

    def for_learner(self, ctx: RequestContext, learner_id: str) -> RoutedPredictor:
        """A handle for calls about `learner_id` of `ctx`'s tenant (with failover)."""
        return RoutedPredictor(self, routing_key(ctx.tenant, learner_id))

    def any(self) -> RoutedPredictor:
        """A handle for calls that concern no learner (catalogues, model info): any serving replica, in turn,
        with failover; learner calls made through it still go to their owner."""
        return RoutedPredictor(self)

    async def predict_many(
        self, ctx: RequestContext, items: Sequence[PredictItem]
    ) -> list[Predictions | ItemFailure]:
        """Predictions for many learners of `ctx`'s tenant, each item on its learner's owner (one call per
        replica, concurrently), in item order; an item's failure, or its replica's, fails that item only."""
        return await predict_many(self, ctx, items)


class SamplerRouter(ReplicaRouter[SamplerReplica]):
    """Sessions are durable in the samplers' shared store, so any replica can serve any session; routing each
    session's calls to the replica that owns (tenant, session id) keeps its KV cache warm on that one."""

    kind = "sampler"

    def for_session(self, ctx: RequestContext, session_id: str) -> RoutedSampler:
        """A handle for calls about `session_id` of `ctx`'s tenant (with failover)."""
        return RoutedSampler(self, routing_key(ctx.tenant, session_id))

    def any(self) -> RoutedSampler:
        """A handle for calls that concern no session (new sessions, model lists), with failover; session
        calls made through it still go to their owner."""
        return RoutedSampler(self)
