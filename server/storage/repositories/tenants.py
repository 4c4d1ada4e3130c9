"""Tenants and their settings (the only table not scoped by a tenant: it *is* the scope)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.domain.errors import Conflict, InvalidInput, NotFound
from server.domain.namespace import UnknownTagPolicy
from server.domain.permissions import BUILTIN_ROLES
from server.storage.database import Database
from server.storage.repositories.base import utc
from server.storage.schema import roles, tenants

_TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

DEFAULT_SETTINGS: dict[str, Any] = {"unknown_tags": UnknownTagPolicy.CREATE.value}


@dataclass(slots=True)
class Tenant:
    id: int
    name: str
    display_name: str
    settings: dict[str, Any]
    is_active: bool
    created_at: datetime | None


def check_tenant_name(name: str) -> str:
    if not _TENANT_NAME.fullmatch(name):
        raise InvalidInput(
            "tenant name must be 1-64 lower-case letters, digits, '-' or '_' (it appears in MQTT topics)",
            field="name",
        )
    return name


def check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
    if unknown:
        raise InvalidInput(f"unknown tenant setting(s): {', '.join(unknown)}", field=unknown[0])
    if "unknown_tags" in settings:
        try:
            UnknownTagPolicy(settings["unknown_tags"])
        except ValueError:
            raise InvalidInput("unknown_tags must be 'create' or 'reject'", field="unknown_tags") from None
    return settings


def _tenant(row: sa.Row[Any]) -> Tenant:
    return Tenant(
        row.id, row.name, row.display_name, DEFAULT_SETTINGS | dict(row.settings), row.is_active, utc(row.created_at)
    )


class TenantRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, name: str, display_name: str | None = None) -> Tenant:
        check_tenant_name(name)
        async with self.db.begin() as conn:
            exists = await conn.scalar(sa.select(tenants.c.id).where(tenants.c.name == name))
            if exists:
                raise Conflict(f"tenant {name!r} already exists", field="name")
            tenant_id = await conn.scalar(
                tenants.insert()
                .values(name=name, display_name=display_name or name, settings=dict(DEFAULT_SETTINGS))
                .returning(tenants.c.id)
            )
            await conn.execute(
                roles.insert(),
                [
                    {
                        "tenant_id": tenant_id,
                        "name": role,
                        "description": f"built-in {role} role",
                        "permissions": sorted(p.value for p in perms),
                        "builtin": True,
                    }
                    for role, perms in BUILTIN_ROLES.items()
                ],
            )
        return await self.get(tenant_id)

    async def get(self, tenant_id: int) -> Tenant:
        async with self.db.connect() as conn:
            row = (await conn.execute(sa.select(tenants).where(tenants.c.id == tenant_id))).first()
        if row is None:
            raise NotFound(f"tenant {tenant_id} not found")
        return _tenant(row)

    async def by_name(self, name: str) -> Tenant | None:
        async with self.db.connect() as conn:
            row = (await conn.execute(sa.select(tenants).where(tenants.c.name == name))).first()
        return _tenant(row) if row else None

    async def all(self) -> list[Tenant]:
        async with self.db.connect() as conn:
            rows = (await conn.execute(sa.select(tenants).order_by(tenants.c.name))).all()
        return [_tenant(r) for r in rows]

    async def delete(self, tenant_id: int) -> None:
        async with self.db.begin() as conn:
            await conn.execute(tenants.delete().where(tenants.c.id == tenant_id))

    async def update(
        self,
        tenant_id: int,
        *,
        display_name: str | None = None,
        is_active: bool | None = None,
        settings: dict[str, Any] | None = None,
    ) -> Tenant:
        current = await self.get(tenant_id)
        values: dict[str, Any] = {}
        if display_name is not None:
            values["display_name"] = display_name
        if is_active is not None:
            values["is_active"] = is_active
        if settings is not None:
            values["settings"] = current.settings | check_settings(settings)
        if values:
            async with self.db.begin() as conn:
                await conn.execute(tenants.update().where(tenants.c.id == tenant_id).values(**values))
        return await self.get(tenant_id)
