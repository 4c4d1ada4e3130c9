"""Forecasts against statsmodels to 1e-9 relative: the line against OLS prediction intervals,
Holt-Winters against ExponentialSmoothing (fitted values, SSE) and ETSModel (forecast means
and analytic intervals); and the choice between them on a held-out tail."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.tsa.exponential_smoothing.ets import ETSModel
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from server.analytics import forecast as fc
from server.analytics import holt_winters as hw
from server.analytics.errors import NonFiniteData, NotEnoughData, UndefinedResult

RTOL = 1e-9
T0 = 1_767_225_600.0
HOUR = 3600.0


def close(actual: object, expected: object) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float), rtol=RTOL, atol=0)


def daily(days: int, step: float = HOUR, seed: int = 1, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(int(days * 86400 / step)) * step
    y = 60 + 0.5 * (t - T0) / 86400 + 12 * np.sin(2 * np.pi * (t - T0) / 86400) + rng.normal(0, noise, t.size)
    return t, y


# -- linear -----------------------------------------------------------------------------------
@pytest.mark.parametrize("confidence", [0.5, 0.8, 0.95, 0.99])
def test_linear_forecast_matches_statsmodels_ols_prediction_intervals(confidence: float) -> None:
    rng = np.random.default_rng(2)
    t = T0 + np.sort(rng.uniform(0, 7200, 400))  # irregular sampling
    y = 3.0 + 0.002 * (t - T0) + rng.normal(0, 0.5, t.size)
    step, horizon = 20.0, 100
    f = fc.linear(t, y, horizon, step, confidence)
    x = t - t[0]
    res = sm.OLS(y, sm.add_constant(x)).fit()
    x_new = x[-1] + step * np.arange(1, horizon + 1)
    frame = res.get_prediction(sm.add_constant(x_new)).summary_frame(alpha=1 - confidence)
    close(f.value, frame["mean"])
    close(f.lower, frame["obs_ci_lower"])
    close(f.upper, frame["obs_ci_upper"])
    close(f.r2, res.rsquared)
    close(f.rmse, np.sqrt(res.ssr / res.nobs))
    close(f.t, t[-1] + step * np.arange(1, horizon + 1))
    assert f.method == "linear" and f.n == 400


def test_linear_forecast_refusals() -> None:
    t = T0 + np.arange(10.0)
    with pytest.raises(UndefinedResult, match="constant"):
        fc.linear(t, np.full(10, 1.5), 5, 1.0, 0.95)
    with pytest.raises(NotEnoughData, match="2 sample"):
        fc.linear(t[:2], np.array([1.0, 2.0]), 5, 1.0, 0.95)
    with pytest.raises(NonFiniteData):
        fc.linear(t, np.where(np.arange(10) == 3, np.nan, np.arange(10.0)), 5, 1.0, 0.95)


# -- Holt-Winters -----------------------------------------------------------------------------
def _statsmodels_hw(y: np.ndarray, m: int, p: hw.Params) -> object:
    init = hw.initial_state(y, m)
    model = ExponentialSmoothing(
        y, trend="add", seasonal="add", seasonal_periods=m, initialization_method="known",
        initial_level=init.level, initial_trend=init.trend, initial_seasonal=init.season,
    )  # fmt: skip
    return model.fit(smoothing_level=p.alpha, smoothing_trend=p.beta, smoothing_seasonal=p.gamma, optimized=False)


@pytest.mark.parametrize(("alpha", "beta", "gamma"), [(0.3, 0.05, 0.2), (0.8, 0.0, 0.1), (0.05, 0.5, 0.6)])
def test_holt_winters_matches_statsmodels(alpha: float, beta: float, gamma: float) -> None:
    _, y = daily(15)
    m, p = 24, hw.Params(alpha, beta, gamma)
    mine = hw.smooth(y, m, p)
    ref = _statsmodels_hw(y, m, p)
    close(mine.fitted, ref.fittedvalues)  # type: ignore[attr-defined]
    close(mine.sse, ref.sse)  # type: ignore[attr-defined]
    # Forecasts and intervals against ETSModel: the same model in error-correction form
    # (its trend smoothing is α·β). ExponentialSmoothing's own forecast at horizons that are a
    # multiple of m reuses a stale seasonal term (statsmodels issue #9538, fixed after 0.15).
    init = hw.initial_state(y, m)
    ets = ETSModel(
        pd.Series(y), error="add", trend="add", seasonal="add", seasonal_periods=m, initialization_method="known",
        initial_level=init.level, initial_trend=init.trend, initial_seasonal=init.season,
    ).smooth([alpha, alpha * beta, gamma])  # fmt: skip
    close(ets.fittedvalues.to_numpy(), mine.fitted)
    for confidence in (0.5, 0.9, 0.99):
        mean, lower, upper = hw.forecast(mine, 100, confidence)
        frame = ets.get_prediction(start=y.size, end=y.size + 99).summary_frame(alpha=1 - confidence)
        close(mean, frame["mean"])
        close(lower, frame["pi_lower"])
        close(upper, frame["pi_upper"])
    ahead = np.arange(1, 101)
    off_cycle = ahead % m != 0
    close(hw.forecast(mine, 100, 0.9)[0][off_cycle], ref.forecast(100)[off_cycle])  # type: ignore[attr-defined]


def test_holt_winters_fit_is_as_good_as_statsmodels_optimiser() -> None:
    _, y = daily(20, seed=3)
    m = 24
    mine = hw.fit(y, m)
    init = hw.initial_state(y, m)
    model = ExponentialSmoothing(
        y, trend="add", seasonal="add", seasonal_periods=m, initialization_method="known",
        initial_level=init.level, initial_trend=init.trend, initial_seasonal=init.season,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter
        ref = model.fit()
    assert mine.sse <= ref.sse * 1.01, (mine.params, mine.sse, ref.params, ref.sse)


def test_holt_winters_needs_two_cycles() -> None:
    with pytest.raises(NotEnoughData, match="at least 48"):
        hw.initial_state(np.arange(47.0), 24)


# -- choosing a method ------------------------------------------------------------------------
def test_auto_picks_holt_winters_for_a_daily_cycle() -> None:
    t, y = daily(10)
    f, sel = fc.forecast(t, y, HOUR, 48, 0.9)
    assert f.method == "holt_winters" and sel.chosen == "holt_winters"
    assert sel.holdout == 48 and sel.holdout_rmse["holt_winters"] < sel.holdout_rmse["linear"]
    assert f.params["season_length"] == 24 and f.step_s == HOUR
    close(f.t, t[-1] + HOUR * np.arange(1, 49))
    truth = 60 + 0.5 * (f.t - T0) / 86400 + 12 * np.sin(2 * np.pi * (f.t - T0) / 86400)
    assert np.mean((f.lower <= truth) & (truth <= f.upper)) > 0.7
    assert np.sqrt(np.mean((f.value - truth) ** 2)) < 2.0


def test_auto_picks_the_line_for_a_ramp_and_says_why_not_seasonal() -> None:
    rng = np.random.default_rng(4)
    t = T0 + np.arange(10 * 24) * HOUR
    y = 5 + 0.1 * np.arange(t.size) + rng.normal(0, 0.3, t.size)
    f, sel = fc.forecast(t, y, HOUR, 24, 0.95)
    assert f.method == "linear" and sel.holdout_rmse["linear"] <= sel.holdout_rmse["holt_winters"]
    short_t, short_y = t[:40], y[:40]
    f, sel = fc.forecast(short_t, short_y, HOUR, 5, 0.95)
    assert f.method == "linear" and "two full days" in sel.not_applicable["holt_winters"]
    f, sel = fc.forecast(T0 + np.arange(40_000) * 7.0, rng.normal(0, 1, 40_000), 7.0, 5, 0.95)
    assert "not a whole number" in sel.not_applicable["holt_winters"]


def test_gaps_rule_out_holt_winters() -> None:
    t, y = daily(6)
    keep = np.ones(t.size, bool)
    keep[50:53] = False
    f, sel = fc.forecast(t[keep], y[keep], HOUR, 10, 0.95)
    assert f.method == "linear" and "3 missing step" in sel.not_applicable["holt_winters"]
    with pytest.raises(NotEnoughData, match="3 missing step"):
        fc.forecast(t[keep], y[keep], HOUR, 10, 0.95, method="holt_winters")
    f, _ = fc.forecast(t, y, HOUR, 10, 0.95, method="holt_winters")
    assert f.method == "holt_winters"


def test_season_length() -> None:
    assert fc.season_length(3600.0) == 24
    assert fc.season_length(600.0) == 144
    assert fc.season_length(7.0) is None
    assert fc.season_length(86400.0) is None  # one step per day is no cycle
