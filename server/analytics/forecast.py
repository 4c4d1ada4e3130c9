"""Forecasts of a tag: a least-squares line with prediction intervals, and additive Holt-Winters
for a daily cycle, chosen on a held-out tail when it forecasts better there.

The series is (t, y) with a step taken from the data. Holt-Winters needs a regular grid without
gaps and a whole number of steps per day; when those don't hold it is reported as not
applicable (with the reason) and the line is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from server.analytics import holt_winters as hw
from server.analytics.correlation import nearest_on_grid
from server.analytics.data import F64, require_count, require_finite
from server.analytics.distributions import t_ppf
from server.analytics.errors import NotEnoughData, UndefinedResult

DAY_S = 86_400
MIN_POINTS = 3
MAX_SEASON = 1440
"""Steps per day Holt-Winters accepts (a 1-minute step); the recursion is sequential in time."""

Method = Literal["linear", "holt_winters"]


@dataclass(frozen=True, slots=True)
class Forecast:
    method: Method
    step_s: float
    t: F64
    value: F64
    lower: F64
    upper: F64
    confidence: float
    rmse: float
    """In-sample: sqrt(SSE / n), residuals of the line or one-step-ahead errors of Holt-Winters."""
    r2: float
    n: int
    params: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Selection:
    """Why a method was used: holdout RMSE per method, or why a method could not run."""

    chosen: Method
    holdout: int
    holdout_rmse: dict[str, float]
    not_applicable: dict[str, str]


def linear(t: F64, y: F64, horizon: int, step: float, confidence: float) -> Forecast:
    """OLS line y = a + b·t; interval ŷ ± t(n-2)·s·sqrt(1 + 1/n + (x0 - x̄)²/Sxx) (statsmodels' obs_ci)."""
    require_finite(y)
    require_count(int(y.size), MIN_POINTS, "a linear forecast")
    x = t - t[0]
    n = int(y.size)
    xm, ym = float(x.mean()), float(y.mean())
    dx, dy = x - xm, y - ym
    sxx, syy = float(dx @ dx), float(dy @ dy)
    if sxx == 0.0:
        raise UndefinedResult("every point has the same timestamp: no line through time")
    if syy == 0.0:
        raise UndefinedResult(f"the series is constant ({float(y[0])!r}): R² and the interval are undefined")
    slope = float(dx @ dy) / sxx
    intercept = ym - slope * xm
    resid = y - (intercept + slope * x)
    sse = float(resid @ resid)
    x0 = x[-1] + step * np.arange(1, horizon + 1)
    mean = intercept + slope * x0
    s = math.sqrt(sse / (n - 2))
    half = t_ppf(0.5 + confidence / 2, n - 2) * s * np.sqrt(1 + 1 / n + (x0 - xm) ** 2 / sxx)
    return Forecast(
        "linear", step, t[0] + x0, mean, mean - half, mean + half, confidence, math.sqrt(sse / n), 1 - sse / syy, n,
        {"slope_per_s": slope, "intercept": intercept, "t0": float(t[0])},
    )  # fmt: skip


def season_length(step: float) -> int | None:
    """Steps per day when a day is a whole number of steps (within 1e-9), else None."""
    if step <= 0:
        return None
    m = DAY_S / step
    k = round(m)
    return k if abs(m - k) <= 1e-9 * m and k >= 2 else None


def regular_grid(t: F64, y: F64, step: float) -> tuple[F64, F64]:
    """The series on t[0] + k·step; a point with no sample within step/2 is NaN (a gap)."""
    count = int(math.floor((t[-1] - t[0]) / step + 1e-9)) + 1
    grid = t[0] + np.arange(count) * step
    return grid, nearest_on_grid(grid, t, y, step / 2)


def _season_reason(m: int | None, step: float, span: float) -> str | None:
    if span < 2 * DAY_S:
        return f"{span / DAY_S:.2f} days of data; it needs more than two full days"
    if m is None:
        return f"a day is not a whole number of {step:g} s steps"
    if m > MAX_SEASON:
        return f"{m} steps per day; at most {MAX_SEASON} (a longer range or fewer max_points makes the step coarser)"
    return None


def _grid_reason(grid_y: F64, m: int, extra: int = 0) -> str | None:
    gaps = int(np.isnan(grid_y).sum())
    if gaps:
        return f"{gaps} missing step(s) in the series; the seasonal method needs a gap-free grid"
    if grid_y.size < 2 * m + extra:
        return f"{grid_y.size / m:.2f} days of data; it needs more than two full days ({2 * m + extra} steps)"
    return None


def holt_winters(grid_t: F64, grid_y: F64, step: float, m: int, horizon: int, confidence: float) -> Forecast:
    f = hw.fit(grid_y, m)
    mean, lo, hi = hw.forecast(f, horizon, confidence)
    syy = float(np.sum((grid_y - grid_y.mean()) ** 2))
    if syy == 0.0:
        raise UndefinedResult(f"the series is constant ({float(grid_y[0])!r}): R² is undefined")
    p = f.params
    return Forecast(
        "holt_winters", step, grid_t[-1] + step * np.arange(1, horizon + 1), mean, lo, hi, confidence,
        math.sqrt(f.sse / f.n), 1 - f.sse / syy, f.n,
        {"alpha": p.alpha, "beta": p.beta, "gamma": p.gamma, "season_length": float(m)},
    )  # fmt: skip


def _rmse(a: F64, b: F64) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def forecast(
    t: F64, y: F64, step: float, horizon: int, confidence: float, method: Method | Literal["auto"] = "auto"
) -> tuple[Forecast, Selection]:
    """Forecast `horizon` steps ahead. "auto" holds out the last max(horizon, one day) steps (at
    most what leaves two days to fit on), fits both methods on the rest, and keeps the one with
    the lower RMSE on the held-out steps; the kept method is then refitted on the whole series."""
    require_finite(y)
    if y.size == 0:
        raise NotEnoughData("no samples in the range")
    if method == "linear":
        return linear(t, y, horizon, step, confidence), Selection("linear", 0, {}, {})
    m = season_length(step)
    reason = _season_reason(m, step, float(t[-1] - t[0]) + step)
    if reason is None:
        assert m is not None
        grid_t, grid_y = regular_grid(t, y, step)
        reason = _grid_reason(grid_y, m, extra=0 if method == "holt_winters" else 1)
    if method == "holt_winters":
        if reason is not None:
            raise NotEnoughData(f"Holt-Winters can't run: {reason}")
        assert m is not None
        return holt_winters(grid_t, grid_y, step, m, horizon, confidence), Selection("holt_winters", 0, {}, {})
    if reason is not None:
        return linear(t, y, horizon, step, confidence), Selection("linear", 0, {}, {"holt_winters": reason})
    assert m is not None
    k = min(max(horizon, m), grid_y.size - 2 * m)
    train_t, train_y, test_y = grid_t[:-k], grid_y[:-k], grid_y[-k:]
    lin = linear(train_t, train_y, k, step, confidence)
    seasonal = hw.forecast(hw.fit(train_y, m), k, confidence)[0]
    scores = {"linear": _rmse(lin.value, test_y), "holt_winters": _rmse(seasonal, test_y)}
    if scores["holt_winters"] < scores["linear"]:
        return holt_winters(grid_t, grid_y, step, m, horizon, confidence), Selection("holt_winters", k, scores, {})
    return linear(t, y, horizon, step, confidence), Selection("linear", k, scores, {})
