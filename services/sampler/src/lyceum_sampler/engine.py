"""The sampler's core: token-wheel sessions (state in the session store, KV caches in this pod), with
stateless generation and scoring in `generations` (`lyceum_sampler.generation`). Every forward pass runs in
its model's batched engine (`lyceum_sampler.batching`), shared with every other request of that model. Knows
nothing of gRPC; every failure is a lyceum_core error.

Every operation acts for a tenant: sessions are stored, cached and locked under (tenant, session id), so
another tenant's session is NOT_FOUND like a missing one, and model references resolve in the caller's tenant.

Consistency rule: the session store is the truth. A cache entry is used only if it holds exactly the
session's current token ids (and was built by the loaded model); otherwise it is rebuilt from them with one
forward pass. Every request is validated in full before anything changes; writes are committed to the store
(compare-and-set) before the cache follows, and a cache that cannot follow is dropped, never trusted.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from lyceum_core.errors import FailedPrecondition, InvalidArgument, NotFound, clip
from lyceum_core.grpc.route_hint import rebuild_reason
from lyceum_core.identity import check_session_id
from lyceum_ml import sampling
from lyceum_ml.causal_lm import CausalLM, Feed
from lyceum_ml.engine.control import Control
from lyceum_ml.sampling import EmptyOther, SamplingParams
from lyceum_sampler import gating
from lyceum_sampler.adapters import Adapter
from lyceum_sampler.batching import Engines
from lyceum_sampler.cache import (
    HITS,
    MISSES,
    REBUILD_SECONDS,
    REBUILDS,
    Entry,
    SessionCaches,
    SessionKey,
    ids_digest,
)
from lyceum_sampler.generation import GenerationService, check_gate
from lyceum_sampler.limits import Limits, check_params, prompt_ids
from lyceum_sampler.models import Loaded, ModelDescription, ModelPool, parse_registry_key
from lyceum_sampler.recording import Recorder
from lyceum_sampler.sessions import Generated, SessionState, SessionStore, Shown
from lyceum_sampler.targets import Target, Targets
from lyceum_sampler.views import Distribution, HistoryItem, SessionView, TokenProb, view

log = logging.getLogger(__name__)
MAX_OTHER_TOP_K = 1000


@dataclass(frozen=True)
class Choice:
    """Which token to append: exactly one of an id, a text, a draw from Other, or a spin (a draw from the
    whole distribution)."""

    token_id: int | None = None
    token_text: str | None = None
    from_other: bool = False
    spin: bool = False

    @property
    def drawn(self) -> bool:
        return self.from_other or self.spin


class SamplerEngine:
    def __init__(
        self,
        pool: ModelPool,
        store: SessionStore,
        caches: SessionCaches,
        limits: Limits,
        targets: Targets,
        engines: Engines,
        recorder: Recorder,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pool, self.store, self.caches, self.limits, self.clock = pool, store, caches, limits, clock
        self.targets, self.engines, self.recorder = targets, engines, recorder
        self.generations = GenerationService(targets, engines, limits)
        self._locks = [threading.Lock() for _ in range(1024)]  # striped per-session locks (this pod)

    # --- sessions ---------------------------------------------------------------------------------
    def create(
        self,
        tenant: str,
        model: str,
        prompt: str | None = None,
        max_live: int = 0,
        adapter: str = "",
        gate: float | None = None,
        gating_spec: gating.GatingSpec | None = None,
    ) -> SessionView:
        """A new session of `model` (or of an adapter) for `tenant`, optionally with a prompt (its cache is
        built right away) and a gate signal or a gating (pinned, policy included). With `max_live` > 0:
        ResourceExhausted (field max_sessions) if the tenant has that many live."""
        if max_live < 0:
            raise InvalidArgument("max_live_sessions must be >= 0 (0 = no limit)", field="max_live_sessions")
        check_gate(gate)
        if gating_spec is not None:
            gating.check(gating_spec, params=SamplingParams(), gate=gate)
        model_key, named = self.targets.pin(tenant, model, adapter)
        loaded = self.targets.load(model_key)
        if gate is not None and not loaded.lm.gated:
            raise InvalidArgument(f"model {model!r} has no gates; omit gate_signal", field="gate_signal")
        seed, pinned = secrets.randbits(63), None
        if gating_spec is not None and gating_spec.mode != "none":  # none: a plain session
            policies = self.targets.policies
            pinned = gating.resolve(gating_spec, tenant, loaded.lm, model_key, policies, seed)
            gating.controller(pinned, policies)  # a learned policy loads now: a broken one fails here
        now = self.clock()
        state = SessionState(
            tenant=tenant,
            session_id=uuid.uuid4().hex,
            model=model,
            model_key=model_key,
            created_at=now,
            updated_at=now,
            adapter=named.key if named else "",
            adapter_uri=named.uri if named else "",
            gate=gate,
            seed=seed,
            gating=pinned,
        )
        entry = None
        if prompt is not None:
            ids = prompt_ids(loaded.lm, prompt, self.limits)
            state = state.evolve(now=now, prompt=prompt, prompt_ids=tuple(ids))
            entry = self._build(loaded, state, ids)
        self.store.create(state, max_live)
        if entry is not None:
            self.caches.put(SessionKey(tenant, state.session_id), entry)
        return view(state, loaded.tokens)

    def get(self, tenant: str, session_id: str) -> SessionView:
        state = self._state(_key(tenant, session_id))
        return view(state, self.pool.get(state.model_key).tokens)

    def set_prompt(self, tenant: str, session_id: str, prompt: str) -> SessionView:
        """Replaces the prompt and clears the generated tokens (the cache keeps the common prefix)."""
        key = _key(tenant, session_id)
        with self._lock(key):
            state = self._state(key)
            loaded = self.pool.get(state.model_key)
            ids = prompt_ids(loaded.lm, prompt, self.limits)
            old = self.caches.get(key)
            committed = self.store.update(
                state.evolve(now=self.clock(), prompt=prompt, prompt_ids=tuple(ids), generated=())
            )
            try:
                if old is not None and old.holds(
                    state.token_ids, loaded.key, loaded.generation, state.adapter
                ):
                    keep = min(_common_prefix(state.token_ids, ids), len(ids) - 1)
                    # a gated session's kept tokens must also have been fed with the gates they now get
                    keep = min(keep, _common_prefix(state.token_gates(), committed.token_gates()))
                    self._advance(key, loaded, committed, old, ids, keep)
                else:
                    self.caches.put(key, self._build(loaded, committed, ids))
            except Exception:  # noqa: BLE001 - committed already; the cache is rebuilt on next use
                log.exception("could not update the cache of session %s", session_id)
                self.caches.drop(key)
            return view(committed, loaded.tokens)

    def distribution(
        self,
        tenant: str,
        session_id: str,
        threshold: float | None = None,
        other_top_k: int | None = None,
        params: SamplingParams | None = None,
        record_shown: bool = False,
    ) -> Distribution:
        """The next-token distribution, split at `threshold` into tokens shown and the Other bucket. With
        `record_shown`, the threshold and params are stored as the session's last shown settings."""
        key = _key(tenant, session_id)
        threshold = self._threshold(threshold)
        other_top_k = self.limits.default_other_top_k if other_top_k is None else other_top_k
        if not 0 <= other_top_k <= MAX_OTHER_TOP_K:
            raise InvalidArgument(f"other_top_k must be in [0, {MAX_OTHER_TOP_K}]", field="other_top_k")
        params = check_params(params)
        with self._lock(key):
            state, loaded, entry = self._resident(key)
            tokens = loaded.tokens
            control = self._decide(state, entry, params)
            params = control.params if control is not None else params
            split = sampling.split(
                sampling.shape(entry.logits, params, state.token_ids), threshold, other_top_k
            )
            if record_shown:
                now = self.clock()
                self.store.update(state.evolve(now=now, shown=Shown(threshold, params, now)))
            return Distribution(
                session_id=session_id,
                above=[TokenProb(tokens(i), p) for i, p in split.above],
                other_probability=float(split.other_total),
                other_count=int(split.other_count),
                other_top=[TokenProb(tokens(i), p) for i, p in split.other_top],
                threshold=threshold,
                context_len=entry.length,
                gating=gating.decision(control),
            )

    def append(
        self,
        tenant: str,
        session_id: str,
        choice: Choice,
        threshold: float | None = None,
        params: SamplingParams | None = None,
        seed: int | None = None,
        expected_context_len: int | None = None,
    ) -> tuple[SessionView, HistoryItem]:
        """Appends a token, recording the probability, category and rank it has under the request's
        threshold and params (what the user was shown). One forward pass of the new token. With
        `expected_context_len`, only if the session holds exactly that many tokens (FAILED_PRECONDITION)."""
        key = _key(tenant, session_id)
        threshold, params = self._threshold(threshold), check_params(params)
        _check_choice(choice)
        if expected_context_len is not None and expected_context_len < 0:
            raise InvalidArgument("expected_context_len must be >= 0", field="expected_context_len")
        with self._lock(key):
            state = self._state(key)
            _require_prompt(state)
            loaded = self.pool.get(state.model_key)
            lm, ids = loaded.lm, state.token_ids
            if expected_context_len is not None and expected_context_len != len(ids):
                raise FailedPrecondition(
                    f"the session holds {len(ids)} tokens, not the expected {expected_context_len}",
                    field="expected_context_len",
                )
            if len(ids) >= lm.max_context:
                raise InvalidArgument(
                    f"the session's context is full ({len(ids)} of {lm.max_context} tokens)",
                    field="session_id",
                )
            token_id = _chosen_token(lm, choice)
            _, _, entry = self._resident(key, state, loaded)
            control = self._decide(state, entry, params)
            params = control.params if control is not None else params
            decided = gating.decision(control)
            probs = sampling.shape(entry.logits, params, ids)
            draws = state.draws
            if choice.drawn:
                generator = torch.Generator().manual_seed(state.next_draw_seed() if seed is None else seed)
                if seed is None:  # an explicit seed does not consume the session's stream
                    draws += 1
                if choice.spin:
                    token_id, _ = sampling.spin(probs, generator)
                else:
                    try:
                        token_id, _ = sampling.sample_other(probs, threshold, generator)
                    except EmptyOther:
                        raise InvalidArgument("the Other bucket is empty", field="from_other") from None
            assert token_id is not None
            now = self.clock()
            record = Generated(
                token_id=token_id,
                probability=float(probs[token_id]),
                category=sampling.category(probs, token_id, threshold),
                rank=int(sampling.rank_of(probs, token_id)),
                chosen_at=now,
                from_other=choice.from_other,
                modulation=decided.modulation if decided is not None else None,
            )
            committed = self.store.update(
                state.evolve(now=now, generated=(*state.generated, record), draws=draws)
            )
            try:
                self._advance(key, loaded, committed, entry, [*ids, token_id], len(ids))
            except Exception:  # noqa: BLE001 - committed already; the cache is rebuilt on next use
                log.exception("could not extend the cache of session %s", session_id)
                self.caches.drop(key)
            session = view(committed, loaded.tokens)
            return session, session.generated[-1]

    def undo(self, tenant: str, session_id: str) -> tuple[SessionView, HistoryItem]:
        """Removes the last generated token (never the prompt); FailedPrecondition if there is none."""
        key = _key(tenant, session_id)
        with self._lock(key):
            state = self._state(key)
            if not state.generated:
                raise FailedPrecondition(
                    "nothing to undo: the session has no generated tokens (the prompt is never undone)",
                    field="session_id",
                )
            loaded = self.pool.get(state.model_key)
            removed = view(state, loaded.tokens).generated[-1]
            entry = self.caches.get(key)
            committed = self.store.update(state.evolve(now=self.clock(), generated=state.generated[:-1]))
            ids = committed.token_ids
            try:
                if entry is not None and entry.holds(
                    state.token_ids, loaded.key, loaded.generation, state.adapter
                ):
                    # the logits after ids need the last of them fed again: keep len - 1, extend by one
                    self._advance(key, loaded, committed, entry, ids, len(ids) - 1)
            except Exception:  # noqa: BLE001 - committed already; the cache is rebuilt on next use
                log.exception("could not truncate the cache of session %s", session_id)
                self.caches.drop(key)
            return view(committed, loaded.tokens), removed

    def delete(self, tenant: str, session_id: str) -> None:
        key = _key(tenant, session_id)
        with self._lock(key):
            self.caches.drop(key)
            if not self.store.delete(tenant, session_id):
                raise _not_found(session_id)

    def list_models(self, tenant: str) -> list[ModelDescription]:
        """The served models as the tenant sees them, then the adapters it may use with them."""
        models = self.pool.describe(tenant)
        served = {self.pool.specs[m.name].name for m in models}
        adapters = []
        for name, adapter in self.targets.adapters.visible(tenant):
            base = self._served_name(tenant, adapter.base, served)
            if base is not None:
                adapters.append(ModelDescription(name, "adapter", 0, 0, False, base=base))
        return models + adapters

    def _served_name(self, tenant: str, base_key: str, served: set[str]) -> str | None:
        """The served name of an adapter's base model key (None: not served here)."""
        if base_key in served:
            return base_key  # a local model
        parsed = parse_registry_key(base_key)
        if parsed is None:
            return None
        for spec in self.pool.specs.values():
            if spec.registry_name == parsed[1]:
                return spec.name
        return None

    # --- validation -------------------------------------------------------------------------------
    def _threshold(self, threshold: float | None) -> float:
        threshold = self.limits.default_threshold if threshold is None else threshold
        if not 0.0 <= threshold <= 1.0:
            raise InvalidArgument("threshold must be in [0, 1]", field="threshold")
        return threshold

    # --- state and cache --------------------------------------------------------------------------
    def _lock(self, key: SessionKey) -> threading.Lock:
        return self._locks[zlib.crc32(f"{key.tenant}/{key.session_id}".encode()) % len(self._locks)]

    def _state(self, key: SessionKey) -> SessionState:
        state = self.store.get(key.tenant, key.session_id)
        if state is None:
            raise _not_found(key.session_id)
        return state

    def _resident(
        self, key: SessionKey, state: SessionState | None = None, loaded: Loaded | None = None
    ) -> tuple[SessionState, Loaded, Entry]:
        """The session, its model and a cache holding exactly its tokens (rebuilt if needed). Caller locks."""
        state = state or self._state(key)
        _require_prompt(state)
        loaded = loaded or self.pool.get(state.model_key)
        ids = state.token_ids
        entry = self.caches.get(key)
        if entry is not None and entry.holds(ids, loaded.key, loaded.generation, state.adapter):
            HITS.inc()
            return state, loaded, entry
        MISSES.inc()
        reason = rebuild_reason(entry is not None, self.caches.was_evicted(key))
        REBUILDS.labels(reason).inc()
        with REBUILD_SECONDS.time():
            entry = self._build(loaded, state, ids)
        self.caches.put(key, entry)
        return state, loaded, entry

    def _build(self, loaded: Loaded, state: SessionState, ids: list[int]) -> Entry:
        """A fresh cache of `ids`: one forward pass over all of them (in the model's engine)."""
        lm = loaded.lm
        cache = lm.new_cache()
        logits, hidden = self._forward(loaded, state, cache, ids, 0)
        entry = Entry(cache, logits, len(ids), ids_digest(ids), loaded.key, loaded.generation, state.adapter)
        entry.hidden = hidden
        entry.nbytes = lm.cache_nbytes(cache) + logits.numel() * logits.element_size()
        return entry

    def _advance(
        self, key: SessionKey, loaded: Loaded, state: SessionState, entry: Entry, ids: list[int], keep: int
    ) -> None:
        """Makes `entry` hold `ids` (the tokens of `state`): keeps its first `keep` tokens (a prefix of ids)
        and feeds the rest."""
        lm = loaded.lm
        lm.truncate(entry.cache, keep)
        entry.length = keep  # until the forward below succeeds, the entry matches nothing
        entry.digest = b""
        entry.logits, entry.hidden = self._forward(loaded, state, entry.cache, list(ids[keep:]), keep)
        entry.length, entry.digest = len(ids), ids_digest(ids)
        entry.nbytes = lm.cache_nbytes(entry.cache) + entry.logits.numel() * entry.logits.element_size()
        self.caches.resized(key)

    def _forward(
        self, loaded: Loaded, state: SessionState, cache: object, ids: list[int], start: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The session's tokens `ids` (from position `start` of its tokens) through its model's engine
        (batched with every other row of that model), under its adapter and each token's gate signal (one
        forward per run of equal gates): the logits after them, and the hidden state a learned gating
        observes."""
        adapter = Adapter(state.adapter, state.model_key, state.adapter_uri) if state.adapter else None
        gates = state.token_gates()[start : start + len(ids)]
        want_hidden = state.gating is not None and state.gating.mode == "learned"
        engine = self.engines.of(loaded)
        with self.targets.using(Target(loaded, adapter)) as module:
            for begin, end in _runs(gates):
                feed = Feed(cache, ids[begin:end], gate=gates[begin], adapter=module)
                feed.want_hidden = want_hidden and end == len(ids)
                logits = engine.forward(feed).result()
        return logits, feed.hidden

    def _decide(self, state: SessionState, entry: Entry, params: SamplingParams) -> Control | None:
        """The gated session's decision for its next token (None: not gated); a gated session's requests
        give no sampling parameters."""
        if state.gating is None or not state.gating.gated:
            return None
        gating.check_no_params(params)
        previous = state.generated[-1].modulation if state.generated else None
        generated = tuple(g.token_id for g in state.generated)
        context = (state.prompt_ids, generated)
        policies = self.targets.policies
        return gating.decide_step(state.gating, policies, context, entry.logits, entry.hidden, previous)


def _check_choice(choice: Choice) -> None:
    given = [choice.token_id is not None, choice.token_text is not None, choice.from_other, choice.spin]
    if sum(given) != 1:
        raise InvalidArgument(
            "set exactly one of token_id, token_text, from_other=true, spin=true", field="choice"
        )


def _chosen_token(lm: CausalLM, choice: Choice) -> int | None:
    """The token a by-id or by-text choice names (None for from_other), checked against the model."""
    if choice.token_id is not None:
        if not 0 <= choice.token_id < lm.vocab_size:
            raise InvalidArgument(f"token_id must be in [0, {lm.vocab_size})", field="token_id")
        return choice.token_id
    if choice.token_text is not None:
        ids = lm.encode(choice.token_text) if choice.token_text else []
        if len(ids) != 1:
            raise InvalidArgument(
                f"token_text must encode to exactly one token; {clip(choice.token_text)!r} encodes to "
                f"{len(ids)}",
                field="token_text",
            )
        return ids[0]
    return None


def _require_prompt(state: SessionState) -> None:
    if not state.prompt_ids:
        raise FailedPrecondition("the session has no prompt yet; set one first", field="prompt")


def _key(tenant: str, session_id: str) -> SessionKey:
    """The checked cache/lock key of a session: equal ids in two tenants are two sessions."""
    return SessionKey(tenant, check_session_id(session_id))


def _not_found(session_id: str) -> NotFound:
    return NotFound(f"session {session_id!r} not found (it may have expired)", field="session_id")


def _runs(values: Sequence[object]) -> list[tuple[int, int]]:
    """[begin, end) of each run of equal consecutive values."""
    bounds = [0, *(i for i in range(1, len(values)) if values[i] != values[i - 1]), len(values)]
    return list(zip(bounds, bounds[1:], strict=False))


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
