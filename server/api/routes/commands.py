"""Commands to devices: audited, then published on the bus; the MQTT adapter sends them to
`{tenant}/devices/{device path}/commands` at QoS 1."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from server.api.deps import Caller, Ctx, client_address
from server.bus import Event
from server.domain.errors import InvalidInput, Unavailable
from server.domain.namespace import NodeClass
from server.domain.permissions import Permission

router = APIRouter(tags=["devices"])


class CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: str = Field(
        min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$", description="e.g. 'start', 'setpoint'"
    )
    args: dict[str, Any] = Field(default_factory=dict, description="any JSON object; passed to the device as is")
    expires_in_s: int = Field(
        60, ge=1, le=86_400, description="not delivered by then (broker down, device away): dropped, never late"
    )


class CommandAccepted(BaseModel):
    id: str
    node_id: str
    path: str
    command: str
    expires_at: float


@router.post("/devices/{ref:path}/commands", response_model=CommandAccepted, status_code=202)
async def send_command(ref: str, body: CommandIn, request: Request, who: Caller, ctx: Ctx) -> CommandAccepted:
    """Accepted for delivery (202): the answer does not wait for the device."""
    who.require(Permission.DEVICES_COMMAND)
    if not ctx.settings.mqtt_url:
        raise Unavailable("commands travel over MQTT, and this server has no mqtt_url configured")
    node = await ctx.nodes.get(who.tenant_id, ref)  # another tenant's device is simply not found
    if node.node_class is not NodeClass.DEVICE:
        raise InvalidInput(f"{node.path!r} is a {node.node_class.value}, not a device", field="ref")
    if "+" in node.path or "#" in node.path:
        raise InvalidInput(f"{node.path!r} holds an MQTT wildcard ('+' or '#') and can't be a topic", field="ref")
    now = time.time()
    command = {
        "id": uuid.uuid4().hex,
        "tenant": who.tenant_name,
        "device": node.path,
        "node_id": node.node_id,
        "command": body.command,
        "args": body.args,
        "user": who.subject,
        "ts": now,
        "expires_at": now + body.expires_in_s,
    }
    await ctx.audit.record(
        who.tenant_id, who.subject, "device.command", node.node_id, address=client_address(request),
        detail={"id": command["id"], "command": body.command, "path": node.path},
    )  # fmt: skip
    ctx.bus.publish(Event(who.tenant_id, "command", command))
    return CommandAccepted(
        id=command["id"], node_id=node.node_id, path=node.path, command=body.command, expires_at=command["expires_at"]
    )
