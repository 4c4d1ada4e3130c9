"""Tenants (system administrators), users, roles, API keys, tenant settings, audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Response

from server.api.deps import Caller, Ctx
from server.api.schema import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    AuditOut,
    RoleCreate,
    RoleOut,
    RoleUpdate,
    TenantCreate,
    TenantOut,
    TenantSettings,
    TenantUpdate,
    UserCreate,
    UserOut,
    UserUpdate,
)
from server.domain.permissions import Permission
from server.storage.repositories.credentials import ApiKey
from server.storage.repositories.tenants import Tenant
from server.storage.repositories.users import Role, User

router = APIRouter(tags=["administration"])


def _tenant(t: Tenant) -> TenantOut:
    return TenantOut(
        id=t.id, name=t.name, display_name=t.display_name, is_active=t.is_active, settings=t.settings,
        created_at=t.created_at,
    )  # fmt: skip


def _user(u: User) -> UserOut:
    return UserOut(
        id=u.id, username=u.username, display_name=u.display_name, email=u.email, is_active=u.is_active,
        roles=u.roles, permissions=sorted(p.value for p in u.permissions), last_login_at=u.last_login_at,
        created_at=u.created_at,
    )  # fmt: skip


def _role(r: Role) -> RoleOut:
    return RoleOut(name=r.name, description=r.description, permissions=sorted(r.permissions), builtin=r.builtin)


def _key(k: ApiKey) -> dict[str, Any]:
    return {
        "id": k.id, "name": k.name, "prefix": k.prefix, "roles": k.roles, "created_by": k.created_by,
        "expires_at": k.expires_at, "last_used_at": k.last_used_at, "revoked": k.revoked, "created_at": k.created_at,
    }  # fmt: skip


# -- tenants --------------------------------------------------------------------------------
@router.get("/tenants", response_model=list[TenantOut])
async def list_tenants(who: Caller, ctx: Ctx) -> list[TenantOut]:
    return [_tenant(t) for t in await ctx.admin.list_tenants(who)]


@router.post("/tenants", response_model=TenantOut, status_code=201)
async def create_tenant(body: TenantCreate, who: Caller, ctx: Ctx) -> TenantOut:
    ctx.admin._system(who)
    tenant, _ = await ctx.admin.create_tenant(
        who, body.name, body.display_name, body.admin_username, body.admin_password
    )
    return _tenant(tenant)


@router.patch("/tenants/{tenant_id}", response_model=TenantOut)
async def update_tenant(tenant_id: int, body: TenantUpdate, who: Caller, ctx: Ctx) -> TenantOut:
    return _tenant(await ctx.admin.update_tenant(who, tenant_id, **body.model_dump(exclude_none=True)))


@router.get("/settings", response_model=dict[str, Any])
async def get_settings(who: Caller, ctx: Ctx) -> dict[str, Any]:
    return await ctx.admin.tenant_settings(who)


@router.patch("/settings", response_model=dict[str, Any])
async def update_settings(body: TenantSettings, who: Caller, ctx: Ctx) -> dict[str, Any]:
    return await ctx.admin.update_settings(who, body.model_dump(exclude_none=True))


# -- users ----------------------------------------------------------------------------------
@router.get("/users", response_model=list[UserOut])
async def list_users(who: Caller, ctx: Ctx) -> list[UserOut]:
    return [_user(u) for u in await ctx.admin.list_users(who)]


@router.post("/users", response_model=UserOut, status_code=201)
async def create_user(body: UserCreate, who: Caller, ctx: Ctx) -> UserOut:
    user = await ctx.admin.create_user(who, body.username, body.password, body.roles, body.display_name, body.email)
    return _user(user)


@router.get("/users/{user_id}", response_model=UserOut)
async def get_user(user_id: int, who: Caller, ctx: Ctx) -> UserOut:
    return _user(await ctx.admin.get_user(who, user_id))


@router.patch("/users/{user_id}", response_model=UserOut)
async def update_user(user_id: int, body: UserUpdate, who: Caller, ctx: Ctx) -> UserOut:
    return _user(await ctx.admin.update_user(who, user_id, body.model_dump(exclude_unset=True)))


@router.delete("/users/{user_id}", status_code=204)
async def delete_user(user_id: int, who: Caller, ctx: Ctx) -> Response:
    await ctx.admin.delete_user(who, user_id)
    return Response(status_code=204)


# -- roles ----------------------------------------------------------------------------------
@router.get("/roles", response_model=list[RoleOut])
async def list_roles(who: Caller, ctx: Ctx) -> list[RoleOut]:
    return [_role(r) for r in await ctx.admin.list_roles(who)]


@router.post("/roles", response_model=RoleOut, status_code=201)
async def create_role(body: RoleCreate, who: Caller, ctx: Ctx) -> RoleOut:
    return _role(await ctx.admin.create_role(who, body.name, body.permissions, body.description))


@router.patch("/roles/{name}", response_model=RoleOut)
async def update_role(name: str, body: RoleUpdate, who: Caller, ctx: Ctx) -> RoleOut:
    return _role(await ctx.admin.update_role(who, name, body.permissions, body.description))


@router.delete("/roles/{name}", status_code=204)
async def delete_role(name: str, who: Caller, ctx: Ctx) -> Response:
    await ctx.admin.delete_role(who, name)
    return Response(status_code=204)


# -- API keys -------------------------------------------------------------------------------
@router.get("/api-keys", response_model=list[ApiKeyOut])
async def list_api_keys(who: Caller, ctx: Ctx) -> list[dict[str, Any]]:
    who.require(Permission.APIKEYS_MANAGE)
    return [_key(k) for k in await ctx.api_keys.all(who.tenant_id)]


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=201)
async def create_api_key(body: ApiKeyCreate, who: Caller, ctx: Ctx) -> dict[str, Any]:
    stored, full = await ctx.auth.create_api_key(who, body.name, body.roles, body.expires_at)
    return _key(stored) | {"key": full}


@router.delete("/api-keys/{key_id}", status_code=204)
async def revoke_api_key(key_id: int, who: Caller, ctx: Ctx) -> Response:
    who.require(Permission.APIKEYS_MANAGE)
    await ctx.api_keys.revoke(who.tenant_id, key_id)
    await ctx.audit.record(who.tenant_id, who.subject, "apikey.revoke", str(key_id))
    return Response(status_code=204)


# -- audit ----------------------------------------------------------------------------------
@router.get("/audit", response_model=list[AuditOut])
async def audit(
    who: Caller,
    ctx: Ctx,
    start: datetime | None = None,
    end: datetime | None = None,
    action: str | None = Query(None, max_length=64),
    limit: int = Query(500, ge=1, le=10_000),
) -> list[AuditOut]:
    who.require(Permission.AUDIT_READ)
    entries = await ctx.audit.query(who.tenant_id, start=start, end=end, action=action, limit=limit)
    return [AuditOut.model_validate(e, from_attributes=True) for e in entries]
