"""Namespace changes with their side effects: audit, samples of deleted tags, bus events."""

from __future__ import annotations

from typing import Any

from server.bus import Bus, Event
from server.domain.errors import Conflict, InvalidInput, NotFound
from server.domain.namespace import DeviceStatus, Node, NodeClass
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

    async def search(
        self, who: Principal, text: str, limit: int, node_class: NodeClass | None = None
    ) -> tuple[list[Node], bool]:
        """Up to `limit` matches, and whether there were more."""
        who.require(Permission.NAMESPACE_READ)
        found = await self.nodes.search(who.tenant_id, text, limit=limit + 1, node_class=node_class)
        return found[:limit], len(found) > limit

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
        return await self.set_device_status(who.tenant_id, ref, status)

    async def set_device_status(self, tenant_id: int, ref: str, status: DeviceStatus) -> Node:
        """Status from the field (MQTT last will, Sparkplug death, a failed poll): no user involved."""
        node = await self.nodes.get(tenant_id, ref)
        if node.status is not status:
            node = await self.nodes.set_status(tenant_id, ref, status)
            self.bus.publish(
                Event(tenant_id, "device_status", {"node_id": node.node_id, "path": node.path, "status": status.value})
            )
        return node

    async def ensure_device(self, tenant_id: int, path: str, tags: list[NodeSpec], *, actor: str) -> Node:
        """A device at `path` with at least these tags, creating folders on the way (Sparkplug
        births, OPC UA imports). Existing nodes are kept as they are; a clash of classes is an error."""
        parts = [p for p in path.strip("/").split("/") if p]
        if not parts:
            raise InvalidInput("empty device path", field="device")
        parent: str | None = None
        created: list[str] = []
        for depth, name in enumerate(parts):
            here = "/".join(parts[: depth + 1])
            cls = NodeClass.DEVICE if depth == len(parts) - 1 else NodeClass.FOLDER
            try:
                node = await self.nodes.get(tenant_id, here)
            except NotFound:
                try:
                    node = await self.nodes.create(tenant_id, parent, NodeSpec(cls, name))
                    created.append(node.node_id)
                except Conflict:  # created concurrently by another message
                    node = await self.nodes.get(tenant_id, here)
            if node.node_class is not cls:
                raise InvalidInput(f"{here!r} is a {node.node_class.value}, expected a {cls.value}", field="device")
            parent = node.node_id
        device = node
        existing = {n.browse_name for n in await self.nodes.children(tenant_id, device.node_id)}
        for spec in tags:
            if spec.browse_name not in existing:
                try:
                    created.append((await self.nodes.create(tenant_id, device.node_id, spec)).node_id)
                except Conflict:
                    pass
        if created:
            await self.audit.record(tenant_id, actor, "node.create", device.node_id, detail={"created": len(created)})
            self._changed(tenant_id, created=created)
        return device


def _jsonable(changes: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, str | int | float | bool | type(None)) else str(v)) for k, v in changes.items()}
