"""HistoryRead of raw data straight from the platform's historian (asyncua's storage interface).

asyncua calls `read_node_history` for ReadRawModifiedDetails; the session has already checked
that the caller may read the tag. Times follow OPC UA Part 11: StartTime < EndTime reads
forward, StartTime > EndTime reads backward, a missing StartTime reads backward from EndTime
(at most NumValuesPerNode values, no continuation), a missing EndTime reads forward. A
continuation point (the next value's timestamp) comes back whenever more values remain than
one response holds (NumValuesPerNode, else `max_history_data_response_size`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from asyncua import ua
from asyncua.server.history import HistoryStorageInterface

from server.domain.quality import Quality
from server.opcua.common import epoch, status_of, to_datetime, variant
from server.opcua.mirror import Registry, TagRef
from server.storage.historian.columns import RawSeries

ReadRaw = Callable[[int, float, float, int], Awaitable[RawSeries]]
WINDOW_ROWS = 50_000
"""A backward read fetches time windows of at most this many rows, newest window first."""
FAR_FUTURE_S = 100 * 365 * 86_400.0


def _time(stamp: datetime | None) -> float | None:
    """None for a missing time (asyncua gives None or DateTime.MinValue, 1601-01-01)."""
    if stamp is None or stamp.year <= 1601:
        return None
    return epoch(stamp)


class HistorianStorage(HistoryStorageInterface):
    def __init__(self, registry: Registry, read_raw: ReadRaw, max_values: int = 10_000) -> None:
        super().__init__(max_values)
        self.registry, self.read_raw = registry, read_raw

    async def init(self) -> None:
        """Nothing to open: the historian is the platform's."""

    async def new_historized_node(self, node_id: ua.NodeId, period: timedelta | None, count: int = 0) -> None:
        """Every tag is historized by the platform, not by asyncua."""

    async def save_node_value(self, node_id: ua.NodeId, datavalue: ua.DataValue) -> None:
        """Values are stored by the ingest pipeline, never through the OPC UA server."""

    async def read_node_history(
        self, node_id: ua.NodeId, start: datetime | None, end: datetime | None, nb_values: int
    ) -> tuple[list[ua.DataValue], datetime | None]:
        ref = self.registry.tags.get(node_id)
        t0, t1 = _time(start), _time(end)
        if ref is None or (t0 is None and t1 is None):
            return [], None
        per = min(nb_values or self.max_history_data_response_size, self.max_history_data_response_size)
        if t0 is not None and (t1 is None or t0 <= t1):
            hi = t1 + 1e-6 if t1 is not None else time.time() + FAR_FUTURE_S
            rows = await self.read_raw(ref.tag_id, t0, hi, per + 1)
            cont = to_datetime(float(rows.ts[per])) if len(rows) > per else None
            return _values(ref, rows.ts[:per], rows.value[:per], rows.quality[:per]), cont
        top, bottom = (t0, t1 or 0.0) if t0 is not None else (t1 or 0.0, 0.0)
        ts, vals, qs = await self._backward(ref.tag_id, bottom, top, per + 1)
        cont = to_datetime(ts[per]) if len(ts) > per and t0 is not None else None
        return _values(ref, ts[:per], vals[:per], qs[:per]), cont

    async def _backward(
        self, tag_id: int, bottom: float, top: float, n: int
    ) -> tuple[list[float], list[float], list[int]]:
        """Newest first, from `top` (inclusive) down to `bottom`: the store only reads forward,
        so read windows going back in time, narrowing a window that holds too many rows."""
        ts: list[float] = []
        vals: list[float] = []
        qs: list[int] = []
        hi, width = top + 1e-6, 3600.0
        while hi > bottom and len(ts) < n:
            lo = max(bottom, hi - width)
            rows = await self.read_raw(tag_id, lo, hi, WINDOW_ROWS)
            if len(rows) >= WINDOW_ROWS and hi - lo > 1e-3:
                width = (hi - lo) / 16
                continue
            take = min(len(rows), n - len(ts))
            ts += rows.ts[::-1][:take].tolist()
            vals += rows.value[::-1][:take].tolist()
            qs += rows.quality[::-1][:take].tolist()
            hi, width = lo, width * 8
        return ts, vals, qs

    async def new_historized_event(
        self, source_id: ua.NodeId, evtypes: list[Any], period: timedelta | None, count: int = 0
    ) -> None:
        """Events are not historized (alarms come with issue #4)."""

    async def save_event(self, event: Any) -> None:
        """See new_historized_event."""

    async def read_event_history(
        self, source_id: ua.NodeId, start: datetime | None, end: datetime | None, nb_values: int, evfilter: Any
    ) -> tuple[list[Any], datetime | None]:
        return [], None

    async def stop(self) -> None:
        """Nothing to close."""


def _values(ref: TagRef, ts: Any, values: Any, qualities: Any) -> list[ua.DataValue]:
    out = []
    for t, v, q in zip(list(ts), list(values), list(qualities), strict=True):
        stamp = to_datetime(float(t))
        out.append(
            ua.DataValue(
                variant(float(v), ref.data_type), StatusCode=status_of(Quality(int(q))), SourceTimestamp=stamp,
                ServerTimestamp=stamp,
            )
        )  # fmt: skip
    return out
