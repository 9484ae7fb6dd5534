"""The routing membership contract between the chart and the gateway: the predictor addresses the gateway is
given expand (lyceum_fleet.membership.expand_addresses) to exactly the stable DNS names of the predictor
StatefulSet's pods, and the sampler address is dns:/// of the samplers' headless Service."""

from __future__ import annotations

import pytest
from chart_helpers import VALUES_DIR, Manifests, Render, container_named, name, selects

from lyceum_fleet.membership import DnsSource, StaticSource, expand_addresses, source_for

# name: (values files, --set, release, namespace, the cluster domain those values give)
RELEASES = {
    "default": ((), (), "lyceum", "lyceum", "cluster.local"),
    "prod": ((VALUES_DIR / "values-prod.yaml",), (), "lyceum", "lyceum", "cluster.local"),
    "dev": ((VALUES_DIR / "values-dev.yaml",), (), "trial", "default", "cluster.local"),
    "custom": (
        (),
        (
            "predictor.replicas=12",
            "predictor.port=6000",
            "clusterDomain=k8s.example.org",
            "sampler.port=7000",
        ),
        "edu",
        "learning-prod",
        "k8s.example.org",
    ),
}


@pytest.fixture(params=sorted(RELEASES))
def release(request: pytest.FixtureRequest, render: Render) -> tuple[Manifests, str]:
    """(manifests, cluster domain) of each release in RELEASES."""
    values, sets, release, namespace, domain = RELEASES[request.param]
    return render(*values, sets=sets, release=release, namespace=namespace), domain


def gateway_config(m: Manifests) -> dict[str, str]:
    return m.config_data(m.one("Deployment", "gateway"))


def headless_service_of(m: Manifests, workload: dict) -> dict:
    pod_labels = workload["spec"]["template"]["metadata"]["labels"]
    (svc,) = [
        s
        for s in m.kind("Service")
        if s["spec"].get("clusterIP") == "None"
        and selects(s["spec"]["selector"], pod_labels)
        and any(p["name"] == "grpc" for p in s["spec"]["ports"])
    ]
    return svc


def grpc_ports(workload: dict, svc: dict) -> tuple[int, int]:
    container = next(p["containerPort"] for p in container_named(workload)["ports"] if p["name"] == "grpc")
    service = next(p for p in svc["spec"]["ports"] if p["name"] == "grpc")
    assert service["targetPort"] in ("grpc", container)
    return container, service["port"]


def test_predictor_addresses_are_the_statefulset_pod_names(release: tuple[Manifests, str]) -> None:
    release, domain = release
    sts = release.one("StatefulSet", "predictor")
    headless = headless_service_of(release, sts)
    assert sts["spec"]["serviceName"] == name(headless)
    container_port, service_port = grpc_ports(sts, headless)
    assert container_port == service_port

    rendered = gateway_config(release)["LYCEUM_GATEWAY_PREDICTOR_ADDRESSES"]
    replicas = sts["spec"]["replicas"]
    assert f"{{0..{replicas - 1}}}" in rendered, "rendered with the literal {0..N-1} range"
    expected = [
        f"{name(sts)}-{i}.{name(headless)}.{release.namespace}.svc.{domain}:{container_port}"
        for i in range(replicas)
    ]
    assert expand_addresses(rendered.split(",")) == expected
    # The gateway's own reading of the setting agrees: a static membership of those names.
    source = source_for(rendered.split(","))
    assert isinstance(source, StaticSource) and source.description == ",".join(expected)
    # And the predictors listen where they are addressed.
    predictor = release.config_data(sts)
    assert predictor["LYCEUM_PREDICTOR_HOST"] == "0.0.0.0"
    assert int(predictor["LYCEUM_PREDICTOR_PORT"]) == container_port


def test_sampler_address_is_the_headless_service(release: tuple[Manifests, str]) -> None:
    release, domain = release
    deployment = release.one("Deployment", "sampler")
    headless = headless_service_of(release, deployment)
    container_port, service_port = grpc_ports(deployment, headless)
    assert container_port == service_port
    rendered = gateway_config(release)["LYCEUM_GATEWAY_SAMPLER_ADDRESSES"]
    assert rendered == f"dns:///{name(headless)}.{release.namespace}.svc.{domain}:{container_port}"
    source = source_for([rendered])
    assert isinstance(source, DnsSource) and source.port == container_port
    # Draining or loading samplers leave the DNS answer (unlike predictors, whose names must stay).
    assert not headless["spec"].get("publishNotReadyAddresses")
    assert release.config_data(deployment)["LYCEUM_SAMPLER_HOST"] == "0.0.0.0"


def test_prod_addresses_literally(prod: Manifests) -> None:
    config = gateway_config(prod)
    assert config["LYCEUM_GATEWAY_PREDICTOR_ADDRESSES"] == (
        "lyceum-predictor-{0..2}.lyceum-predictor-headless.lyceum.svc.cluster.local:50051"
    )
    assert config["LYCEUM_GATEWAY_SAMPLER_ADDRESSES"] == (
        "dns:///lyceum-sampler-headless.lyceum.svc.cluster.local:50061"
    )


def test_one_predictor(render: Render) -> None:
    m = render(sets=["predictor.replicas=1"])
    rendered = gateway_config(m)["LYCEUM_GATEWAY_PREDICTOR_ADDRESSES"]
    assert expand_addresses([rendered]) == [
        "lyceum-predictor-0.lyceum-predictor-headless.lyceum.svc.cluster.local:50051"
    ]


@pytest.mark.parametrize(
    "release,sets",
    [("r" * 53, []), ("lyceum", ["fullnameOverride=" + "f" * 63])],
    ids=["longest release name", "longest fullnameOverride"],
)
def test_long_names_keep_dns_labels_short(render: Render, release: str, sets: list[str]) -> None:
    """A pod's DNS label (<statefulset>-<ordinal>) and a Service name must fit in 63 characters."""
    m = render(release=release, sets=[*sets, "predictor.replicas=3"])
    sts = m.one("StatefulSet", "predictor")
    headless = headless_service_of(m, sts)
    assert len(f"{name(sts)}-2") <= 63 and len(name(headless)) <= 63
    addresses = expand_addresses([gateway_config(m)["LYCEUM_GATEWAY_PREDICTOR_ADDRESSES"]])
    assert [a.split(".")[0] for a in addresses] == [f"{name(sts)}-{i}" for i in range(3)]
    assert {a.split(".")[1] for a in addresses} == {name(headless)}
