"""A tag's series with a trailing moving average and its rate of change per minute.

Windows are trailing, the way an operator reads a trend: a point's average covers it and what
came before. A window in points gives no average until it is full (pandas `rolling(n)`); a
window in time averages what the last `window_s` seconds hold, (t - window_s, t] (pandas
`rolling("<n>s")`). On decimated input every point is a bucket and averages are weighted by
the bucket's sample count, so they are the exact mean of the samples the buckets hold.
"""

from __future__ import annotations

import numpy as np

from server.analytics.data import F64, require_finite


def _window_sums(values: F64, weights: F64, lo: np.ndarray, hi: np.ndarray) -> F64:
    """Σ w·v / Σ w over index windows [lo, hi); sums are of values centred on their mean, so a
    long cumulative sum does not swamp the window it differences."""
    centre = float(np.average(values, weights=weights))
    cv = np.concatenate(([0.0], np.cumsum(weights * (values - centre))))
    cw = np.concatenate(([0.0], np.cumsum(weights)))
    w = cw[hi] - cw[lo]
    out: F64 = np.divide(cv[hi] - cv[lo], w, out=np.full(w.shape, np.nan), where=w > 0) + centre
    return out


def moving_average_points(values: F64, window: int, weights: F64 | None = None) -> F64:
    """Trailing mean of the last `window` points; NaN until the window is full."""
    require_finite(values)
    if window < 1:
        raise ValueError("window must be at least 1")
    n = values.size
    if n == 0:
        return values.copy()
    w = np.ones(n) if weights is None else weights
    hi = np.arange(1, n + 1)
    lo = np.maximum(hi - window, 0)
    out = _window_sums(values, w, lo, hi)
    out[: window - 1] = np.nan
    return out


def moving_average_time(t: F64, values: F64, window_s: float, weights: F64 | None = None) -> F64:
    """Trailing mean over (t_i - window_s, t_i]; `t` must be sorted."""
    require_finite(values)
    if window_s <= 0:
        raise ValueError("window_s must be positive")
    n = values.size
    if n == 0:
        return values.copy()
    w = np.ones(n) if weights is None else weights
    hi = np.arange(1, n + 1)  # a repeated timestamp sees only the samples before it, as in pandas
    lo = np.minimum(np.searchsorted(t, t - window_s, side="right"), hi - 1)
    return _window_sums(values, w, lo, hi)


def rate_per_minute(t: F64, values: F64) -> F64:
    """(v_i - v_{i-1}) / (t_i - t_{i-1}) · 60; NaN for the first point and for repeated timestamps."""
    require_finite(values)
    out = np.full(values.size, np.nan)
    if values.size < 2:
        return out
    dt = np.diff(t)
    np.divide(np.diff(values) * 60.0, dt, out=out[1:], where=dt > 0)
    return out
