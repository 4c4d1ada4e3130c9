"""Saved trend sets: a named trend (pens, y axes, time range) kept on the server among the
user's own settings (`/me/settings/trendset/<name>`), so it follows the user from one
workstation to another. No Qt here: the document and its checks."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from hmi.models.trend import TrendModel

PREFIX = "trendset/"
VERSION = 1
MAX_NAME = 100
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class BadTrendSet(ValueError):
    """A name the server would refuse, or a stored document the console cannot read."""


def check_name(name: str) -> str:
    """The name as stored: trimmed, 1–100 characters, no '/' and no control characters."""
    name = name.strip()
    if not name:
        raise BadTrendSet("a trend set needs a name")
    if len(name) > MAX_NAME:
        raise BadTrendSet(f"a trend set's name is at most {MAX_NAME} characters")
    if "/" in name or _CONTROL.search(name) or name in (".", ".."):
        raise BadTrendSet("a trend set's name holds no '/' and no control characters")
    return name


def key_of(name: str) -> str:
    return PREFIX + check_name(name)


def name_of(key: str) -> str:
    return key.removeprefix(PREFIX)


@dataclass(frozen=True, slots=True)
class PenSpec:
    node_id: str
    path: str
    unit: str | None = None

    def as_tag(self) -> dict[str, Any]:
        """What `Console.add_to_trend` takes."""
        return {"node_id": self.node_id, "path": self.path, "unit": self.unit}


@dataclass(frozen=True, slots=True)
class AxisSpec:
    """One y axis (one per unit): automatic range, or fixed from `low` to `high`."""

    unit: str
    auto: bool = True
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True, slots=True)
class TrendSet:
    """`follow`: the window slides with the present over `span_s` (a preset); otherwise it is fixed
    from `start` to `end` (a custom range, or a paused chart)."""

    name: str
    pens: list[PenSpec] = field(default_factory=list)
    span_s: float = 600.0
    follow: bool = True
    start: float | None = None
    end: float | None = None
    axes: list[AxisSpec] = field(default_factory=list)

    @classmethod
    def capture(cls, name: str, model: TrendModel, axes: list[AxisSpec]) -> TrendSet:
        """The trend as it is now."""
        pens = [PenSpec(p.node_id, p.path, p.unit or None) for p in model.pens]
        if model.paused:
            return cls(check_name(name), pens, model.span_s, False, model.view_start, model.view_end, axes)
        return cls(check_name(name), pens, model.span_s, True, None, None, axes)

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "version": VERSION,
            "pens": [{"node_id": p.node_id, "path": p.path, "unit": p.unit} for p in self.pens],
            "span_s": self.span_s,
            "follow": self.follow,
            "axes": [{"unit": a.unit, "auto": a.auto, "min": a.low, "max": a.high} for a in self.axes],
        }
        if not self.follow:
            doc["range"] = [self.start, self.end]
        return doc

    @classmethod
    def from_doc(cls, name: str, doc: Any) -> TrendSet:
        """Read a stored document; BadTrendSet when it is not one this console understands."""
        try:
            if not isinstance(doc, dict) or int(doc.get("version", 0)) != VERSION:
                raise BadTrendSet(f"trend set {name!r} was saved in a form this console does not read")
            pens = [PenSpec(str(p["node_id"]), str(p["path"]), p.get("unit") or None) for p in doc.get("pens", [])]
            span_s = float(doc.get("span_s", 600.0))
            follow = bool(doc.get("follow", True))
            start = end = None
            if not follow:
                start, end = (float(x) for x in doc["range"])
                if not (math.isfinite(start) and math.isfinite(end) and start < end):
                    raise BadTrendSet(f"trend set {name!r} has an empty time range")
            axes = [
                AxisSpec(str(a["unit"]), bool(a.get("auto", True)), _number(a.get("min")), _number(a.get("max")))
                for a in doc.get("axes", [])
            ]
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, BadTrendSet):
                raise
            raise BadTrendSet(f"trend set {name!r} cannot be read: {exc}") from None
        if not (math.isfinite(span_s) and span_s > 0):
            raise BadTrendSet(f"trend set {name!r} has no time span")
        return cls(name, pens, span_s, follow, start, end, axes)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)
