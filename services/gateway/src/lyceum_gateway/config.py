"""The gateway's settings: one `Settings` class, env prefix `LYCEUM_GATEWAY_`, built once in `__main__`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from lyceum_core.errors import InvalidArgument
from lyceum_core.identity import DEFAULT_TENANT, check_tenant_id
from lyceum_core.settings import (
    DEFAULT_BROKER_URL,
    DEFAULT_DATABASE_URL,
    DEFAULT_REGISTRY_URL,
    CommaList,
    ServiceSettings,
    service_config,
)
from lyceum_fleet.membership import source_for
from lyceum_gateway.schemas.claas import DEFAULT_BASE_MODEL as CLAAS_BASE_MODEL
from lyceum_gateway.schemas.claas import DEFAULT_DISTILL_TIMEOUT_S as CLAAS_DISTILL_TIMEOUT_S
from lyceum_gateway.schemas.claas import DEFAULT_LOCK_TIMEOUT_S as CLAAS_LOCK_TIMEOUT_S
from lyceum_jobs.configs import MAX_FEEDBACK_PER_JOB
from lyceum_jobs.feedback import DEFAULT_BATCH_SIZE, DEFAULT_MAX_ITEMS, DEFAULT_MAX_WAIT_S, FeedbackPolicy

# The web UI's build (`make web`: web/dist in the repository this package is installed from, editable).
DEFAULT_UI_DIR = Path(__file__).resolve().parents[4] / "web" / "dist"


class Settings(ServiceSettings):
    """Everything the gateway reads from its environment."""

    model_config = service_config("gateway")

    host: str = Field("127.0.0.1", description="Interface to listen on")
    port: int = Field(8000, ge=0, le=65535, description="HTTP port")
    predictor_addresses: CommaList = Field(
        default_factory=lambda: ["127.0.0.1:50051"],
        min_length=1,
        description="The predictor replicas: host:port list (comma-separated; `{0..2}` expands to 0,1,2, "
        "e.g. a StatefulSet's pod names), or `dns:///name:port`, or `file:///path` (one per line, re-read)",
    )
    sampler_addresses: CommaList = Field(
        default_factory=lambda: ["127.0.0.1:50061"],
        min_length=1,
        description="The sampler replicas, in the same forms; with more than one they must share one "
        "session store",
    )
    membership_refresh_s: float = Field(
        5.0, gt=0, description="How often a dns:/// or file:// membership is re-resolved"
    )
    health_probe_interval_s: float = Field(
        1.0, gt=0, description="How often each replica must answer a health Check (a hung one does not)"
    )
    health_probe_misses: int = Field(
        3, ge=1, description="Unanswered health Checks in a row before a replica counts as down"
    )
    health_timeout_s: float = Field(2.0, gt=0, description="Deadline of one health Check")
    overflow_factor: float = Field(
        0.0,
        ge=0,
        description="Bounded-load routing: a replica takes at most this times the mean in-flight calls "
        "before its keys overflow to their next replica (0 = off; 1.25-2 are usual)",
    )
    overflow_min_inflight: int = Field(
        8, ge=1, description="A replica is never overloaded below this many in-flight calls"
    )
    api_keys: CommaList = Field(
        default_factory=list,
        description="Bootstrap API keys (comma-separated): `tenant:key` creates the tenant and its key at "
        "startup, a plain `key` belongs to the default tenant. With no keys here and none in the database, "
        "authentication is off and every caller is the default tenant",
    )
    admin_keys: CommaList = Field(
        default_factory=list,
        description="Keys accepted by the admin routes (`/v1/admin/...`: tenants and keys); empty: the admin "
        "routes answer only while authentication is off entirely (no keys anywhere)",
    )
    auth_cache_s: float = Field(
        5.0,
        ge=0,
        description="How long a valid API key is trusted from memory before it is looked up again: a key "
        "revoked through another replica stops working here within this time (0: a lookup per request)",
    )
    access_log: bool = Field(
        False,
        description="Log one line per request (client, method, path, status; with its request id) at INFO. "
        "Off by default (~0.13 ms of gateway CPU per request): the request metrics count every request, "
        "and errors are logged anyway",
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="Deadline of each call to a predictor or sampler (generation excepted)"
    )
    generate_timeout_s: float = Field(300.0, gt=0, description="Deadline of one whole generation")
    record_completions: bool = Field(
        True,
        description="Record the completions of the OpenAI-compatible API durably (prompt and sampled token "
        "ids, their log-probs, the parameters) and answer their ids; a request's `store` overrides it",
    )
    registry_url: str = Field(
        DEFAULT_REGISTRY_URL,
        description="The artifact store root (path or fsspec URL) the trainers and samplers share: uploaded "
        "datasets and imported adapters are written there, exported adapters read from there",
    )
    migrate_on_start: bool = Field(
        True,
        description="Bring the database schema up to date before serving (as predictors and trainers do)",
    )
    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="The job table and model registry: sqlite:///path or postgresql://...",
    )
    broker_url: str = Field(
        DEFAULT_BROKER_URL,
        description="Where submitted jobs go: redis://host:port/db, or filesystem:///path when embedded",
    )
    events_poll_s: float = Field(
        0.5, gt=0, le=10, description="How often a job's event stream looks for new progress and metrics"
    )

    # Feedback: an adapter's pending items become one `sdpo` job at a time (trainers' settings should agree).
    feedback_batch_size: int = Field(
        DEFAULT_BATCH_SIZE,
        ge=1,
        description="Pending feedback items of an adapter that start its job at once",
    )
    feedback_max_wait_s: float = Field(
        DEFAULT_MAX_WAIT_S,
        ge=0,
        description="Fewer items start a job once the oldest waited this long (a trainer's reconciler pass "
        "notices, so add up to its interval)",
    )
    feedback_max_items: int = Field(
        DEFAULT_MAX_ITEMS,
        ge=1,
        le=MAX_FEEDBACK_PER_JOB,
        description="Feedback items one job trains on at most",
    )

    ui_dir: Path = Field(
        DEFAULT_UI_DIR,
        description="The web UI's built files (index.html and assets/), served at /ui; when the folder is "
        "missing, /ui answers a page saying how to build it",
    )

    # The CLaaS compatibility mount (/claas)
    claas_base_model: str = Field(
        CLAAS_BASE_MODEL, min_length=3, description="The base of a LoRA `POST /claas/v1/lora/init` makes"
    )
    claas_lock_timeout_s: float = Field(
        CLAAS_LOCK_TIMEOUT_S, gt=0, description="Feedback waits this long for the LoRA's running job (409)"
    )
    claas_distill_timeout_s: float = Field(
        CLAAS_DISTILL_TIMEOUT_S, gt=0, description="Feedback waits this long for its distillation (504)"
    )

    @field_validator("predictor_addresses", "sampler_addresses")
    @classmethod
    def _membership(cls, addresses: list[str]) -> list[str]:
        source_for(addresses)  # raises ValueError with the reason
        return addresses

    @field_validator("api_keys")
    @classmethod
    def _api_keys(cls, entries: list[str]) -> list[str]:
        parse_api_keys(entries)  # raises ValueError naming the bad entry
        return entries

    @field_validator("token_wheel_model_aliases")
    @classmethod
    def _aliases(cls, entries: list[str]) -> list[str]:
        parse_aliases(entries)
        return entries

    @field_validator("anonymous_tenant_token_wheel")
    @classmethod
    def _anonymous_tenant(cls, tenant: str | None) -> str | None:
        if tenant:
            _tenant_id(tenant, "anonymous_tenant_token_wheel")
        return tenant or None

    def feedback_policy(self) -> FeedbackPolicy:
        """When pending feedback becomes a distillation job."""
        return FeedbackPolicy(self.feedback_batch_size, self.feedback_max_wait_s, self.feedback_max_items)

    def static_keys(self) -> list[tuple[str, str]]:
        """The bootstrap keys as (tenant, key) pairs."""
        return parse_api_keys(self.api_keys)

    def model_aliases(self) -> dict[str, str]:
        """The token-wheel mount's model-name aliases (`gpt2` -> `lm-demo@production`)."""
        return parse_aliases(self.token_wheel_model_aliases)

    # Request bodies.
    max_body_bytes: int = Field(
        1 << 20, ge=1024, description="Largest request body accepted on any route (413 above it)"
    )
    dataset_max_bytes: int = Field(
        256 << 20,
        ge=1024,
        description="Largest dataset file accepted by `POST /v1/datasets` (413 above it); that route's only "
        "body limit, in place of max_body_bytes",
    )
    adapter_max_bytes: int = Field(
        1 << 30,
        ge=1024,
        description="Largest adapter archive accepted by `POST /v1/adapters:import` (413 above it)",
    )

    # Request size caps: the gateway refuses larger requests before they reach a predictor.
    max_tasks_per_request: int = Field(1024, ge=1)
    max_events_per_request: int = Field(4096, ge=1)
    max_forecast_sequences: int = Field(4096, ge=1, description="the predictors bound a forecast by memory")
    max_forecast_length: int = Field(512, ge=1)
    max_learner_id_len: int = Field(128, ge=1)
    max_batch_items: int = Field(256, ge=1, description="Items of one batch prediction")

    # The token-wheel compatibility mount.
    token_wheel_default_model: str | None = Field(
        None,
        description="The model of a `/token-wheel` session created without `model_name`; unset: the first "
        "model the sampler lists",
    )
    token_wheel_model_aliases: CommaList = Field(
        default_factory=list,
        description="Model names the `/token-wheel` mount translates (comma-separated `name=model` entries, "
        "e.g. `gpt2=lm-demo@production`: the original frontend always asks for gpt2)",
    )
    anonymous_tenant_token_wheel: str | None = Field(
        None,
        description="Opens the `/token-wheel` mount to callers without a key, as this tenant (created at "
        "startup; give it its own quotas), e.g. a classroom deployment. Unset: a key is needed when "
        "authentication is on",
    )

    # CORS, per mount: origins allowed to call from a browser (`*`: any; empty: none). Never with credentials.
    cors_origins: CommaList = Field(
        default_factory=list, description="Browser origins allowed on the native API (`/v1`); empty: closed"
    )
    dfm_server_cors_origins: CommaList = Field(
        default_factory=list, description="Browser origins allowed on `/dfm-server`; empty: closed"
    )
    token_wheel_cors_origins: CommaList = Field(
        default_factory=lambda: ["*"],
        description="Browser origins allowed on `/token-wheel` (any, by default, as the original backend)",
    )

    # Quotas: defaults for every tenant; a tenant's `quotas` (admin routes) override them. 0 = no limit.
    quota_rps: float = Field(0.0, ge=0, description="Requests per second per tenant (token bucket); 0: off")
    quota_burst: int = Field(
        0, ge=0, description="The token bucket's size (requests at once); 0: twice quota_rps, at least 1"
    )
    quota_max_learners: int = Field(0, ge=0, description="Learners per tenant; 0: no limit")
    quota_max_sessions: int = Field(
        10_000, ge=0, description="Live token-wheel sessions per tenant (the sampler counts); 0: no limit"
    )
    quota_max_jobs: int = Field(100, ge=0, description="Queued + running jobs per tenant; 0: no limit")
    quota_redis_url: str | None = Field(
        None,
        description="Redis shared by every gateway replica for the rps token buckets (redis://host:port/db); "
        "unset: each replica keeps its own buckets in memory",
    )
    quota_cache_s: float = Field(
        5.0, ge=0, description="How long a tenant's quota overrides are cached before being read again"
    )


def _tenant_id(tenant: str, field: str) -> str:
    try:
        return check_tenant_id(tenant, field=field)
    except InvalidArgument as err:
        raise ValueError(err.message) from None


def parse_api_keys(entries: list[str]) -> list[tuple[str, str]]:
    """`["acme:key-a", "key-b"]` -> `[("acme", "key-a"), ("default", "key-b")]`."""
    pairs = []
    for entry in entries:
        tenant, sep, key = entry.partition(":")
        if not sep:
            tenant, key = DEFAULT_TENANT, entry
        else:
            _tenant_id(tenant, "api_keys")
        if not key:
            raise ValueError(f"api_keys: the entry for tenant {tenant!r} has no key")
        pairs.append((tenant, key))
    return pairs


def parse_aliases(entries: list[str]) -> dict[str, str]:
    """`["gpt2=lm-demo@production"]` -> `{"gpt2": "lm-demo@production"}`."""
    aliases = {}
    for entry in entries:
        name, sep, target = (part.strip() for part in entry.partition("="))
        if not sep or not name or not target:
            raise ValueError(f"token_wheel_model_aliases: {entry!r} is not name=model")
        aliases[name] = target
    return aliases
