"""What a trend shows, without Qt: pens with a live ring buffer and decimated history, joined.

History comes from the server (`GET /history`, min/max/avg per bucket when decimated), the
live tail from the stream. The joined curve is the history up to the first live sample, then
the live samples; a reconnect merges the gap's history into the live buffer, so no hole stays.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from hmi.models.events import Signal
from hmi.models.ring_buffer import Array, RingBuffer

PRESETS_S: dict[str, float] = {"10 min": 600, "1 h": 3600, "8 h": 8 * 3600, "24 h": 86400, "7 d": 7 * 86400}
PEN_COLOURS = ["#1f5f99", "#8a5a00", "#2e7d4f", "#6a3d9a", "#0f7c7c", "#7a4b2a", "#4d5d6d", "#9c2f6f",
               "#3b6e1f", "#1b4a72"]  # fmt: skip
EMPTY: Array = np.zeros(0)


@dataclass
class History:
    """One fetched window of a pen: `line` is the value (raw) or the bucket average (decimated)."""

    start: float = 0.0
    end: float = 0.0
    t: Array = field(default_factory=lambda: EMPTY)
    line: Array = field(default_factory=lambda: EMPTY)
    lo: Array | None = None
    hi: Array | None = None

    @property
    def decimated(self) -> bool:
        return self.lo is not None

    @classmethod
    def from_columns(
        cls, start: float, end: float, t: list[float], value: list[float] | None,
        lo: list[float] | None, hi: list[float] | None, avg: list[float] | None,
    ) -> History:  # fmt: skip
        """From the server's columnar answer (raw: `value`; decimated: `min`/`max`/`avg`)."""
        ts = np.asarray(t, dtype=np.float64)
        if value is not None:
            return cls(start, end, ts, np.asarray(value, dtype=np.float64))
        return cls(start, end, ts, np.asarray(avg or [], dtype=np.float64), np.asarray(lo or [], dtype=np.float64),
                   np.asarray(hi or [], dtype=np.float64))  # fmt: skip


class TrendPen:
    """One tag on the trend."""

    def __init__(self, node_id: str, path: str, unit: str | None, colour: str, capacity: int) -> None:
        self.node_id, self.path, self.unit, self.colour = node_id, path, unit or "", colour
        self.live = RingBuffer(capacity)
        self.history = History()
        self.dirty = True  # the view has not drawn the latest data yet
        self._version = 0  # bumped on every change; the joined arrays are cached per version
        self._joined: tuple[int, Array, Array] | None = None
        self._display: tuple[int, float, Array, Array] | None = None
        self._rebuilt = 0  # bumped when the live buffer is rebuilt (a gap filled): reduced buckets are void
        self._reduced: tuple[float, int, float, Array, Array] | None = None

    @property
    def label(self) -> str:
        return f"{self.path} [{self.unit}]" if self.unit else self.path

    def _changed(self) -> None:
        self.dirty = True
        self._version += 1

    def add_live(self, t: float, v: float) -> None:
        self.live.append(t, v)
        self._changed()

    def add_live_many(self, t: Array, v: Array) -> None:
        """Many samples in time order (numpy; a backfill or a simulated hour)."""
        self.live.extend(t, v)
        self._changed()

    def set_history(self, history: History) -> None:
        self.history = history
        self._changed()

    def fill_gap(self, t: Array, v: Array) -> None:
        """Merge samples the stream missed (fetched from history after a reconnect) into the live tail."""
        if not len(t):
            return
        lt, lv = self.live.arrays()
        merged_t = np.concatenate((lt, t))
        merged_v = np.concatenate((lv, v))
        merged_t, index = np.unique(merged_t, return_index=True)
        self.live.clear()
        self.live.extend(merged_t, merged_v[index])
        self._rebuilt += 1
        self._changed()

    def joined(self) -> tuple[Array, Array]:
        """History before the first live sample, then the live samples: one curve, no overlap.
        Cached until the pen changes (the readout asks for it on every redraw); do not modify."""
        cached = self._joined
        if cached is not None and cached[0] == self._version:
            return cached[1], cached[2]
        lt, lv = self.live.arrays()
        first = lt[0] if len(lt) else np.inf
        h = self.history
        cut = int(np.searchsorted(h.t, first, side="left"))  # history times are ascending
        t, y = np.concatenate((h.t[:cut], lt)), np.concatenate((h.line[:cut], lv))
        self._joined = (self._version, t, y)
        return t, y

    def display(self, bucket_s: float) -> tuple[Array, Array]:
        """What the chart draws: `joined()`, with the live tail reduced to its max and min per
        `bucket_s` (about a pixel, buckets aligned to absolute time so they don't shimmer as the
        window slides) where it is denser than that; the newest sample stays the last point.
        The history is at about one bucket per pixel already. numpy only, cached per version;
        complete buckets are kept, so a frame reduces only the samples since the last one."""
        cached = self._display
        if cached is not None and cached[0] == self._version and cached[1] == bucket_s:
            return cached[2], cached[3]
        t, y = self.joined()
        n_live = len(self.live)
        if bucket_s > 0 and n_live > 2:
            head = len(t) - n_live
            lt, lv = t[head:-1], y[head:-1]  # the newest sample is kept as it is
            if (lt[-1] - lt[0]) / bucket_s + 1 < len(lt) / 2:  # denser than two samples per pixel
                peak_t, peak_v = self._reduce(lt, lv, bucket_s)
                t = np.concatenate((t[:head], peak_t, t[-1:]))
                y = np.concatenate((y[:head], peak_v, y[-1:]))
        self._display = (self._version, bucket_s, t, y)
        return t, y

    def _reduce(self, lt: Array, lv: Array, bucket_s: float) -> tuple[Array, Array]:
        """Max and min per bucket; the complete buckets of the last call are reused (dropping
        those that left the ring buffer), only the samples from the last incomplete one are reduced."""
        done = self._reduced
        if done is None or done[0] != bucket_s or done[1] != self._rebuilt:
            done = (bucket_s, self._rebuilt, -np.inf, EMPTY, EMPTY)
        _, _, until, kept_t, kept_v = done
        first = np.floor(lt[0] / bucket_s) * bucket_s
        if len(kept_t) and kept_t[0] < first:  # buckets that left the buffer at its old end
            drop = int(np.searchsorted(kept_t, first, side="left"))
            kept_t, kept_v = kept_t[drop:], kept_v[drop:]
        tail = int(np.searchsorted(lt, until, side="left"))
        tail_t, tail_v = lt[tail:], lv[tail:]
        buckets = np.floor(tail_t / bucket_s)
        starts = np.flatnonzero(np.diff(buckets, prepend=-np.inf))
        hi, lo = np.maximum.reduceat(tail_v, starts), np.minimum.reduceat(tail_v, starts)
        new_t = np.repeat(buckets[starts] * bucket_s, 2)
        new_v = np.column_stack((hi, lo)).ravel()
        peak_t, peak_v = np.concatenate((kept_t, new_t)), np.concatenate((kept_v, new_v))
        # every bucket but the newest is complete (samples arrive in time order): kept for the next call
        self._reduced = (bucket_s, self._rebuilt, float(new_t[-1]), peak_t[:-2], peak_v[:-2])
        return peak_t, peak_v

    def envelope(self) -> tuple[Array, Array, Array] | None:
        """Min/max per bucket where the history is decimated (spikes stay visible)."""
        h = self.history
        if h.lo is None or h.hi is None or not len(h.t):
            return None
        first = self.live.first_time()
        cut = int(np.searchsorted(h.t, first if first is not None else np.inf, side="left"))
        return h.t[:cut], h.lo[:cut], h.hi[:cut]

    def value_at(self, t: float) -> float | None:
        """The value the curve shows at time `t` (the sample at or before it)."""
        ts, vs = self.joined()
        i = int(np.searchsorted(ts, t, side="right")) - 1
        return float(vs[i]) if 0 <= i < len(vs) else None


class TrendModel:
    """Pens, the visible time range, follow/paused; the view redraws from it on a timer."""

    def __init__(self, span_s: float = 600.0, capacity: int = 20_000, max_pens: int = 32) -> None:
        self.pens: list[TrendPen] = []
        self.span_s = span_s
        self.capacity, self.max_pens = capacity, max_pens
        self.paused = False
        self.view_start, self.view_end = time.time() - span_s, time.time()
        self.pens_changed: Signal[None] = Signal()
        self.range_changed: Signal[tuple[float, float]] = Signal()

    def pen(self, node_id: str) -> TrendPen | None:
        return next((p for p in self.pens if p.node_id == node_id), None)

    def add_pen(self, node_id: str, path: str, unit: str | None) -> TrendPen | None:
        """Add a tag; None when it is on the trend already or the trend is full."""
        if self.pen(node_id) is not None or len(self.pens) >= self.max_pens:
            return None
        pen = TrendPen(node_id, path, unit, PEN_COLOURS[len(self.pens) % len(PEN_COLOURS)], self.capacity)
        self.pens.append(pen)
        self.pens_changed.emit(None)
        return pen

    def remove_pen(self, node_id: str) -> None:
        self.pens = [p for p in self.pens if p.node_id != node_id]
        self.pens_changed.emit(None)

    def add_samples(self, updates: Sequence[tuple[str, float, float, int]]) -> None:
        """Live values from the stream; only Good and Uncertain ones are drawn."""
        by_id = {p.node_id: p for p in self.pens}
        for node_id, t, v, q in updates:
            pen = by_id.get(node_id)
            if pen is not None and q < 2:
                pen.add_live(t, v)

    def set_span(self, span_s: float) -> None:
        """A preset: follow the present with this width (and resume)."""
        self.span_s, self.paused = span_s, False
        self.set_range(time.time() - span_s, time.time())

    def set_range(self, start: float, end: float) -> None:
        self.view_start, self.view_end = start, end
        self.range_changed.emit((start, end))

    def follow(self, now: float) -> None:
        """Slide the window to the present unless paused (called by the redraw timer)."""
        if not self.paused:
            self.view_start, self.view_end = now - self.span_s, now

    def units(self) -> list[str]:
        """One axis per unit, in the order pens were added."""
        return list(dict.fromkeys(p.unit for p in self.pens))

    def to_csv(self, start: float, end: float) -> str:
        """The visible data, long format: time, tag, value, min, max (min/max where decimated)."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["time", "tag", "unit", "value", "min", "max"])
        for pen in self.pens:
            t, v = pen.joined()
            env = pen.envelope()
            lo_hi = {float(a): (float(b), float(c)) for a, b, c in zip(*env, strict=True)} if env else {}
            for ti, vi in zip(t, v, strict=True):
                if start <= ti <= end:
                    lo, hi = lo_hi.get(float(ti), ("", ""))
                    iso = datetime.fromtimestamp(float(ti), UTC).isoformat().replace("+00:00", "Z")
                    writer.writerow([iso, pen.path, pen.unit, repr(float(vi)), lo, hi])
        return out.getvalue()
