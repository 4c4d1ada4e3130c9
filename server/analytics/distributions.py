"""Student t and normal quantiles without scipy (a runtime dependency we don't want for four
functions); accurate to ~1e-13, checked against scipy.stats in the tests."""

from __future__ import annotations

import math
from statistics import NormalDist

_EPS = 3e-16
_TINY = 1e-300
_MAX_ITER = 20_000


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_ITER):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def _lgamma_half_ratio(a: float) -> float:
    """ln Γ(a + 1/2) - ln Γ(a), without the cancellation of two huge lgamma values at large a."""
    if a < 50:
        return math.lgamma(a + 0.5) - math.lgamma(a)

    def s(x: float) -> float:  # Stirling's correction series
        return 1 / (12 * x) - 1 / (360 * x**3) + 1 / (1260 * x**5) - 1 / (1680 * x**7)

    return a * math.log1p(0.5 / a) + 0.5 * math.log(a) - 0.5 + s(a + 0.5) - s(a)


def betainc_half(a: float, x: float, y: float) -> float:
    """Regularized incomplete beta I_x(a, 1/2), with y = 1 - x given exactly by the caller."""
    if y <= 0.0:
        return 1.0
    if x <= 0.0:
        return 0.0
    b = 0.5
    log_x = math.log1p(-y) if y < 0.5 else math.log(x)
    log_y = math.log1p(-x) if x < 0.5 else math.log(y)
    log_front = _lgamma_half_ratio(a) - math.lgamma(b) + a * log_x + b * log_y
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, y) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with `df` degrees of freedom, computed on the tail (no 1 - p loss)."""
    t2 = t * t
    tail = 0.5 * betainc_half(df / 2.0, df / (df + t2), t2 / (df + t2))
    return tail if t >= 0 else 1.0 - tail


def t_pdf(t: float, df: float) -> float:
    log_c = _lgamma_half_ratio(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c - (df + 1) / 2 * math.log1p(t * t / df))


def t_ppf(p: float, df: float) -> float:
    """Quantile of Student's t: Newton on the upper tail, started from the normal quantile."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    if p == 0.5:
        return 0.0
    q = 1.0 - p
    if df == 1.0:
        return math.tan(math.pi * (p - 0.5))
    if df == 2.0:
        return (2 * p - 1) / math.sqrt(2 * p * q)
    if df >= 1e5:  # Cornish-Fisher: the next term is below 1e-15 here, and the tail sum is not
        z = NormalDist().inv_cdf(p)
        return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
    t = max(NormalDist().inv_cdf(p), 1e-3)
    lo, hi = 0.0, math.inf
    for _ in range(200):
        f = t_sf(t, df) - q  # decreasing in t
        if f > 0:
            lo = t
        else:
            hi = t
        step = f / t_pdf(t, df)
        nxt = t + step
        if not lo < nxt < hi:  # Newton left the bracket: bisect (or double while unbounded)
            nxt = (lo + hi) / 2 if math.isfinite(hi) else 2 * t
        if abs(nxt - t) <= 1e-15 * abs(nxt):
            return nxt
        t = nxt
    return t


def z_ppf(p: float) -> float:
    """Standard normal quantile (stdlib's Wichura AS241, ~1e-16)."""
    return NormalDist().inv_cdf(p)
