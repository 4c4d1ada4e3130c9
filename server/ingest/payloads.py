"""Decoding of the JSON telemetry every text protocol carries (MQTT, CoAP, AMQP).

One shape everywhere: `{"ts": <ISO 8601 or epoch s>, "values": {"tag": 1.5}, "quality": "Good"}`
or a list of them; where the protocol does not say which device (AMQP, CoAP) each object
also has `"device": "<node id or path>"`.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import orjson

from server.domain.quality import Quality
from server.domain.timeutil import to_epoch
from server.ingest.pipeline import DeviceValues


class DecodeError(Exception):
    """A payload that can't become samples; `reason` is the counter it is filed under."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _reject_constant(name: str) -> float:
    raise DecodeError("invalid_value", f"{name} is not a number a historian can store")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
"""One decoder for every message: `json.loads` with a keyword builds a new one per call."""


def parse_json(raw: bytes, max_bytes: int) -> Any:
    """orjson for the flood; what it refuses goes through the stdlib decoder, which says
    precisely what is wrong (NaN is a value error, not a syntax error) and accepts the rare
    document orjson won't (integers beyond 64 bits), so the two agree on every payload."""
    if len(raw) > max_bytes:
        raise DecodeError("too_large", f"payload of {len(raw)} bytes exceeds {max_bytes}")
    if raw[:3] == b"\xef\xbb\xbf":
        raw = raw[3:]
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return _DECODER.decode(raw.decode())
    except DecodeError:
        raise
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError("invalid_json", f"not valid JSON: {exc}") from None


def parse_ts(raw: Any, where: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise DecodeError("invalid_timestamp", f"{where}.ts must be ISO 8601 or epoch seconds")
    if isinstance(raw, int | float):
        if not math.isfinite(raw):
            raise DecodeError("invalid_timestamp", f"{where}.ts is not finite")
        return float(raw) / 1000.0 if raw > 1e11 else float(raw)  # epoch milliseconds are common
    if isinstance(raw, str):
        try:
            return to_epoch(datetime.fromisoformat(raw.replace("Z", "+00:00")))
        except ValueError:
            raise DecodeError("invalid_timestamp", f"{where}.ts {raw!r} is not ISO 8601") from None
    raise DecodeError("invalid_timestamp", f"{where}.ts must be ISO 8601 or epoch seconds")


MAX_FLOAT = 1.7976931348623157e308


def parse_values(raw: Any, where: str) -> dict[str, float]:
    if not isinstance(raw, dict) or not raw:
        raise DecodeError("invalid_values", f"{where}.values must be a non-empty object of tag: number")
    out: dict[str, float] = {}
    for name, value in raw.items():
        kind = type(value)  # exact types first: this loop runs once per sample
        if kind is float and value - value == 0.0:  # NaN and ±inf give NaN
            out[name] = value
        elif kind is int and -MAX_FLOAT <= value <= MAX_FLOAT:
            out[name] = float(value)
        elif kind is bool:
            out[name] = 1.0 if value else 0.0
        elif isinstance(value, float) and math.isfinite(value):
            out[name] = float(value)
        else:
            raise DecodeError("invalid_value", f"{where}.values.{name} must be a finite number or a boolean")
    return out


FIELDS = frozenset({"ts", "values", "quality", "device"})


def parse_item(obj: Any, where: str, device: str | None) -> DeviceValues:
    if not isinstance(obj, dict):
        raise DecodeError("invalid_shape", f"{where} must be an object with 'values'")
    if not obj.keys() <= FIELDS:
        unknown = set(obj) - FIELDS
        raise DecodeError("invalid_shape", f"{where} has unknown field(s): {', '.join(sorted(unknown))}")
    target = device if device is not None else obj.get("device")
    if not isinstance(target, str) or not target:
        raise DecodeError("invalid_shape", f"{where}.device must name the device (node id or path)")
    quality = Quality.GOOD
    if "quality" in obj:
        try:
            quality = Quality.parse(str(obj["quality"]))
        except ValueError as exc:
            raise DecodeError("invalid_quality", f"{where}.quality: {exc}") from None
    return DeviceValues(target, parse_values(obj.get("values"), where), parse_ts(obj.get("ts"), where), quality)


def decode_telemetry(raw: bytes, *, device: str | None, max_bytes: int, max_items: int = 10_000) -> list[DeviceValues]:
    """The whole payload or a DecodeError: a message is never half-used."""
    doc = parse_json(raw, max_bytes)
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise DecodeError("invalid_shape", "empty batch")
    decoded = [parse_item(obj, f"[{i}]" if isinstance(doc, list) else "payload", device) for i, obj in enumerate(items)]
    if sum(len(d.values) for d in decoded) > max_items:
        raise DecodeError("too_large", f"more than {max_items} values in one message")
    return decoded
