"""Field connections: validated per kind by the adapter that runs them, audited, announced."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from server.bus import Bus, Event
from server.domain.errors import InvalidInput
from server.domain.permissions import Permission
from server.domain.principal import Principal
from server.storage.repositories.audit import AuditRepository
from server.storage.repositories.connections import Connection, ConnectionRepository

SECRET_KEYS = ("password", "secret", "token", "private_key")


def masked(config: dict[str, Any]) -> dict[str, Any]:
    """Secrets never leave the server once stored (write-only fields)."""
    return {k: ("********" if any(s in k.lower() for s in SECRET_KEYS) and v else v) for k, v in config.items()}


class ConnectionService:
    def __init__(
        self, repo: ConnectionRepository, audit: AuditRepository, bus: Bus, kinds: dict[str, type[BaseModel]]
    ) -> None:
        self.repo, self.audit, self.bus, self.kinds = repo, audit, bus, kinds

    def _validate(self, kind: str, config: dict[str, Any]) -> dict[str, Any]:
        model = self.kinds.get(kind)
        if model is None:
            raise InvalidInput(
                f"unknown connection kind {kind!r}; known: {', '.join(sorted(self.kinds))}", field="kind"
            )
        try:
            return model.model_validate(config).model_dump(mode="json")
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise InvalidInput(f"config.{where}: {err['msg']}", field=f"config.{where}") from None

    def _announce(self, conn: Connection, action: str) -> None:
        self.bus.publish(
            Event(conn.tenant_id, "connections", {"id": conn.id, "connection_kind": conn.kind, "action": action})
        )

    async def all(self, who: Principal, kind: str | None) -> list[Connection]:
        who.require(Permission.NAMESPACE_READ)
        return await self.repo.all(who.tenant_id, kind)

    async def get(self, who: Principal, connection_id: int) -> Connection:
        who.require(Permission.NAMESPACE_READ)
        return await self.repo.get(who.tenant_id, connection_id)

    async def create(self, who: Principal, kind: str, name: str, config: dict[str, Any], enabled: bool) -> Connection:
        who.require(Permission.NAMESPACE_WRITE)
        conn = await self.repo.create(who.tenant_id, kind, name, self._validate(kind, config), enabled)
        await self.audit.record(who.tenant_id, who.subject, "connection.create", name, detail=masked(conn.config))
        self._announce(conn, "created")
        return conn

    async def update(
        self, who: Principal, connection_id: int, config: dict[str, Any] | None, enabled: bool | None
    ) -> Connection:
        who.require(Permission.NAMESPACE_WRITE)
        current = await self.repo.get(who.tenant_id, connection_id)
        merged = None
        if config is not None:
            # Secrets sent back masked (or left out) keep their stored value.
            kept = {k: v for k, v in current.config.items() if any(s in k.lower() for s in SECRET_KEYS)}
            incoming = {k: v for k, v in config.items() if v != "********"}
            merged = self._validate(current.kind, kept | incoming)
        conn = await self.repo.update(who.tenant_id, connection_id, config=merged, enabled=enabled)
        await self.audit.record(who.tenant_id, who.subject, "connection.update", conn.name, detail=masked(conn.config))
        self._announce(conn, "updated")
        return conn

    async def delete(self, who: Principal, connection_id: int) -> None:
        who.require(Permission.NAMESPACE_WRITE)
        conn = await self.repo.get(who.tenant_id, connection_id)
        await self.repo.delete(who.tenant_id, connection_id)
        await self.audit.record(who.tenant_id, who.subject, "connection.delete", conn.name)
        self._announce(conn, "deleted")
