"""Registry models (`name@alias`) over a real database and artifact store: a session is pinned to the version
the alias named when it was created, so moving the alias serves new sessions only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from fixtures.sampler import RunningSampler, append, create, distribution, rpc_error

from lyceum_api.sampler.v1 import sampler_pb2 as pb
from lyceum_api.sampler.v1 import sampler_pb2_grpc
from lyceum_core.storage import ArtifactStore
from lyceum_db.engine import create_engine
from lyceum_db.repositories.registry import ModelRepository

pytestmark = pytest.mark.integration


def test_sessions_are_pinned_to_the_version_the_alias_named(
    make_sampler: Callable[..., RunningSampler],
    sqlite_url: str,
    tmp_path: Path,
    tiny_lyceum_lm_dir: Path,
    tiny_hf_gpt2_dir: Path,
) -> None:
    store = ArtifactStore(tmp_path / "registry")
    engine = create_engine(sqlite_url)
    models = ModelRepository(engine)
    v1 = models.register("story-lm", "lm", store.put_dir(tiny_lyceum_lm_dir, "lm/story-lm/1"), {})
    models.set_alias("story-lm", "production", v1.version)
    sampler = make_sampler(
        models=["story-lm@production", "story-lm@latest"],
        database_url=sqlite_url,
        registry_url=str(tmp_path / "registry"),
    )
    with grpc.insecure_channel(sampler.address) as channel:
        stub = sampler_pb2_grpc.SamplerServiceStub(channel)
        old = create(stub, "story-lm@production")
        assert old.model == "story-lm@production" and old.max_context_len == 96
        append(stub, old.session_id, token_id=5)
        before = distribution(stub, old.session_id)

        v2 = models.register("story-lm", "lm", store.put_dir(tiny_hf_gpt2_dir, "lm/story-lm/2"), {})
        models.set_alias("story-lm", "production", v2.version)
        new = create(stub, "story-lm@production")
        assert new.max_context_len == 256  # the GPT-2 now
        assert distribution(stub, old.session_id) == before  # still version 1
        assert set(sampler.models) == {"story-lm@1", "story-lm@2"}

        described = {m.name: m for m in stub.ListModels(pb.ListModelsRequest()).models}
        assert described["story-lm@production"].kind == "hf-causal-lm"

        err = rpc_error(lambda: create(stub, "story-lm@staging"), grpc.StatusCode.NOT_FOUND)
        assert err.field == "model"
    engine.dispose()
