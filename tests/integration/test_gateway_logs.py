"""What the logs may not hold: no API key and no prompt text in any record at INFO, from the gateway or from
the sampler and predictor behind it (both in-process here, so one capture on the root logger sees all three),
over calls that carry a key and a distinctive prompt: native sessions and generation (JSON and streamed), the
token-wheel mount, learners on `/v1` and `/dfm-server`, and the refusals of a bad key, of bad input and of
the rate quota."""

from __future__ import annotations

import logging

import pytest
from fixtures.gateway import MakeGateway
from fixtures.sampler import LYCEUM_MODEL, RunningSampler

pytestmark = pytest.mark.integration

KEY = "k-logcheck-5e0c1f2a9b"
WRONG_KEY = "k-logcheck-wrong-77d3"
PROMPT = "Quokkas juggle marmalade"
SECRETS = [KEY, WRONG_KEY, PROMPT, "Quokka", "marmalade"]


def logged(records: list[logging.LogRecord]) -> str:
    """Every record as a handler would write it: the message, its arguments and any traceback."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(f"{formatter.format(record)} {record.args!r}" for record in records)


def test_no_keys_or_prompts_in_the_logs_at_info(
    make_gateway: MakeGateway,
    predictor_address: str,
    sampler: RunningSampler,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)  # the root logger: the gateway's, the sampler's and the predictor's
    g = make_gateway([predictor_address], sampler_addresses=[sampler.address], api_keys=[f"acme:{KEY}"])
    bearer, header = {"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}

    # native sessions and generation
    session = g.post("/v1/sessions", json={"model": LYCEUM_MODEL, "prompt": PROMPT}, headers=bearer)
    assert session.status_code == 201, session.text
    sid = session.json()["session_id"]
    assert g.put(f"/v1/sessions/{sid}/prompt", json={"prompt": PROMPT}, headers=header).status_code == 200
    assert g.get(f"/v1/sessions/{sid}/distribution", headers=bearer).status_code == 200
    assert g.post(f"/v1/sessions/{sid}/tokens", json={"token_id": 3}, headers=bearer).status_code == 200
    refused = g.post(f"/v1/sessions/{sid}/tokens", json={"token_text": PROMPT}, headers=bearer)
    assert refused.status_code == 400  # its message quotes the text back to the caller, not to the logs
    generate = {"model": LYCEUM_MODEL, "prompt": PROMPT, "max_new_tokens": 3, "stop": [PROMPT]}
    assert g.post("/v1/generate", json=generate, headers=bearer).status_code == 200
    sse = {**bearer, "Accept": "text/event-stream"}
    with g.stream("POST", "/v1/generate", json=generate, headers=sse) as streamed:
        assert streamed.status_code == 200 and "event: end" in streamed.read().decode()
    unknown_model = g.post("/v1/generate", json={**generate, "model": PROMPT}, headers=bearer)
    assert unknown_model.status_code in (400, 404)

    # the token-wheel mount
    tw = "/token-wheel/api/sessions"
    created = g.post(tw, json={"model_name": LYCEUM_MODEL}, headers=header)
    assert created.status_code == 201, created.text
    wid = created.json()["session_id"]
    assert g.post(f"{tw}/{wid}/set-prompt", json={"prompt": PROMPT}, headers=header).status_code == 200
    assert g.get(f"{tw}/{wid}/next-token-probs", headers=header).status_code == 200
    assert g.post(f"{tw}/{wid}/append-token", json={"token_id": 3}, headers=header).status_code == 200
    assert g.post(f"{tw}/{wid}/append-token", json={"token_text": PROMPT}, headers=header).status_code == 400
    assert g.post(f"{tw}/{wid}/undo", headers=header).status_code == 200
    assert g.get(f"{tw}/{wid}", headers=header).status_code == 200
    assert g.post(tw, json={"model_name": PROMPT}, headers=header).status_code == 400
    assert g.delete(f"{tw}/{wid}", headers=header).status_code == 200

    # learners, on the predictor
    learner = {"learner_id": "ada", "history": [{"task": "t01", "outcome": 1.0}]}
    assert g.post("/v1/learners", json=learner, headers=bearer).status_code == 201
    predicted = g.post("/dfm-server/predict", json={"learner_id": "ada", "tasks": ["t02"]}, headers=header)
    assert predicted.status_code == 200

    # refusals: a wrong key, a key in the wrong place
    assert g.get("/v1/sessions/x", headers={"Authorization": f"Bearer {WRONG_KEY}"}).status_code == 401
    assert g.get("/token-wheel/api/models", headers={"X-API-Key": WRONG_KEY}).status_code == 401

    # the rate quota's refusal (the one line the gateway logs at INFO per request)
    limited = make_gateway(
        [predictor_address],
        sampler_addresses=[sampler.address],
        api_keys=[f"acme:{KEY}"],
        quota_rps=0.001,
        quota_burst=1,
    )
    assert limited.post("/v1/generate", json=generate, headers=bearer).status_code == 200
    assert limited.post("/v1/generate", json=generate, headers=bearer).status_code == 429

    records = caplog.get_records("setup") + caplog.get_records("call")
    names = {record.name.split(".")[0] for record in records}
    assert {"lyceum_gateway", "lyceum_sampler"} <= names  # the capture sees them
    text = logged(records)
    for secret in SECRETS:
        assert secret.lower() not in text.lower(), f"{secret!r} was logged"
