"""Outbound field connections (OPC UA servers, Modbus devices) a tenant's engineers configure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.domain.errors import Conflict, NotFound
from server.storage.database import Database
from server.storage.repositories.base import now, utc
from server.storage.schema import connections


@dataclass(slots=True)
class Connection:
    id: int
    tenant_id: int
    kind: str
    name: str
    enabled: bool
    config: dict[str, Any]
    created_at: datetime | None
    updated_at: datetime | None


def _conn(row: Any) -> Connection:
    return Connection(
        row.id, row.tenant_id, row.kind, row.name, row.enabled, dict(row.config), utc(row.created_at),
        utc(row.updated_at),
    )  # fmt: skip


class ConnectionRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def all(self, tenant_id: int, kind: str | None = None) -> list[Connection]:
        query = sa.select(connections).where(connections.c.tenant_id == tenant_id)
        if kind:
            query = query.where(connections.c.kind == kind)
        async with self.db.connect() as conn:
            return [_conn(r) for r in await conn.execute(query.order_by(connections.c.name))]

    async def enabled_everywhere(self, kind: str) -> list[Connection]:
        """Every tenant's enabled connections of a kind: what the adapter must run (system use)."""
        query = sa.select(connections).where(connections.c.kind == kind, connections.c.enabled.is_(True))
        async with self.db.connect() as conn:
            return [_conn(r) for r in await conn.execute(query.order_by(connections.c.id))]

    async def get(self, tenant_id: int, connection_id: int) -> Connection:
        async with self.db.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(connections).where(
                        connections.c.tenant_id == tenant_id, connections.c.id == connection_id
                    )
                )
            ).first()
        if row is None:
            raise NotFound(f"connection {connection_id} not found")
        return _conn(row)

    async def create(self, tenant_id: int, kind: str, name: str, config: dict[str, Any], enabled: bool) -> Connection:
        async with self.db.begin() as conn:
            taken = await conn.scalar(
                sa.select(connections.c.id).where(connections.c.tenant_id == tenant_id, connections.c.name == name)
            )
            if taken:
                raise Conflict(f"connection {name!r} already exists", field="name")
            new_id = await conn.scalar(
                connections.insert()
                .values(tenant_id=tenant_id, kind=kind, name=name, config=config, enabled=enabled)
                .returning(connections.c.id)
            )
        return await self.get(tenant_id, new_id)

    async def update(
        self, tenant_id: int, connection_id: int, *, config: dict[str, Any] | None, enabled: bool | None
    ) -> Connection:
        await self.get(tenant_id, connection_id)
        values: dict[str, Any] = {"updated_at": now()}
        if config is not None:
            values["config"] = config
        if enabled is not None:
            values["enabled"] = enabled
        async with self.db.begin() as conn:
            await conn.execute(
                connections.update()
                .where(connections.c.tenant_id == tenant_id, connections.c.id == connection_id)
                .values(**values)
            )
        return await self.get(tenant_id, connection_id)

    async def delete(self, tenant_id: int, connection_id: int) -> None:
        async with self.db.begin() as conn:
            result = await conn.execute(
                connections.delete().where(connections.c.tenant_id == tenant_id, connections.c.id == connection_id)
            )
        if result.rowcount == 0:
            raise NotFound(f"connection {connection_id} not found")
