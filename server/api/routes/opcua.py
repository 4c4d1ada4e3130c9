"""Look through a tenant's OPC UA field server and import chosen variables as tags.

Both act on a connection of kind "opcua" (`/connections`), so the endpoint, security and
credentials are the stored ones; both need `namespace.write`, since they open a connection
from the server to the field network.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from server.api.deps import Caller, Ctx
from server.domain.errors import InvalidInput, Unavailable
from server.domain.permissions import Permission
from server.domain.principal import Principal
from server.ingest.opcua_client import KIND, ConnectionConfig, MappedItem, browse, describe, import_nodes
from server.opcua.common import UaError, UaStatusCodeError
from server.services.connections import ConnectionService, masked
from server.storage.repositories.connections import Connection

router = APIRouter(tags=["connections"])


class ImportBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[MappedItem] = Field(min_length=1, max_length=1000)


def _service(ctx: Any) -> ConnectionService:
    assert ctx.connections is not None, "connections service not configured"
    service: ConnectionService = ctx.connections
    return service


async def _connection(ctx: Any, who: Principal, connection_id: int) -> tuple[Connection, ConnectionConfig]:
    who.require(Permission.NAMESPACE_WRITE)
    conn = await _service(ctx).get(who, connection_id)
    if conn.kind != KIND:
        raise InvalidInput(f"connection {connection_id} is a {conn.kind} connection, not OPC UA", field="connection")
    return conn, ConnectionConfig.model_validate(conn.config)


@router.get("/connections/{connection_id}/browse")
async def browse_connection(
    connection_id: int,
    who: Caller,
    ctx: Ctx,
    node: str | None = Query(None, max_length=1000, description="remote node id; default: the Objects folder"),
) -> list[dict[str, Any]]:
    """The children of a node on the connection's OPC UA server (node id, names, class, data type)."""
    _, config = await _connection(ctx, who, connection_id)
    try:
        return await browse(config, node, cert_dir=ctx.settings.data_dir / "opcua")
    except ValueError as exc:
        raise InvalidInput(str(exc), field="node") from None
    except UaStatusCodeError as exc:
        raise InvalidInput(f"{config.endpoint} refused: {describe(exc)}", field="node") from None
    except (OSError, TimeoutError, UaError) as exc:
        raise Unavailable(f"cannot browse {config.endpoint}: {describe(exc)}") from None


@router.post("/connections/{connection_id}/import")
async def import_connection_nodes(connection_id: int, body: ImportBody, who: Caller, ctx: Ctx) -> dict[str, Any]:
    """Create tags for remote variables (unit, range and type read from the server) and add
    them to the connection's mapping; the connection re-subscribes with them."""
    conn, _ = await _connection(ctx, who, connection_id)
    updated = await import_nodes(
        ctx.namespace, _service(ctx), who, conn, body.items, cert_dir=ctx.settings.data_dir / "opcua"
    )
    return {
        "id": updated.id, "kind": updated.kind, "name": updated.name, "enabled": updated.enabled,
        "config": masked(updated.config), "created_at": updated.created_at, "updated_at": updated.updated_at,
    }  # fmt: skip
