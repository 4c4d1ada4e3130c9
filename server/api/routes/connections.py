"""Field connections of the tenant (OPC UA servers, Modbus devices): engineers configure them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from server.api.deps import Caller, Ctx
from server.services.connections import masked
from server.storage.repositories.connections import Connection

router = APIRouter(tags=["connections"])


class ConnectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(min_length=1, max_length=16)
    name: str = Field(min_length=1, max_length=100)
    enabled: bool = True
    config: dict[str, Any]


class ConnectionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool | None = None
    config: dict[str, Any] | None = None


def _out(c: Connection) -> dict[str, Any]:
    return {
        "id": c.id, "kind": c.kind, "name": c.name, "enabled": c.enabled, "config": masked(c.config),
        "created_at": c.created_at, "updated_at": c.updated_at,
    }  # fmt: skip


def _service(ctx: Any) -> Any:
    assert ctx.connections is not None, "connections service not configured"
    return ctx.connections


@router.get("/connections")
async def list_connections(
    who: Caller, ctx: Ctx, kind: str | None = Query(None, max_length=16)
) -> list[dict[str, Any]]:
    return [_out(c) for c in await _service(ctx).all(who, kind)]


@router.post("/connections", status_code=201)
async def create_connection(body: ConnectionCreate, who: Caller, ctx: Ctx) -> dict[str, Any]:
    return _out(await _service(ctx).create(who, body.kind, body.name, body.config, body.enabled))


@router.get("/connections/{connection_id}")
async def get_connection(connection_id: int, who: Caller, ctx: Ctx) -> dict[str, Any]:
    return _out(await _service(ctx).get(who, connection_id))


@router.patch("/connections/{connection_id}")
async def update_connection(connection_id: int, body: ConnectionUpdate, who: Caller, ctx: Ctx) -> dict[str, Any]:
    return _out(await _service(ctx).update(who, connection_id, body.config, body.enabled))


@router.delete("/connections/{connection_id}", status_code=204)
async def delete_connection(connection_id: int, who: Caller, ctx: Ctx) -> Response:
    await _service(ctx).delete(who, connection_id)
    return Response(status_code=204)
