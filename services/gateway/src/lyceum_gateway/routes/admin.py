"""Admin routes (`/v1/admin`): tenants with their quota overrides, and their API keys (create, list, revoke).

They need an admin key (`LYCEUM_GATEWAY_ADMIN_KEYS`); the auth middleware checks it. Plain `def` routes: the
repositories are synchronous (FastAPI's threadpool).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from lyceum_core.errors import NotFound
from lyceum_core.identity import TENANT_ID_PATTERN
from lyceum_gateway.quotas import check_overrides
from lyceum_gateway.routes import API_PREFIX
from lyceum_gateway.schemas.admin import (
    CreatedKeyOut,
    CreateKeyRequest,
    CreateTenantRequest,
    KeyList,
    KeyOut,
    QuotaOverrides,
    TenantList,
    TenantOut,
)
from lyceum_gateway.schemas.common import error_responses

PREFIX = f"{API_PREFIX}/admin"

router = APIRouter(prefix=PREFIX, tags=["admin"], responses=error_responses(401, 403, 422))


async def _tenants(request: Request) -> Any:
    return request.state.tenants


async def _keys(request: Request) -> Any:
    return request.state.api_keys


Tenants = Annotated[Any, Depends(_tenants)]
Keys = Annotated[Any, Depends(_keys)]
TenantIdPath = Annotated[str, Path(pattern=TENANT_ID_PATTERN, description="The tenant's id")]


@router.post(
    "/tenants", status_code=status.HTTP_201_CREATED, summary="Create a tenant", responses=error_responses(409)
)
def create_tenant(body: CreateTenantRequest, tenants: Tenants, response: Response) -> TenantOut:
    """A new tenant, with optional quota overrides (409 if it exists)."""
    record = tenants.create(body.tenant_id, quotas=check_overrides(body.quotas.to_dict()) or None)
    response.headers["Location"] = f"{PREFIX}/tenants/{record.tenant_id}"
    return TenantOut.from_record(record)


@router.get("/tenants", summary="List tenants")
def list_tenants(tenants: Tenants) -> TenantList:
    """Every tenant and its quota overrides."""
    return TenantList(tenants=[TenantOut.from_record(t) for t in tenants.list()])


@router.get("/tenants/{tenant_id}", summary="Get a tenant", responses=error_responses(404))
def get_tenant(tenant_id: TenantIdPath, tenants: Tenants) -> TenantOut:
    record = tenants.get(tenant_id)
    if record is None:
        raise NotFound(f"tenant {tenant_id!r} not found", field="tenant_id")
    return TenantOut.from_record(record)


@router.put("/tenants/{tenant_id}/quotas", summary="Set a tenant's quotas", responses=error_responses(404))
def set_quotas(
    tenant_id: TenantIdPath, body: QuotaOverrides, tenants: Tenants, request: Request
) -> TenantOut:
    """Replaces the tenant's quota overrides (other gateway replicas apply them within `quota_cache_s`)."""
    record = tenants.set_quotas(tenant_id, check_overrides(body.to_dict()))
    request.state.quotas.book.forget(tenant_id)
    return TenantOut.from_record(record)


@router.post(
    "/keys", status_code=status.HTTP_201_CREATED, summary="Create an API key", responses=error_responses(404)
)
def create_key(body: CreateKeyRequest, tenants: Tenants, keys: Keys, request: Request) -> CreatedKeyOut:
    """A new key for an existing tenant (404 otherwise). Its plaintext is in this response only."""
    if tenants.get(body.tenant) is None:
        raise NotFound(f"tenant {body.tenant!r} not found", field="tenant")
    record, plaintext = keys.create(body.tenant, subject=body.subject, name=body.name)
    request.state.auth.keys_seen()  # authentication is on from now (other replicas: within seconds)
    return CreatedKeyOut(**KeyOut.from_record(record).model_dump(), key=plaintext)


@router.get("/keys", summary="List API keys")
def list_keys(
    keys: Keys,
    tenant: Annotated[str | None, Query(pattern=TENANT_ID_PATTERN, description="Only this tenant's")] = None,
) -> KeyList:
    """Keys (never their plaintext), with their creation, last use and revocation times."""
    return KeyList(keys=[KeyOut.from_record(k) for k in keys.list(tenant)])


@router.post("/keys/{key_id}/revoke", summary="Revoke an API key", responses=error_responses(404))
def revoke_key(
    key_id: Annotated[str, Path(min_length=1, max_length=64, description="The key's id")], keys: Keys
) -> KeyOut:
    """The key stops working at once on this gateway replica, and within `LYCEUM_GATEWAY_AUTH_CACHE_S` on the
    others. Revoking it again changes nothing."""
    return KeyOut.from_record(keys.revoke(key_id))
