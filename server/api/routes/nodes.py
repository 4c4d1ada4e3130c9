"""The namespace: browse like an OPC UA address space, create, update, move, delete; devices."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from server.api.deps import Caller, Ctx
from server.api.schema import (
    DeviceStatusUpdate,
    NodeClassName,
    NodeCreate,
    NodeMove,
    NodeOut,
    NodeSearchOut,
    NodeUpdate,
)
from server.domain.namespace import DataType, DeviceStatus, Node, NodeClass
from server.domain.permissions import Permission
from server.storage.repositories.nodes import NodeSpec

router = APIRouter(tags=["namespace"])


def node_out(node: Node) -> NodeOut:
    parent = node.path.rpartition("/")[0] or None
    return NodeOut(
        node_id=node.node_id, path=node.path, parent_path=parent, node_class=node.node_class.value,
        browse_name=node.browse_name, display_name=node.display_name, description=node.description,
        data_type=node.data_type.value if node.data_type else None, unit=node.unit, range_low=node.range_low,
        range_high=node.range_high, status=node.status.value if node.status else None, has_children=node.has_children,
    )  # fmt: skip


@router.get("/nodes", response_model=list[NodeOut], summary="Browse the children of a node (the root by default)")
async def browse(who: Caller, ctx: Ctx, parent: str | None = Query(None, max_length=2000)) -> list[NodeOut]:
    return [node_out(n) for n in await ctx.namespace.browse(who, parent or None)]


@router.get("/nodes/search", response_model=NodeSearchOut, summary="Find nodes by name or path, browsed or not")
async def search(
    who: Caller,
    ctx: Ctx,
    q: str = Query(min_length=1, max_length=200, description="case-insensitive substring of name or path"),
    limit: int = Query(50, ge=1, le=500),
    node_class: NodeClassName | None = None,
) -> NodeSearchOut:
    """Matches anywhere in the tenant's tree, names starting with `q` first, then by path; each
    answer carries its `path` (and `parent_path`), so a client can expand the tree down to it."""
    found, truncated = await ctx.namespace.search(who, q, limit, NodeClass(node_class) if node_class else None)
    return NodeSearchOut(query=q, nodes=[node_out(n) for n in found], truncated=truncated)


@router.post("/nodes", response_model=NodeOut, status_code=201)
async def create(body: NodeCreate, who: Caller, ctx: Ctx) -> NodeOut:
    spec = NodeSpec(
        node_class=NodeClass(body.node_class), browse_name=body.browse_name, display_name=body.display_name,
        description=body.description, data_type=DataType(body.data_type) if body.data_type else None,
        unit=body.unit, range_low=body.range_low, range_high=body.range_high,
    )  # fmt: skip
    return node_out(await ctx.namespace.create(who, body.parent or None, spec))


@router.post("/nodes/{ref:path}/move", response_model=NodeOut)
async def move(ref: str, body: NodeMove, who: Caller, ctx: Ctx) -> NodeOut:
    return node_out(await ctx.namespace.move(who, ref, body.parent or None))


@router.get("/nodes/{ref:path}", response_model=NodeOut)
async def read(ref: str, who: Caller, ctx: Ctx) -> NodeOut:
    return node_out(await ctx.namespace.get(who, ref))


@router.patch("/nodes/{ref:path}", response_model=NodeOut)
async def update(ref: str, body: NodeUpdate, who: Caller, ctx: Ctx) -> NodeOut:
    return node_out(await ctx.namespace.update(who, ref, body.model_dump(exclude_unset=True)))


@router.delete("/nodes/{ref:path}", status_code=204, summary="Delete a node, its subtree and its tags' history")
async def delete(ref: str, who: Caller, ctx: Ctx) -> Response:
    await ctx.namespace.delete(who, ref)
    return Response(status_code=204)


@router.get("/devices", response_model=list[NodeOut], tags=["devices"])
async def devices(
    who: Caller,
    ctx: Ctx,
    under: str | None = Query(None, max_length=2000),
    status: DeviceStatus | None = None,
) -> list[NodeOut]:
    who.require(Permission.NAMESPACE_READ)
    found = await ctx.nodes.find(who.tenant_id, under=under, node_class=NodeClass.DEVICE)
    return [node_out(n) for n in found if status is None or n.status is status]


@router.put("/devices/{ref:path}/status", response_model=NodeOut, tags=["devices"])
async def device_status(ref: str, body: DeviceStatusUpdate, who: Caller, ctx: Ctx) -> NodeOut:
    return node_out(await ctx.namespace.set_status(who, ref, DeviceStatus(body.status)))
