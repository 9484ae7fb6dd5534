"""The gateway's settings: env prefix, defaults and the comma-separated list form of env vars."""

from __future__ import annotations

import pytest

from lyceum_gateway.config import Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PREDICTOR_ADDRESSES", "API_KEYS", "HOST", "PORT"):
        monkeypatch.delenv(f"LYCEUM_GATEWAY_{name}", raising=False)

    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.predictor_addresses == ["127.0.0.1:50051"]
    assert settings.api_keys == []
    assert settings.request_timeout_s == 30
    assert settings.max_tasks_per_request == 1024
    assert settings.max_events_per_request == 4096
    assert settings.max_forecast_sequences == 4096
    assert settings.max_forecast_length == 512
    assert settings.max_learner_id_len == 128


def test_lists_accept_comma_separated_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LYCEUM_GATEWAY_PREDICTOR_ADDRESSES", "predictor-0:50051, predictor-1:50051")
    monkeypatch.setenv("LYCEUM_GATEWAY_API_KEYS", "key-a,key-b,")
    monkeypatch.setenv("LYCEUM_GATEWAY_PORT", "9000")

    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert settings.predictor_addresses == ["predictor-0:50051", "predictor-1:50051"]
    assert settings.api_keys == ["key-a", "key-b"]
    assert settings.port == 9000


def test_lists_accept_json_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LYCEUM_GATEWAY_PREDICTOR_ADDRESSES", '["a:1", "b:2"]')

    assert Settings(_env_file=None).predictor_addresses == ["a:1", "b:2"]  # type: ignore[call-arg]


def test_at_least_one_predictor_is_required() -> None:
    with pytest.raises(ValueError, match="predictor_addresses"):
        Settings(_env_file=None, predictor_addresses="")  # type: ignore[call-arg]
