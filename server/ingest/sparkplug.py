"""Sparkplug B (spBv1.0) for the MQTT adapter: the payload codec and a host application's state.

Topics are `spBv1.0/<group>/<NBIRTH|NDATA|NDEATH|DBIRTH|DDATA|DDEATH|NCMD|DCMD>/<edge>[/<device>]`;
the group id is the tenant's name (the broker's ACLs decide who may publish under it).

Where the data lands in the namespace: an edge node is a folder `<edge>`; its own metrics
belong to the device `<edge>/_node` (a device cannot hold another device, so the node's
metrics can't live on `<edge>` itself) and each Sparkplug device is the device
`<edge>/<device>`. A metric name's '/' (Sparkplug's folder separator) becomes '.' in the tag's
browse name ("Motor/Speed" -> "Motor.Speed"). Numeric and boolean metrics become tags with
their Sparkplug data type (and `engUnit`/`engLow`/`engHigh` properties as unit and range);
strings, bytes, datasets and templates are not historised and are skipped.

The protobuf schema (eclipse/tahu `sparkplug_b.proto`) is built in code into a private
descriptor pool, so there is no generated module and no protoc step; fields this decoder
does not model (datasets, templates, metadata, extensions) are kept as unknown fields.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, Protocol, TypeGuard

from google.protobuf import (  # type: ignore[import-untyped]
    descriptor_pb2,
    descriptor_pool,
    message_factory,
)
from google.protobuf.message import DecodeError as _ProtobufError  # type: ignore[import-untyped]

from server.domain.errors import DomainError
from server.domain.namespace import DataType, DeviceStatus, NodeClass, check_browse_name
from server.domain.quality import Quality
from server.ingest.adapter import IngestContext
from server.ingest.payloads import DecodeError
from server.ingest.pipeline import DeviceValues
from server.storage.repositories.nodes import NodeSpec

log = logging.getLogger(__name__)

NAMESPACE = "spBv1.0"
NODE_DEVICE = "_node"
"""The device under `<edge>` that holds the edge node's own metrics (reserved device id)."""
REBIRTH_METRIC = "Node Control/Rebirth"
REBIRTH_HOLDOFF_S = 5.0
"""At most one rebirth request per edge node in this long: a lossy link must not cause a storm."""


class SpType(IntEnum):
    """Sparkplug B data types (the `datatype` of a metric)."""

    UNKNOWN = 0
    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14
    UUID = 15
    DATASET = 16
    BYTES = 17
    FILE = 18
    TEMPLATE = 19


_TAG_TYPES: dict[int, DataType] = {
    SpType.INT8: DataType.INT32, SpType.INT16: DataType.INT32, SpType.INT32: DataType.INT32,
    SpType.UINT8: DataType.INT32, SpType.UINT16: DataType.UINT16, SpType.UINT32: DataType.INT64,
    SpType.INT64: DataType.INT64, SpType.UINT64: DataType.INT64, SpType.FLOAT: DataType.FLOAT,
    SpType.DOUBLE: DataType.DOUBLE, SpType.BOOLEAN: DataType.BOOLEAN,
}  # fmt: skip
"""Sparkplug types the historian keeps (as doubles), with the OPC UA type the tag declares."""
_INT_FIELD = {SpType.INT8, SpType.INT16, SpType.INT32, SpType.UINT8, SpType.UINT16, SpType.UINT32}
_LONG_FIELD = {SpType.INT64, SpType.UINT64, SpType.DATETIME}
_SIGNED = {SpType.INT8, SpType.INT16, SpType.INT32, SpType.INT64}


class MessageType(StrEnum):
    NBIRTH = "NBIRTH"
    NDATA = "NDATA"
    NDEATH = "NDEATH"
    DBIRTH = "DBIRTH"
    DDATA = "DDATA"
    DDEATH = "DDEATH"
    NCMD = "NCMD"
    DCMD = "DCMD"
    STATE = "STATE"


# --- the protobuf schema, built in code --------------------------------------------------

_F = descriptor_pb2.FieldDescriptorProto


def _schema() -> Any:
    """The `Payload` message class of sparkplug_b.proto (the parts a historian uses)."""
    fdp = descriptor_pb2.FileDescriptorProto(
        name="iiot/sparkplug_b.proto", package="org.eclipse.tahu.protobuf", syntax="proto2"
    )
    payload = fdp.message_type.add(name="Payload")
    prefix = ".org.eclipse.tahu.protobuf.Payload."

    def add(msg: Any, name: str, number: int, ftype: int, *, repeated: bool = False, ref: str = "",
            oneof: int | None = None) -> None:  # fmt: skip
        f = msg.field.add(name=name, number=number, type=ftype)
        f.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
        if ref:
            f.type_name = prefix + ref
        if oneof is not None:
            f.oneof_index = oneof

    value = payload.nested_type.add(name="PropertyValue")
    value.oneof_decl.add(name="value")
    add(value, "type", 1, _F.TYPE_UINT32)
    add(value, "is_null", 2, _F.TYPE_BOOL)
    for name, number, ftype in (
        ("int_value", 3, _F.TYPE_UINT32), ("long_value", 4, _F.TYPE_UINT64), ("float_value", 5, _F.TYPE_FLOAT),
        ("double_value", 6, _F.TYPE_DOUBLE), ("boolean_value", 7, _F.TYPE_BOOL), ("string_value", 8, _F.TYPE_STRING),
    ):  # fmt: skip
        add(value, name, number, ftype, oneof=0)
    props = payload.nested_type.add(name="PropertySet")
    add(props, "keys", 1, _F.TYPE_STRING, repeated=True)
    add(props, "values", 2, _F.TYPE_MESSAGE, repeated=True, ref="PropertyValue")
    props.extension_range.add(start=3, end=536870912)

    metric = payload.nested_type.add(name="Metric")
    metric.oneof_decl.add(name="value")
    add(metric, "name", 1, _F.TYPE_STRING)
    add(metric, "alias", 2, _F.TYPE_UINT64)
    add(metric, "timestamp", 3, _F.TYPE_UINT64)
    add(metric, "datatype", 4, _F.TYPE_UINT32)
    add(metric, "is_historical", 5, _F.TYPE_BOOL)
    add(metric, "is_transient", 6, _F.TYPE_BOOL)
    add(metric, "is_null", 7, _F.TYPE_BOOL)
    add(metric, "properties", 9, _F.TYPE_MESSAGE, ref="PropertySet")
    for name, number, ftype in (
        ("int_value", 10, _F.TYPE_UINT32), ("long_value", 11, _F.TYPE_UINT64), ("float_value", 12, _F.TYPE_FLOAT),
        ("double_value", 13, _F.TYPE_DOUBLE), ("boolean_value", 14, _F.TYPE_BOOL),
        ("string_value", 15, _F.TYPE_STRING), ("bytes_value", 16, _F.TYPE_BYTES),
    ):  # fmt: skip
        add(metric, name, number, ftype, oneof=0)

    add(payload, "timestamp", 1, _F.TYPE_UINT64)
    add(payload, "metrics", 2, _F.TYPE_MESSAGE, repeated=True, ref="Metric")
    add(payload, "seq", 3, _F.TYPE_UINT64)
    add(payload, "uuid", 4, _F.TYPE_STRING)
    add(payload, "body", 5, _F.TYPE_BYTES)
    payload.extension_range.add(start=6, end=536870912)

    pool = descriptor_pool.DescriptorPool()  # private: never clashes with a generated module
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("org.eclipse.tahu.protobuf.Payload"))


_Payload = _schema()

Value = float | int | bool | str | bytes


@dataclass(slots=True)
class Metric:
    """One decoded metric; `value` is None when the metric is null or carries no value."""

    name: str | None = None
    alias: int | None = None
    datatype: int | None = None
    value: Value | None = None
    timestamp: int | None = None
    """Epoch milliseconds, as Sparkplug sends them."""
    is_historical: bool = False
    properties: dict[str, Value] = field(default_factory=dict)


@dataclass(slots=True)
class Payload:
    timestamp: int | None = None
    seq: int | None = None
    metrics: list[Metric] = field(default_factory=list)


def _signed(raw: int, bits: int) -> int:
    return raw - (1 << bits) if raw >= 1 << (bits - 1) else raw


def _metric_value(m: Any, datatype: int | None) -> Value | None:
    which = m.WhichOneof("value")
    if which is None or (m.HasField("is_null") and m.is_null):
        return None
    raw: Value = getattr(m, which)
    if which in ("int_value", "long_value") and isinstance(raw, int) and datatype in _SIGNED:
        return _signed_as(raw, datatype)
    return raw


def decode_payload(raw: bytes) -> Payload:
    """The payload, or DecodeError('invalid_protobuf')."""
    try:
        msg = _Payload.FromString(raw)
    except (_ProtobufError, ValueError, RuntimeError) as exc:
        raise DecodeError("invalid_protobuf", f"not a Sparkplug B payload: {exc}") from None
    out = Payload(
        timestamp=msg.timestamp if msg.HasField("timestamp") else None,
        seq=msg.seq if msg.HasField("seq") else None,
    )
    for m in msg.metrics:
        datatype = m.datatype if m.HasField("datatype") else None
        metric = Metric(
            name=m.name if m.HasField("name") else None,
            alias=m.alias if m.HasField("alias") else None,
            datatype=datatype,
            value=_metric_value(m, datatype),
            timestamp=m.timestamp if m.HasField("timestamp") else None,
            is_historical=bool(m.is_historical),
        )
        if m.HasField("properties"):
            for key, pv in zip(m.properties.keys, m.properties.values, strict=False):
                which = pv.WhichOneof("value")
                if which is not None and not pv.is_null:
                    metric.properties[key] = getattr(pv, which)
        out.metrics.append(metric)
    return out


def encode_payload(payload: Payload) -> bytes:
    """Encode (for rebirth requests, and for publishers such as the tests and the simulator)."""
    msg = _Payload()
    if payload.timestamp is not None:
        msg.timestamp = payload.timestamp
    if payload.seq is not None:
        msg.seq = payload.seq
    for metric in payload.metrics:
        m = msg.metrics.add()
        if metric.name is not None:
            m.name = metric.name
        if metric.alias is not None:
            m.alias = metric.alias
        if metric.timestamp is not None:
            m.timestamp = metric.timestamp
        if metric.datatype is not None:
            m.datatype = metric.datatype
        if metric.is_historical:
            m.is_historical = True
        for key, value in metric.properties.items():
            m.properties.keys.append(key)
            pv = m.properties.values.add()
            _set_property(pv, value)
        if metric.value is None:
            m.is_null = True
            continue
        _set_value(m, metric.datatype, metric.value)
    return bytes(msg.SerializeToString())


def _set_value(m: Any, datatype: int | None, value: Value) -> None:
    if isinstance(value, bool) or datatype == SpType.BOOLEAN:
        m.boolean_value = bool(value)
    elif isinstance(value, bytes):
        m.bytes_value = value
    elif isinstance(value, str):
        m.string_value = value
    elif datatype in _INT_FIELD:
        m.int_value = int(value) & 0xFFFFFFFF
    elif datatype in _LONG_FIELD:
        m.long_value = int(value) & 0xFFFFFFFFFFFFFFFF
    elif datatype == SpType.FLOAT:
        m.float_value = float(value)
    else:
        m.double_value = float(value)


def _set_property(pv: Any, value: Value) -> None:
    if isinstance(value, bool):
        pv.type, pv.boolean_value = SpType.BOOLEAN, value
    elif isinstance(value, int):
        pv.type, pv.long_value = SpType.INT64, value & 0xFFFFFFFFFFFFFFFF
    elif isinstance(value, float):
        pv.type, pv.double_value = SpType.DOUBLE, value
    elif isinstance(value, str):
        pv.type, pv.string_value = SpType.STRING, value


def rebirth_request(now_ms: int) -> bytes:
    """The NCMD payload asking an edge node to publish all its births again."""
    return encode_payload(
        Payload(timestamp=now_ms, metrics=[Metric(REBIRTH_METRIC, None, SpType.BOOLEAN, True, now_ms)])
    )


@dataclass(frozen=True, slots=True)
class Topic:
    group: str
    kind: MessageType
    edge: str
    device: str | None

    def __str__(self) -> str:
        tail = f"/{self.device}" if self.device is not None else ""
        return f"{NAMESPACE}/{self.group}/{self.kind.value}/{self.edge}{tail}"


def parse_topic(levels: list[str]) -> Topic | None:
    """`spBv1.0/...` split on '/'; None for STATE and for what this host does not consume."""
    if len(levels) < 3 or levels[0] != NAMESPACE:
        raise DecodeError("invalid_topic", "not a spBv1.0 topic")
    if levels[1] == MessageType.STATE:
        return None
    if len(levels) not in (4, 5):
        raise DecodeError("invalid_topic", "expected spBv1.0/<group>/<type>/<edge>[/<device>]")
    try:
        kind = MessageType(levels[2])
    except ValueError:
        raise DecodeError("invalid_topic", f"unknown Sparkplug message type {levels[2]!r}") from None
    if kind in (MessageType.NCMD, MessageType.DCMD, MessageType.STATE):
        return None  # commands are for edge nodes (ours come back to us); not data
    device = levels[4] if len(levels) == 5 else None
    if (device is None) != kind.startswith("N"):
        raise DecodeError("invalid_topic", f"{kind.value} needs {'no ' if kind.startswith('N') else 'a '}device id")
    for name in (levels[3], device):
        if name is None:
            continue
        try:
            check_browse_name(name)
        except DomainError:
            raise DecodeError("invalid_topic", f"{name!r} can't name a node") from None
    if device == NODE_DEVICE:
        raise DecodeError("invalid_topic", f"device id {NODE_DEVICE!r} is reserved for the edge node's metrics")
    return Topic(levels[1], kind, levels[3], device)


def state_topic(host_id: str) -> str:
    return f"{NAMESPACE}/STATE/{host_id}"


def state_payload(online: bool, ts_ms: int) -> bytes:
    """Sparkplug 3.0 host STATE (JSON, retained): edge nodes with a primary host wait for it."""
    return f'{{"online":{"true" if online else "false"},"timestamp":{ts_ms}}}'.encode()


# --- the host application's state -------------------------------------------------------


class Reject(Protocol):
    """Counts and dead-letters a message (bound to the adapter's source name)."""

    def __call__(
        self, tenant_id: int | None, origin: str, error: DecodeError, payload: bytes, values: int = 1
    ) -> Awaitable[None]: ...


@dataclass(slots=True)
class _Known:
    tag: str | None
    """None: declared at birth but not historised (a string, a control metric)."""
    datatype: int | None


@dataclass(slots=True)
class _Device:
    path: str
    by_alias: dict[int, _Known] = field(default_factory=dict)
    by_name: dict[str, _Known] = field(default_factory=dict)
    last: dict[str, tuple[float, float]] = field(default_factory=dict)
    """The last value this host took in per tag: a death in the same batch as the data before it
    must repeat that value, which the live cache has not seen yet."""

    def remember(self, items: list[DeviceValues], now: float) -> list[DeviceValues]:
        for item in items:
            ts = item.ts if item.ts is not None else now
            self.last.update((name, (ts, value)) for name, value in item.values.items())
        return items


@dataclass(slots=True)
class _Edge:
    next_seq: int | None = None
    """None until NBIRTH: the edge node is not born and its data can't be interpreted."""
    bd_seq: int | None = None
    devices: dict[str | None, _Device] = field(default_factory=dict)
    """The node itself under None, Sparkplug devices by id; only born ones are here."""
    rebirth_at: float = -math.inf
    birth_failed: bool = False
    """Its NBIRTH could not be placed in the namespace: asking for another would only loop."""


def tag_name(metric_name: str) -> str | None:
    """A metric name as a browse name, or None when it can't be one."""
    name = metric_name.strip().replace("/", ".").replace(";", "_")
    try:
        return check_browse_name(name)
    except DomainError:
        return None


def _quality(props: dict[str, Value]) -> Quality:
    """The `Quality` property (OPC DA codes as Ignition sends them: 192 Good, 64-191 Uncertain)."""
    raw = props.get("Quality")
    if not isinstance(raw, int) or isinstance(raw, bool):
        return Quality.GOOD
    if raw >= 192:
        return Quality.GOOD
    return Quality.UNCERTAIN if raw >= 64 else Quality.BAD


class SparkplugHost:
    """What a Sparkplug host application remembers: births (aliases, types) and `seq` per edge.

    `handle` is called in arrival order (the adapter processes a connection's messages one
    after another before storing them in batches), returns the values to store, and records
    rejections itself. State is per process: after a restart every edge node is asked for a
    rebirth the first time it sends data.
    """

    def __init__(
        self,
        ctx: IngestContext,
        reject: Reject,
        publish: Callable[[str, bytes, int], None],
        *,
        max_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ctx, self.reject, self.publish, self.max_bytes, self.clock = ctx, reject, publish, max_bytes, clock
        self.edges: dict[tuple[int, str], _Edge] = {}
        self.seq_gaps = 0
        self.rebirths_requested = 0

    async def handle(self, tenant_id: int, topic: Topic, raw: bytes) -> list[DeviceValues]:
        origin = str(topic)
        if len(raw) > self.max_bytes:
            await self.reject(tenant_id, origin, DecodeError("too_large", f"{len(raw)} bytes > {self.max_bytes}"), raw)
            return []
        try:
            payload = decode_payload(raw)
        except DecodeError as exc:
            await self.reject(tenant_id, origin, exc, raw)
            return []
        edge = self.edges.setdefault((tenant_id, topic.edge), _Edge())
        kind = topic.kind
        if kind is MessageType.NBIRTH:
            return await self._nbirth(tenant_id, topic, edge, payload, raw)
        if kind is MessageType.NDEATH:
            return await self._ndeath(tenant_id, topic, edge, payload)
        if edge.next_seq is None:
            if kind is MessageType.DDEATH:  # a death needs no birth: the device is simply gone
                return await self._dead(tenant_id, {f"{topic.edge}/{topic.device}": None})
            await self._before_birth(tenant_id, topic, raw, f"{kind.value} before the edge node's NBIRTH")
            return []
        self._check_seq(tenant_id, topic, edge, payload)
        if kind is MessageType.DBIRTH:
            return await self._dbirth(tenant_id, topic, edge, payload, raw)
        if kind is MessageType.DDEATH:
            return await self._dead(tenant_id, {f"{topic.edge}/{topic.device}": edge.devices.pop(topic.device, None)})
        device = edge.devices.get(topic.device)
        if device is None:
            await self._before_birth(tenant_id, topic, raw, f"{kind.value} before the device's DBIRTH")
            return []
        return await self._data(tenant_id, topic, edge, device, payload)

    # -- births ----------------------------------------------------------------------

    async def _nbirth(self, tenant_id: int, topic: Topic, edge: _Edge, p: Payload, raw: bytes) -> list[DeviceValues]:
        if p.seq not in (None, 0):
            log.info("sparkplug: %s has seq %s, expected 0", topic, p.seq)
        edge.next_seq = ((p.seq or 0) + 1) % 256
        edge.devices.clear()  # every device must be born again after its node
        bd_seq = next((m.value for m in p.metrics if m.name == "bdSeq"), None)
        edge.bd_seq = int(bd_seq) if isinstance(bd_seq, int | float) else None
        metrics = [m for m in p.metrics if m.name != "bdSeq" and not (m.name or "").startswith("Node Control/")]
        return await self._birth(tenant_id, topic, edge, None, f"{topic.edge}/{NODE_DEVICE}", metrics, p, raw)

    async def _dbirth(self, tenant_id: int, topic: Topic, edge: _Edge, p: Payload, raw: bytes) -> list[DeviceValues]:
        metrics = [m for m in p.metrics if not (m.name or "").startswith("Device Control/")]
        path = f"{topic.edge}/{topic.device}"
        return await self._birth(tenant_id, topic, edge, topic.device, path, metrics, p, raw)

    async def _birth(
        self, tenant_id: int, topic: Topic, edge: _Edge, key: str | None, path: str, metrics: list[Metric],
        p: Payload, raw: bytes,
    ) -> list[DeviceValues]:  # fmt: skip
        device = _Device(path)
        specs: dict[str, NodeSpec] = {}
        values: list[tuple[str, Metric]] = []
        for m in metrics:
            if m.name is None:
                continue
            name = tag_name(m.name)
            data_type = _TAG_TYPES.get(m.datatype) if m.datatype is not None else None
            if name is None:
                log.info("sparkplug: %s: metric %r can't be a tag name; skipped", topic, m.name)
            known = _Known(name if data_type is not None else None, m.datatype)
            device.by_name[m.name] = known
            if m.alias is not None:
                device.by_alias[m.alias] = known
            if name is not None and data_type is not None:
                specs[name] = _tag_spec(name, data_type, m.properties)
                values.append((name, m))
        try:
            await self.ctx.namespace.ensure_device(tenant_id, path, list(specs.values()), actor="sparkplug")
            await self.ctx.namespace.set_device_status(tenant_id, path, DeviceStatus.ONLINE)
        except DomainError as exc:
            if key is None:
                edge.next_seq = None  # the node is unusable until it is born into a valid place
                edge.birth_failed = True
            await self.reject(tenant_id, str(topic), DecodeError("invalid_birth", f"{path}: {exc.detail}"), raw)
            return []
        edge.devices[key] = device
        if key is None:
            edge.birth_failed = False
        return device.remember(_values(path, values, p), self.clock())

    # -- data ------------------------------------------------------------------------

    async def _data(self, tenant_id: int, topic: Topic, edge: _Edge, device: _Device, p: Payload) -> list[DeviceValues]:
        resolved: list[tuple[str, Metric]] = []
        unknown = 0
        for m in p.metrics:
            known = device.by_alias.get(m.alias) if m.alias is not None else None
            if known is None and m.name is not None:
                known = device.by_name.get(m.name)
            if known is None:
                unknown += 1
                continue
            if known.tag is None:
                continue
            if m.datatype is None:
                m.datatype = known.datatype
                if m.datatype in _SIGNED and isinstance(m.value, int) and not isinstance(m.value, bool):
                    m.value = _signed_as(m.value, m.datatype)  # decoded before its type was known
            resolved.append((known.tag, m))
        if unknown:
            stats = self.ctx.stats("sparkplug", tenant_id)
            stats.received += unknown
            stats.rejected["unknown_metric"] += unknown
            log.warning("sparkplug: %s: %d metric(s) with an alias or name not in the birth", topic, unknown)
            self._request_rebirth(tenant_id, topic, edge)
        return device.remember(_values(device.path, resolved, p), self.clock())

    # -- deaths ----------------------------------------------------------------------

    async def _ndeath(self, tenant_id: int, topic: Topic, edge: _Edge, p: Payload) -> list[DeviceValues]:
        bd_seq = next((m.value for m in p.metrics if m.name == "bdSeq"), None)
        if edge.bd_seq is not None and isinstance(bd_seq, int | float) and int(bd_seq) != edge.bd_seq:
            log.info("sparkplug: %s: bdSeq %s is not the current birth's %s; ignored", topic, bd_seq, edge.bd_seq)
            return []
        edge.next_seq, edge.bd_seq = None, None
        born = {d.path: d for d in edge.devices.values()}
        edge.devices.clear()
        try:
            devices = await self.ctx.nodes.find(tenant_id, under=topic.edge, node_class=NodeClass.DEVICE)
        except DomainError:  # the edge never had a birth here
            return []
        return await self._dead(tenant_id, {d.path: born.get(d.path) for d in devices})

    async def _dead(self, tenant_id: int, devices: dict[str, _Device | None]) -> list[DeviceValues]:
        """Offline, and each tag's last value again with Bad quality (so trends and operators see it)."""
        now = self.clock()
        out: list[DeviceValues] = []
        for path, born in devices.items():
            try:
                await self.ctx.namespace.set_device_status(tenant_id, path, DeviceStatus.OFFLINE)
                tags = [n for n in await self.ctx.nodes.children(tenant_id, path) if n.node_class is NodeClass.TAG]
            except DomainError:
                continue
            cached = await self.ctx.pipeline.cache.get([t.id for t in tags])
            last = {t.browse_name: cached[t.id][:2] for t in tags if t.id in cached}
            if born is not None:
                names = {t.browse_name for t in tags}
                last.update((name, tv) for name, tv in born.last.items() if name in names)
            if last:
                ts = max([now, *(t for t, _ in last.values())])
                out.append(DeviceValues(path, {name: v for name, (_, v) in last.items()}, ts, Quality.BAD))
        return out

    # -- sequence and rebirth ----------------------------------------------------------

    def _check_seq(self, tenant_id: int, topic: Topic, edge: _Edge, p: Payload) -> None:
        expected = edge.next_seq
        if p.seq is not None and p.seq == expected:
            edge.next_seq = (p.seq + 1) % 256
            return
        self.seq_gaps += 1
        log.warning("sparkplug: %s: seq %s, expected %s: messages were lost", topic, p.seq, expected)
        if p.seq is not None:
            edge.next_seq = (p.seq + 1) % 256
        self._request_rebirth(tenant_id, topic, edge)

    async def _before_birth(self, tenant_id: int, topic: Topic, raw: bytes, detail: str) -> None:
        await self.reject(tenant_id, str(topic), DecodeError("before_birth", detail), raw)
        edge = self.edges.setdefault((tenant_id, topic.edge), _Edge())
        if not edge.birth_failed:
            self._request_rebirth(tenant_id, topic, edge)

    def _request_rebirth(self, tenant_id: int, topic: Topic, edge: _Edge) -> None:
        now = self.clock()
        if now - edge.rebirth_at < REBIRTH_HOLDOFF_S:
            return
        edge.rebirth_at = now
        self.rebirths_requested += 1
        ncmd = Topic(topic.group, MessageType.NCMD, topic.edge, None)
        log.info("sparkplug: asking %s/%s for a rebirth", topic.group, topic.edge)
        self.publish(str(ncmd), rebirth_request(int(now * 1000)), 0)


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _tag_spec(name: str, data_type: DataType, props: dict[str, Value]) -> NodeSpec:
    unit, low, high = props.get("engUnit"), props.get("engLow"), props.get("engHigh")
    range_low = float(low) if _number(low) else None
    range_high = float(high) if _number(high) else None
    if range_low is not None and range_high is not None and range_low >= range_high:
        range_low = range_high = None
    return NodeSpec(
        NodeClass.TAG, name, data_type=data_type, unit=unit[:32] if isinstance(unit, str) and unit else None,
        range_low=range_low, range_high=range_high,
    )  # fmt: skip


def _signed_as(raw: int, datatype: int) -> int:
    """Signed types travel as two's complement in an unsigned field (some publishers use 8/16 bits)."""
    if datatype == SpType.INT64:
        return _signed(raw, 64)
    if raw >= 1 << 31:
        return _signed(raw, 32)
    width = 8 if datatype == SpType.INT8 else 16 if datatype == SpType.INT16 else 32
    return _signed(raw, width) if raw < 1 << width else raw


def _values(path: str, metrics: list[tuple[str, Metric]], p: Payload) -> list[DeviceValues]:
    """The numeric values grouped by (timestamp, quality): one DeviceValues per group."""
    groups: dict[tuple[float | None, Quality], dict[str, float]] = {}
    for name, m in metrics:
        value = m.value
        if isinstance(value, bool):
            number = 1.0 if value else 0.0
        elif isinstance(value, int | float) and math.isfinite(value):
            number = float(value)
        else:
            continue  # null, or a non-finite float the historian can't keep
        stamp = m.timestamp if m.timestamp is not None else p.timestamp
        ts = stamp / 1000.0 if stamp else None
        groups.setdefault((ts, _quality(m.properties)), {})[name] = number
    return [DeviceValues(path, values, ts, quality) for (ts, quality), values in groups.items()]
