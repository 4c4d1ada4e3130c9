"""Descriptive statistics: exact on raw samples, estimated with guaranteed bounds on rollups.

Rollup buckets keep count, sum, min and max but no sum of squares, so over buckets only count,
mean, min, max and range are exact. The spread inside a bucket is unknown; what *is* known
bounds it, and the estimates below say so:

- variance: the between-bucket part is exact; each bucket's own sum of squares lies between
  the least a bucket with that min, max, mean and count can hold and the Bhatia-Davis maximum
  n·(max - mean)·(mean - min); the estimate takes (n - 1)·(range / d2(n))², the range estimator
  of a normal sample's σ used in X̄-R control charts, clipped to those bounds.
- percentiles: every sample lies between its bucket's min and max, so the p-th percentile of
  the samples lies between the count-weighted p-th percentiles of the bucket minima and of the
  bucket maxima; the estimate is the count-weighted percentile of the bucket means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from server.analytics.data import F64, I64, Buckets, require_count, require_finite

PERCENTILES: tuple[int, ...] = (25, 50, 75, 95)
MIN_SAMPLES = 2


@dataclass(frozen=True, slots=True)
class Statistics:
    count: int
    mean: float
    median: float
    std: float
    """Sample standard deviation (n - 1 in the denominator)."""
    variance: float
    min: float
    max: float
    range: float
    percentiles: dict[int, float]
    cv: float | None
    """std / mean; None when the mean is 0."""
    iqr: float
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    """For estimates (rollup input): name -> (low, high) the exact value is guaranteed to lie in."""

    @property
    def exact(self) -> bool:
        return not self.bounds


ROUNDING = 1e-12
"""Bounds are widened by this much (relative) so float rounding can't put an attained bound inside."""


def _widen(lo: float, hi: float) -> tuple[float, float]:
    return lo - ROUNDING * abs(lo), hi + ROUNDING * abs(hi)


def _cv(std: float, mean: float) -> float | None:
    return std / mean if mean != 0 else None


def describe(values: F64) -> Statistics:
    """Exact statistics of raw sample values (numpy's linear-interpolation percentiles)."""
    require_finite(values)
    require_count(int(values.size), MIN_SAMPLES, "statistics")
    mean = float(np.mean(values))
    var = float(np.var(values, ddof=1))
    std = math.sqrt(var)
    pct = np.percentile(values, PERCENTILES)
    lo, hi = float(values.min()), float(values.max())
    p = {k: float(v) for k, v in zip(PERCENTILES, pct, strict=True)}
    return Statistics(
        count=int(values.size), mean=mean, median=float(np.median(values)), std=std, variance=var, min=lo, max=hi,
        range=hi - lo, percentiles=p, cv=_cv(std, mean), iqr=p[75] - p[25],
    )  # fmt: skip


def weighted_percentile(values: F64, counts: I64, q: float) -> float:
    """np.percentile(np.repeat(values, counts), q) without materialising the repeat."""
    order = np.argsort(values, kind="stable")
    v, cum = values[order], np.cumsum(counts[order])
    pos = (int(cum[-1]) - 1) * q / 100.0
    k = math.floor(pos)
    frac = pos - k
    a = float(v[np.searchsorted(cum, k, side="right")])
    b = float(v[np.searchsorted(cum, min(k + 1, int(cum[-1]) - 1), side="right")])
    return a + (b - a) * frac


@lru_cache(maxsize=4096)
def d2(n: int) -> float:
    """Expected range of n independent standard normal values: ∫ 1 - Φ(x)^n - (1 - Φ(x))^n dx."""
    if n < 2:
        return 0.0
    x = np.linspace(-12.0, 12.0, 24_001)
    phi = _normal_cdf_grid()
    y = 1.0 - phi**n - (1.0 - phi) ** n
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2)


@lru_cache(maxsize=1)
def _normal_cdf_grid() -> F64:
    x = np.linspace(-12.0, 12.0, 24_001)
    return np.asarray([0.5 * math.erfc(-v / math.sqrt(2)) for v in x], dtype=np.float64)


def within_bucket_ss(b: Buckets) -> tuple[F64, F64, F64]:
    """Each bucket's sum of squared deviations from its own mean: (low, estimate, high)."""
    n = b.count.astype(np.float64)
    m = b.mean
    lo_dev, hi_dev = np.maximum(m - b.vmin, 0.0), np.maximum(b.vmax - m, 0.0)
    # At least: the min and the max themselves, the other n - 2 samples all at the value that keeps the mean.
    rest = np.where(n > 2, n - 2, 1.0)
    c_dev = np.where(n > 2, (lo_dev - hi_dev) / rest, 0.0)  # (n·m - min - max)/(n - 2) - m
    low = np.where(n >= 2, lo_dev**2 + hi_dev**2 + np.where(n > 2, (n - 2) * c_dev**2, 0.0), 0.0)
    high = np.maximum(n * hi_dev * lo_dev, low)  # Bhatia-Davis
    d2n = np.array([d2(int(k)) for k in b.count.tolist()]) if len(b) < 64 else _d2_many(b.count)
    sigma = np.divide(b.vmax - b.vmin, d2n, out=np.zeros_like(n), where=d2n > 0)
    est = np.clip((n - 1) * sigma**2, low, high)
    return low, est, high


def _d2_many(counts: I64) -> F64:
    uniq, inv = np.unique(counts, return_inverse=True)
    return np.array([d2(int(k)) for k in uniq.tolist()])[inv]


def describe_buckets(b: Buckets) -> Statistics:
    """Statistics of the samples behind rollup buckets: exact where sums allow, else bounded estimates."""
    require_finite(b.vsum, "the rollup sums")
    total = b.samples
    require_count(total, MIN_SAMPLES, "statistics")
    mean = float(b.vsum.sum() / total)
    lo, hi = float(b.vmin.min()), float(b.vmax.max())
    between = float(np.sum(b.count * (b.mean - mean) ** 2))
    w_lo, w_est, w_hi = within_bucket_ss(b)
    var = (between + float(w_est.sum())) / (total - 1)
    var_lo, var_hi = _widen((between + float(w_lo.sum())) / (total - 1), (between + float(w_hi.sum())) / (total - 1))
    std = math.sqrt(var)
    pct, bounds = {}, {}
    for q in PERCENTILES:
        pct[q] = weighted_percentile(b.mean, b.count, q)
        bounds[f"p{q}"] = _widen(weighted_percentile(b.vmin, b.count, q), weighted_percentile(b.vmax, b.count, q))
    bounds["median"] = bounds["p50"]
    bounds["variance"] = (var_lo, var_hi)
    bounds["std"] = (math.sqrt(var_lo), math.sqrt(var_hi))
    bounds["iqr"] = _widen(max(0.0, bounds["p75"][0] - bounds["p25"][1]), bounds["p75"][1] - bounds["p25"][0])
    cv = _cv(std, mean)
    if cv is not None:
        a, c = bounds["std"][0] / mean, bounds["std"][1] / mean
        bounds["cv"] = (min(a, c), max(a, c))
    return Statistics(
        count=total, mean=mean, median=pct[50], std=std, variance=var, min=lo, max=hi, range=hi - lo,
        percentiles=pct, cv=cv, iqr=pct[75] - pct[25], bounds=bounds,
    )  # fmt: skip
