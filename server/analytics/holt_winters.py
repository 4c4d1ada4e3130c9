"""Additive Holt-Winters (level, trend, seasonal cycle) in numpy, the recursion statsmodels'
ExponentialSmoothing(trend="add", seasonal="add") runs, with its "simple" initial values.

The recursion is sequential in time, so parameters are fitted by evaluating many (α, β, γ)
candidates at once, one numpy vector per time step, on a coarse grid then on finer grids
around the best; SSE of the one-step-ahead errors is the criterion, as in statsmodels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from server.analytics.data import F64, require_finite
from server.analytics.distributions import z_ppf
from server.analytics.errors import NotEnoughData


@dataclass(frozen=True, slots=True)
class Params:
    alpha: float
    beta: float
    gamma: float


@dataclass(frozen=True, slots=True)
class Init:
    level: float
    trend: float
    season: F64


@dataclass(frozen=True, slots=True)
class Fit:
    params: Params
    m: int
    level: float
    trend: float
    season: F64
    """The next m seasonal terms, in order: season[j] applies to step n + j."""
    fitted: F64
    """One-step-ahead predictions of each observation."""
    sse: float
    n: int


def initial_state(y: F64, m: int) -> Init:
    """statsmodels' "simple": first cycle's mean, mean change per step between cycles one and two."""
    if y.size < 2 * m:
        raise NotEnoughData(f"{y.size} points: Holt-Winters with a cycle of {m} needs at least {2 * m}")
    level = float(np.mean(y[:m]))
    return Init(level, float(np.mean((y[m : 2 * m] - y[:m]) / m)), y[:m] - level)


def _run(y: F64, m: int, a: F64, b: F64, g: F64, init: Init, keep: bool) -> tuple[F64, F64, F64, F64, F64 | None]:
    """Run K candidates side by side; returns sse, level, trend, seasonal ring (m, K), fitted."""
    k = a.size
    level, trend = np.full(k, init.level), np.full(k, init.trend)
    ring = np.repeat(init.season[:, None], k, axis=1)
    sse = np.zeros(k)
    ab = a * b
    fitted = np.empty((y.size, k)) if keep else None
    with np.errstate(over="ignore", invalid="ignore"):
        for t, obs in enumerate(y.tolist()):
            s = ring[t % m]
            f = level + trend + s
            e = obs - f
            sse += e * e
            level = level + trend + a * e
            trend = trend + ab * e
            ring[t % m] = s + g * e
            if fitted is not None:
                fitted[t] = f
    return sse, level, trend, ring, fitted


def smooth(y: F64, m: int, params: Params, init: Init | None = None) -> Fit:
    """One pass with given parameters: fitted values, SSE and the final state."""
    require_finite(y)
    init = init or initial_state(y, m)
    one = np.ones(1)
    sse, level, trend, ring, fitted = _run(
        y, m, one * params.alpha, one * params.beta, one * params.gamma, init, keep=True
    )
    assert fitted is not None
    n = y.size
    season = ring[(n + np.arange(m)) % m, 0]
    return Fit(params, m, float(level[0]), float(trend[0]), season, fitted[:, 0], float(sse[0]), n)


def _grid(a: F64, b: F64, g: F64) -> tuple[F64, F64, F64]:
    aa, bb, gg = (x.ravel() for x in np.meshgrid(a, b, g, indexing="ij"))
    keep = gg <= 1.0 - aa + 1e-12  # the admissible region: γ ≤ 1 - α
    return aa[keep], bb[keep], gg[keep]


def fit(y: F64, m: int, rounds: int = 3) -> Fit:
    """Parameters minimising the one-step SSE: a coarse grid, then `rounds` finer grids."""
    require_finite(y)
    init = initial_state(y, m)
    a, b, g = _grid(
        np.array([0.01, 0.05, *np.arange(0.1, 0.91, 0.1), 0.99]),
        np.array([0.0, 0.005, 0.02, 0.05, 0.1, 0.2, 0.4]),
        np.array([0.0, 0.01, 0.05, *np.arange(0.1, 0.91, 0.1)]),
    )
    spread = np.array([0.05, 0.02, 0.05])
    best = np.array([0.5, 0.0, 0.0])
    best_sse = math.inf
    for r in range(rounds + 1):
        sse, *_ = _run(y, m, a, b, g, init, keep=False)
        sse = np.where(np.isfinite(sse), sse, np.inf)
        i = int(np.argmin(sse))
        if sse[i] < best_sse:
            best, best_sse = np.array([a[i], b[i], g[i]]), float(sse[i])
        if r == rounds:
            break
        axes = [np.clip(best[j] + spread[j] * np.linspace(-1, 1, 5), 0.0, 1.0) for j in range(3)]
        axes[0] = np.clip(axes[0], 1e-4, 1.0)
        a, b, g = _grid(*(np.unique(x) for x in axes))
        spread = spread / 2.5
    return smooth(y, m, Params(float(best[0]), float(best[1]), float(best[2])), init)


def forecast(f: Fit, horizon: int, confidence: float) -> tuple[F64, F64, F64]:
    """Mean and interval for steps 1..horizon: ETS(A,A,A) analytic variance (Hyndman et al. 2008,
    class 1), σ² = SSE / n, normal quantiles."""
    h = np.arange(1, horizon + 1)
    mean = f.level + h * f.trend + f.season[(h - 1) % f.m]
    p = f.params
    j = np.arange(1, horizon)
    c = p.alpha + p.alpha * p.beta * j + p.gamma * (j % f.m == 0)
    var = (f.sse / f.n) * np.concatenate(([1.0], 1.0 + np.cumsum(c * c)))
    half = z_ppf(0.5 + confidence / 2) * np.sqrt(var)
    return mean, mean - half, mean + half
