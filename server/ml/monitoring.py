"""Model monitoring and trend bands, in numpy: what the API serves next to the scores.

Monitoring compares a range's window scores with the training windows': the anomaly rate over
time, the population stability index (PSI) of the scores over the training deciles, the
largest gap between the two score distributions (a KS statistic against the training deciles,
interpolated), and how far each pooled feature's median moved, in units of its training
extent. A retrain is recommended on evidence, each reason spelled out.

Bands follow a tag through a trend: `expected` is what the model's residual fit expects from
the device's other tags and the time of day, ± k x the residual's training scale; `rolling`
is the tag's own rolling mean ± k x the deviation scale learned in training (or the range's own
rolling standard deviation when no model exists).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from server.ml import features as ft
from server.ml.model import AnomalyModel

F64 = npt.NDArray[np.float64]

PSI_SHIFT, PSI_MODERATE = 0.25, 0.10
MAX_AGE_DAYS = 90
MIN_WINDOWS = 100


def anomaly_rate(t: F64, score: F64, bucket_s: float) -> list[dict[str, Any]]:
    """Windows and anomalous windows per bucket of `bucket_s` (by window end)."""
    if t.size == 0:
        return []
    key = np.floor(t / bucket_s) * bucket_s
    starts, inverse, windows = np.unique(key, return_inverse=True, return_counts=True)
    anomalous = np.bincount(inverse[score > 1.0], minlength=starts.size)
    return [
        {"t": float(s), "windows": int(w), "anomalous": int(a), "rate": float(a / w)}
        for s, w, a in zip(starts.tolist(), windows.tolist(), anomalous.tolist(), strict=True)
    ]


def psi(score: F64, train_quantiles: F64) -> float:
    """Population stability index of scores over the training deciles (10 bins of 10 %)."""
    edges = np.asarray(train_quantiles, dtype=np.float64).copy()
    if score.size == 0 or edges.size < 3:
        return 0.0
    edges[0], edges[-1] = -np.inf, np.inf
    counts, _ = np.histogram(score, bins=edges)
    actual = np.maximum(counts / score.size, 1e-4)
    expected = np.full(actual.size, 1.0 / actual.size)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def ks(score: F64, train_quantiles: F64) -> float:
    """Largest distance between the range's score CDF and the training one (interpolated
    through the training deciles, so it can't resolve finer than about 0.1 in the tails)."""
    if score.size == 0 or train_quantiles.size < 2:
        return 0.0
    levels = np.linspace(0, 1, train_quantiles.size)
    xs = np.sort(score)
    train_cdf = np.interp(xs, train_quantiles, levels, left=0.0, right=1.0)
    ecdf_hi = np.arange(1, xs.size + 1) / xs.size
    ecdf_lo = np.arange(0, xs.size) / xs.size
    return float(max(np.max(np.abs(ecdf_hi - train_cdf)), np.max(np.abs(ecdf_lo - train_cdf))))


@dataclass(slots=True)
class Monitoring:
    windows: int
    anomalous: int
    rate: float
    series: list[dict[str, Any]]
    psi: float
    ks: float
    feature_shift: dict[str, float]
    retrain: bool
    reasons: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "windows": self.windows, "anomalous": self.anomalous, "anomaly_rate": self.rate, "series": self.series,
            "drift": {"psi": self.psi, "ks": self.ks, "feature_shift": self.feature_shift},
            "retrain": {"recommended": self.retrain, "reasons": self.reasons},
        }  # fmt: skip


def monitor(model: AnomalyModel, b: ft.Buckets, bucket_s: float, *, age_days: float, train_span_s: float) -> Monitoring:
    """Monitoring figures of a model over a bucketed range of its device."""
    pooled, z = ft.features(b, model.state)
    ok = ~np.isnan(pooled).any(axis=1)
    score, _, _, _, _ = model.score_rows(pooled[ok], z[ok])
    t = b.t[ok] + model.step
    windows = int(score.size)
    anomalous = int((score > 1.0).sum())
    rate = anomalous / windows if windows else 0.0
    p, k = psi(score, model.train_quantiles), ks(score, model.train_quantiles)
    extent = np.maximum(model.envelope_hi - model.envelope_mid, 1e-9)
    shift = (np.median(pooled[ok], axis=0) - model.envelope_mid) / extent if windows else np.zeros(extent.size)
    reasons: list[str] = []
    if windows >= MIN_WINDOWS:
        if p >= PSI_SHIFT:
            reasons.append(f"the score distribution moved away from training (PSI {p:.2f} ≥ {PSI_SHIFT})")
        limit = max(10 * model.contamination, 0.01)
        if rate > limit:
            reasons.append(
                f"{rate:.1%} of the windows are anomalous (trained for {model.contamination:.2%}): if the process "
                "changed on purpose, retrain on the new normal; if not, it is a fault — fix it before retraining"
            )
        moved = [n for n, s in zip(ft.POOLED_FEATURES, shift.tolist(), strict=True) if abs(s) >= 1.0]
        if moved:
            reasons.append(f"feature medians moved by more than the training extent: {', '.join(moved)}")
    if age_days > MAX_AGE_DAYS:
        reasons.append(f"the model was trained {age_days:.0f} days ago (more than {MAX_AGE_DAYS})")
    if train_span_s < 86_400:
        reasons.append("the training range is shorter than a day: no daily cycle was learned")
    return Monitoring(
        windows=windows, anomalous=anomalous, rate=rate, series=anomaly_rate(t, score, bucket_s), psi=p, ks=k,
        feature_shift={n: float(s) for n, s in zip(ft.POOLED_FEATURES, shift.tolist(), strict=True)},
        retrain=bool(reasons), reasons=reasons,
    )  # fmt: skip


@dataclass(slots=True)
class Band:
    t: F64
    center: F64
    lower: F64
    upper: F64
    resolution_s: float
    method: str


def band(
    b: ft.Buckets, column: int, *, model: AnomalyModel | None, method: str, k: float, window: int, step: float
) -> Band:
    """A tag's band over bucketed history of its device (all of the model's tags when there
    is a model, else the tag alone); rows before a full window are NaN."""
    if method == "expected":
        if model is None:
            raise ValueError("the 'expected' band needs a trained model of the device")
        mean = ft.carry_forward(b.mean, window)
        center = mean[:, column] - ft.residuals(b.t, mean, model.state.beta, model.state.level)[:, column]
        half = np.full(center.size, k * float(model.state.scale[5, column]))
    else:
        rmean, rstd = ft.rolling(b.mean[:, column : column + 1], window)
        center = rmean[:, 0]
        learned = float(model.state.scale[3, column]) if model is not None else None
        half = k * rstd[:, 0] if learned is None else np.full(center.size, k * learned)
    return Band(b.t, center, center - half, center + half, step, method)


def decimate(bd: Band, max_points: int) -> Band:
    """At most max_points: groups of consecutive buckets (mean centre, lowest lower, highest upper)."""
    n = bd.t.size
    if n <= max_points:
        return bd
    g = int(np.ceil(n / max_points))
    m = n // g * g
    if m < n:  # the last group is shorter: pad with NaN so it still counts
        pad = g - (n - m)
        grow = [np.r_[a, np.full(pad, np.nan)] for a in (bd.t, bd.center, bd.lower, bd.upper)]
        t, c, lo, hi = grow
        t[n:] = t[n - 1]
    else:
        t, c, lo, hi = bd.t, bd.center, bd.lower, bd.upper
    shape = (-1, g)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN groups before the first full window
        return Band(
            t.reshape(shape)[:, 0], np.nanmean(c.reshape(shape), axis=1), np.nanmin(lo.reshape(shape), axis=1),
            np.nanmax(hi.reshape(shape), axis=1), bd.resolution_s * g, bd.method,
        )  # fmt: skip
