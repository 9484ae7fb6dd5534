"""Every rendered manifest is valid Kubernetes (offline JSON schemas, kubernetes-validate) and keeps the
chart's rules: locked-down containers, probes, config checksums, migration hooks, GPU placement, PDBs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from chart_helpers import (
    VALUES_DIR,
    Manifests,
    Render,
    container_named,
    containers,
    labels,
    name,
    pod_spec,
    selects,
)

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest the validator knows.
KUBE_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
# Custom resources the validator has no schema for; their shape is asserted in test_service_monitors.
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
LYCEUM = ("gateway", "predictor", "sampler", "trainer")


def component(doc: dict[str, Any]) -> str:
    return labels(doc)["app.kubernetes.io/component"]


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_manifests_match_kubernetes_schemas(scenario: Manifests, kube_version: str) -> None:
    checked = 0
    for doc in scenario:
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
            checked += 1
        except kubernetes_validate.SchemaNotFoundError:
            assert (doc["apiVersion"], doc["kind"]) in CRDS, (
                f"no schema for {doc['apiVersion']} {doc['kind']}"
            )
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(map(str, exc.path))
            pytest.fail(f"{doc['kind']} {name(doc)}: {path}: {exc.message}")
    assert checked >= 15


def test_manifests_have_unique_names_and_labels(scenario: Manifests) -> None:
    seen = [(d["kind"], name(d)) for d in scenario]
    assert len(seen) == len(set(seen)), "duplicate manifests"
    for doc in scenario:
        assert labels(doc)["app.kubernetes.io/instance"] == scenario.release
        assert labels(doc)["app.kubernetes.io/part-of"] == "lyceum"
        assert len(name(doc)) <= 63


def test_every_container_is_locked_down(scenario: Manifests) -> None:
    for workload in scenario.workloads():
        pod = pod_spec(workload)
        assert pod.get("automountServiceAccountToken") is False, name(workload)
        pod_security = pod.get("securityContext", {})
        assert pod_security.get("runAsNonRoot") is True, name(workload)
        for c in containers(workload):
            where = f"{name(workload)}/{c['name']}"
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot") is True, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert "ALL" in sc.get("capabilities", {}).get("drop", []), where
            seccomp = sc.get("seccompProfile") or pod_security.get("seccompProfile")
            assert seccomp == {"type": "RuntimeDefault"}, where
            assert sc.get("privileged") is not True, where


def test_writable_paths_are_empty_dirs(scenario: Manifests) -> None:
    """A read-only root needs /tmp and the services' state dirs mounted writable."""
    expected = {
        "gateway": {"/tmp"},
        "predictor": {"/tmp", "/var/cache/lyceum/models"},
        "sampler": {"/tmp", "/var/cache/lyceum/models"},
        "trainer": {"/tmp", "/var/lib/lyceum/work"},
        "migrations": {"/tmp"},
        "seed": {"/tmp", "/var/lib/lyceum/work"},
    }
    for workload in scenario.workloads():
        if component(workload) not in expected:
            continue
        volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
        c = pod_spec(workload)["containers"][0]
        empty_dirs = {m["mountPath"] for m in c["volumeMounts"] if "emptyDir" in volumes[m["name"]]}
        assert expected[component(workload)] <= empty_dirs, name(workload)
        data = scenario.config_data(workload) if c.get("envFrom") else {}
        for key in ("MODEL_CACHE_DIR", "WORK_DIR"):
            for env_key, value in data.items():
                if env_key.endswith("_" + key):
                    assert value in empty_dirs, f"{name(workload)}: {env_key}={value} is not writable"


def test_probes(scenario: Manifests) -> None:
    for workload in scenario.workloads():
        if workload["kind"] == "Job":
            continue
        for c in pod_spec(workload)["containers"]:
            where = f"{name(workload)}/{c['name']}"
            kind = component(workload)
            if kind == "trainer":  # a worker serves no traffic: liveness only
                assert "livenessProbe" in c, where
                continue
            assert "readinessProbe" in c and "livenessProbe" in c, where
            if kind == "gateway":
                assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
                assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
            if kind in ("predictor", "sampler"):
                grpc_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    assert c[probe]["grpc"]["port"] == grpc_port, f"{where}: {probe}"


def test_liveness_outlasts_the_drain(scenario: Manifests) -> None:
    """While draining a gRPC service says NOT_SERVING: liveness must not kill it before the drain ends, and
    the grace period must cover the whole drain."""
    for kind in ("predictor", "sampler"):
        for workload in [*scenario.component("StatefulSet", kind), *scenario.component("Deployment", kind)]:
            data = scenario.config_data(workload)
            prefix = f"LYCEUM_{kind.upper()}_"
            drain = float(data[prefix + "DRAIN_DELAY_S"]) + float(data[prefix + "DRAIN_GRACE_S"])
            c = container_named(workload)
            pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [0, 0])[1]
            assert pod_spec(workload)["terminationGracePeriodSeconds"] > drain + float(pre_stop), name(
                workload
            )
            live = c["livenessProbe"]
            assert live["periodSeconds"] * live["failureThreshold"] > drain, name(workload)


def test_pod_templates_carry_config_checksums(scenario: Manifests) -> None:
    for workload in scenario.workloads():
        if component(workload) not in LYCEUM:
            continue
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        for key in ("checksum/config", "checksum/secret"):
            assert len(annotations.get(key, "")) == 64, f"{name(workload)}: {key}"


def checksum(m: Manifests, kind: str, comp: str) -> str:
    return m.one(kind, comp)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


def test_config_changes_roll_the_right_pods(render: Render) -> None:
    base = render()
    poll = render(sets=["predictor.config.model_poll_s=5"])
    assert checksum(poll, "StatefulSet", "predictor") != checksum(base, "StatefulSet", "predictor")
    assert checksum(poll, "Deployment", "gateway") == checksum(base, "Deployment", "gateway")
    # More predictors: the gateway's address list changes, so the gateways roll too.
    scaled = render(sets=["predictor.replicas=4"])
    assert checksum(scaled, "Deployment", "gateway") != checksum(base, "Deployment", "gateway")
    secret = render(sets=["secrets.brokerUrl=redis://elsewhere:6379/0"])
    for kind, comp in (("Deployment", "gateway"), ("StatefulSet", "predictor")):
        before = base.one(kind, comp)["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
        after = secret.one(kind, comp)["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
        assert before != after


def test_predictor_statefulset_and_headless_service(scenario: Manifests) -> None:
    sts = scenario.one("StatefulSet", "predictor")
    headless = scenario.get("Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert "grpc" in {p["name"] for p in headless["spec"]["ports"]}
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert selects(headless["spec"]["selector"], pod_labels)
    assert selects(sts["spec"]["selector"]["matchLabels"], pod_labels)


def test_pdbs_select_their_pods_only(scenario: Manifests) -> None:
    pdbs = scenario.kind("PodDisruptionBudget")
    if scenario.one("StatefulSet", "predictor")["spec"]["replicas"] > 1:
        assert scenario.component("PodDisruptionBudget", "predictor"), "the predictors need a PDB"
    pods = {name(w): w["spec"]["template"]["metadata"]["labels"] for w in scenario.workloads()}
    for pdb in pdbs:
        selector = pdb["spec"]["selector"]["matchLabels"]
        chosen = {n for n, pod_labels in pods.items() if selects(selector, pod_labels)}
        owners = {name(w) for w in scenario.workloads() if component(w) == component(pdb)}
        assert chosen == owners and chosen, f"{name(pdb)} selects {chosen}"


def test_services_select_existing_ports(scenario: Manifests) -> None:
    pods = [w for w in scenario.workloads() if w["kind"] != "Job"]
    for svc in scenario.kind("Service"):
        targets = [
            w for w in pods if selects(svc["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
        ]
        assert targets, f"Service {name(svc)} selects no pods"
        for port in svc["spec"]["ports"]:
            for w in targets:
                names = {p["name"] for c in pod_spec(w)["containers"] for p in c.get("ports", [])}
                assert port["targetPort"] in names, f"{name(svc)} -> {name(w)}: {port['targetPort']}"


def test_migrations_job_is_a_pre_install_hook(default: Manifests) -> None:
    job = default.one("Job", "migrations")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    c = container_named(job)
    assert c["command"] == ["python", "-m", "lyceum_db", "upgrade"]
    url = next(e for e in c["env"] if e["name"] == "LYCEUM_DB_URL")["valueFrom"]["secretKeyRef"]
    # The release's Secret does not exist before install: the hook reads its own, created just before it.
    secret = default.get("Secret", url["name"])
    assert secret["metadata"]["annotations"]["helm.sh/hook"] == annotations["helm.sh/hook"]
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        annotations["helm.sh/hook-weight"]
    )
    assert url["key"] in secret["stringData"]
    assert "serviceAccountName" not in pod_spec(job), (
        "the release's ServiceAccount does not exist pre-install"
    )
    # ... so the services do not migrate themselves.
    assert (
        default.config_data(default.one("StatefulSet", "predictor"))["LYCEUM_PREDICTOR_MIGRATE_ON_START"]
        == "false"
    )
    for trainer in default.component("Deployment", "trainer"):
        assert default.config_data(trainer)["LYCEUM_TRAINER_MIGRATE_ON_START"] == "false"


def test_gateway_keys_come_from_the_secret(render: Render, default: Manifests) -> None:
    """API and admin keys reach the gateway only through the Secret; with the in-cluster Redis the gateway
    replicas share their rate-limit buckets in it."""
    m = render(sets=["redis.enabled=true", "secrets.apiKeys={acme:key-1,key-2}", "secrets.adminKeys={adm-1}"])
    gateway_deploy = m.one("Deployment", "gateway")
    env = {e["name"]: e for e in container_named(gateway_deploy)["env"]}
    for var, value in (
        ("LYCEUM_GATEWAY_API_KEYS", "acme:key-1,key-2"),
        ("LYCEUM_GATEWAY_ADMIN_KEYS", "adm-1"),
    ):
        ref = env[var]["valueFrom"]["secretKeyRef"]
        assert ref.get("optional") is True
        secret = m.get("Secret", ref["name"])
        assert secret["stringData"][ref["key"]] == value
        assert var not in m.config_data(gateway_deploy), f"{var} must not sit in a ConfigMap"
    quota = m.config_data(gateway_deploy)["LYCEUM_GATEWAY_QUOTA_REDIS_URL"]
    assert quota.startswith("redis://") and quota.endswith(":6379/2"), quota
    # No keys given: none in the Secret (auth off), and no shared buckets without a known Redis.
    ref = next(
        e
        for e in container_named(default.one("Deployment", "gateway"))["env"]
        if e["name"].endswith("_ADMIN_KEYS")
    )
    stored = default.get("Secret", ref["valueFrom"]["secretKeyRef"]["name"])["stringData"]
    assert not {"api-keys", "admin-keys"} & set(stored)
    assert "LYCEUM_GATEWAY_QUOTA_REDIS_URL" not in default.config_data(default.one("Deployment", "gateway"))


def test_in_cluster_postgres_migrates_after_install(render: Render) -> None:
    m = render(sets=["postgresql.enabled=true", "postgresql.auth.password=pw", "redis.enabled=true"])
    hook = m.one("Job", "migrations")["metadata"]["annotations"]["helm.sh/hook"]
    assert set(hook.split(",")) == {"post-install", "pre-upgrade"}
    assert m.config_data(m.one("StatefulSet", "predictor"))["LYCEUM_PREDICTOR_MIGRATE_ON_START"] == "true"
    secret = m.get("Secret", "lyceum")["stringData"]
    assert (
        secret["database-url"]
        == "postgresql://lyceum:pw@lyceum-postgresql.lyceum.svc.cluster.local:5432/lyceum"
    )
    assert secret["broker-url"] == "redis://lyceum-redis.lyceum.svc.cluster.local:6379/0"
    assert secret["session-store-url"] == "redis://lyceum-redis.lyceum.svc.cluster.local:6379/1"
    assert m.one("StatefulSet", "postgresql") and m.one("Deployment", "redis")


def test_seed_job_is_optional_and_off_in_prod(render: Render, prod: Manifests, default: Manifests) -> None:
    assert not prod.component("Job", "seed") and not default.component("Job", "seed")
    dev = render(VALUES_DIR / "values-dev.yaml")
    job = dev.one("Job", "seed")
    assert set(job["metadata"]["annotations"]["helm.sh/hook"].split(",")) == {"post-install", "post-upgrade"}
    c = container_named(job)
    assert c["command"] + c["args"][:1] == ["python", "-m", "lyceum_trainer", "seed-demo"]
    # The demo LM's corpus comes from a mounted volume.
    corpus = c["args"][c["args"].index("--lm-corpus") + 1]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert any(corpus.startswith(path + "/") for path in mounts), corpus
    assert "configMap" in next(v for v in pod_spec(job)["volumes"] if v["name"] == "demo-corpus")


def test_trainer_workers_per_queue(default: Manifests, render: Render, tmp_path: Path) -> None:
    workers = {labels(d)["lyceum.io/trainer-worker"]: d for d in default.component("Deployment", "trainer")}
    assert set(workers) == {"gpu", "cpu"}
    for queue, workload in workers.items():
        c = container_named(workload)
        env = {e["name"]: e for e in c["env"]}
        assert env["LYCEUM_TRAINER_QUEUES"]["value"] == queue
        assert env["LYCEUM_TRAINER_WORKER_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        gpus = c["resources"].get("limits", {}).get("nvidia.com/gpu")
        tolerations = pod_spec(workload).get("tolerations", [])
        if queue == "gpu":
            assert gpus == 1 and c["image"].endswith("-cuda")
            assert any(t["key"] == "nvidia.com/gpu" for t in tolerations)
        else:
            assert gpus is None and not c["image"].endswith("-cuda")
            assert "nvidia.com/gpu" not in str(c["resources"]) and not tolerations
    values = tmp_path / "workers.yaml"
    values.write_text("trainer:\n  workers:\n    - {name: big, queues: [gpu, cpu], replicas: 2, gpu: 4}\n")
    (big,) = render(values).component("Deployment", "trainer")
    assert name(big) == "lyceum-trainer-big" and big["spec"]["replicas"] == 2
    c = container_named(big)
    assert {e["name"]: e.get("value") for e in c["env"]}["LYCEUM_TRAINER_QUEUES"] == "gpu,cpu"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 4


def test_gpu_predictors_in_prod(prod: Manifests, default: Manifests) -> None:
    sts = prod.one("StatefulSet", "predictor")
    c = container_named(sts)
    assert sts["spec"]["replicas"] == 3
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["image"] == "registry.example.com/lyceum/predictor:0.1.0-cuda"
    assert prod.config_data(sts)["LYCEUM_PREDICTOR_DEVICE"] == "cuda"
    assert pod_spec(sts)["nodeSelector"] and pod_spec(sts)["affinity"]["podAntiAffinity"]
    cpu = container_named(default.one("StatefulSet", "predictor"))
    assert "nvidia.com/gpu" not in str(cpu["resources"]) and not cpu["image"].endswith("-cuda")
    assert default.config_data(default.one("StatefulSet", "predictor"))["LYCEUM_PREDICTOR_DEVICE"] == "cpu"


def test_prod_shape(prod: Manifests) -> None:
    """Prod: autoscaled gateway, external databases via an existing Secret, S3 registry, ServiceMonitors."""
    hpa = prod.one("HorizontalPodAutoscaler", "gateway")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == name(prod.one("Deployment", "gateway"))
    assert "replicas" not in prod.one("Deployment", "gateway")["spec"], "the HPA owns the replica count"
    assert not prod.kind("Secret"), "prod reads an existing Secret"
    assert not prod.component("StatefulSet", "postgresql") and not prod.component("Deployment", "redis")
    assert not prod.kind("PersistentVolumeClaim")
    gateway = container_named(prod.one("Deployment", "gateway"))
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in gateway["env"] if "valueFrom" in e}
    assert set(refs.values()) == {"lyceum-connections"}
    for workload in prod.workloads():
        if component(workload) in ("predictor", "sampler", "trainer"):
            data = prod.config_data(workload)
            registry = next(v for k, v in data.items() if k.endswith("_REGISTRY_URL"))
            assert registry == "s3://lyceum-prod-models/registry"
    assert len(prod.kind("ServiceMonitor")) == 4


def test_registry_volume_when_pvc(default: Manifests) -> None:
    pvc = default.one("PersistentVolumeClaim", "registry")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for workload in default.workloads():
        if component(workload) in ("predictor", "sampler", "trainer"):
            claims = [
                v["persistentVolumeClaim"]["claimName"]
                for v in pod_spec(workload)["volumes"]
                if "persistentVolumeClaim" in v
            ]
            assert claims == [name(pvc)], name(workload)
            assert (
                default.config_data(workload)[f"LYCEUM_{component(workload).upper()}_REGISTRY_URL"]
                == "/var/lib/lyceum/registry"
            )


def test_object_store_credentials(render: Render) -> None:
    m = render(
        sets=[
            "registry.type=objectStore",
            "registry.objectStore.url=s3://bucket/models",
            "registry.objectStore.endpointUrl=http://minio:9000",
            "registry.objectStore.credentialsSecret=s3-keys",
        ]
    )
    sts = m.one("StatefulSet", "predictor")
    assert {"secretRef": {"name": "s3-keys"}} in container_named(sts)["envFrom"]
    data = m.config_data(sts)
    assert data["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert data["LYCEUM_PREDICTOR_REGISTRY_URL"] == "s3://bucket/models"


def test_service_monitors(render: Render) -> None:
    m = render(sets=["serviceMonitor.enabled=true", "serviceMonitor.labels.release=prom"])
    monitors = m.kind("ServiceMonitor")
    assert {component(sm) for sm in monitors} == set(LYCEUM)
    metrics_ports = {"gateway": 8000, "predictor": 9101, "sampler": 9301, "trainer": 9201}
    for sm in monitors:
        assert sm["apiVersion"] == "monitoring.coreos.com/v1"
        assert labels(sm)["release"] == "prom"
        spec = sm["spec"]
        assert spec["namespaceSelector"] == {"matchNames": ["lyceum"]}
        services = [s for s in m.kind("Service") if selects(spec["selector"]["matchLabels"], labels(s))]
        assert len(services) == 1, f"{name(sm)} selects {[name(s) for s in services]}"
        (endpoint,) = spec["endpoints"]
        assert endpoint["path"] == "/metrics" and endpoint["interval"] == "30s"
        port = next(p for p in services[0]["spec"]["ports"] if p["name"] == endpoint["port"])
        workload = next(w for w in m.workloads() if component(w) == component(sm) and w["kind"] != "Job")
        container_ports = {p["name"]: p["containerPort"] for p in container_named(workload)["ports"]}
        assert container_ports[port["targetPort"]] == metrics_ports[component(sm)]
    assert not render().kind("ServiceMonitor"), "off by default"


def test_ingress(render: Render) -> None:
    m = render(sets=["gateway.ingress.enabled=true", "gateway.ingress.className=nginx"])
    ingress = m.one("Ingress", "gateway")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": name(m.one("Service", "gateway")), "port": {"name": "http"}}
    assert ingress["spec"]["ingressClassName"] == "nginx"
