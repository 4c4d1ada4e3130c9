"""The simulator's own minimal Sparkplug B payload codec (what an edge node sends).

Deliberately separate from the server's decoder (`server/ingest/sparkplug.py`): a device
emulator that shared the server's codec would hide the bugs the two should catch in each
other. Only the fields an edge node with scalar metrics needs are modelled, with the field
numbers of eclipse/tahu `sparkplug_b.proto`, in a private descriptor pool.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # type: ignore[import-untyped]

DOUBLE, BOOLEAN, UINT64, STRING = 10, 11, 8, 12
"""Sparkplug data types used here (`datatype` of a metric or property)."""

_F = descriptor_pb2.FieldDescriptorProto


@functools.cache
def _payload_class() -> Any:
    """Payload with Metric, PropertySet and PropertyValue (the scalar parts only)."""
    file = descriptor_pb2.FileDescriptorProto(name="iiot_sim_sparkplug_b.proto", package="iiot_sim.sparkplug")
    payload = file.message_type.add(name="Payload")

    def add(msg: Any, name: str, number: int, ftype: int, *, repeated: bool = False, ref: str = "",
            oneof: int | None = None) -> None:  # fmt: skip
        field = msg.field.add(name=name, number=number, type=ftype)
        field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
        if ref:
            field.type_name = ref
        if oneof is not None:
            field.oneof_index = oneof

    prefix = ".iiot_sim.sparkplug.Payload."
    value = payload.nested_type.add(name="PropertyValue")
    value.oneof_decl.add(name="value")
    add(value, "type", 1, _F.TYPE_UINT32)
    add(value, "is_null", 2, _F.TYPE_BOOL)
    for name, number, ftype in [("int_value", 3, _F.TYPE_UINT32), ("long_value", 4, _F.TYPE_UINT64),
                                ("float_value", 5, _F.TYPE_FLOAT), ("double_value", 6, _F.TYPE_DOUBLE),
                                ("boolean_value", 7, _F.TYPE_BOOL), ("string_value", 8, _F.TYPE_STRING)]:  # fmt: skip
        add(value, name, number, ftype, oneof=0)
    props = payload.nested_type.add(name="PropertySet")
    add(props, "keys", 1, _F.TYPE_STRING, repeated=True)
    add(props, "values", 2, _F.TYPE_MESSAGE, repeated=True, ref=prefix + "PropertyValue")
    metric = payload.nested_type.add(name="Metric")
    metric.oneof_decl.add(name="value")
    add(metric, "name", 1, _F.TYPE_STRING)
    add(metric, "alias", 2, _F.TYPE_UINT64)
    add(metric, "timestamp", 3, _F.TYPE_UINT64)
    add(metric, "datatype", 4, _F.TYPE_UINT32)
    add(metric, "is_null", 7, _F.TYPE_BOOL)
    add(metric, "properties", 9, _F.TYPE_MESSAGE, ref=prefix + "PropertySet")
    for name, number, ftype in [("int_value", 10, _F.TYPE_UINT32), ("long_value", 11, _F.TYPE_UINT64),
                                ("float_value", 12, _F.TYPE_FLOAT), ("double_value", 13, _F.TYPE_DOUBLE),
                                ("boolean_value", 14, _F.TYPE_BOOL), ("string_value", 15, _F.TYPE_STRING)]:  # fmt: skip
        add(metric, name, number, ftype, oneof=0)
    add(payload, "timestamp", 1, _F.TYPE_UINT64)
    add(payload, "metrics", 2, _F.TYPE_MESSAGE, repeated=True, ref=prefix + "Metric")
    add(payload, "seq", 3, _F.TYPE_UINT64)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("iiot_sim.sparkplug.Payload"))


@dataclass(slots=True)
class Metric:
    name: str | None = None
    alias: int | None = None
    datatype: int = DOUBLE
    value: float | bool | int | str | None = None
    unit: str | None = None
    low: float | None = None
    high: float | None = None
    timestamp_ms: int | None = None


def encode(timestamp_ms: int, metrics: list[Metric], seq: int | None) -> bytes:
    payload = _payload_class()()
    payload.timestamp = timestamp_ms
    if seq is not None:
        payload.seq = seq
    for m in metrics:
        out = payload.metrics.add()
        if m.name is not None:
            out.name = m.name
        if m.alias is not None:
            out.alias = m.alias
        out.timestamp = m.timestamp_ms if m.timestamp_ms is not None else timestamp_ms
        out.datatype = m.datatype
        if m.value is None:
            out.is_null = True
        elif m.datatype == BOOLEAN:
            out.boolean_value = bool(m.value)
        elif m.datatype == UINT64:
            out.long_value = int(m.value)
        elif m.datatype == STRING:
            out.string_value = str(m.value)
        else:
            out.double_value = float(m.value)
        for key, prop in (("engUnit", m.unit), ("engLow", m.low), ("engHigh", m.high)):
            if prop is None:
                continue
            out.properties.keys.append(key)
            pv = out.properties.values.add()
            if isinstance(prop, str):
                pv.type, pv.string_value = STRING, prop
            else:
                pv.type, pv.double_value = DOUBLE, float(prop)
    return bytes(payload.SerializeToString())


def decode(raw: bytes) -> tuple[int, int | None, list[Metric]]:
    """(timestamp ms, seq, metrics): what the simulator reads back (NCMD, and tests)."""
    payload = _payload_class()()
    payload.ParseFromString(raw)
    metrics: list[Metric] = []
    for m in payload.metrics:
        kind = m.WhichOneof("value")
        pairs = zip(m.properties.keys, m.properties.values, strict=False)
        props = {k: getattr(v, v.WhichOneof("value")) for k, v in pairs if v.WhichOneof("value")}
        metrics.append(
            Metric(
                name=m.name if m.HasField("name") else None, alias=m.alias if m.HasField("alias") else None,
                datatype=m.datatype, value=getattr(m, kind) if kind else None, unit=props.get("engUnit"),
                low=props.get("engLow"), high=props.get("engHigh"), timestamp_ms=m.timestamp or None,
            )
        )  # fmt: skip
    return int(payload.timestamp), (int(payload.seq) if payload.HasField("seq") else None), metrics
