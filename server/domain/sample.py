"""The unit of field data that every adapter produces and every consumer reads."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from server.domain.quality import Quality


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one tag: epoch seconds (UTC) keep the hot path free of datetime objects."""

    tenant_id: int
    tag_id: int
    ts: float
    value: float
    quality: Quality = Quality.GOOD


class TagUpdate(NamedTuple):
    """A stored-or-live value addressed the way clients address it (node id and path).

    A named tuple, not a frozen dataclass: one is built per ingested sample, and a tuple
    costs a third of the time (a frozen dataclass sets each field through object.__setattr__)."""

    tenant_id: int
    tag_id: int
    node_id: str
    path: str
    ts: float
    value: float
    quality: Quality


def coerce_value(raw: object) -> float:
    """Turn a wire value into the historian's float; booleans are 0/1, NaN/inf are refused."""
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0
    if isinstance(raw, int | float):
        value = float(raw)
        if math.isfinite(value):
            return value
        raise ValueError("value must be a finite number (NaN and Infinity are refused)")
    raise ValueError(f"value must be a number or a boolean, not {type(raw).__name__}")
