"""Namespace changes with their side effects: audit, samples of deleted tags, bus events."""

from __future__ import annotations

from typing import Any

from server.bus import Bus, Event
from server.domain.namespace import DeviceStatus, Node
from server.domain.permissions import Permission
from server.domain.principal import Principal
from server.ingest.live_cache import LiveCache
from server.storage.historian.store import SampleStore
from server.storage.historian.writer import HistorianWriter
from server.storage.repositories.audit import AuditRepository
from server.storage.repositories.nodes import NodeRepository, NodeSpec


class NamespaceService:
    def __init__(
        self,
        nodes: NodeRepository,
        store: SampleStore,
        writer: HistorianWriter,
        cache: LiveCache,
        audit: AuditRepository,
        bus: Bus,
    ) -> None:
        self.nodes, self.store, self.writer, self.cache, self.audit, self.bus = nodes, store, writer, cache, audit, bus

    def _changed(self, tenant_id: int, **data: Any) -> None:
        self.bus.publish(Event(tenant_id, "namespace", data))

    async def browse(self, who: Principal, parent: str | None) -> list[Node]:
        who.require(Permission.NAMESPACE_READ)
        return await self.nodes.children(who.tenant_id, parent)

    async def get(self, who: Principal, ref: str) -> Node:
        who.require(Permission.NAMESPACE_READ)
        return await self.nodes.get(who.tenant_id, ref)

    async def create(self, who: Principal, parent: str | None, spec: NodeSpec) -> Node:
        who.require(Permission.NAMESPACE_WRITE)
        node = await self.nodes.create(who.tenant_id, parent, spec)
        await self.audit.record(who.tenant_id, who.subject, "node.create", node.node_id, detail={"path": node.path})
        self._changed(who.tenant_id, created=[node.node_id])
        return node

    async def update(self, who: Principal, ref: str, changes: dict[str, Any]) -> Node:
        who.require(Permission.NAMESPACE_WRITE)
        node = await self.nodes.update(who.tenant_id, ref, changes)
        await self.audit.record(who.tenant_id, who.subject, "node.update", node.node_id, detail=_jsonable(changes))
        self._changed(who.tenant_id, updated=[node.node_id])
        return node

    async def move(self, who: Principal, ref: str, new_parent: str | None) -> Node:
        who.require(Permission.NAMESPACE_WRITE)
        node = await self.nodes.move(who.tenant_id, ref, new_parent)
        await self.audit.record(
            who.tenant_id, who.subject, "node.move", node.node_id, detail={"parent": new_parent, "path": node.path}
        )
        self._changed(who.tenant_id, moved=[node.node_id])
        return node

    async def delete(self, who: Principal, ref: str) -> int:
        who.require(Permission.NAMESPACE_WRITE)
        node = await self.nodes.get(who.tenant_id, ref)
        tag_ids = await self.nodes.delete(who.tenant_id, ref)
        if tag_ids:
            self.writer.forget(tag_ids)
            await self.store.delete_tags(tag_ids)
            self.cache.drop(tag_ids)
        await self.audit.record(
            who.tenant_id, who.subject, "node.delete", node.node_id, detail={"path": node.path, "tags": len(tag_ids)}
        )
        self._changed(who.tenant_id, deleted=[node.node_id])
        return len(tag_ids)

    async def set_status(self, who: Principal, ref: str, status: DeviceStatus) -> Node:
        who.require(Permission.TELEMETRY_WRITE)
        node = await self.nodes.set_status(who.tenant_id, ref, status)
        self.bus.publish(
            Event(who.tenant_id, "device_status", {"node_id": node.node_id, "path": node.path, "status": status.value})
        )
        return node


def _jsonable(changes: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, str | int | float | bool | type(None)) else str(v)) for k, v in changes.items()}
