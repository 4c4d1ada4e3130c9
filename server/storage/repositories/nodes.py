"""The namespace tree of a tenant: folders, devices and tags with stable OPC UA node ids.

A node id is fixed when the node is created (`ns=2;s=<path at creation>`), so clients and
historical references keep working after a rename or a move; the path follows the tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from server.domain.errors import Conflict, InvalidInput, NotFound
from server.domain.namespace import (
    DataType,
    DeviceStatus,
    Node,
    NodeClass,
    check_browse_name,
    check_child,
    join_path,
    node_id_for_path,
    parse_node_ref,
)
from server.storage.database import Database
from server.storage.repositories.base import now
from server.storage.schema import nodes

_EDITABLE = ("display_name", "description", "data_type", "unit", "range_low", "range_high")


@dataclass(slots=True)
class NodeSpec:
    """What a caller may set when creating a node."""

    node_class: NodeClass
    browse_name: str
    display_name: str | None = None
    description: str = ""
    data_type: DataType | None = None
    unit: str | None = None
    range_low: float | None = None
    range_high: float | None = None


def _node(row: Any, has_children: bool = False) -> Node:
    return Node(
        id=row.id,
        tenant_id=row.tenant_id,
        node_id=row.node_id,
        parent_id=row.parent_id,
        node_class=NodeClass(row.node_class),
        browse_name=row.browse_name,
        display_name=row.display_name,
        path=row.path,
        description=row.description,
        data_type=DataType(row.data_type) if row.data_type else None,
        unit=row.unit,
        range_low=row.range_low,
        range_high=row.range_high,
        status=DeviceStatus(row.status) if row.status else None,
        has_children=has_children,
    )


def _check_range(low: float | None, high: float | None) -> None:
    if low is not None and high is not None and low >= high:
        raise InvalidInput("range_low must be below range_high", field="range_low")


def subtree(path: str) -> sa.ColumnElement[bool]:
    return sa.or_(nodes.c.path == path, nodes.c.path.startswith(path + "/", autoescape=True))


class NodeRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, tenant_id: int, ref: str) -> Node:
        """A node by node id or path; another tenant's node is simply not found."""
        kind, key = parse_node_ref(ref)
        column = nodes.c.node_id if kind == "node_id" else nodes.c.path
        async with self.db.connect() as conn:
            row = (await conn.execute(sa.select(nodes).where(nodes.c.tenant_id == tenant_id, column == key))).first()
            if row is None:
                raise NotFound(f"node {ref!r} not found", field="node")
            kids = await conn.scalar(
                sa.select(sa.func.count()).where(nodes.c.tenant_id == tenant_id, nodes.c.parent_id == row.id)
            )
        return _node(row, bool(kids))

    async def by_ids(self, tenant_id: int, ids: list[int]) -> list[Node]:
        if not ids:
            return []
        async with self.db.connect() as conn:
            rows = (
                await conn.execute(sa.select(nodes).where(nodes.c.tenant_id == tenant_id, nodes.c.id.in_(ids)))
            ).all()
        return [_node(r) for r in rows]

    async def children(self, tenant_id: int, parent: str | None) -> list[Node]:
        parent_id = (await self.get(tenant_id, parent)).id if parent else None
        child = nodes.alias("child")
        kids = (
            sa.select(sa.func.count())
            .where(child.c.tenant_id == tenant_id, child.c.parent_id == nodes.c.id)
            .scalar_subquery()
        )
        query = (
            sa.select(nodes, kids.label("kids"))
            .where(
                nodes.c.tenant_id == tenant_id,
                nodes.c.parent_id == parent_id if parent_id is not None else nodes.c.parent_id.is_(None),
            )
            .order_by(nodes.c.browse_name)
        )
        async with self.db.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_node(r, bool(r.kids)) for r in rows]

    async def search(
        self, tenant_id: int, text: str, *, limit: int = 50, node_class: NodeClass | None = None
    ) -> list[Node]:
        """Nodes whose browse name, display name or path holds `text`, case-insensitively (the
        database's lower(): ASCII only on SQLite); names starting with it first, then by path."""
        needle = text.lower()
        child = nodes.alias("child")
        kids = (
            sa.select(sa.func.count())
            .where(child.c.tenant_id == tenant_id, child.c.parent_id == nodes.c.id)
            .scalar_subquery()
        )
        name, display, path = (sa.func.lower(c) for c in (nodes.c.browse_name, nodes.c.display_name, nodes.c.path))
        query = sa.select(nodes, kids.label("kids")).where(
            nodes.c.tenant_id == tenant_id,
            sa.or_(*(c.contains(needle, autoescape=True) for c in (name, display, path))),
        )
        if node_class is not None:
            query = query.where(nodes.c.node_class == node_class.value)
        starts = sa.case((sa.or_(name.startswith(needle, autoescape=True),
                                 display.startswith(needle, autoescape=True)), 0), else_=1)  # fmt: skip
        async with self.db.connect() as conn:
            rows = (await conn.execute(query.order_by(starts, nodes.c.path).limit(limit))).all()
        return [_node(r, bool(r.kids)) for r in rows]

    async def find(
        self, tenant_id: int, *, under: str | None = None, node_class: NodeClass | None = None, limit: int = 10_000
    ) -> list[Node]:
        query = sa.select(nodes).where(nodes.c.tenant_id == tenant_id)
        if under:
            query = query.where(subtree((await self.get(tenant_id, under)).path))
        if node_class:
            query = query.where(nodes.c.node_class == node_class.value)
        async with self.db.connect() as conn:
            rows = (await conn.execute(query.order_by(nodes.c.path).limit(limit))).all()
        return [_node(r) for r in rows]

    async def create(self, tenant_id: int, parent: str | None, spec: NodeSpec) -> Node:
        name = check_browse_name(spec.browse_name)
        parent_node = await self.get(tenant_id, parent) if parent else None
        check_child(parent_node.node_class if parent_node else None, spec.node_class)
        _check_range(spec.range_low, spec.range_high)
        if spec.node_class is not NodeClass.TAG and (spec.data_type or spec.unit):
            raise InvalidInput("only tags have a data type and a unit", field="data_type")
        path = join_path(parent_node.path if parent_node else None, name)
        try:
            node_id = await self._insert(tenant_id, parent_node, spec, name, path)
        except sa.exc.IntegrityError:  # created by a concurrent request between the check and the insert
            raise Conflict(f"{path!r} already exists", field="browse_name") from None
        return await self.get(tenant_id, node_id)

    async def _insert(self, tenant_id: int, parent_node: Node | None, spec: NodeSpec, name: str, path: str) -> str:
        async with self.db.begin() as conn:
            if await conn.scalar(sa.select(nodes.c.id).where(nodes.c.tenant_id == tenant_id, nodes.c.path == path)):
                raise Conflict(f"{path!r} already exists", field="browse_name")
            node_id = node_id_for_path(path)
            suffix = 1
            # A node moved away keeps its id; a newcomer at the old path gets a fresh one.
            while await conn.scalar(
                sa.select(nodes.c.id).where(nodes.c.tenant_id == tenant_id, nodes.c.node_id == node_id)
            ):
                suffix += 1
                node_id = node_id_for_path(f"{path}~{suffix}")
            await conn.execute(
                nodes.insert().values(
                    tenant_id=tenant_id,
                    node_id=node_id,
                    parent_id=parent_node.id if parent_node else None,
                    node_class=spec.node_class.value,
                    browse_name=name,
                    display_name=spec.display_name or name,
                    path=path,
                    description=spec.description,
                    data_type=(spec.data_type or DataType.DOUBLE).value if spec.node_class is NodeClass.TAG else None,
                    unit=spec.unit,
                    range_low=spec.range_low,
                    range_high=spec.range_high,
                    status=DeviceStatus.UNKNOWN.value if spec.node_class is NodeClass.DEVICE else None,
                )
            )
        return node_id

    async def create_tags(self, tenant_id: int, device: Node, names: list[str]) -> list[Node]:
        """Create several tags under a device at once (ingestion of a device's new tags)."""
        rows = []
        for name in names:
            check_browse_name(name)
            path = join_path(device.path, name)
            rows.append(
                {
                    "tenant_id": tenant_id, "node_id": node_id_for_path(path), "parent_id": device.id,
                    "node_class": NodeClass.TAG.value, "browse_name": name, "display_name": name, "path": path,
                    "description": "", "data_type": DataType.DOUBLE.value,
                }
            )  # fmt: skip
        try:
            async with self.db.begin() as conn:
                await conn.execute(nodes.insert(), rows)
        except sa.exc.IntegrityError:
            pass  # another request created some of them first: fall through and read them
        async with self.db.connect() as conn:
            result = await conn.execute(
                sa.select(nodes).where(
                    nodes.c.tenant_id == tenant_id,
                    nodes.c.parent_id == device.id,
                    nodes.c.browse_name.in_(names),
                )
            )
            return [_node(r) for r in result]

    async def update(self, tenant_id: int, ref: str, changes: dict[str, Any]) -> Node:
        node = await self.get(tenant_id, ref)
        values = {k: v for k, v in changes.items() if k in _EDITABLE}
        if "data_type" in values and values["data_type"] is not None:
            if node.node_class is not NodeClass.TAG:
                raise InvalidInput("only tags have a data type", field="data_type")
            values["data_type"] = DataType(values["data_type"]).value
        if "unit" in values and node.node_class is not NodeClass.TAG:
            raise InvalidInput("only tags have a unit", field="unit")
        _check_range(values.get("range_low", node.range_low), values.get("range_high", node.range_high))
        if values.get("display_name") == "":
            raise InvalidInput("display name must not be empty", field="display_name")
        new_name = changes.get("browse_name")
        async with self.db.begin() as conn:
            if values:
                await conn.execute(
                    nodes.update()
                    .where(nodes.c.tenant_id == tenant_id, nodes.c.id == node.id)
                    .values(**values, updated_at=now())
                )
            if new_name is not None and new_name != node.browse_name:
                name = check_browse_name(new_name)
                parent_path = node.path.rpartition("/")[0] or None
                await self._relocate(conn, tenant_id, node, join_path(parent_path, name), browse_name=name)
        return await self.get(tenant_id, node.node_id)

    async def move(self, tenant_id: int, ref: str, new_parent: str | None) -> Node:
        node = await self.get(tenant_id, ref)
        parent = await self.get(tenant_id, new_parent) if new_parent else None
        check_child(parent.node_class if parent else None, node.node_class)
        if parent and (parent.id == node.id or parent.path.startswith(node.path + "/")):
            raise InvalidInput("a node cannot be moved into its own subtree", field="parent")
        async with self.db.begin() as conn:
            await conn.execute(
                nodes.update()
                .where(nodes.c.tenant_id == tenant_id, nodes.c.id == node.id)
                .values(parent_id=parent.id if parent else None, updated_at=now())
            )
            await self._relocate(conn, tenant_id, node, join_path(parent.path if parent else None, node.browse_name))
        return await self.get(tenant_id, node.node_id)

    async def _relocate(
        self, conn: Any, tenant_id: int, node: Node, new_path: str, browse_name: str | None = None
    ) -> None:
        if new_path == node.path:
            return
        if await conn.scalar(sa.select(nodes.c.id).where(nodes.c.tenant_id == tenant_id, nodes.c.path == new_path)):
            raise Conflict(f"{new_path!r} already exists", field="parent")
        rows = (
            await conn.execute(
                sa.select(nodes.c.id, nodes.c.path).where(nodes.c.tenant_id == tenant_id, subtree(node.path))
            )
        ).all()
        # Two passes through temporary paths (";" never occurs in a real one) keep the per-tenant
        # unique path constraint satisfied at every statement.
        for r in rows:
            await conn.execute(nodes.update().where(nodes.c.id == r.id).values(path=f";moving;{r.id}"))
        for r in rows:
            values: dict[str, Any] = {"path": new_path + r.path[len(node.path) :]}
            if r.id == node.id and browse_name is not None:
                values["browse_name"] = browse_name
            await conn.execute(nodes.update().where(nodes.c.id == r.id).values(**values))

    async def delete(self, tenant_id: int, ref: str) -> list[int]:
        """Delete a node and its subtree; returns the ids of the tags that went with it."""
        node = await self.get(tenant_id, ref)
        async with self.db.begin() as conn:
            tag_ids = list(
                (
                    await conn.scalars(
                        sa.select(nodes.c.id).where(
                            nodes.c.tenant_id == tenant_id,
                            subtree(node.path),
                            nodes.c.node_class == NodeClass.TAG.value,
                        )
                    )
                ).all()
            )
            await conn.execute(nodes.delete().where(nodes.c.tenant_id == tenant_id, subtree(node.path)))
        return tag_ids

    async def set_status(self, tenant_id: int, ref: str, status: DeviceStatus) -> Node:
        node = await self.get(tenant_id, ref)
        if node.node_class is not NodeClass.DEVICE:
            raise InvalidInput(f"{node.path!r} is not a device", field="node")
        async with self.db.begin() as conn:
            await conn.execute(
                nodes.update()
                .where(nodes.c.tenant_id == tenant_id, nodes.c.id == node.id)
                .values(status=status.value, status_changed_at=now())
            )
        return await self.get(tenant_id, node.node_id)

    async def counts(self, tenant_id: int) -> dict[str, int]:
        query = (
            sa.select(nodes.c.node_class, nodes.c.status, sa.func.count())
            .where(nodes.c.tenant_id == tenant_id)
            .group_by(nodes.c.node_class, nodes.c.status)
        )
        result = {"folders": 0, "devices": 0, "tags": 0}
        async with self.db.connect() as conn:
            for node_class, status, n in (await conn.execute(query)).all():
                result[node_class + "s"] = result.get(node_class + "s", 0) + n
                if status:
                    result[f"devices_{status}"] = result.get(f"devices_{status}", 0) + n
        return result
