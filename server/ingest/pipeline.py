"""The one path of every sample: validate, map to namespace tags, publish live, store.

A request is all or nothing: every item is checked before anything is written, so a
client that gets a 4xx can fix the payload and resend it whole without duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat

from server.bus import Bus, Event, Message, ValueBatch
from server.domain.errors import DomainError, InvalidInput, NotFound
from server.domain.namespace import Node, NodeClass, UnknownTagPolicy, check_browse_name
from server.domain.quality import Quality
from server.domain.sample import TagUpdate
from server.ingest.live_cache import LiveCache
from server.storage.historian.columns import SampleColumns
from server.storage.historian.writer import HistorianWriter
from server.storage.repositories.nodes import NodeRepository
from server.storage.repositories.tenants import TenantRepository

log = logging.getLogger(__name__)

MIN_TS = 0.0
"""Nothing before 1970 is a real measurement; it is a device clock that was never set."""


@dataclass(slots=True)
class DeviceValues:
    """One device's values at one time, as an adapter decoded them."""

    device: str
    values: dict[str, float]
    ts: float | None = None
    quality: Quality = Quality.GOOD


@dataclass(slots=True)
class AdapterStats:
    received: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    dead_lettered: int = 0
    reconnects: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "received": self.received,
            "accepted": self.accepted,
            "rejected": dict(self.rejected),
            "dead_lettered": self.dead_lettered,
            "reconnects": self.reconnects,
        }


@dataclass(slots=True)
class _Device:
    node: Node
    tags: dict[str, Node]


@dataclass(slots=True)
class IngestResult:
    accepted: int
    created_tags: list[str]
    created_by: list[int] = field(default_factory=list)
    """For each created tag, the index of the item that named it first: a merged call is split
    back into its messages' results with it."""


class IngestPipeline:
    def __init__(
        self,
        *,
        nodes: NodeRepository,
        tenants: TenantRepository,
        writer: HistorianWriter,
        cache: LiveCache,
        bus: Bus,
        max_future_skew_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.nodes, self.tenants, self.writer, self.cache, self.bus = nodes, tenants, writer, cache, bus
        self.max_future_skew_s = max_future_skew_s
        self.clock = clock
        self.stats: dict[tuple[int | None, str], AdapterStats] = {}
        """Per tenant and adapter; tenant None holds what could not be attributed (bad topics...)."""
        self._devices: dict[tuple[int, str], _Device] = {}
        self._loading: dict[tuple[int, str], asyncio.Future[_Device]] = {}
        """Lookups under way: concurrent messages of an uncached device wait for one query, so a
        burst after start-up or a namespace change doesn't become a burst of identical queries."""
        self._generation: dict[int, int] = {}
        self._subscription = bus.subscribe(None, self._on_message)

    def adapter(self, source: str, tenant_id: int | None = None) -> AdapterStats:
        return self.stats.setdefault((tenant_id, source), AdapterStats())

    def stats_for(self, tenant_id: int | None) -> dict[str, dict[str, object]]:
        """One tenant's counters by adapter; None sums every tenant (system administrators)."""
        out: dict[str, AdapterStats] = {}
        for (owner, source), s in self.stats.items():
            if tenant_id is not None and owner != tenant_id:
                continue
            total = out.setdefault(source, AdapterStats())
            total.received += s.received
            total.accepted += s.accepted
            total.rejected.update(s.rejected)
            total.dead_lettered += s.dead_lettered
            total.reconnects += s.reconnects
        return {source: s.as_dict() for source, s in sorted(out.items())}

    def _on_message(self, message: Message) -> None:
        if isinstance(message, Event) and message.kind == "namespace":
            self.invalidate(message.tenant_id)

    def invalidate(self, tenant_id: int) -> None:
        self._generation[tenant_id] = self._generation.get(tenant_id, 0) + 1
        for key in [k for k in self._devices if k[0] == tenant_id]:
            del self._devices[key]
        for key in [k for k in self._loading if k[0] == tenant_id]:
            del self._loading[key]  # those waiting get the old answer; the next message asks again

    async def _device(self, tenant_id: int, ref: str, index: int) -> _Device:
        key = (tenant_id, ref)
        cached = self._devices.get(key)
        if cached is not None:
            return cached
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(self._load_device(tenant_id, ref, self._generation.get(tenant_id, 0)))
            self._loading[key] = loading
            loading.add_done_callback(partial(self._loaded, key))
        try:
            return await asyncio.shield(loading)
        except NotFound:
            raise NotFound(f"device {ref!r} not found", field=f"[{index}].device") from None
        except InvalidInput as exc:
            raise InvalidInput(exc.detail, field=f"[{index}].device") from None

    def _loaded(self, key: tuple[int, str], done: asyncio.Future[_Device]) -> None:
        if self._loading.get(key) is done:
            del self._loading[key]
        if not done.cancelled():
            done.exception()  # retrieved here: a waiter that was cancelled must not leave it unread

    async def _load_device(self, tenant_id: int, ref: str, generation: int) -> _Device:
        try:
            node = await self.nodes.get(tenant_id, ref)
        except (NotFound, InvalidInput):
            raise NotFound(f"device {ref!r} not found") from None
        if node.node_class is not NodeClass.DEVICE:
            raise InvalidInput(f"{ref!r} is a {node.node_class.value}, not a device")
        tags = {
            n.browse_name: n
            for n in await self.nodes.children(tenant_id, node.node_id)
            if n.node_class is NodeClass.TAG
        }
        entry = _Device(node, tags)
        if self._generation.get(tenant_id, 0) == generation:  # not changed while we asked
            self._devices[(tenant_id, ref)] = self._devices[(tenant_id, node.node_id)] = entry
        return entry

    async def ingest(
        self, tenant_id: int, items: list[DeviceValues], *, source: str = "http", wait: bool = True,
        urgent: bool = False,
    ) -> IngestResult:  # fmt: skip
        """`urgent`: the historian commits without lingering (`HistorianWriter.submit_nowait`)."""
        stats = self.adapter(source, tenant_id)
        stats.received += sum(len(i.values) for i in items)
        try:
            result = await self._ingest(tenant_id, items, wait, urgent)
        except (InvalidInput, NotFound) as exc:
            stats.rejected[refusal_reason(exc)] += sum(len(i.values) for i in items)
            raise
        stats.accepted += result.accepted
        return result

    async def _ingest(self, tenant_id: int, items: list[DeviceValues], wait: bool, urgent: bool) -> IngestResult:
        now = self.clock()
        latest_ok = now + self.max_future_skew_s
        devices: list[_Device] = []
        missing: dict[int, list[str]] = {}
        first_named: dict[tuple[int, str], int] = {}
        policy: UnknownTagPolicy | None = None
        for i, item in enumerate(items):
            if item.ts is not None and not (MIN_TS < item.ts <= latest_ok):
                raise InvalidInput(
                    f"timestamp is more than {self.max_future_skew_s:.0f} s in the future or before 1970",
                    field=f"[{i}].ts",
                )
            device = await self._device(tenant_id, item.device, i)
            devices.append(device)
            for name in item.values:
                if name in device.tags or name in missing.get(device.node.id, ()):
                    continue
                if policy is None:
                    policy = UnknownTagPolicy((await self.tenants.get(tenant_id)).settings["unknown_tags"])
                if policy is UnknownTagPolicy.REJECT:
                    raise NotFound(
                        f"device {device.node.path!r} has no tag {name!r} and this tenant refuses unknown tags",
                        field=f"[{i}].values.{name}",
                    )
                try:
                    check_browse_name(name)
                except InvalidInput as exc:
                    raise InvalidInput(f"tag name {name!r}: {exc.detail}", field=f"[{i}].values.{name}") from None
                missing.setdefault(device.node.id, []).append(name)
                first_named[(device.node.id, name)] = i
        created: list[str] = []
        created_by: list[int] = []
        created_ids: list[str] = []
        if missing:
            by_id = {d.node.id: d for d in devices}
            for device_id, names in missing.items():
                device = by_id[device_id]
                for tag in await self.nodes.create_tags(tenant_id, device.node, names):
                    device.tags[tag.browse_name] = tag
                    created.append(tag.path)
                    created_by.append(first_named[(device_id, tag.browse_name)])
                    created_ids.append(tag.node_id)
            self.bus.publish(Event(tenant_id, "namespace", {"created": created_ids}))
        tag_ids: list[int] = []
        stamps: list[float] = []
        values: list[float] = []
        qualities: list[int] = []
        updates: list[TagUpdate] = []
        offer = self.cache.offer
        for item, device in zip(items, devices, strict=True):  # the per-sample loop: kept lean
            ts = item.ts if item.ts is not None else now
            quality = item.quality
            tags, vals = device.tags, item.values
            stamps.extend(repeat(ts, len(vals)))
            qualities.extend(repeat(int(quality), len(vals)))
            values.extend(vals.values())
            for name, value in vals.items():
                tag = tags[name]
                tag_ids.append(tag.id)
                if offer(tag.id, ts, value, quality):
                    updates.append(TagUpdate(tenant_id, tag.id, tag.node_id, tag.path, ts, value, quality))
        if not tag_ids:
            return IngestResult(0, created, created_by)
        if updates:
            self.bus.publish(ValueBatch(tenant_id, updates))
        done = await self.writer.submit(SampleColumns.from_lists(tag_ids, stamps, values, qualities), urgent=urgent)
        if wait:
            await done
        return IngestResult(len(tag_ids), created, created_by)

    def close(self) -> None:
        self._subscription.close()


def refusal_reason(exc: DomainError) -> str:
    """The counter name of a refusal, also the dead letter's reason: the same word everywhere."""
    name = exc.field or ""
    if name.endswith(".ts"):
        return "bad_timestamp"
    if ".values." in name:
        return "unknown_tag" if isinstance(exc, NotFound) else "bad_tag_name"
    if name.endswith(".device"):
        return "unknown_device" if isinstance(exc, NotFound) else "not_a_device"
    return "invalid"
