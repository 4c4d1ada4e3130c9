"""Pearson correlation of two tags sampled at different moments, aligned on a common time grid.

Two field devices rarely stamp the same instant, so exact timestamp matches would leave almost
nothing to correlate. Each tag is resampled onto one grid (`step` seconds apart over the span
both tags cover): a grid point takes the tag's nearest sample within `tolerance` seconds, and a
point where either tag has none is left out. On rollup input the grid is the bucket grid and a
bucket's mean is its value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from server.analytics.data import F64, Buckets, Samples, require_finite
from server.analytics.distributions import t_sf
from server.analytics.errors import NotEnoughData, UndefinedResult

MIN_PAIRS = 3
MAX_GRID = 5_000_000
"""Grid points per request; a finer step over a long range is refused, not silently coarsened."""

Strength = Literal["very weak", "weak", "moderate", "strong", "very strong"]


@dataclass(frozen=True, slots=True)
class Correlation:
    r: float
    p_value: float
    """Two-sided, for the null hypothesis of no correlation (t test with n - 2 degrees of freedom)."""
    n: int
    strength: Strength
    direction: Literal["positive", "negative", "none"]
    step_s: float
    tolerance_s: float
    grid_points: int


def strength(r: float) -> Strength:
    """Evans (1996): |r| below 0.2 very weak, 0.4 weak, 0.6 moderate, 0.8 strong, else very strong."""
    a = abs(r)
    if a < 0.2:
        return "very weak"
    if a < 0.4:
        return "weak"
    if a < 0.6:
        return "moderate"
    if a < 0.8:
        return "strong"
    return "very strong"


def pearson(x: F64, y: F64) -> tuple[float, float]:
    """r and its two-sided p-value, from centred sums."""
    require_finite(x, "the first series")
    require_finite(y, "the second series")
    n = int(x.size)
    if n < MIN_PAIRS:
        raise NotEnoughData(f"{n} aligned pair(s): a correlation needs at least {MIN_PAIRS}")
    dx, dy = x - x.mean(), y - y.mean()
    sxx, syy = float(dx @ dx), float(dy @ dy)
    for name, ss, v in (("first", sxx, x), ("second", syy, y)):
        if ss == 0.0:
            raise UndefinedResult(f"the {name} series is constant ({float(v[0])!r}) over the aligned points: "
                                  "a correlation is undefined")  # fmt: skip
    r = max(-1.0, min(1.0, float(dx @ dy) / math.sqrt(sxx * syy)))
    if abs(r) == 1.0:
        return r, 0.0
    df = n - 2
    if df == 0:
        return r, 1.0
    t = abs(r) * math.sqrt(df / ((1.0 - r) * (1.0 + r)))
    return r, min(1.0, 2.0 * t_sf(t, df))


def median_step(ts: F64) -> float:
    """The typical sampling interval: the median gap between distinct timestamps."""
    gaps = np.diff(np.unique(ts))
    return float(np.median(gaps)) if gaps.size else 0.0


def nearest_on_grid(grid: F64, ts: F64, values: F64, tolerance: float) -> F64:
    """Value of the sample nearest each grid point (the earlier one on a tie); NaN beyond tolerance."""
    out = np.full(grid.size, np.nan)
    if ts.size == 0:
        return out
    right = np.clip(np.searchsorted(ts, grid, side="left"), 0, ts.size - 1)
    left = np.clip(right - 1, 0, ts.size - 1)
    pick = np.where(np.abs(grid - ts[left]) <= np.abs(ts[right] - grid), left, right)
    near = np.abs(ts[pick] - grid) <= tolerance
    out[near] = values[pick[near]]
    return out


def _result(x: F64, y: F64, step: float, tolerance: float, grid_points: int) -> Correlation:
    r, p = pearson(x, y)
    direction: Literal["positive", "negative", "none"] = "positive" if r > 0 else "negative" if r < 0 else "none"
    return Correlation(r, p, int(x.size), strength(r), direction, step, tolerance, grid_points)


def correlate(a: Samples, b: Samples, step: float | None = None, tolerance: float | None = None) -> Correlation:
    """Correlate raw samples of two tags on a grid; the default step is the coarser tag's typical interval."""
    for name, s in (("first", a), ("second", b)):
        if len(s) == 0:
            raise NotEnoughData(f"no samples of the {name} tag in the range")
    require_finite(a.value, "the first series")
    require_finite(b.value, "the second series")
    lo, hi = max(float(a.ts[0]), float(b.ts[0])), min(float(a.ts[-1]), float(b.ts[-1]))
    if hi < lo:
        raise NotEnoughData("the two tags have no samples in a common span of the range")
    if step is None:
        step = max(median_step(a.ts), median_step(b.ts))
        if step <= 0.0:
            raise NotEnoughData("too few samples to find a sampling interval: give step_s")
    tol = step / 2 if tolerance is None else tolerance
    count = int(math.floor((hi - lo) / step)) + 1
    if count > MAX_GRID:
        raise UndefinedResult(f"a step of {step:g} s over {hi - lo:g} s makes {count:,} grid points; "
                              f"at most {MAX_GRID:,}: choose a larger step_s")  # fmt: skip
    grid = lo + np.arange(count, dtype=np.float64) * step
    x, y = nearest_on_grid(grid, a.ts, a.value, tol), nearest_on_grid(grid, b.ts, b.value, tol)
    both = np.isfinite(x) & np.isfinite(y)
    return _result(x[both], y[both], step, tol, count)


def correlate_buckets(a: Buckets, b: Buckets) -> Correlation:
    """Correlate bucket means of two tags on their common bucket grid (same width, same origin)."""
    if a.width != b.width:
        raise ValueError("bucket widths differ")
    require_finite(a.vsum, "the first tag's rollup sums")
    require_finite(b.vsum, "the second tag's rollup sums")
    for name, bk in (("first", a), ("second", b)):
        if len(bk) == 0:
            raise NotEnoughData(f"no samples of the {name} tag in the range")
    common, ia, ib = np.intersect1d(a.start, b.start, assume_unique=True, return_indices=True)
    first = min(float(a.start[0]), float(b.start[0]))
    last = max(float(a.start[-1]), float(b.start[-1]))
    grid_points = int(round((last - first) / a.width)) + 1
    return _result(a.mean[ia], b.mean[ib], a.width, a.width / 2, grid_points)
