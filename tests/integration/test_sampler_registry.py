"""Registry models (`name@alias`) over a real database and artifact store: a session is pinned to the version
the alias named when it was created, so moving the alias serves new sessions only; a reference resolves in
the caller's tenant (its own model first, then a public one), and two tenants' same-named models never mix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from fixtures.sampler import RunningSampler, append, create, distribution
from fixtures.servers import rpc_error, tenant_channel

from lyceum_api.sampler.v1 import sampler_pb2 as pb
from lyceum_api.sampler.v1 import sampler_pb2_grpc
from lyceum_core.identity import DEFAULT_TENANT as T
from lyceum_core.identity import PLATFORM_TENANT
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
    v1 = models.register(T, "story-lm", "lm", store.put_dir(tiny_lyceum_lm_dir, "lm/story-lm/1"), {})
    models.set_alias(T, "story-lm", "production", v1.version)
    sampler = make_sampler(
        models=["story-lm@production", "story-lm@latest"],
        database_url=sqlite_url,
        registry_url=str(tmp_path / "registry"),
    )
    with tenant_channel(sampler.address) as channel:
        stub = sampler_pb2_grpc.SamplerServiceStub(channel)
        old = create(stub, "story-lm@production")
        assert old.model == "story-lm@production" and old.max_context_len == 96
        append(stub, old.session_id, token_id=5)
        before = distribution(stub, old.session_id)

        v2 = models.register(T, "story-lm", "lm", store.put_dir(tiny_hf_gpt2_dir, "lm/story-lm/2"), {})
        models.set_alias(T, "story-lm", "production", v2.version)
        new = create(stub, "story-lm@production")
        assert new.max_context_len == 256  # the GPT-2 now
        assert distribution(stub, old.session_id) == before  # still version 1
        assert set(sampler.models) == {f"{T}/story-lm@1", f"{T}/story-lm@2"}

        described = {m.name: m for m in stub.ListModels(pb.ListModelsRequest()).models}
        assert described["story-lm@production"].kind == "hf-causal-lm"

        err = rpc_error(lambda: create(stub, "story-lm@staging"), grpc.StatusCode.NOT_FOUND)
        assert err.field == "model"
    engine.dispose()


def test_references_resolve_in_the_callers_tenant_own_then_public(
    make_sampler: Callable[..., RunningSampler],
    sqlite_url: str,
    tmp_path: Path,
    tiny_lyceum_lm_dir: Path,
    tiny_hf_gpt2_dir: Path,
) -> None:
    store = ArtifactStore(tmp_path / "registry")
    engine = create_engine(sqlite_url)
    models = ModelRepository(engine)
    base = store.put_dir(tiny_lyceum_lm_dir, f"lm/{PLATFORM_TENANT}/story-lm/1")
    public = models.register(PLATFORM_TENANT, "story-lm", "lm", base, {}, public=True)
    models.set_alias(PLATFORM_TENANT, "story-lm", "production", public.version)
    own_uri = store.put_dir(tiny_hf_gpt2_dir, "lm/acme/story-lm/1")
    own = models.register("acme", "story-lm", "lm", own_uri, {})  # acme's own model of the same name
    models.set_alias("acme", "story-lm", "production", own.version)
    private_uri = store.put_dir(tiny_hf_gpt2_dir, "lm/platform/draft-lm/1")
    draft = models.register(PLATFORM_TENANT, "draft-lm", "lm", private_uri, {})  # not public
    models.set_alias(PLATFORM_TENANT, "draft-lm", "production", draft.version)
    sampler = make_sampler(
        models=["story-lm@production", "draft-lm@production"],
        database_url=sqlite_url,
        registry_url=str(tmp_path / "registry"),
    )
    with tenant_channel(sampler.address, "acme") as a, tenant_channel(sampler.address, "globex") as g:
        acme, globex = sampler_pb2_grpc.SamplerServiceStub(a), sampler_pb2_grpc.SamplerServiceStub(g)
        assert create(acme, "story-lm@production").max_context_len == 256  # its own GPT-2
        assert create(globex, "story-lm@production").max_context_len == 96  # the platform's public LM
        assert set(sampler.models) == {"acme/story-lm@1", f"{PLATFORM_TENANT}/story-lm@1"}

        def described(stub: sampler_pb2_grpc.SamplerServiceStub) -> dict[str, str]:
            return {m.name: m.kind for m in stub.ListModels(pb.ListModelsRequest()).models}

        assert described(acme)["story-lm@production"] == "hf-causal-lm"
        assert described(globex)["story-lm@production"] == "lyceum-lm"

        for stub in (acme, globex):  # the platform's private model is no one else's
            err = rpc_error(lambda s=stub: create(s, "draft-lm@production"), grpc.StatusCode.NOT_FOUND)
            assert err.field == "model"
        with tenant_channel(sampler.address, PLATFORM_TENANT) as p:
            platform = sampler_pb2_grpc.SamplerServiceStub(p)
            assert create(platform, "draft-lm@production").max_context_len == 256
            assert create(platform, "story-lm@production").max_context_len == 96
    engine.dispose()
