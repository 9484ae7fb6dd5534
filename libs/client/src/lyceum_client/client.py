"""`LyceumClient`: a synchronous httpx client for the gateway's `/v1` jobs, datasets and models API and its
admin routes (tenants and keys). Responses are the gateway's JSON documents as dicts; every failure is a
`LyceumClientError` carrying the gateway's error."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
# An event stream sends a keep-alive comment at least every 15 s; a longer silence means it is gone.
STREAM_READ_TIMEOUT_S = 60.0
# The gateway answers an upload after checking, cleaning and storing every row: allow it time.
UPLOAD_READ_TIMEOUT_S = 600.0


class LyceumClientError(Exception):
    """A failed call: the gateway's error `code`, `message` and offending `field`, and the HTTP `status`
    (None when the gateway could not be reached)."""

    def __init__(
        self, message: str, *, code: str = "UNKNOWN", field: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field
        self.status = status

    def __str__(self) -> str:
        where = f" (field: {self.field})" if self.field else ""
        return f"{self.code}: {self.message}{where}"


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """One Server-Sent Event: its name, its JSON data decoded, and its id (a step, for `metrics`)."""

    event: str
    data: Any
    id: str | None = None


class LyceumClient:
    """The gateway's jobs and models API. An `api_key` is sent as `Authorization: Bearer <key>`; the admin
    calls (tenants, keys) send the `admin_key` instead.

    Use it as a context manager (or call `close()`) to release its connections.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        admin_key: str | None = None,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._admin_headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- jobs -----------------------------------------------------------------------------------------------

    def submit_job(
        self,
        kind: str,
        config: dict[str, Any],
        *,
        queue: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Submits a job; with an `idempotency_key`, a repeated call returns the job the first one made."""
        body: dict[str, Any] = {"kind": kind, "config": config}
        if queue is not None:
            body["queue"] = queue
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        return self._call("POST", "/v1/jobs", json=body)

    def list_jobs(
        self,
        *,
        state: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> dict[str, Any]:
        """One page, newest first: `{"jobs": [...], "next_cursor": ...}`; pass `next_cursor` as `before`."""
        params = _params(state=state, kind=kind, limit=limit, before=before)
        return self._call("GET", "/v1/jobs", params=params)

    def iter_jobs(
        self, *, state: str | None = None, kind: str | None = None, page_size: int = 100
    ) -> Iterator[dict[str, Any]]:
        """Every matching job, newest first, fetching pages as needed."""
        before = None
        while True:
            page = self.list_jobs(state=state, kind=kind, limit=page_size, before=before)
            yield from page["jobs"]
            before = page["next_cursor"]
            if before is None:
                return

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{_seg(job_id)}")

    def job_metrics(self, job_id: str, after_step: int | None = None) -> list[dict[str, Any]]:
        """The job's metrics history: `[{"step", "values", "time"}, ...]`."""
        body = self._call("GET", f"/v1/jobs/{_seg(job_id)}/metrics", params=_params(after_step=after_step))
        return body["points"]

    def follow_job(self, job_id: str, after_step: int | None = None) -> Iterator[ServerEvent]:
        """The job's event stream: `progress`, `metrics` and a final `end` (or `error`) event. It ends with
        the job, or raises `LyceumClientError` if the connection breaks; resume with the last metrics step."""
        path = f"/v1/jobs/{_seg(job_id)}/events"
        timeout = httpx.Timeout(self._http.timeout.connect, read=STREAM_READ_TIMEOUT_S)
        try:
            with self._http.stream(
                "GET",
                path,
                params=_params(after_step=after_step),
                headers={"Accept": "text/event-stream"},
                timeout=timeout,
            ) as response:
                if response.is_error:
                    response.read()
                    raise _error(response)
                yield from parse_events(response.iter_lines())
        except httpx.HTTPError as exc:
            raise _unreachable(self.base_url, exc) from exc

    def job_artifact(self, job_id: str, name: str) -> bytes:
        """The bytes of one file the job stored as an artifact (its `result.artifacts.files` names them)."""
        try:
            response = self._http.get(f"/v1/jobs/{_seg(job_id)}/artifacts/{_seg(name)}")
        except httpx.HTTPError as exc:
            raise _unreachable(self.base_url, exc) from exc
        if response.is_error:
            raise _error(response)
        return response.content

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Cancels a queued job at once, asks a running one to stop (`cancelling`)."""
        return self._call("POST", f"/v1/jobs/{_seg(job_id)}/cancel")

    def resume_job(self, job_id: str) -> dict[str, Any]:
        """Queues a cancelled or failed job again; it continues from its last checkpoint."""
        return self._call("POST", f"/v1/jobs/{_seg(job_id)}/resume")

    # --- datasets -------------------------------------------------------------------------------------------

    def upload_dataset(
        self,
        path: str | os.PathLike[str],
        format: str,
        *,
        name: str | None = None,
        dedupe: bool = False,
        scrub_pii: bool = False,
        min_length: int | None = None,
        max_length: int | None = None,
        tokenizer: str | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Uploads the file at `path` as a dataset of `format`, streamed from disk; `on_progress(sent)` is
        called with the bytes of the file sent so far. Returns the dataset with its statistics."""
        fields = _params(
            format=format,
            name=name,
            dedupe="true" if dedupe else None,
            scrub_pii="true" if scrub_pii else None,
            min_length=min_length,
            max_length=max_length,
            tokenizer=tokenizer,
        )
        timeout = httpx.Timeout(self._http.timeout.connect, read=UPLOAD_READ_TIMEOUT_S)
        with open(path, "rb") as f:
            data: BinaryIO = f if on_progress is None else _ProgressReader(f, on_progress)  # type: ignore[assignment]
            files = {"file": (Path(path).name, data)}
            return self._call("POST", "/v1/datasets", data=fields, files=files, timeout=timeout)

    def list_datasets(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The tenant's datasets, newest first."""
        return self._call("GET", "/v1/datasets", params=_params(limit=limit))["datasets"]

    def get_dataset(self, dataset_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/datasets/{_seg(dataset_id)}")

    def delete_dataset(self, dataset_id: str) -> None:
        """Deletes the dataset and its stored data."""
        self._call("DELETE", f"/v1/datasets/{_seg(dataset_id)}")

    # --- models ---------------------------------------------------------------------------------------------

    def list_models(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every model version (of one model, with `name`), each with its aliases."""
        return self._call("GET", "/v1/models", params=_params(name=name))["models"]

    def get_model(self, name: str) -> dict[str, Any]:
        """`{"name", "versions", "aliases"}`."""
        return self._call("GET", f"/v1/models/{_seg(name)}")

    def get_model_version(self, name: str, version: int | str) -> dict[str, Any]:
        """One version, by number or by alias."""
        return self._call("GET", f"/v1/models/{_seg(name)}/versions/{_seg(str(version))}")

    def set_alias(self, name: str, alias: str, version: int) -> dict[str, Any]:
        """Points `alias` at `version`: `{"name", "alias", "version", "previous_version", "model"}`."""
        return self._call("PUT", f"/v1/models/{_seg(name)}/aliases/{_seg(alias)}", json={"version": version})

    def rollback_alias(self, name: str, alias: str) -> dict[str, Any]:
        """Moves `alias` back to the version it pointed at before its last move."""
        return self._call("POST", f"/v1/models/{_seg(name)}/aliases/{_seg(alias)}/rollback")

    # --- adapters and feedback ---------------------------------------------------------------------------

    def create_adapter(self, name: str, base: str, **options: Any) -> dict[str, Any]:
        """A new (empty: B = 0) version of the tenant's adapter `name` over the language model `base`."""
        return self._call("POST", "/v1/adapters", json={"name": name, "base": base, **options})

    def get_adapter(self, name: str) -> dict[str, Any]:
        """The adapter's versions and aliases."""
        return self._call("GET", f"/v1/adapters/{_seg(name)}")

    def chat(self, model: str, messages: list[dict[str, str]], **params: Any) -> dict[str, Any]:
        """One chat completion through the OpenAI-compatible API (`/openai/v1/chat/completions`)."""
        return self._call(
            "POST", "/openai/v1/chat/completions", json={"model": model, "messages": messages, **params}
        )

    def generate(
        self,
        model: str,
        prompt: str,
        *,
        gating: dict[str, Any] | None = None,
        return_trajectory: bool = False,
        **params: Any,
    ) -> dict[str, Any]:
        """A continuation of `prompt` (`POST /v1/generate`); `params` are that route's other fields. With
        `gating` (`{"mode": "fixed", "modulation": 0.2}`, `{"mode": "learned", "policy": "gating@latest"}`,
        ...) each step's modulation sets the sampling; `return_trajectory` answers it per token."""
        body: dict[str, Any] = {"model": model, "prompt": prompt, **params}
        if gating is not None:
            body["gating"] = gating
        if return_trajectory:
            body["return_trajectory"] = True
        return self._call("POST", "/v1/generate", json=body)

    def give_feedback(
        self, completion_id: str, feedback: str, *, adapter: str | None = None, training: dict | None = None
    ) -> dict[str, Any]:
        """Feedback in words on a recorded completion; it is distilled into the adapter (202: queued)."""
        body: dict[str, Any] = {"completion_id": completion_id, "feedback": feedback}
        if adapter is not None:
            body["adapter"] = adapter
        if training is not None:
            body["training"] = training
        return self._call("POST", "/v1/feedback", json=body)

    def get_feedback(self, feedback_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/feedback/{_seg(feedback_id)}")

    def distill(self, adapter: str, training: dict | None = None, gate: dict | None = None) -> dict[str, Any]:
        """Starts the adapter's distillation of its pending feedback now; the job."""
        body = {k: v for k, v in (("training", training), ("gate", gate)) if v is not None}
        return self._call("POST", f"/v1/adapters/{_seg(adapter)}/distill", json=body)

    def preferences(self) -> list[dict[str, Any]]:
        """The preferences the `eval` job verifies, with their feedback strings and probe prompts."""
        return self._call("GET", "/v1/preferences")["preferences"]

    # --- admin: tenants and keys ----------------------------------------------------------------------------

    def create_tenant(self, tenant_id: str, quotas: dict[str, float] | None = None) -> dict[str, Any]:
        """A new tenant with optional quota overrides: `{"tenant_id", "created_at", "quotas"}`."""
        return self._admin("POST", "/v1/admin/tenants", json={"tenant_id": tenant_id, "quotas": quotas or {}})

    def list_tenants(self) -> list[dict[str, Any]]:
        return self._admin("GET", "/v1/admin/tenants")["tenants"]

    def set_quotas(self, tenant_id: str, quotas: dict[str, float]) -> dict[str, Any]:
        """Replaces the tenant's quota overrides."""
        return self._admin("PUT", f"/v1/admin/tenants/{_seg(tenant_id)}/quotas", json=quotas)

    def create_key(
        self, tenant: str, *, subject: str | None = None, name: str | None = None
    ) -> dict[str, Any]:
        """A new key of `tenant`; the plaintext is in `key`, in this response only."""
        body = {"tenant": tenant, **_params(subject=subject, name=name)}
        return self._admin("POST", "/v1/admin/keys", json=body)

    def list_keys(self, tenant: str | None = None) -> list[dict[str, Any]]:
        return self._admin("GET", "/v1/admin/keys", params=_params(tenant=tenant))["keys"]

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        """The key stops working at once."""
        return self._admin("POST", f"/v1/admin/keys/{_seg(key_id)}/revoke")

    # --- plumbing -------------------------------------------------------------------------------------------

    def _admin(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._call(method, path, headers=self._admin_headers, **kwargs)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise _unreachable(self.base_url, exc) from exc
        if response.is_error:
            raise _error(response)
        return response.json() if response.content else None


class _ProgressReader:
    """A binary file that reports its position after every read (a multipart body reads its file in chunks),
    keeping `fileno` so that the body's length is known up front."""

    def __init__(self, file: BinaryIO, report: Callable[[int], None]) -> None:
        self._file = file
        self._report = report

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self._report(self._file.tell())
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def fileno(self) -> int:
        return self._file.fileno()


def parse_events(lines: Iterable[str]) -> Iterator[ServerEvent]:
    """Server-Sent Events from a stream's lines (WHATWG framing; `data` is JSON)."""
    name, data, event_id = "message", [], None
    for line in lines:
        if not line:
            if data:
                yield ServerEvent(name, json.loads("\n".join(data)), event_id)
            name, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue  # a comment (keep-alive)
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            event_id = value


def _error(response: httpx.Response) -> LyceumClientError:
    """The gateway's `{"error": {"code", "message", "field"}}`, or what can be said without one."""
    try:
        error = response.json()["error"]
        return LyceumClientError(
            error["message"], code=error["code"], field=error.get("field"), status=response.status_code
        )
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:200] or response.reason_phrase
        return LyceumClientError(text, code=f"HTTP_{response.status_code}", status=response.status_code)


def _unreachable(base_url: str, exc: httpx.HTTPError) -> LyceumClientError:
    return LyceumClientError(f"cannot reach the gateway at {base_url}: {exc}", code="UNAVAILABLE")


def _params(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _seg(value: str) -> str:
    """A path segment, escaped (ids and names never contain `/`, but user input might)."""
    return quote(value, safe="")
