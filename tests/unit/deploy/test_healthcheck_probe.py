"""deploy/docker/healthcheck.py, the images' health probe: it probes what each service's own settings say."""

from __future__ import annotations

import pytest
from fixtures.scripts import load_script


@pytest.fixture
def healthcheck(monkeypatch, tmp_path):
    import os

    for key in list(os.environ):
        if key.startswith("LYCEUM_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    return load_script("healthcheck", "deploy/docker/healthcheck.py")


def test_gateway_probe_is_healthz_on_its_port(healthcheck, monkeypatch):
    monkeypatch.setenv("LYCEUM_GATEWAY_HOST", "0.0.0.0")
    monkeypatch.setenv("LYCEUM_GATEWAY_PORT", "8123")
    assert healthcheck.probe_for("gateway") == healthcheck.Probe("http", "http://127.0.0.1:8123/healthz")


def test_grpc_probes_follow_host_and_port(healthcheck, monkeypatch):
    monkeypatch.setenv("LYCEUM_PREDICTOR_HOST", "0.0.0.0")
    monkeypatch.setenv("LYCEUM_PREDICTOR_PORT", "50999")
    assert healthcheck.probe_for("predictor") == healthcheck.Probe("grpc", "127.0.0.1:50999")
    monkeypatch.setenv("LYCEUM_SAMPLER_HOST", "10.1.2.3")
    assert healthcheck.probe_for("sampler") == healthcheck.Probe("grpc", "10.1.2.3:50061")


def test_trainer_probe_is_its_metrics_endpoint(healthcheck, monkeypatch):
    assert healthcheck.probe_for("trainer") == healthcheck.Probe("http", "http://127.0.0.1:9201/metrics")
    monkeypatch.setenv("LYCEUM_TRAINER_METRICS_PORT", "0")
    assert healthcheck.probe_for("trainer") is None
    assert healthcheck.main(["trainer"]) == 0  # metrics off: nothing to probe is not a failure


def test_unknown_service_is_refused(healthcheck):
    with pytest.raises(ValueError, match="unknown service"):
        healthcheck.probe_for("database")
    with pytest.raises(SystemExit):
        healthcheck.main(["database"])
