"""Online scoring: samples from the bus in micro-batches, one score per device window.

The bus handler only appends (tag slot, time, value) to three lists: it runs inside the
publisher's call and must not slow ingestion. Every `flush_interval` (or sooner when many
samples wait) a flush folds the batch into per-tag bucket accumulators with numpy. A device's
bucket is complete when a sample of a later bucket arrives. Every device's state lives in
arrays stacked by shape (number of tags, window), so completing, storing and scoring the
buckets of thousands of devices takes a few numpy calls: the features of all their windows in
one pass, every window walked down its own device's trees in one walk (server/ml/forest.py).
Buckets are aligned to the clock (the historian's rollups are), so every device completes one
at the same moment: it is that burst a flush has to absorb.

Each score goes to the alarm engine's anomaly condition of its device; a device whose
anomalous state flips also gets an `anomaly` event on the bus. Samples older than their
device's current bucket are late: counted, not scored (their window was judged). Bad-quality
samples are left out, as in the rollups the models are trained on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from server.bus import Bus, Event, Message, ValueBatch
from server.domain.quality import Quality
from server.ml import features as ft
from server.ml.forest import CompiledForest, ForestSet
from server.ml.model import AnomalyModel, combine

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
IP = npt.NDArray[np.intp]
HOURS_KEPT = 48


class ScoreSink(Protocol):
    def anomaly_score(self, tenant_id: int, device_node_id: str, score: float, ts: float | None = None) -> None:
        """Judge a device window's score (the alarm engine's anomaly condition)."""


@dataclass(slots=True)
class LiveStats:
    windows: int = 0
    anomalous: int = 0
    late: int = 0
    last_t: float | None = None
    last_score: float | None = None
    last_feature: str | None = None
    last_tag: str | None = None
    hourly: dict[int, list[int]] = field(default_factory=dict)
    """hour start -> [windows, anomalous], the last HOURS_KEPT hours."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "windows": self.windows, "anomalous": self.anomalous, "late_samples": self.late,
            "last_t": self.last_t, "last_score": self.last_score, "last_feature": self.last_feature,
            "last_tag": self.last_tag,
            "hourly": [{"t": h, "windows": w, "anomalous": a} for h, (w, a) in sorted(self.hourly.items())],
        }  # fmt: skip


@dataclass(slots=True)
class LiveModel:
    """One device's active model as the scorer runs it."""

    model_id: int
    version: int
    tenant_id: int
    device_node_id: str
    model: AnomalyModel
    tag_ids: list[int]
    primed: ft.Buckets | None = None
    """History read on activation, laid into the ring at the next rebuild."""
    anomalous: bool = False
    stats: LiveStats = field(default_factory=LiveStats)
    shape: tuple[int, int] = (0, 0)
    row: int = -1
    slot0: int = -1

    @property
    def width(self) -> int:
        return len(self.tag_ids)


Primer = Callable[[list[int], float, float, float], Awaitable[ft.Buckets]]
"""Reads bucketed history (tag ids, start, end, step): fills a new model's first window."""


class _Group:
    """The devices of one shape (tags, window): their ring of bucket means and model states."""

    def __init__(self, members: list[LiveModel], width: int, window: int) -> None:
        n = len(members)
        self.members = members
        self.width, self.window = width, window
        self.depth = window + 2  # the window, the bucket before it (delta), one for carrying forward
        self.mean = np.full((n, self.depth, width), np.nan)
        self.newest = np.full(n, -1, np.int64)
        """Bucket index of the ring's newest row (-1: nothing yet)."""
        self.seen = np.zeros(n, np.int64)
        """Buckets since the device's first one (a window is judged once a full one has passed)."""
        self.slots = np.asarray([[m.slot0 + j for j in range(width)] for m in members], np.int64).reshape(n, width)
        self.state = ft.StackedState.of([m.model.state for m in members])
        self.step = np.asarray([m.model.step for m in members])


class AnomalyScorer:
    """One per server (built in server/app.py); consumes the bus for every tenant."""

    def __init__(
        self, bus: Bus, sink: ScoreSink | None = None, *, flush_interval: float = 0.1, max_pending: int = 50_000,
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.bus, self.sink = bus, sink
        self.flush_interval, self.max_pending = flush_interval, max_pending
        self.clock = clock
        self.models: dict[tuple[int, str], LiveModel] = {}
        self._owner: list[LiveModel] = []
        self._groups: dict[tuple[int, int], _Group] = {}
        self._slots: dict[int, dict[int, int]] = {}
        """tenant -> tag id -> slot (index into the accumulators)."""
        self._slot_dev = np.zeros(0, np.int64)
        self._dev_step = np.zeros(0)
        self._dev_current = np.zeros(0, np.int64)
        """Index (t // step) of the bucket each device is filling; -1 before its first sample."""
        self._acc = np.zeros((4, 0))
        """sum, count, min, max per slot for the bucket being filled."""
        self._forests = ForestSet([])
        self._forest_of = np.zeros(0, np.intp)
        self._params = np.zeros((0, 4))
        """median, threshold, forest margin, envelope margin per device."""
        self._hi = np.zeros((0, len(ft.POOLED_FEATURES)))
        self._mid = np.zeros((0, len(ft.POOLED_FEATURES)))
        self._group_list: list[_Group] = []
        self._dev_group = np.zeros(0, np.intp)
        self._dev_row = np.zeros(0, np.intp)
        self._p_slot: list[int] = []
        self._p_ts: list[float] = []
        self._p_value: list[float] = []
        self._p_marks: list[tuple[int, float]] = []
        """(index of a message's first pending sample, its arrival on the monotonic clock)."""
        self._wake = asyncio.Event()
        self._boundary = float("inf")
        """The next bucket end after the newest sample flushed: a message reaching it flushes at once."""
        self._min_step = float("inf")
        self._task: asyncio.Task[None] | None = None
        self._subscription: Any = None
        self.latencies: deque[float] = deque(maxlen=10_000)
        """Seconds from the arrival of the sample that completed a window to its score."""
        self.flushes = 0
        self.samples = 0
        self.busy_s = 0.0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._subscription = self.bus.subscribe(None, self._on_message)
        self._task = asyncio.create_task(self._loop(), name="anomaly-scorer")

    async def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flush()

    # -- models ---------------------------------------------------------------------------

    async def activate(
        self, tenant_id: int, device_node_id: str, model_id: int, version: int, model: AnomalyModel,
        tag_ids: list[int], primer: Primer | None = None,
    ) -> None:  # fmt: skip
        """Score this device with this model from now on (replacing its previous one)."""
        await self.activate_many([(tenant_id, device_node_id, model_id, version, model, tag_ids)], primer)

    async def activate_many(
        self, entries: list[tuple[int, str, int, int, AnomalyModel, list[int]]], primer: Primer | None = None
    ) -> None:
        """Several devices at once: the arrays are laid out again once, not per device."""
        fresh = []
        for tenant_id, device_node_id, model_id, version, model, tag_ids in entries:
            live = LiveModel(model_id, version, tenant_id, device_node_id, model, list(tag_ids))
            if primer is not None:
                step = model.step
                end = (self.clock() // step) * step
                try:
                    live.primed = await primer(live.tag_ids, end - (model.window + 1) * step, end, step)
                except Exception:
                    log.exception("anomaly scorer: could not read the first window of %s; it fills live",
                                  device_node_id)  # fmt: skip
            fresh.append(live)
        self.flush()
        for live in fresh:
            old = self.models.get((live.tenant_id, live.device_node_id))
            if old is not None:
                live.stats, live.anomalous = old.stats, old.anomalous
            self.models[(live.tenant_id, live.device_node_id)] = live
        self._rebuild()

    def deactivate(self, tenant_id: int, device_node_id: str) -> None:
        self.flush()
        if self.models.pop((tenant_id, device_node_id), None) is not None:
            self._rebuild()

    def live(self, tenant_id: int, device_node_id: str) -> LiveModel | None:
        return self.models.get((tenant_id, device_node_id))

    def _rebuild(self) -> None:
        """Lay the active models out again; a device that stays keeps its ring and its bucket."""
        old_groups, old_acc, old_current = self._groups, self._acc, self._dev_current
        kept: dict[int, tuple[F64, int, int, F64]] = {}
        for m in self._owner:
            g = old_groups.get(m.shape)
            if g is not None and 0 <= m.row < len(g.members) and g.members[m.row] is m:
                kept[id(m)] = (g.mean[m.row].copy(), int(g.newest[m.row]), int(g.seen[m.row]),
                               old_acc[:, m.slot0 : m.slot0 + m.width].copy())  # fmt: skip
        currents = {id(m): int(old_current[i]) for i, m in enumerate(self._owner) if i < old_current.size}
        owners = list(self.models.values())
        slots: dict[int, dict[int, int]] = {}
        pos = 0
        for m in owners:
            m.slot0 = pos
            per_tenant = slots.setdefault(m.tenant_id, {})
            for j, tag_id in enumerate(m.tag_ids):
                per_tenant[tag_id] = pos + j
            pos += m.width
        acc = np.zeros((4, pos))
        acc[2], acc[3] = np.inf, -np.inf
        by_shape: dict[tuple[int, int], list[LiveModel]] = {}
        for m in owners:
            m.shape = (m.width, m.model.window)
            by_shape.setdefault(m.shape, []).append(m)
        groups = {}
        shape_ids = {shape: i for i, shape in enumerate(by_shape)}
        for shape, members in by_shape.items():
            g = _Group(members, *shape)
            for row, m in enumerate(members):
                m.row = row
                prior = kept.get(id(m))
                if prior is not None:
                    g.mean[row], g.newest[row], g.seen[row] = prior[0], prior[1], prior[2]
                    acc[:, m.slot0 : m.slot0 + m.width] = prior[3]
                elif m.primed is not None and len(m.primed):
                    p = m.primed.tail(g.depth)
                    g.mean[row, g.depth - len(p) :] = p.mean
                    g.newest[row] = int(round(p.t[-1] / m.model.step))
                    g.seen[row] = len(p)
                m.primed = None
            groups[shape] = g
        self._owner, self._groups, self._slots, self._acc = owners, groups, slots, acc
        self._group_list = list(groups.values())
        self._dev_group = np.asarray([shape_ids[m.shape] for m in owners], dtype=np.intp)
        self._dev_row = np.asarray([m.row for m in owners], dtype=np.intp)
        self._slot_dev = np.repeat(np.arange(len(owners), dtype=np.int64), [m.width for m in owners])
        self._dev_step = np.asarray([m.model.step for m in owners], dtype=np.float64)
        self._min_step = float(self._dev_step.min()) if owners else float("inf")
        self._boundary = float("-inf")  # until the next flush says where the buckets are
        self._dev_current = np.asarray([currents.get(id(m), -1) for m in owners], dtype=np.int64)
        unique: dict[int, int] = {}
        forests: list[CompiledForest] = []
        for m in owners:  # devices sharing a model object share its trees
            if id(m.model) not in unique:
                unique[id(m.model)] = len(forests)
                forests.append(m.model.compiled())
        self._forests = ForestSet(forests)
        self._forest_of = np.asarray([unique[id(m.model)] for m in owners], dtype=np.intp)
        self._params = np.asarray(
            [[m.model.median, m.model.threshold, m.model.forest_margin, m.model.margin] for m in owners]
        ).reshape(len(owners), 4)
        width = len(ft.POOLED_FEATURES)
        self._hi = np.stack([m.model.envelope_hi for m in owners]) if owners else np.zeros((0, width))
        self._mid = np.stack([m.model.envelope_mid for m in owners]) if owners else np.zeros((0, width))

    # -- samples --------------------------------------------------------------------------

    def _on_message(self, message: Message) -> None:
        """In the publisher's call: remember the samples of scored tags, nothing more."""
        if not isinstance(message, ValueBatch):
            return
        slot_of = self._slots.get(message.tenant_id)
        if not slot_of:
            return
        first = len(self._p_slot)
        slots, stamps, values = self._p_slot, self._p_ts, self._p_value
        bad = Quality.BAD
        for u in message.updates:
            s = slot_of.get(u.tag_id)
            if s is not None and u.quality is not bad:
                slots.append(s)
                stamps.append(u.ts)
                values.append(u.value)
        if len(slots) > first:
            self._p_marks.append((first, time.monotonic()))
            if len(slots) >= self.max_pending or stamps[-1] >= self._boundary:
                self._wake.set()  # a bucket may be complete: do not wait for the next tick

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("anomaly scorer: a batch could not be scored; it is dropped")

    def flush(self) -> int:
        """Fold the waiting samples in and score every completed window; returns windows scored."""
        if not self._p_slot:
            return 0
        started = time.perf_counter()
        slot = np.asarray(self._p_slot, dtype=np.int64)
        ts = np.asarray(self._p_ts, dtype=np.float64)
        value = np.asarray(self._p_value, dtype=np.float64)
        marks = self._p_marks
        self._p_slot, self._p_ts, self._p_value, self._p_marks = [], [], [], []
        self.samples += slot.size
        self._boundary = (np.floor(float(ts.max()) / self._min_step) + 1) * self._min_step
        dev = self._slot_dev[slot]
        index = np.floor(ts / self._dev_step[dev]).astype(np.int64)
        current = self._dev_current[dev]
        late = (index < current) & (current >= 0)
        if late.any():
            for d, n in zip(*np.unique(dev[late], return_counts=True), strict=True):
                self._owner[int(d)].stats.late += int(n)
        same = index == current
        self._accumulate(slot[same], value[same])
        ahead = np.flatnonzero((index > current) | (current < 0))
        scored = 0
        if ahead.size:
            arrival = self._arrivals(marks, ahead)
            order = np.lexsort((index[ahead], dev[ahead]))
            ahead, arrival = ahead[order], arrival[order]
            a_dev, a_idx = dev[ahead], index[ahead]
            # One round per new bucket of a device: round 0 holds every device's first new
            # bucket (usually its only one), round 1 the second of those catching up, ...
            starts = np.flatnonzero(np.r_[True, (a_dev[1:] != a_dev[:-1]) | (a_idx[1:] != a_idx[:-1])])
            pair_dev, pair_idx = a_dev[starts], a_idx[starts]
            dev_start = np.flatnonzero(np.r_[True, pair_dev[1:] != pair_dev[:-1]])
            rank = np.arange(starts.size) - np.repeat(dev_start, np.diff(np.r_[dev_start, starts.size]))
            sample_pair = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, ahead.size]))
            for r in range(int(rank.max()) + 1):
                pairs = np.flatnonzero(rank == r)
                mask = np.isin(sample_pair, pairs)
                scored += self._round(pair_dev[pairs], pair_idx[pairs], arrival[starts[pairs]], slot[ahead[mask]],
                                      value[ahead[mask]])  # fmt: skip
        self.flushes += 1
        self.busy_s += time.perf_counter() - started
        return scored

    @staticmethod
    def _arrivals(marks: list[tuple[int, float]], idx: I64) -> F64:
        starts = np.asarray([m[0] for m in marks], dtype=np.int64)
        times = np.asarray([m[1] for m in marks], dtype=np.float64)
        return times[np.searchsorted(starts, idx, side="right") - 1]

    def _accumulate(self, slot: I64, value: F64) -> None:
        if slot.size == 0:
            return
        acc = self._acc
        np.add.at(acc[0], slot, value)
        np.add.at(acc[1], slot, 1.0)
        np.minimum.at(acc[2], slot, value)
        np.maximum.at(acc[3], slot, value)

    def _round(self, devs: I64, new: I64, arrived: F64, slot: I64, value: F64) -> int:
        """Devices moving on to bucket `new` (one each): close their current bucket into the
        ring and judge it, note empty buckets in between, then accumulate the new one."""
        scored = 0
        accepted = np.ones(devs.size, bool)
        current = self._dev_current[devs]
        group = self._dev_group[devs]
        for gid, g in enumerate(self._group_list):
            mine = np.flatnonzero(group == gid)
            if mine.size:
                n, ok = self._close(g, devs[mine], current[mine], new[mine], arrived[mine])
                scored += n
                accepted[mine] = ok
        self._dev_current[devs[accepted]] = new[accepted]
        keep = np.isin(self._slot_dev[slot], devs[accepted])
        if not keep.all():  # older than the history the model started from
            for d, n in zip(*np.unique(self._slot_dev[slot[~keep]], return_counts=True), strict=True):
                self._owner[int(d)].stats.late += int(n)
        self._accumulate(slot[keep], value[keep])
        return scored

    def _close(self, g: _Group, devs: I64, current: I64, new: I64, arrived: F64) -> tuple[int, npt.NDArray[np.bool_]]:
        rows = self._dev_row[devs]
        filling = current >= 0
        newest = g.newest[rows]
        accepted = filling | (newest < 0) | (new > newest)
        scored = 0
        if filling.any():
            closing, bucket = rows[filling], current[filling]
            s = g.slots[closing]
            acc = self._acc[:, s]
            count = acc[1]
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(count > 0, acc[0] / np.maximum(count, 1.0), np.nan)
                spread = np.where(count > 0, acc[3] - acc[2], np.nan)
            self._acc[0, s], self._acc[1, s], self._acc[2, s], self._acc[3, s] = 0.0, 0.0, np.inf, -np.inf
            self._push(g, closing, mean)
            g.newest[closing] = bucket
            g.seen[closing] += 1
            judged = g.seen[closing] >= g.window  # a full window since the device's first bucket
            scored = self._judge(g, devs[filling][judged], closing[judged], spread[judged], count[judged],
                                 bucket[judged], arrived[filling][judged])  # fmt: skip
        # buckets nobody sent anything in, between the last known one and the new one
        before = np.where(filling, current, newest)
        gap = np.where(accepted & (before >= 0), np.minimum(new - before - 1, g.depth), 0)
        for k in range(int(gap.max(initial=0))):
            empty = rows[gap > k]
            self._push(g, empty, np.full((empty.size, g.width), np.nan))
        g.seen[rows] += gap
        g.newest[rows[gap > 0]] = new[gap > 0] - 1
        return scored, accepted

    @staticmethod
    def _push(g: _Group, rows: IP, mean: F64) -> None:
        if rows.size == len(g.members) and rows.size and rows[0] == 0 and rows[-1] == rows.size - 1:
            g.mean[:, :-1] = g.mean[:, 1:]  # the whole group (every device at a bucket's end): no gather
            g.mean[:, -1] = mean
            return
        g.mean[rows, :-1] = g.mean[rows, 1:]
        g.mean[rows, -1] = mean

    def _judge(self, g: _Group, devs: I64, rows: IP, spread: F64, count: F64, bucket: I64, arrived: F64) -> int:
        if rows.size == 0:
            return 0
        t = bucket * g.step[rows]
        whole = rows.size == len(g.members) and rows[0] == 0 and rows[-1] == rows.size - 1
        pooled, z = ft.window_features(g.mean if whole else g.mean[rows], spread, count, t,
                                       g.state if whole else g.state.take(rows))  # fmt: skip
        ok = ~np.isnan(pooled).any(axis=1)
        if not ok.any():
            return 0
        devs, pooled, z, t, arrived = devs[ok], pooled[ok], z[ok], t[ok], arrived[ok]
        d = devs.astype(np.intp)
        raw = self._forests.score(pooled, self._forest_of[d])
        p = self._params[d]
        score, _, _, names, tags = combine(raw, pooled, z, p[:, 0], p[:, 1], p[:, 2], self._hi[d], self._mid[d],
                                           p[:, 3])  # fmt: skip
        now = time.monotonic()
        self.latencies.extend((now - arrived).tolist())
        ends = (t + g.step[rows[ok]]).tolist()
        for k, dd in enumerate(d.tolist()):
            m = self._owner[dd]
            self._emit(m, ends[k], float(score[k]), names[k], m.model.tag_names[tags[k]])
        return int(d.size)

    def _emit(self, m: LiveModel, t: float, score: float, feature: str, tag: str) -> None:
        st = m.stats
        anomalous = score > 1.0
        st.windows += 1
        st.anomalous += int(anomalous)
        st.last_t, st.last_score, st.last_feature, st.last_tag = t, score, feature, tag
        hour = int(t // 3600 * 3600)
        counts = st.hourly.get(hour)
        if counts is None:
            counts = st.hourly[hour] = [0, 0]
            for old in [h for h in st.hourly if h < hour - HOURS_KEPT * 3600]:
                del st.hourly[old]
        counts[0] += 1
        counts[1] += int(anomalous)
        if self.sink is not None:
            self.sink.anomaly_score(m.tenant_id, m.device_node_id, score, t)
        if anomalous != m.anomalous:
            m.anomalous = anomalous
            self.bus.publish(Event(m.tenant_id, "anomaly", {
                "device": m.device_node_id, "model": m.model_id, "version": m.version, "t": t, "score": score,
                "anomalous": anomalous, "feature": feature, "tag": tag,
            }))  # fmt: skip
