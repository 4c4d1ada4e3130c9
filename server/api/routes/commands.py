"""Commands to devices: audited, then published on the bus; the MQTT adapter sends them to
`{tenant}/devices/{device path}/commands` at QoS 1."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from server.api.deps import Caller, Ctx, client_address
from server.domain.commands import COMMAND_PATTERN
from server.domain.errors import Unavailable
from server.domain.permissions import Permission
from server.services.commands import NO_MQTT

router = APIRouter(tags=["devices"])


class CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: str = Field(min_length=1, max_length=100, pattern=COMMAND_PATTERN, description="e.g. 'start', 'setpoint'")
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
    commands = ctx.commands
    assert commands is not None
    if not commands.available:
        raise Unavailable(NO_MQTT)
    node = await commands.target(who.tenant_id, ref)  # another tenant's device is simply not found
    sent = await commands.send(
        who.tenant_id, who.tenant_name, node, body.command, body.args, expires_in_s=body.expires_in_s,
        actor=who.subject, address=client_address(request),
    )  # fmt: skip
    return CommandAccepted(
        id=sent["id"], node_id=node.node_id, path=node.path, command=body.command, expires_at=sent["expires_at"]
    )
