"""Analytics of tags over a time range: series, statistics, trend, correlation, forecast.

Tags and ranges are given as for /history (node id or path, ISO 8601 or epoch seconds; the
range defaults to the last hour); reading them needs history.read, inside the caller's tenant.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Annotated, Literal, TypedDict

import numpy as np
from fastapi import APIRouter, Query

from server.analytics.data import F64
from server.analytics.service import AnalyticsService, Loaded, Source
from server.api.deps import ApiContext, Caller, Ctx
from server.api.schema import (
    Bounds,
    CorrelationOut,
    ForecastOut,
    ForecastSelection,
    SeriesOut,
    StatisticsOut,
    TrendOut,
)
from server.domain.errors import Unavailable
from server.domain.timeutil import to_epoch

router = APIRouter(prefix="/analytics", tags=["analytics"])

Node = Annotated[str, Query(max_length=2000, description="tag node id or path")]
Start = Annotated[datetime | None, Query(description="ISO 8601 or epoch seconds; default end - 1 h")]
End = Annotated[datetime | None, Query(description="default now")]
SourceQ = Annotated[
    Source, Query(description="auto: raw samples up to 100,000 in the range, else rollups; raw: exact, slower")
]


def _prepare(ctx: ApiContext, start: datetime | None, end: datetime | None) -> tuple[AnalyticsService, float, float]:
    """The service and the range in epoch seconds (end default now, start default end - 1 h): the
    opening every route shares, in one place so the defaults cannot drift between them."""
    if ctx.analytics is None:
        raise Unavailable("analytics are not configured on this server")
    t_end = to_epoch(end) if end else time.time()
    return ctx.analytics, (to_epoch(start) if start else t_end - 3600), t_end


class _Basis(TypedDict):
    node_id: str
    path: str
    unit: str | None
    start: float
    end: float
    source: Literal["raw", "rollup"]
    resolution_s: float | None
    samples: int
    points: int
    approximate: list[str]
    bounds: dict[str, Bounds]


def _nullable(a: F64) -> list[float | None]:
    return [x if math.isfinite(x) else None for x in a.tolist()]


def _basis(loaded: Loaded, approximate: list[str], bounds: dict[str, tuple[float, float]]) -> _Basis:
    n = loaded.node
    return {
        "node_id": n.node_id, "path": n.path, "unit": n.unit, "start": loaded.start, "end": loaded.end,
        "source": loaded.source, "resolution_s": loaded.resolution_s, "samples": loaded.sample_count,
        "points": loaded.points, "approximate": approximate,
        "bounds": {k: Bounds(low=lo, high=hi) for k, (lo, hi) in bounds.items()},
    }  # fmt: skip


@router.get("/series", response_model=SeriesOut)
async def series(
    who: Caller,
    ctx: Ctx,
    node: Node,
    start: Start = None,
    end: End = None,
    window: int | None = Query(None, ge=1, le=100_000, description="moving average over this many points"),
    window_s: float | None = Query(None, gt=0, le=366 * 86400, description="moving average over this many seconds"),
    max_points: int = Query(2000, description="raw when the range holds fewer samples, else bucket means"),
) -> SeriesOut:
    """The series (as /history), its trailing moving average and its rate of change per minute."""
    svc, t_start, t_end = _prepare(ctx, start, end)
    r = await svc.series(who, node, t_start, t_end, window, window_s, max_points)
    decimated = r.history.decimated is not None
    return SeriesOut(
        node_id=r.node.node_id, path=r.node.path, unit=r.node.unit, start=t_start, end=t_end,
        mode="decimated" if decimated else "raw", resolution_s=r.history.resolution_s, count=int(r.t.size),
        window=None if window_s is not None else (window or 10), window_s=window_s, t=r.t.tolist(),
        value=r.value.tolist(), samples=r.weights.astype(np.int64).tolist() if r.weights is not None else None,
        moving_average=_nullable(r.moving_average), rate_per_min=_nullable(r.rate_per_min),
    )  # fmt: skip


@router.get("/statistics", response_model=StatisticsOut)
async def statistics(
    who: Caller, ctx: Ctx, node: Node, start: Start = None, end: End = None, source: SourceQ = "auto"
) -> StatisticsOut:
    """Count, mean, median, std, variance, min, max, range, percentiles, CV and IQR."""
    svc, t_start, t_end = _prepare(ctx, start, end)
    c = await svc.statistics(who, node, t_start, t_end, source)
    s = c.result
    return StatisticsOut(
        **_basis(c.loaded, sorted(s.bounds), s.bounds),
        count=s.count, mean=s.mean, median=s.median, std=s.std, variance=s.variance, min=s.min, max=s.max,
        range=s.range, percentiles={f"p{k}": v for k, v in s.percentiles.items()}, cv=s.cv, iqr=s.iqr,
    )  # fmt: skip


@router.get("/trend", response_model=TrendOut)
async def trend(
    who: Caller,
    ctx: Ctx,
    node: Node,
    start: Start = None,
    end: End = None,
    threshold_per_hour: float | None = Query(
        None,
        ge=0,
        description="|slope| per hour at or below which the trend is stable; default 10% of the "
        "data's range across the span",
    ),  # fmt: skip
    source: SourceQ = "auto",
) -> TrendOut:
    """Least-squares slope, R² and a direction (increasing, decreasing, stable)."""
    svc, t_start, t_end = _prepare(ctx, start, end)
    c = await svc.trend(who, node, t_start, t_end, source, threshold_per_hour)
    tr = c.result
    approx = [] if c.loaded.source == "raw" else ["slope_per_s", "slope_per_hour", "intercept", "fitted_end", "r2"]
    return TrendOut(
        **_basis(c.loaded, approx, tr.bounds),
        slope_per_s=tr.line.slope, slope_per_hour=tr.slope_per_hour, r2=tr.line.r2, direction=tr.direction,
        threshold_per_hour=tr.threshold_per_hour, threshold_source=tr.threshold_source, t0=tr.t0,
        intercept=tr.line.intercept, fitted_end=tr.line.intercept + tr.line.slope * tr.span_s,
    )  # fmt: skip


@router.get("/correlation", response_model=CorrelationOut)
async def correlation(
    who: Caller,
    ctx: Ctx,
    node: Node,
    other: str = Query(max_length=2000, description="the second tag's node id or path"),
    start: Start = None,
    end: End = None,
    step_s: float | None = Query(None, gt=0, description="grid step; default the coarser tag's typical interval"),
    tolerance_s: float | None = Query(
        None, ge=0, description="nearest sample within this of a grid point; default step / 2"
    ),  # fmt: skip
    source: SourceQ = "auto",
) -> CorrelationOut:
    """Pearson r between two tags aligned on a common time grid, with n, p-value and strength."""
    svc, t_start, t_end = _prepare(ctx, start, end)
    r = await svc.correlation(who, node, other, t_start, t_end, source, step_s, tolerance_s)
    c = r.result
    return CorrelationOut(
        node_id=r.a.node.node_id, path=r.a.node.path, other_node_id=r.b.node.node_id, other_path=r.b.node.path,
        start=t_start, end=t_end, source=r.a.source, resolution_s=r.a.resolution_s, r=c.r, p_value=c.p_value, n=c.n,
        strength=c.strength, direction=c.direction, step_s=c.step_s, tolerance_s=c.tolerance_s,
        grid_points=c.grid_points,
    )  # fmt: skip


@router.get("/forecast", response_model=ForecastOut)
async def forecast(
    who: Caller,
    ctx: Ctx,
    node: Node,
    start: Start = None,
    end: End = None,
    horizon: int = Query(10, ge=1, le=100, description="steps ahead"),
    confidence: float = Query(95.0, ge=50, le=99, description="prediction interval, percent"),
    method: Literal["auto", "linear", "holt_winters"] = Query("auto", description="auto: the better on a holdout"),
    max_points: int = Query(1000, ge=10, le=10_000, description="above this many samples, bucket means are used"),
) -> ForecastOut:
    """Linear regression or Holt-Winters (daily cycle), with prediction intervals."""
    svc, t_start, t_end = _prepare(ctx, start, end)
    r = await svc.forecast(who, node, t_start, t_end, horizon, confidence, method, max_points)
    f, sel = r.forecast, r.selection
    return ForecastOut(
        **_basis(r.loaded, [], {}),
        method=f.method, step_s=f.step_s, horizon=horizon, confidence=confidence, t=f.t.tolist(),
        value=f.value.tolist(), lower=f.lower.tolist(), upper=f.upper.tolist(), rmse=f.rmse, r2=f.r2, n=f.n,
        params=f.params, selection=ForecastSelection(
            holdout=sel.holdout, holdout_rmse=sel.holdout_rmse, not_applicable=sel.not_applicable
        ),
    )  # fmt: skip
