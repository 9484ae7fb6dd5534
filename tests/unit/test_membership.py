"""A fleet's membership sources (`lyceum_fleet.membership`): static lists with `{a..b}` ranges (a
StatefulSet's stable names), DNS, and a file re-read on change; and the gateway settings that name them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lyceum_fleet.membership import DnsSource, FileSource, StaticSource, expand_addresses, source_for
from lyceum_gateway.config import Settings


def test_ranges_expand_in_order_and_duplicates_drop() -> None:
    names = expand_addresses(["p-{0..2}.p-headless.ns.svc.cluster.local:50051", "extra:1", "extra:1"])
    assert names == [
        "p-0.p-headless.ns.svc.cluster.local:50051",
        "p-1.p-headless.ns.svc.cluster.local:50051",
        "p-2.p-headless.ns.svc.cluster.local:50051",
        "extra:1",
    ]
    assert expand_addresses(["r{0..1}-z{1..2}:9"]) == ["r0-z1:9", "r0-z2:9", "r1-z1:9", "r1-z2:9"]
    with pytest.raises(ValueError, match="empty range"):
        expand_addresses(["p-{3..1}:1"])


def test_each_form_picks_its_source() -> None:
    assert isinstance(source_for(["a:1", "b:2"]), StaticSource)
    assert isinstance(source_for(["dns:///sampler-headless:50061"]), DnsSource)
    assert isinstance(source_for(["file:///etc/lyceum/predictors"]), FileSource)
    with pytest.raises(ValueError, match="only entry"):
        source_for(["dns:///x:1", "a:1"])
    with pytest.raises(ValueError, match="host:port"):
        source_for(["no-port"])


def test_settings_refuse_a_malformed_membership() -> None:
    with pytest.raises(ValueError, match="predictor_addresses"):
        Settings(_env_file=None, predictor_addresses="p-{0..2}")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="sampler_addresses"):
        Settings(_env_file=None, sampler_addresses="dns:///a:1,b:2")  # type: ignore[call-arg]
    ok = Settings(_env_file=None, predictor_addresses="p-{0..1}.h:50051")  # type: ignore[call-arg]
    assert ok.predictor_addresses == ["p-{0..1}.h:50051"]  # expanded by the router, kept as configured


def test_dns_resolves_a_name_to_its_addresses() -> None:
    assert asyncio.run(DnsSource("dns:///localhost:50061").resolve()) in (
        ["127.0.0.1:50061"],
        ["127.0.0.1:50061", "[::1]:50061"],
        ["[::1]:50061", "127.0.0.1:50061"],
    )
    assert asyncio.run(DnsSource("dns:///no-such-host.invalid:1").resolve()) == []


def test_a_file_is_read_afresh_each_time(tmp_path: Path) -> None:
    path = tmp_path / "predictors"
    source = FileSource(f"file://{path}")
    assert asyncio.run(source.resolve()) == []  # not there yet: no replicas
    path.write_text("# the fleet\np-{0..1}:50051\n\nnot-an-address\nq:1, r:2  # two more\n")
    assert asyncio.run(source.resolve()) == ["p-0:50051", "p-1:50051", "q:1", "r:2"]
    path.write_text("p-0:50051\n")
    assert asyncio.run(source.resolve()) == ["p-0:50051"]
