"""Least-squares trend of a tag over time: slope, R² and a direction with a stated threshold."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from server.analytics.data import F64, Buckets, require_count, require_finite
from server.analytics.errors import UndefinedResult
from server.analytics.stats import ROUNDING, within_bucket_ss

MIN_SAMPLES = 3
DEFAULT_RELATIVE_THRESHOLD = 0.1
"""Without an explicit threshold, a fitted change across the span below 10% of the data's range is stable."""

Direction = Literal["increasing", "decreasing", "stable"]


@dataclass(frozen=True, slots=True)
class Line:
    slope: float
    """Units per second."""
    intercept: float
    """Fitted value at t = t0 (the origin the caller chose: the first sample time)."""
    r2: float
    n: int


@dataclass(frozen=True, slots=True)
class Trend:
    line: Line
    t0: float
    span_s: float
    direction: Direction
    threshold_per_hour: float
    threshold_source: Literal["given", "relative"]
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    """For estimates from rollups: name -> (low, high); empty when computed on raw samples."""

    @property
    def slope_per_hour(self) -> float:
        return self.line.slope * 3600.0


def fit_line(t: F64, y: F64) -> Line:
    """Ordinary least squares y = a + b·(t - t[0]); centred sums keep epoch seconds precise."""
    require_finite(y)
    require_count(int(y.size), MIN_SAMPLES, "a trend")
    x = t - t[0]
    xm, ym = float(x.mean()), float(y.mean())
    dx, dy = x - xm, y - ym
    sxx, syy = float(dx @ dx), float(dy @ dy)
    if sxx == 0.0:
        raise UndefinedResult("every sample has the same timestamp: a slope over time is undefined")
    if syy == 0.0:
        raise UndefinedResult(f"the series is constant ({y[0]!r}): R² is undefined (slope 0)")
    slope = float(dx @ dy) / sxx
    r2 = min(1.0, slope * slope * sxx / syy)
    return Line(slope, ym - slope * xm, r2, int(y.size))


def classify(slope_per_hour: float, threshold_per_hour: float) -> Direction:
    if slope_per_hour > threshold_per_hour:
        return "increasing"
    if slope_per_hour < -threshold_per_hour:
        return "decreasing"
    return "stable"


def _threshold(threshold_per_hour: float | None, data_range: float, span_s: float) -> tuple[float, bool]:
    if threshold_per_hour is not None:
        return threshold_per_hour, True
    return DEFAULT_RELATIVE_THRESHOLD * data_range / (span_s / 3600.0), False


def trend(t: F64, y: F64, threshold_per_hour: float | None = None) -> Trend:
    """Exact trend of raw samples; the default threshold is 10% of the range across the span."""
    line = fit_line(t, y)
    span = float(t[-1] - t[0])
    thr, given = _threshold(threshold_per_hour, float(y.max() - y.min()), span)
    return Trend(line, float(t[0]), span, classify(line.slope * 3600, thr), thr, "given" if given else "relative")


def trend_buckets(b: Buckets, threshold_per_hour: float | None = None) -> Trend:
    """Trend from rollups: count-weighted least squares of bucket means at their samples' mid-time.

    The slope is the between-bucket regression (exact samples would also need Σ t·v per bucket);
    R² = slope²·Sxx / SST with Sxx including the spread of sample times inside each bucket
    (assumed evenly spaced) and SST the variance estimate of stats.describe_buckets, so R² comes
    with the bounds that SST's bounds give.
    """
    require_finite(b.vsum, "the rollup sums")
    total = b.samples
    require_count(total, MIN_SAMPLES, "a trend")
    n = b.count.astype(np.float64)
    t0 = float(b.first_ts.min())
    x, y = b.t_mid - t0, b.mean
    xm, ym = float(np.sum(n * x) / total), float(np.sum(n * y) / total)
    dx, dy = x - xm, y - ym
    sxx_between = float(np.sum(n * dx * dx))
    if sxx_between == 0.0:
        raise UndefinedResult("the range holds one bucket of samples: too short for a trend from rollups")
    slope = float(np.sum(n * dx * dy)) / sxx_between
    step = np.divide(b.last_ts - b.first_ts, n - 1, out=np.zeros_like(n), where=n > 1)
    sxx = sxx_between + float(np.sum(n * (n * n - 1) / 12 * step * step))
    between = float(np.sum(n * dy * dy))
    w_lo, w_est, w_hi = within_bucket_ss(b)
    sst, sst_lo, sst_hi = between + float(w_est.sum()), between + float(w_lo.sum()), between + float(w_hi.sum())
    if sst_hi == 0.0:
        raise UndefinedResult(f"the series is constant ({float(b.vmin[0])!r}): R² is undefined (slope 0)")
    explained = slope * slope * sxx

    def r2(ss: float) -> float:
        return 1.0 if ss == 0.0 else min(1.0, explained / ss)

    span = float(b.last_ts.max() - t0)
    thr, given = _threshold(threshold_per_hour, float(b.vmax.max() - b.vmin.min()), span)
    line = Line(slope, ym - slope * xm, r2(sst), total)
    bounds = {"r2": (r2(sst_hi) * (1 - ROUNDING), min(1.0, r2(sst_lo) * (1 + ROUNDING)))}
    return Trend(line, t0, span, classify(slope * 3600, thr), thr, "given" if given else "relative", bounds)
