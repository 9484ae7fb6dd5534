"""Gated generation over the sampler's gRPC API: fixed modulations show the modulator's endpoints, random ones
replay by seed, a registered learned policy gives exactly the modulations it computes offline on the same
contexts (the observation of training), requests sharing a policy run batched, gated and ungated models are
told apart, token-wheel sessions decide each step, and every bad combination is refused naming its field."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import torch
from fixtures.sampler import HF_MODEL, LYCEUM_MODEL, RunningSampler
from fixtures.servers import rpc_error, tenant_channel

from lyceum_api.sampler.v1 import sampler_pb2 as pb
from lyceum_api.sampler.v1 import sampler_pb2_grpc
from lyceum_core.identity import DEFAULT_TENANT as T
from lyceum_core.storage import ArtifactStore
from lyceum_db.engine import create_engine
from lyceum_db.repositories.registry import ModelRepository
from lyceum_ml.causal_lm import CausalLM, Feed
from lyceum_ml.engine import Request
from lyceum_ml.engine.control import Control, ControlView
from lyceum_ml.gating.control import GatingStep, observe
from lyceum_ml.gating.policy import GatingPolicy, save_policy
from lyceum_ml.sampling import SamplingParams

pytestmark = pytest.mark.integration
Stub = sampler_pb2_grpc.SamplerServiceStub
PROMPT = "Once upon a time"
FIXED, RANDOM, LEARNED = pb.GATING_MODE_FIXED, pb.GATING_MODE_RANDOM, pb.GATING_MODE_LEARNED
ENDPOINTS = {0.0: (0.3, 5, 0.7, 1.2), 1.0: (2.0, 100, 1.0, 4.2)}


def run(stub: Stub, **fields: object) -> list[pb.GenerateResponse]:
    fields.setdefault("model", LYCEUM_MODEL)
    fields.setdefault("prompt", PROMPT)
    fields.setdefault("max_new_tokens", 6)
    return list(stub.Generate(pb.GenerateRequest(**fields)))  # type: ignore[arg-type]


def steps(messages: list[pb.GenerateResponse]) -> list[pb.GatingStep]:
    return [m.gating_step for m in messages if m.HasField("token")]


def params_of(step: pb.GatingStep) -> tuple[float, int, float, float]:
    p = step.params
    return (round(p.temperature, 6), p.top_k, round(p.top_p, 6), round(p.repetition_penalty, 6))


@pytest.fixture
def registry(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[ModelRepository, ArtifactStore, str]]:
    engine = create_engine(sqlite_url)
    yield ModelRepository(engine), ArtifactStore(tmp_path / "registry"), str(tmp_path / "registry")
    engine.dispose()


@pytest.fixture
def served(make_sampler: Callable[..., RunningSampler], sqlite_url: str, registry: tuple) -> RunningSampler:
    return make_sampler(
        session_store_url="memory://", database_url=sqlite_url, registry_url=registry[2], serve_policies=True
    )


@pytest.fixture
def stub(served: RunningSampler) -> Iterator[Stub]:
    with tenant_channel(served.address) as channel:
        yield sampler_pb2_grpc.SamplerServiceStub(channel)


def make_policy(seed: int) -> GatingPolicy:
    """A fresh policy whose actor's last layer is scaled up, so its modulations vary with the context."""
    torch.manual_seed(seed)
    policy = GatingPolicy().eval()
    with torch.no_grad():
        policy.actor[-1].weight.mul_(300)
    return policy


def register_policy(
    registry: tuple, tmp_path: Path, policy: GatingPolicy, name: str = "gate", tenant: str = T, **meta: object
) -> str:
    models, store, _ = registry
    directory = save_policy(tmp_path / uuid.uuid4().hex, policy, {"lm": LYCEUM_MODEL, **meta})
    uri = store.put_dir(directory, f"policies/{tenant}/{name}/{uuid.uuid4().hex}")
    metadata = {"lm": LYCEUM_MODEL, "episode_length": 8, "gate_signal": True, **meta}
    version = models.register(tenant, name, "gating_policy", uri, {}, metadata=metadata).version
    return f"{name}@{version}"


def offline_modulations(
    lm: CausalLM, policy: GatingPolicy, prompt: list[int], tokens: list[int], max_new: int
) -> list[float]:
    """What the policy decides at each step of the same continuation, computed here: the prompt fed with the
    neutral gate, each token with the modulation it was chosen under, the observation by `observe`."""
    cache, out, previous = lm.new_cache(), [], None
    feed = Feed(cache, prompt, gate=0.5, want_hidden=True)
    logits = lm.forward_rows([feed])[0]
    request = Request(tuple(prompt), max_new)
    for step, token in enumerate(tokens):
        view = ControlView(0, request, logits, feed.hidden, tuple(tokens[:step]), previous)
        m = float(policy.act(observe([view]), deterministic=True)[0][0])
        out.append(m)
        previous = Control(SamplingParams(), m, GatingStep(m))
        feed = Feed(cache, [token], gate=m, want_hidden=True)
        logits = lm.forward_rows([feed])[0]
    return out


# --- generation -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("m", [0.0, 1.0])
def test_fixed_modulations_show_the_modulators_endpoints(stub: Stub, m: float) -> None:
    messages = run(stub, gating=pb.Gating(mode=FIXED, modulation=m))
    assert len(steps(messages)) == 6
    for step in steps(messages):
        assert step.modulation == m and step.gate_signal == pytest.approx(m)
        assert params_of(step) == ENDPOINTS[m]
    report = messages[-1].gating
    assert report.mode == FIXED and report.gate_signal and report.modulation == m


def test_an_ungated_model_is_modulated_through_sampling_only(stub: Stub) -> None:
    messages = run(stub, model=HF_MODEL, gating=pb.Gating(mode=FIXED, modulation=0.0))
    assert all(not s.HasField("gate_signal") and params_of(s) == ENDPOINTS[0.0] for s in steps(messages))
    assert not messages[-1].gating.gate_signal


def test_random_modulations_replay_by_seed(stub: Stub) -> None:
    def modulations(seed: int, sample_seed: int) -> list[float]:
        messages = run(stub, seed=sample_seed, gating=pb.Gating(mode=RANDOM, seed=seed), max_new_tokens=8)
        assert messages[-1].gating.seed == seed
        return [s.modulation for s in steps(messages)]

    first = modulations(3, 1)
    assert first == modulations(3, 1) and len(set(first)) == 8
    assert first != modulations(4, 1)
    # without a gating seed, the request's seed draws them
    a = run(stub, seed=5, gating=pb.Gating(mode=RANDOM))
    assert steps(a) == steps(run(stub, seed=5, gating=pb.Gating(mode=RANDOM)))


def test_a_learned_policy_serves_what_it_computes_offline(
    stub: Stub, registry: tuple, tmp_path: Path, tiny_lyceum_lm: CausalLM
) -> None:
    policy = make_policy(11)
    ref = register_policy(registry, tmp_path, policy)
    messages = run(stub, gating=pb.Gating(mode=LEARNED, policy=ref), max_new_tokens=8, seed=2)
    served = [s.modulation for s in steps(messages)]
    tokens = [m.token.id for m in messages if m.HasField("token")]
    expected = offline_modulations(tiny_lyceum_lm, policy, tiny_lyceum_lm.encode(PROMPT), tokens, 8)
    assert served == pytest.approx(expected, abs=1e-4)
    assert len({round(m, 3) for m in served}) > 1  # the policy reacts to the context
    report = messages[-1].gating
    assert (report.policy, report.policy_lm, report.lm_mismatch) == (f"{T}/{ref}", LYCEUM_MODEL, False)
    # served on another LM than its own: allowed, flagged; no gates there
    other = run(stub, model=HF_MODEL, gating=pb.Gating(mode=LEARNED, policy=ref))[-1].gating
    assert other.lm_mismatch and not other.gate_signal


def test_concurrent_learned_requests_share_one_controller(
    stub: Stub, served: RunningSampler, registry: tuple, tmp_path: Path
) -> None:
    ref = register_policy(registry, tmp_path, make_policy(12))
    gating = pb.Gating(mode=LEARNED, policy=ref)

    def modulations(messages: list[pb.GenerateResponse]) -> list[float]:
        return [s.modulation for s in steps(messages)]

    alone = [modulations(run(stub, gating=gating, seed=i)) for i in range(3)]
    policies = served.engine.targets.policies
    controller = policies.controller(policies.resolve(T, ref), gate_signal=True)
    batches: list[int] = []
    decide = controller.decide
    controller.decide = lambda views: (batches.append(len(views)), decide(views))[1]  # type: ignore[method-assign]
    results: dict[int, list[pb.GenerateResponse]] = {}

    def go(i: int) -> None:
        results[i] = run(stub, gating=gating, seed=i)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(3):  # each as it was alone (float rounding of a batched forward aside)
        assert modulations(results[i]) == pytest.approx(alone[i], abs=1e-4)
    assert max(batches) > 1  # rows of different requests were decided in one call


def test_bad_gating_requests_are_refused_naming_the_field(
    stub: Stub, registry: tuple, tmp_path: Path, sampler_stub_for: Callable[..., Stub], served: RunningSampler
) -> None:
    ref = register_policy(registry, tmp_path, make_policy(13))
    bad, random = grpc.StatusCode.INVALID_ARGUMENT, pb.Gating(mode=RANDOM)
    cases = [
        ({"gating": pb.Gating(mode=FIXED)}, "gating.modulation"),
        ({"gating": pb.Gating(mode=FIXED, modulation=1.5)}, "gating.modulation"),
        ({"gating": pb.Gating(mode=RANDOM, modulation=0.5)}, "gating.modulation"),
        ({"gating": pb.Gating(mode=LEARNED)}, "gating.policy"),
        ({"gating": pb.Gating(mode=FIXED, modulation=0.5, policy=ref)}, "gating.policy"),
        ({"gating": pb.Gating(mode=FIXED, modulation=0.5, seed=1)}, "gating.seed"),
        ({"gating": pb.Gating(mode=FIXED, modulation=0.5), "gate_signal": 0.5}, "gate_signal"),
        ({"gating": pb.Gating(mode=RANDOM), "strategy": pb.DECODING_STRATEGY_BEAM}, "strategy"),
        ({"gating": pb.Gating(mode=RANDOM), "strategy": pb.DECODING_STRATEGY_GREEDY}, "strategy"),
        (
            {"gating": random, "params": pb.SamplingParams(temperature=0.7)},
            "params.temperature",
        ),
        ({"gating": random, "params": pb.SamplingParams(top_k=3)}, "params.top_k"),
    ]
    for fields, field in cases:
        assert rpc_error(lambda f=fields: run(stub, **f), bad).field == field, fields
    # none is no gating: the request's own parameters stand
    assert run(stub, gating=pb.Gating(mode=pb.GATING_MODE_NONE), params=pb.SamplingParams(temperature=0.7))

    registry[0].register(T, "story-lm", "lm", "lm/never-read", {})  # resolved, never loaded
    wrong_kind = rpc_error(lambda: run(stub, gating=pb.Gating(mode=LEARNED, policy="story-lm@1")), bad)
    assert wrong_kind.field == "gating.policy"
    missing = rpc_error(
        lambda: run(stub, gating=pb.Gating(mode=LEARNED, policy="nope@1")), grpc.StatusCode.NOT_FOUND
    )
    assert missing.field == "gating.policy"
    other = sampler_stub_for("globex", served.address)  # acme's policy is no one else's
    err = rpc_error(lambda: run(other, gating=pb.Gating(mode=LEARNED, policy=ref)), grpc.StatusCode.NOT_FOUND)
    assert err.field == "gating.policy"


# --- token-wheel sessions -------------------------------------------------------------------------------
def test_a_fixed_session_shows_and_appends_under_its_modulation(stub: Stub) -> None:
    gating = pb.Gating(mode=FIXED, modulation=1.0)
    session = stub.CreateSession(
        pb.CreateSessionRequest(model=LYCEUM_MODEL, prompt=PROMPT, gating=gating)
    ).session
    assert session.gating.mode == FIXED and session.gating.gate_signal
    d = stub.GetDistribution(pb.GetDistributionRequest(session_id=session.session_id, threshold=0.0))
    assert params_of(d.gating) == ENDPOINTS[1.0] and d.gating.gate_signal == 1.0
    top = d.above[0].token.id
    appended = stub.AppendToken(
        pb.AppendTokenRequest(session_id=session.session_id, token_id=top, threshold=0.0)
    )
    assert appended.appended.probability == pytest.approx(d.above[0].probability)
    assert params_of(appended.appended.gating) == ENDPOINTS[1.0]
    refused = rpc_error(
        lambda: stub.GetDistribution(
            pb.GetDistributionRequest(
                session_id=session.session_id, params=pb.SamplingParams(temperature=0.5)
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert refused.field == "params.temperature"


def test_a_learned_session_decides_each_step_as_the_policy_does(
    stub: Stub, registry: tuple, tmp_path: Path, tiny_lyceum_lm: CausalLM
) -> None:
    policy = make_policy(14)
    ref = register_policy(registry, tmp_path, policy)
    request = pb.CreateSessionRequest(
        model=LYCEUM_MODEL, prompt=PROMPT, gating=pb.Gating(mode=LEARNED, policy=ref)
    )
    session_id = stub.CreateSession(request).session.session_id
    shown, tokens = [], []
    for _ in range(4):
        d = stub.GetDistribution(pb.GetDistributionRequest(session_id=session_id, threshold=0.0))
        shown.append(d.gating.modulation)
        token = d.above[1].token.id  # not the top one: the wheel chooses
        appended = stub.AppendToken(pb.AppendTokenRequest(session_id=session_id, token_id=token)).appended
        assert appended.gating.modulation == d.gating.modulation
        tokens.append(token)
    horizon = 8  # the policy's episode length (metadata) is a session's horizon
    expected = offline_modulations(tiny_lyceum_lm, policy, tiny_lyceum_lm.encode(PROMPT), tokens, horizon)
    assert shown == pytest.approx(expected, abs=1e-4)
    # undo and redo: the same decision (random and learned steps replay)
    stub.Undo(pb.UndoRequest(session_id=session_id))
    d = stub.GetDistribution(pb.GetDistributionRequest(session_id=session_id))
    assert d.gating.modulation == pytest.approx(shown[-1], abs=1e-6)
