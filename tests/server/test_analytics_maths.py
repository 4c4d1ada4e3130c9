"""The analytics maths against reference implementations (scipy, numpy, pandas) to 1e-9 relative,
and the estimates from rollup buckets against the exact figures of the samples behind them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from server.analytics import correlation, distributions, series
from server.analytics import stats as st
from server.analytics import trend as tr
from server.analytics.data import Buckets, Samples
from server.analytics.errors import NonFiniteData, NotEnoughData, UndefinedResult
from server.domain import rollup

RTOL = 1e-9
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z: epoch-sized timestamps, as the historian has


def close(actual: object, expected: object) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float), rtol=RTOL, atol=0)


def signal(n: int, seed: int = 1, step: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A daily cycle, a slow drift and noise, at epoch-sized timestamps."""
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(n) * step
    y = 50 + 20 * np.sin(2 * np.pi * (t - T0) / 86400) + 1e-4 * (t - T0) + rng.normal(0, 1.5, n)
    return t, y


def to_buckets(t: np.ndarray, y: np.ndarray, width: int) -> Buckets:
    r = rollup.aggregate(np.zeros(t.size, np.int64), t, y, width)
    return Buckets(r.bucket.astype(float), float(width), r.count, r.vsum, r.vmin, r.vmax, r.first_ts, r.last_ts)


# -- distributions ----------------------------------------------------------------------------
@pytest.mark.parametrize("df", [1, 2, 3, 5.5, 10, 48, 118, 998, 4318, 99_999, 2_591_998])
def test_t_quantile_and_tail_match_scipy(df: float) -> None:
    for p in (0.75, 0.8, 0.9, 0.95, 0.975, 0.99, 0.995, 0.25, 0.005):
        close(distributions.t_ppf(p, df), stats.t.ppf(p, df))
    for t in (0.05, 0.7, 1.96, 4.0, 12.0):
        close(distributions.t_sf(t, df), stats.t.sf(t, df))
    for p in (0.75, 0.9, 0.995):
        close(distributions.z_ppf(p), stats.norm.ppf(p))


# -- statistics -------------------------------------------------------------------------------
def test_statistics_match_scipy_and_numpy() -> None:
    _, y = signal(10_001)
    s = st.describe(y)
    ref = stats.describe(y)
    assert s.count == ref.nobs and s.exact
    close([s.mean, s.variance, s.min, s.max], [ref.mean, ref.variance, ref.minmax[0], ref.minmax[1]])
    close(s.std, np.std(y, ddof=1))
    close(s.median, np.median(y))
    close([s.percentiles[q] for q in (25, 50, 75, 95)], [stats.scoreatpercentile(y, q) for q in (25, 50, 75, 95)])
    close(s.cv, stats.variation(y, ddof=1))
    close(s.iqr, stats.iqr(y))
    close(s.range, np.ptp(y))


def test_statistics_refuse_empty_single_and_nan() -> None:
    with pytest.raises(NotEnoughData, match="no samples"):
        st.describe(np.array([]))
    with pytest.raises(NotEnoughData, match="1 sample"):
        st.describe(np.array([3.0]))
    with pytest.raises(NonFiniteData, match="1 non-finite value.*index 2"):
        st.describe(np.array([1.0, 2.0, np.nan, 4.0]))


def test_constant_series_has_zero_spread_and_cv_none_at_zero_mean() -> None:
    s = st.describe(np.full(10, 4.0))
    assert (s.std, s.iqr, s.range, s.cv) == (0.0, 0.0, 0.0, 0.0)
    assert st.describe(np.zeros(5)).cv is None


def test_weighted_percentile_is_the_percentile_of_the_repeated_values() -> None:
    rng = np.random.default_rng(5)
    values, counts = rng.normal(0, 1, 300), rng.integers(1, 40, 300)
    for q in (0, 5, 25, 50, 75, 95, 100):
        close(st.weighted_percentile(values, counts, q), np.percentile(np.repeat(values, counts), q))


def test_d2_is_the_expected_range_of_normal_samples() -> None:
    close(st.d2(2), 2 / math.sqrt(math.pi))
    for n in (3, 10, 60, 600):
        ref, _ = integrate.quad(lambda x, n=n: 1 - stats.norm.cdf(x) ** n - stats.norm.sf(x) ** n, -12, 12, limit=200)
        close(st.d2(n), ref)


@pytest.mark.parametrize("width", [10, 60, 600])
def test_rollup_statistics_exact_where_sums_allow_and_bounded_elsewhere(width: int) -> None:
    rng = np.random.default_rng(2)
    t, y = signal(3 * 86_400 // 2)
    keep = rng.random(t.size) > 0.1  # irregular: 10% of samples missing
    t, y = t[keep], y[keep]
    exact, est = st.describe(y), st.describe_buckets(to_buckets(t, y, width))
    assert est.count == exact.count and not est.exact
    close([est.mean, est.min, est.max, est.range], [exact.mean, exact.min, exact.max, exact.range])
    checks = {
        "variance": exact.variance, "std": exact.std, "median": exact.median, "iqr": exact.iqr, "cv": exact.cv,
        **{f"p{q}": exact.percentiles[q] for q in st.PERCENTILES},
    }  # fmt: skip
    for name, value in checks.items():
        lo, hi = est.bounds[name]
        assert lo <= value <= hi, (name, lo, value, hi)
    # Normal noise inside buckets: the range estimator lands close to the exact spread.
    assert est.std == pytest.approx(exact.std, rel=0.01)
    for q in st.PERCENTILES:
        assert est.percentiles[q] == pytest.approx(exact.percentiles[q], abs=0.05 * exact.std)


def test_rollup_bounds_hold_for_skewed_data_inside_buckets() -> None:
    """A spike train: the normal-theory estimate is off, but the guaranteed bounds still hold."""
    t = T0 + np.arange(7200.0)
    y = np.where(np.arange(7200) % 37 == 0, 100.0, 1.0)
    exact, est = st.describe(y), st.describe_buckets(to_buckets(t, y, 60))
    checks = {"variance": exact.variance, "std": exact.std, "median": exact.median, "iqr": exact.iqr,
              "p95": exact.percentiles[95]}  # fmt: skip
    for name, value in checks.items():
        assert est.bounds[name][0] <= value <= est.bounds[name][1], name


# -- trend ------------------------------------------------------------------------------------
def test_trend_matches_linregress() -> None:
    t, y = signal(5000, step=7.5)
    result = tr.trend(t, y)
    ref = stats.linregress(t - t[0], y)
    close([result.line.slope, result.line.intercept, result.line.r2], [ref.slope, ref.intercept, ref.rvalue**2])
    assert result.t0 == t[0]


def test_trend_direction_and_threshold() -> None:
    t = T0 + np.arange(3600.0)
    rising = 5 + 2 * (t - T0) / 3600 + np.random.default_rng(3).normal(0, 0.1, t.size)  # +2 per hour
    up = tr.trend(t, rising)
    assert up.direction == "increasing" and up.threshold_source == "relative"
    assert up.slope_per_hour == pytest.approx(2.0, rel=0.01)
    assert tr.trend(t, -rising).direction == "decreasing"
    assert tr.trend(t, rising, threshold_per_hour=2.5).direction == "stable"
    assert tr.trend(t, rising, threshold_per_hour=1.5).direction == "increasing"
    noise = np.random.default_rng(4).normal(0, 1, t.size)
    assert tr.trend(t, noise).direction == "stable"


def test_trend_refuses_constant_few_and_nan() -> None:
    t = T0 + np.arange(10.0)
    with pytest.raises(UndefinedResult, match="constant"):
        tr.trend(t, np.full(10, 2.0))
    with pytest.raises(NotEnoughData, match="2 sample"):
        tr.trend(t[:2], np.array([1.0, 2.0]))
    with pytest.raises(NonFiniteData):
        tr.trend(t, np.where(np.arange(10) == 4, np.nan, 1.0))


def test_rollup_trend_close_to_exact_and_r2_within_bounds() -> None:
    t, y = signal(2 * 86_400)
    exact, est = tr.trend(t, y), tr.trend_buckets(to_buckets(t, y, 60))
    assert est.line.slope == pytest.approx(exact.line.slope, rel=1e-3)
    lo, hi = est.bounds["r2"]
    assert lo <= exact.line.r2 <= hi
    assert est.line.r2 == pytest.approx(exact.line.r2, rel=0.01)
    assert est.direction == exact.direction


# -- series -----------------------------------------------------------------------------------
def test_moving_averages_match_pandas() -> None:
    rng = np.random.default_rng(6)
    t = T0 + np.cumsum(rng.uniform(0.2, 3.0, 3000))
    t[100] = t[99]  # a repeated timestamp
    y = 1000 + rng.normal(0, 5, t.size)
    s = pd.Series(y)
    close(series.moving_average_points(y, 25)[24:], s.rolling(25).mean().to_numpy()[24:])
    assert np.isnan(series.moving_average_points(y, 25)[:24]).all()
    ts = pd.Series(y, index=pd.to_datetime(t, unit="s"))
    close(series.moving_average_time(t, y, 30.0), ts.rolling("30s").mean().to_numpy())
    rate = series.rate_per_minute(t, y)
    dt = np.diff(t)
    ok = dt > 0
    close(rate[1:][ok], np.diff(y)[ok] / dt[ok] * 60)
    assert np.isnan(rate[0]) and np.isnan(rate[1:][~ok]).all()


def test_weighted_moving_average_is_the_mean_of_the_samples_behind_the_buckets() -> None:
    t, y = signal(6000)
    b = to_buckets(t, y, 60)
    w = b.count.astype(float)
    ma = series.moving_average_points(b.mean, 5, w)
    for i in (4, 50, len(b) - 1):
        inside = (t >= b.start[i - 4]) & (t < b.start[i] + 60)
        close(ma[i], y[inside].mean())
    mt = series.moving_average_time(b.start, b.mean, 300.0, w)
    for i in (10, len(b) - 1):
        inside = (t >= b.start[i] - 240) & (t < b.start[i] + 60)
        close(mt[i], y[inside].mean())


# -- correlation ------------------------------------------------------------------------------
def test_pearson_matches_scipy() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, 500)
    for k in (0.02, 0.3, 0.9):
        y = k * x + rng.normal(0, 1, 500)
        r, p = correlation.pearson(x, y)
        ref = stats.pearsonr(x, y)
        close([r, p], [ref.statistic, ref.pvalue])


def test_correlation_aligns_tags_sampled_at_different_moments() -> None:
    rng = np.random.default_rng(8)
    base = T0 + np.arange(0, 2000.0, 1.0)
    a_t = base + rng.uniform(0, 0.2, base.size)
    b_t = base + 0.5 + rng.uniform(0, 0.2, base.size)  # never the same instant as a
    level = np.cumsum(rng.normal(0, 1, base.size))
    a = Samples(a_t, level + rng.normal(0, 0.1, base.size))
    b = Samples(b_t, 3 * level + rng.normal(0, 0.3, base.size))
    assert np.intersect1d(a.ts, b.ts).size == 0
    c = correlation.correlate(a, b)
    assert c.step_s == pytest.approx(1.0, abs=0.05) and c.tolerance_s == c.step_s / 2
    assert c.n > 0.9 * base.size and c.r > 0.99 and c.strength == "very strong" and c.direction == "positive"
    # The same coefficient as scipy on the pairs the grid made.
    grid = max(a.ts[0], b.ts[0]) + np.arange(c.grid_points) * c.step_s
    x = correlation.nearest_on_grid(grid, a.ts, a.value, c.tolerance_s)
    y = correlation.nearest_on_grid(grid, b.ts, b.value, c.tolerance_s)
    ok = np.isfinite(x) & np.isfinite(y)
    close(c.r, stats.pearsonr(x[ok], y[ok]).statistic)
    # A tighter tolerance leaves points out rather than pairing far-apart samples; exact matches find none.
    assert 3 < correlation.correlate(a, b, step=1.0, tolerance=0.45).n < c.n
    with pytest.raises(NotEnoughData, match="0 aligned pair"):
        correlation.correlate(a, b, step=1.0, tolerance=0.0)


def test_correlation_refusals_and_labels() -> None:
    t = T0 + np.arange(50.0)
    with pytest.raises(UndefinedResult, match="second series is constant"):
        correlation.correlate(Samples(t, np.arange(50.0)), Samples(t, np.ones(50)))
    with pytest.raises(NotEnoughData, match="no samples of the second"):
        correlation.correlate(Samples(t, np.arange(50.0)), Samples(t[:0], t[:0]))
    with pytest.raises(NotEnoughData, match="common span"):
        correlation.correlate(Samples(t[:10], t[:10]), Samples(t[20:], t[20:]))
    with pytest.raises(NotEnoughData, match="2 aligned pair"):
        correlation.pearson(np.array([1.0, 2.0]), np.array([2.0, 1.0]))
    labels = [correlation.strength(r) for r in (0.1, -0.3, 0.5, -0.7, 0.95)]
    assert labels == ["very weak", "weak", "moderate", "strong", "very strong"]


def test_bucket_correlation_pairs_common_buckets() -> None:
    t, y = signal(20_000)
    a = to_buckets(t, y, 60)
    b = to_buckets(t[5000:], 2 * y[5000:] + 1, 60)
    c = correlation.correlate_buckets(a, b)
    common = np.isin(a.start, b.start)
    close(c.r, stats.pearsonr(a.mean[common], b.mean[np.isin(b.start, a.start)]).statistic)
    assert c.n == int(common.sum()) and c.step_s == 60.0
