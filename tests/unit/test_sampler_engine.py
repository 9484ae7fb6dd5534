"""The sampler engine without gRPC or Redis (in-memory store, the tiny Lyceum LM from local files): settings
and model specs, parameter checks, cache consistency when the model or the store misbehaves, and the
lazy model pool."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from lyceum_core.errors import Aborted, InvalidArgument, NotFound, ResourceExhausted
from lyceum_core.identity import DEFAULT_TENANT
from lyceum_ml.causal_lm import CausalLM, Feed
from lyceum_ml.causal_lm_impl import load_causal_lm
from lyceum_ml.sampling import SamplingParams
from lyceum_sampler.cache import SessionKey
from lyceum_sampler.config import Settings
from lyceum_sampler.engine import Choice, SamplerEngine
from lyceum_sampler.limits import check_params
from lyceum_sampler.models import ModelPool, ModelSpec, module_nbytes, parse_specs
from lyceum_sampler.server import build_engine

PROMPT = "Once upon a time"
T = DEFAULT_TENANT


class FlakyLM:
    """Delegates to a CausalLM; `fail_next` makes the next extend raise."""

    def __init__(self, lm: CausalLM) -> None:
        self._lm, self.model, self.fail_next = lm, getattr(lm, "model", None), False

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._lm, attr)

    def forward_rows(self, feeds: Sequence[Feed]) -> list[torch.Tensor]:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("device error")
        return self._lm.forward_rows(feeds)


@pytest.fixture
def engine(tiny_lyceum_lm_dir: Path) -> Iterator[SamplerEngine]:
    def loader(path: Path, name: str | None = None, **kw: Any) -> CausalLM:
        return FlakyLM(load_causal_lm(path, name=name, **kw))  # type: ignore[return-value]

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        models=[f"tiny={tiny_lyceum_lm_dir}"],
        cache_budget_bytes=1 << 30,
        model_budget_bytes=1 << 30,
        device="cpu",
        dtype="float32",
        serve_adapters=False,
    )
    engine = build_engine(settings, loader)
    yield engine
    engine.engines.close()


def probs(engine: SamplerEngine, sid: str) -> list[float]:
    return [p.probability for p in engine.distribution(T, sid, threshold=0.0).above]


# --- settings and specs ----------------------------------------------------------------------------------
def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LYCEUM_SAMPLER_MODELS", "tiny=/models/tiny, story@production")
    monkeypatch.setenv("LYCEUM_SAMPLER_SESSION_STORE_URL", "redis://redis:6379/0")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.models == ["tiny=/models/tiny", "story@production"]
    assert settings.session_store_url == "redis://redis:6379/0"
    assert settings.session_key_prefix == "lyceum:sampler:session:"
    assert (settings.port, settings.session_ttl_s, settings.max_new_tokens) == (50061, 3600.0, 4096)
    assert (settings.default_threshold, settings.default_other_top_k) == (0.01, 10)
    specs = parse_specs(settings.models)
    assert specs == [
        ModelSpec("tiny", path=Path("/models/tiny")),
        ModelSpec("story@production", registry_name="story", ref="production"),
    ]


@pytest.mark.parametrize("models", [["nothing"], ["a=/x", "a=/y"], ["Bad@alias"]])
def test_bad_model_specs_are_refused(models: list[str]) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_specs(models)
    assert info.value.field == "models"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (SamplingParams(temperature=0), "params.temperature"),
        (SamplingParams(temperature=float("inf")), "params.temperature"),
        (SamplingParams(top_k=-1), "params.top_k"),
        (SamplingParams(top_p=0), "params.top_p"),
        (SamplingParams(repetition_penalty=0.9), "params.repetition_penalty"),
    ],
)
def test_check_params_names_the_field(params: SamplingParams, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_params(params)
    assert info.value.field == field
    assert check_params(None) == SamplingParams()


# --- cache consistency -----------------------------------------------------------------------------------
def test_a_failed_forward_after_a_commit_drops_the_cache_not_the_append(engine: SamplerEngine) -> None:
    sid = engine.create(T, "tiny", PROMPT).session_id
    lm = engine.pool.get("tiny").lm
    lm.fail_next = True  # type: ignore[attr-defined]
    session, appended = engine.append(T, sid, Choice(token_id=5))
    assert [g.token.id for g in session.generated] == [5] and appended.token.id == 5
    assert engine.caches.get(SessionKey(T, sid)) is None
    reference = engine.create(T, "tiny", PROMPT).session_id
    engine.append(T, reference, Choice(token_id=5))
    assert probs(engine, sid) == pytest.approx(probs(engine, reference), abs=1e-6)


def test_a_failed_rebuild_changes_nothing(engine: SamplerEngine) -> None:
    sid = engine.create(T, "tiny", PROMPT).session_id
    engine.caches.clear()
    engine.pool.get("tiny").lm.fail_next = True  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError):
        engine.distribution(T, sid)
    assert engine.caches.get(SessionKey(T, sid)) is None and engine.get(T, sid).context_len == len(
        engine.get(T, sid).prompt_ids
    )
    assert probs(engine, sid)


def test_a_lost_race_leaves_the_cache_as_it_was(engine: SamplerEngine) -> None:
    sid = engine.create(T, "tiny", PROMPT).session_id
    before = probs(engine, sid)
    state = engine.store.get(T, sid)
    assert state is not None
    engine.store.update(state.evolve())  # another pod wrote: the cache still holds the same tokens
    real_update = engine.store.update

    def lose(new_state: Any) -> Any:
        current = engine.store.get(T, sid)
        real_update(current.evolve())  # type: ignore[union-attr]
        return real_update(new_state)

    engine.store.update = lose  # type: ignore[method-assign]
    with pytest.raises(Aborted):
        engine.append(T, sid, Choice(token_id=5))
    engine.store.update = real_update  # type: ignore[method-assign]
    entry = engine.caches.get(SessionKey(T, sid))
    assert entry is not None and entry.length == len(engine.get(T, sid).prompt_ids)
    assert probs(engine, sid) == before


def test_undo_after_a_rebuild_elsewhere(engine: SamplerEngine) -> None:
    sid = engine.create(T, "tiny", PROMPT).session_id
    base = probs(engine, sid)
    engine.append(T, sid, Choice(token_id=5))
    engine.caches.clear()
    engine.undo(T, sid)
    assert probs(engine, sid) == pytest.approx(base, abs=1e-6)


# --- model pool ------------------------------------------------------------------------------------------
def test_models_load_lazily_once(engine: SamplerEngine) -> None:
    assert [m.loaded for m in engine.list_models(T)] == [False]
    first = engine.pool.get("tiny")
    assert engine.pool.get("tiny") is first and first.nbytes == module_nbytes(first.lm) > 0
    (described,) = engine.list_models(T)
    assert (described.kind, described.vocab_size, described.max_context, described.loaded) == (
        "lyceum-lm",
        384,
        96,
        True,
    )
    with pytest.raises(NotFound) as info:
        engine.pool.pin(T, "other")
    assert info.value.field == "model"
    with pytest.raises(NotFound):
        engine.pool.get("other@3")


def test_an_unserved_name_says_which_reference_serves_it(tmp_path: Path) -> None:
    pool = ModelPool(
        parse_specs(["tiny=/models/tiny", "story@production", "story@canary"]),
        load_causal_lm,
        budget_bytes=1 << 20,
        device=torch.device("cpu"),
        dtype=torch.float32,
        database_url=f"sqlite:///{tmp_path / 'registry.db'}",
        registry_url=str(tmp_path / "registry"),
    )
    with pytest.raises(NotFound) as bare:
        pool.pin(T, "story")  # the registry name of two served references
    assert bare.value.field == "model"
    assert (
        bare.value.message == "model 'story' is served by reference: use 'story@canary' or 'story@production'"
    )
    with pytest.raises(NotFound) as unknown:
        pool.pin(T, "tale")
    assert unknown.value.message == "model 'tale' is not served here; the model list names those that are"


# --- tenants ---------------------------------------------------------------------------------------------
def test_another_tenants_session_is_not_found_like_a_missing_one(engine: SamplerEngine) -> None:
    sid = engine.create("acme", "tiny", PROMPT).session_id
    engine.append("acme", sid, Choice(token_id=5))
    calls = [
        lambda t, i: engine.get(t, i),
        lambda t, i: engine.set_prompt(t, i, "Hello"),
        lambda t, i: engine.distribution(t, i),
        lambda t, i: engine.append(t, i, Choice(token_id=5)),
        lambda t, i: engine.undo(t, i),
        lambda t, i: engine.delete(t, i),
    ]
    for call in calls:
        with pytest.raises(NotFound) as theirs:
            call("globex", sid)
        with pytest.raises(NotFound) as missing:
            call("globex", "0" * 32)
        assert theirs.value.field == missing.value.field == "session_id"
        assert theirs.value.message.replace(sid, "") == missing.value.message.replace("0" * 32, "")
    assert [g.token.id for g in engine.get("acme", sid).generated] == [5]  # untouched


def test_equal_session_ids_in_two_tenants_are_independent(engine: SamplerEngine) -> None:
    sid = engine.create("acme", "tiny", PROMPT).session_id
    theirs = engine.store.get("acme", sid)
    assert theirs is not None  # the same id, stored by another tenant with another prompt
    engine.store.create(replace(theirs, tenant="globex", prompt="Hello", prompt_ids=(72, 101)))
    engine.append("acme", sid, Choice(token_id=5))
    engine.append("globex", sid, Choice(token_id=7))
    assert [g.token.id for g in engine.get("acme", sid).generated] == [5]
    assert [g.token.id for g in engine.get("globex", sid).generated] == [7]
    assert SessionKey("acme", sid) in engine.caches and SessionKey("globex", sid) in engine.caches
    assert probs_of(engine, "acme", sid) != probs_of(engine, "globex", sid)
    engine.delete("acme", sid)
    assert engine.get("globex", sid).prompt == "Hello"


def probs_of(engine: SamplerEngine, tenant: str, sid: str) -> list[float]:
    return [p.probability for p in engine.distribution(tenant, sid, threshold=0.0).above]


def test_the_live_session_quota_is_per_tenant(engine: SamplerEngine) -> None:
    first = engine.create("acme", "tiny", max_live=2).session_id
    engine.create("acme", "tiny", max_live=2)
    with pytest.raises(ResourceExhausted) as info:
        engine.create("acme", "tiny", PROMPT, max_live=2)
    assert info.value.field == "max_sessions"
    engine.create("globex", "tiny", max_live=2)  # another tenant's count
    engine.delete("acme", first)
    engine.create("acme", "tiny", max_live=2)
    with pytest.raises(InvalidArgument):
        engine.create("acme", "tiny", max_live=-1)


def test_shown_settings_and_times_are_kept_in_the_session(engine: SamplerEngine) -> None:
    sid = engine.create(T, "tiny", PROMPT).session_id
    created = engine.get(T, sid)
    assert created.shown is None and created.created_at == created.updated_at
    engine.distribution(T, sid, threshold=0.05)  # not recorded
    assert engine.get(T, sid).shown is None
    params = SamplingParams(temperature=0.5)
    engine.distribution(T, sid, threshold=0.05, params=params, record_shown=True)
    shown = engine.get(T, sid).shown
    assert shown is not None and (shown.threshold, shown.params) == (0.05, params)
    _, appended = engine.append(T, sid, Choice(from_other=True), threshold=0.05)
    assert appended.from_other and appended.chosen_at >= shown.shown_at
    _, by_id = engine.append(T, sid, Choice(token_id=5))
    assert not by_id.from_other
    session = engine.get(T, sid)
    assert [g.from_other for g in session.generated] == [True, False]
    assert session.updated_at >= by_id.chosen_at and session.created_at == created.created_at


def test_a_spin_draws_from_the_whole_distribution_reproducibly(engine: SamplerEngine) -> None:
    first, second = (engine.create(T, "tiny", PROMPT).session_id for _ in range(2))
    params = SamplingParams(temperature=0.7)
    spins = [
        [engine.append(T, sid, Choice(spin=True), threshold=0.05, params=params, seed=s)[1] for s in (1, 2)]
        for sid in (first, second)
    ]
    assert [g.token.id for g in spins[0]] == [g.token.id for g in spins[1]]
    assert not any(g.from_other for g in spins[0])
    shown = engine.distribution(T, first, threshold=0.0, params=params)
    assert shown.above and all(g.probability > 0 for g in spins[0])
    with pytest.raises(InvalidArgument, match="exactly one"):
        engine.append(T, first, Choice(spin=True, token_id=3))
