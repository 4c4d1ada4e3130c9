"""Analytics for one tenant's tags: reads the historian (raw samples when the range is small
enough, rollup buckets otherwise), then runs the maths, in a worker thread when it is large.

Tags are resolved through HistoryService.tag, inside the caller's tenant, after the same
permission the history endpoint asks for; another tenant's tag is simply not found.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import numpy as np

from server.analytics import correlation, series, stats
from server.analytics import forecast as forecasting
from server.analytics import trend as trends
from server.analytics.data import F64, Buckets, Samples
from server.analytics.errors import NotEnoughData
from server.domain import rollup
from server.domain.errors import DomainError, InvalidInput
from server.domain.namespace import Node
from server.domain.permissions import Permission
from server.domain.principal import Principal
from server.domain.quality import Quality
from server.services.history import MAX_RANGE_S, HistoryService
from server.storage.historian.reader import HistoryResult
from server.storage.historian.store import RollupSource, SampleStore

T = TypeVar("T")
R = TypeVar("R")

Source = Literal["auto", "raw", "rollup"]

RAW_LIMIT = 100_000
"""`source=auto` computes on raw samples up to this many in the range (~0.1 s to read), else on rollups."""
RAW_MAX = 5_000_000
"""`source=raw` refuses ranges holding more samples than this (reading 2.6M takes seconds)."""
MAX_BUCKETS = 50_000
"""Rollup input uses the finest tier giving at most this many buckets (30 days: the 60 s tier)."""
CORRELATION_BUCKETS = 10_000
"""Correlation on rollups aligns bucket means on a coarser grid (30 days: 600 s), reading two tags."""
RAW_SLICE = 50_000
"""Larger raw reads go in time slices of about this many samples: on PostgreSQL the rows are
decoded on the event loop, so one slice holds the loop for ~0.1 s, not a whole read for seconds."""
THREAD_POINTS = 20_000
"""Above this many points the numpy work leaves the event loop for a worker thread."""
DAY_S = 86_400
STEP_LADDER: tuple[int, ...] = (
    10, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 14400, 21600, 43200, DAY_S,
    2 * DAY_S, 7 * DAY_S,
)  # fmt: skip
"""Forecast steps on rollups: whole divisors of a day (so a daily cycle is a whole number of steps)."""


@dataclass(frozen=True, slots=True)
class Loaded:
    """A tag's data over [start, end): raw samples or rollup buckets, never both."""

    node: Node
    start: float
    end: float
    samples: Samples | None = None
    buckets: Buckets | None = None

    @property
    def source(self) -> Literal["raw", "rollup"]:
        return "raw" if self.samples is not None else "rollup"

    @property
    def resolution_s(self) -> float | None:
        return self.buckets.width if self.buckets is not None else None

    @property
    def points(self) -> int:
        return len(self.samples) if self.samples is not None else len(self.buckets) if self.buckets else 0

    @property
    def sample_count(self) -> int:
        return len(self.samples) if self.samples is not None else self.buckets.samples if self.buckets else 0


@dataclass(frozen=True, slots=True)
class SeriesResult:
    node: Node
    start: float
    end: float
    history: HistoryResult
    t: F64
    value: F64
    weights: F64 | None
    moving_average: F64
    rate_per_min: F64


@dataclass(frozen=True, slots=True)
class Computed(Generic[R]):
    loaded: Loaded
    result: R


@dataclass(frozen=True, slots=True)
class CorrelationResult:
    a: Loaded
    b: Loaded
    result: correlation.Correlation


@dataclass(frozen=True, slots=True)
class ForecastResult:
    loaded: Loaded
    forecast: forecasting.Forecast
    selection: forecasting.Selection


def validate_range(start: float, end: float) -> None:
    if not (math.isfinite(start) and math.isfinite(end)):
        raise InvalidInput("start and end must be finite times", field="start")
    if end <= start:
        raise InvalidInput("end must be after start", field="end")
    if end - start > MAX_RANGE_S:
        raise InvalidInput("the range may span at most 20 years", field="start")


def tier_for(span: float, max_buckets: int = MAX_BUCKETS) -> int:
    """The finest stored tier that covers `span` in at most `max_buckets` buckets."""
    for width in rollup.TIERS:
        if span / width <= max_buckets:
            return width
    return rollup.TIERS[-1]


def forecast_step(span: float, max_points: int) -> int:
    """The smallest ladder step covering `span` in at most `max_points` steps."""
    for step in STEP_LADDER:
        if span / step <= max_points:
            return step
    return STEP_LADDER[-1]


def _stored_tier(width: int) -> int:
    return max(t for t in rollup.TIERS if width % t == 0)


class AnalyticsService:
    def __init__(
        self,
        history: HistoryService,
        store: SampleStore,
        rollups: RollupSource | None = None,
    ) -> None:
        self.history, self.store = history, store
        self.rollups: RollupSource = rollups or store

    # -- loading ---------------------------------------------------------------------------
    async def tag(self, who: Principal, ref: str, field: str = "node") -> Node:
        who.require(Permission.HISTORY_READ)
        try:
            return await self.history.tag(who, ref)
        except DomainError as exc:
            exc.field = field if exc.field in (None, "node") else exc.field
            raise

    async def estimate(self, tag_id: int, start: float, end: float) -> int:
        """Samples in the range from a tier read of at most ~2,000 rows (whole buckets at the edges,
        so a slight over-count)."""
        stored = await self._rollup(tag_id, tier_for(end - start, 2000), start, end)
        return int(stored.count.sum())

    async def _rollup(self, tag_id: int, tier: int, start: float, end: float) -> rollup.Rollup:
        return await self.rollups.read_rollup(tier, tag_id, start, end)

    async def raw(
        self, tag_id: int, start: float, end: float, limit: int = RAW_MAX, *, sliced: bool = True
    ) -> Samples | None:
        """Raw samples without Bad ones (as rollups count them); None when more than `limit`."""
        spans = await self._slices(tag_id, start, end) if sliced else [(start, end)]
        ts, values, total = [], [], 0
        for a, b in spans:
            r = await self.store.read_raw(tag_id, a, b, limit - total + 1)
            total += len(r)
            if total > limit:
                return None
            keep = r.quality != int(Quality.BAD)
            ts.append(r.ts[keep])
            values.append(r.value[keep])
        if len(ts) == 1:
            return Samples(ts[0], values[0])
        return Samples(np.concatenate(ts), np.concatenate(values))

    async def _slices(self, tag_id: int, start: float, end: float) -> list[tuple[float, float]]:
        """[start, end) cut at bucket starts into spans of about RAW_SLICE samples each."""
        r = await self._rollup(tag_id, tier_for(end - start, 2000), start, end)
        if int(r.count.sum()) <= RAW_SLICE:
            return [(start, end)]
        order = np.argsort(r.bucket)
        bucket, cum = r.bucket[order], np.cumsum(r.count[order])
        cuts = [float(bucket[i]) for i in np.flatnonzero(np.diff(cum // RAW_SLICE) > 0) + 1]
        edges = [start, *(c for c in cuts if start < c < end), end]
        return list(zip(edges[:-1], edges[1:], strict=True))

    async def buckets(self, tag_id: int, start: float, end: float, width: int) -> Buckets:
        """Buckets of `width` holding exactly the samples of [start, end): whole buckets from the
        tier tables, the partial ones at the edges aggregated from raw samples."""
        lo, hi = math.ceil(start / width) * width, math.floor(end / width) * width
        parts: list[rollup.Rollup] = []
        raw_spans = [(start, end)] if lo >= hi else [(start, lo), (hi, end)]
        if lo < hi:
            tier = _stored_tier(width)
            parts.append(rollup.merge(await self._rollup(tag_id, tier, lo, hi), width))
        for a, b in raw_spans:
            if b > a:
                s = await self.raw(tag_id, a, b, sliced=False)
                if s is None:
                    raise InvalidInput(f"more than {RAW_MAX:,} samples within one {width} s bucket", field="start")
                parts.append(rollup.aggregate(np.zeros(len(s), np.int64), s.ts, s.value, width))
        r = rollup.merge([p for p in parts if len(p)]) if any(len(p) for p in parts) else rollup.Rollup.empty()
        return Buckets(
            start=r.bucket.astype(np.float64), width=float(width), count=r.count, vsum=r.vsum, vmin=r.vmin,
            vmax=r.vmax, first_ts=r.first_ts, last_ts=r.last_ts,
        )  # fmt: skip

    async def load(self, node: Node, start: float, end: float, source: Source, width: int | None = None) -> Loaded:
        """Raw samples when they are few enough (or asked for), else buckets of `width` (default:
        the finest tier with at most MAX_BUCKETS over the range)."""
        if source == "raw":
            samples = await self.raw(node.id, start, end, RAW_MAX)
            if samples is None:
                raise InvalidInput(f"the range holds more than {RAW_MAX:,} samples, the most source=raw reads; "
                                   "use a shorter range or source=auto", field="source")  # fmt: skip
            return Loaded(node, start, end, samples=samples)
        if source == "auto" and await self.estimate(node.id, start, end) <= RAW_LIMIT:
            samples = await self.raw(node.id, start, end, RAW_LIMIT)
            if samples is not None:  # None: more than the tier estimate said (Bad samples are only raw)
                return Loaded(node, start, end, samples=samples)
        b = await self.buckets(node.id, start, end, width or tier_for(end - start))
        return Loaded(node, start, end, buckets=b)

    @staticmethod
    async def _compute(points: int, fn: Callable[[], T]) -> T:
        """Small inputs stay on the loop (a thread hop costs more than the maths)."""
        if points > THREAD_POINTS:
            return await asyncio.to_thread(fn)
        return fn()

    # -- analyses --------------------------------------------------------------------------
    async def series(
        self, who: Principal, ref: str, start: float, end: float, window: int | None, window_s: float | None,
        max_points: int,
    ) -> SeriesResult:  # fmt: skip
        if window is not None and window_s is not None:
            raise InvalidInput("give window (points) or window_s (seconds), not both", field="window_s")
        node, result = await self.history.read(who, ref, start, end, max_points)
        if result.raw is not None:
            keep = result.raw.quality != int(Quality.BAD)
            t, v, w = result.raw.ts[keep], result.raw.value[keep], None
        else:
            assert result.decimated is not None
            d = result.decimated
            t, v, w = d.t, d.avg, d.count.astype(np.float64)
        if t.size == 0:
            raise NotEnoughData("no samples in the range")

        def run() -> tuple[F64, F64]:
            if window_s is not None:
                ma = series.moving_average_time(t, v, window_s, w)
            else:
                ma = series.moving_average_points(v, window or 10, w)
            return ma, series.rate_per_minute(t, v)

        ma, rate = await self._compute(t.size, run)
        return SeriesResult(node, start, end, result, t, v, w, ma, rate)

    async def statistics(
        self, who: Principal, ref: str, start: float, end: float, source: Source
    ) -> Computed[stats.Statistics]:
        validate_range(start, end)
        loaded = await self.load(await self.tag(who, ref), start, end, source)
        if loaded.samples is not None:
            values = loaded.samples.value
            return Computed(loaded, await self._compute(loaded.points, lambda: stats.describe(values)))
        b = loaded.buckets
        assert b is not None
        return Computed(loaded, await self._compute(loaded.points, lambda: stats.describe_buckets(b)))

    async def trend(
        self, who: Principal, ref: str, start: float, end: float, source: Source, threshold_per_hour: float | None
    ) -> Computed[trends.Trend]:
        validate_range(start, end)
        loaded = await self.load(await self.tag(who, ref), start, end, source)
        if loaded.samples is not None:
            s = loaded.samples
            return Computed(
                loaded, await self._compute(loaded.points, lambda: trends.trend(s.ts, s.value, threshold_per_hour))
            )
        b = loaded.buckets
        assert b is not None
        return Computed(loaded, await self._compute(loaded.points, lambda: trends.trend_buckets(b, threshold_per_hour)))

    async def correlation(
        self, who: Principal, ref: str, other: str, start: float, end: float, source: Source,
        step_s: float | None, tolerance_s: float | None,
    ) -> CorrelationResult:  # fmt: skip
        validate_range(start, end)
        node_a, node_b = await self.tag(who, ref), await self.tag(who, other, "other")
        if source == "auto":  # two tags share one raw budget: reading is most of the time
            guesses = [await self.estimate(n.id, start, end) for n in (node_a, node_b)]
            source = "raw" if sum(guesses) <= RAW_LIMIT else "rollup"
        if source == "rollup" and step_s is not None:
            raise InvalidInput("step_s applies to raw samples; on rollups the grid is the bucket width "
                               "(use source=raw to choose the step)", field="step_s")  # fmt: skip
        width = tier_for(end - start, CORRELATION_BUCKETS)
        a = await self.load(node_a, start, end, source, width)
        b = await self.load(node_b, start, end, source, width)
        if a.samples is not None and b.samples is not None:
            sa, sb = a.samples, b.samples
            res = await self._compute(a.points + b.points,
                                      lambda: correlation.correlate(sa, sb, step_s, tolerance_s))  # fmt: skip
        else:
            ba, bb = a.buckets, b.buckets
            assert ba is not None and bb is not None
            res = await self._compute(a.points + b.points, lambda: correlation.correlate_buckets(ba, bb))
        return CorrelationResult(a, b, res)

    async def forecast(
        self, who: Principal, ref: str, start: float, end: float, horizon: int, confidence: float,
        method: forecasting.Method | Literal["auto"], max_points: int,
    ) -> ForecastResult:  # fmt: skip
        validate_range(start, end)
        node = await self.tag(who, ref)
        guess = await self.estimate(node.id, start, end)
        samples = await self.raw(node.id, start, end, max_points) if guess <= max_points else None
        if samples is not None:
            loaded = Loaded(node, start, end, samples=samples)
            t, y = samples.ts, samples.value
            if len(samples) == 0:
                raise NotEnoughData("no samples in the range")
            step = correlation.median_step(t)
            if step <= 0:
                raise NotEnoughData(f"{len(samples)} sample(s) at distinct times: a forecast needs at least "
                                    f"{forecasting.MIN_POINTS}")  # fmt: skip
        else:
            width = forecast_step(end - start, max_points)
            b = await self.buckets(node.id, start, end, width)
            loaded = Loaded(node, start, end, buckets=b)
            t, y, step = b.start + width / 2, b.mean, float(width)
        fc, sel = await asyncio.to_thread(forecasting.forecast, t, y, step, horizon, confidence / 100, method)
        return ForecastResult(loaded, fc, sel)
