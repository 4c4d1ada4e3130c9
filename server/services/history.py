"""History and latest values, resolved through the caller's tenant before any sample is read."""

from __future__ import annotations

from dataclasses import dataclass

from server.domain.errors import InvalidInput
from server.domain.namespace import Node, NodeClass
from server.domain.permissions import Permission
from server.domain.principal import Principal
from server.domain.quality import Quality
from server.ingest.live_cache import LiveCache
from server.storage.historian.reader import HistoryReader, HistoryResult
from server.storage.repositories.nodes import NodeRepository

MAX_RANGE_S = 20 * 365 * 86_400


@dataclass(slots=True)
class LatestValue:
    node: Node
    ts: float | None
    value: float | None
    quality: Quality | None


class HistoryService:
    def __init__(self, nodes: NodeRepository, reader: HistoryReader, cache: LiveCache, max_points: int) -> None:
        self.nodes, self.reader, self.cache, self.max_points = nodes, reader, cache, max_points

    async def tag(self, who: Principal, ref: str) -> Node:
        node = await self.nodes.get(who.tenant_id, ref)
        if node.node_class is not NodeClass.TAG:
            raise InvalidInput(f"{node.path!r} is a {node.node_class.value}; history is kept for tags", field="node")
        return node

    async def read(
        self, who: Principal, ref: str, start: float, end: float, max_points: int
    ) -> tuple[Node, HistoryResult]:
        who.require(Permission.HISTORY_READ)
        if end <= start:
            raise InvalidInput("end must be after start", field="end")
        if end - start > MAX_RANGE_S:
            raise InvalidInput("the range may span at most 20 years", field="start")
        if not 1 <= max_points <= self.max_points:
            raise InvalidInput(f"max_points must be between 1 and {self.max_points}", field="max_points")
        node = await self.tag(who, ref)
        return node, await self.reader.read(node.id, start, end, max_points)

    async def latest(self, who: Principal, refs: list[str] | None, under: str | None) -> list[LatestValue]:
        who.require(Permission.NAMESPACE_READ)
        if refs:
            tags = [await self.tag(who, ref) for ref in refs]
        else:
            tags = await self.nodes.find(who.tenant_id, under=under, node_class=NodeClass.TAG)
        values = await self.cache.get([t.id for t in tags])
        out = []
        for tag in tags:
            v = values.get(tag.id)
            out.append(LatestValue(tag, *v) if v else LatestValue(tag, None, None, None))
        return out
