"""The one way a command reaches a device, for people (POST /devices/{ref}/commands) and for
alarm actions alike: the target checked in its tenant, the command audited, then published on
the bus, from where the MQTT adapter sends it to `{tenant}/devices/{device path}/commands`."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from server.bus import Bus, Event
from server.domain.commands import COMMAND_PATTERN
from server.domain.errors import InvalidInput, Unavailable
from server.domain.namespace import Node, NodeClass
from server.storage.repositories.audit import AuditRepository
from server.storage.repositories.nodes import NodeRepository

_COMMAND = re.compile(COMMAND_PATTERN)
NO_MQTT = "commands travel over MQTT, and this server has no mqtt_url configured"


class CommandService:
    def __init__(self, nodes: NodeRepository, audit: AuditRepository, bus: Bus, *, mqtt_url: str) -> None:
        self.nodes, self.audit, self.bus = nodes, audit, bus
        self.available = bool(mqtt_url)
        """Whether anything carries commands to devices (an MQTT adapter)."""

    async def target(self, tenant_id: int, ref: str, field: str = "ref") -> Node:
        """The device `ref` (node id or path) of this tenant; another tenant's is simply not found."""
        node = await self.nodes.get(tenant_id, ref)
        if node.node_class is not NodeClass.DEVICE:
            raise InvalidInput(f"{node.path!r} is a {node.node_class.value}, not a device", field=field)
        if "+" in node.path or "#" in node.path:
            raise InvalidInput(f"{node.path!r} holds an MQTT wildcard ('+' or '#') and can't be a topic", field=field)
        return node

    async def send(
        self, tenant_id: int, tenant_name: str, node: Node, command: str, args: dict[str, Any], *,
        expires_in_s: float, actor: str, address: str | None = None, on_behalf_of: dict[str, Any] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Audit, then publish; returns the command as it goes to the device. Raises Unavailable
        when nothing carries commands (before anything is audited)."""
        if not self.available:
            raise Unavailable(NO_MQTT)
        if not _COMMAND.match(command):
            raise InvalidInput("a command is one line of printable text", field="command")
        now = time.time()
        message = {
            "id": uuid.uuid4().hex, "tenant": tenant_name, "device": node.path, "node_id": node.node_id,
            "command": command, "args": args, "user": actor, "ts": now, "expires_at": now + expires_in_s,
        }  # fmt: skip
        detail: dict[str, Any] = {"id": message["id"], "command": command, "path": node.path}
        if on_behalf_of is not None:
            detail["on_behalf_of"] = on_behalf_of
        await self.audit.record(tenant_id, actor, "device.command", node.node_id, address=address, detail=detail)
        self.bus.publish(Event(tenant_id, "command", message))
        return message
