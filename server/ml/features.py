"""Feature windows of a device, in numpy only: the same functions serve training, history
scoring and the live scorer, so a window scores the same whichever path built it.

A device's tags are bucketed on a grid of `step` seconds (mean, spread = max - min, count per
bucket; the historian's 10 s rollups hold exactly these, so training never scans raw rows).
For each bucket and tag six raw features are computed:

- `value`        the bucket mean;
- `delta`        the change of the mean since the previous bucket;
- `spread`       log of the bucket's max - min (a stuck transmitter has none; a spike a lot);
- `deviation`    the mean minus its rolling mean over the window (W buckets);
- `rolling_std`  log of the rolling standard deviation of the means over the window;
- `residual`     the mean minus what a linear fit on the device's other tags and the time of
                 day expects (a drifting sensor breaks the physics between tags).

Each is turned into a robust z-score per tag with the median and scale learned from the
training range, then pooled over the tags (the most extreme tag per feature; spread and
rolling std keep their high and low side apart). An IsolationForest over hundreds of per-tag
columns dilutes a one-tag fault into noise; over eight pooled columns it does not, and the
per-tag z-scores still say which tag was at fault.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

RAW_FEATURES = ("value", "delta", "spread", "deviation", "rolling_std", "residual")
POOLED_FEATURES = (
    "value", "delta", "spread_high", "spread_low", "deviation", "rolling_std_high", "rolling_std_low", "residual",
)  # fmt: skip
"""The columns the forest sees, in order (recorded with every model)."""
POOLED_SOURCE = (0, 1, 2, 2, 3, 4, 4, 5)
"""The raw feature each pooled column comes from."""
Z_CAP = 1000.0
"""z-scores are clipped here: a constant training signal has a tiny scale, and the forest
only needs 'far outside', not how far."""
DAY = 86_400.0
MAX_CARRY = 1.0
"""An empty bucket repeats the tag's last mean for at most this fraction of the window;
after that the tag counts as silent and its windows are not scored."""


@dataclass(slots=True)
class Buckets:
    """A device's tags on a regular grid: `t` holds bucket starts, the rest (buckets x tags)."""

    t: F64
    mean: F64
    spread: F64
    count: F64

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def tail(self, n: int) -> Buckets:
        return Buckets(self.t[-n:], self.mean[-n:], self.spread[-n:], self.count[-n:])


def empty_buckets(n_tags: int) -> Buckets:
    return Buckets(np.empty(0), np.empty((0, n_tags)), np.empty((0, n_tags)), np.empty((0, n_tags)))


def buckets_from_samples(
    col: npt.NDArray[np.int64], ts: F64, value: F64, n_tags: int, step: float, start: float, end: float
) -> Buckets:
    """Raw samples (tag column, time, value; Bad quality already removed) on the grid of
    buckets that start in [start, end) (both multiples of `step`)."""
    n = max(0, int(round((end - start) / step)))
    t = start + step * np.arange(n, dtype=np.float64)
    total = np.zeros((n, n_tags))
    count = np.zeros((n, n_tags))
    vmin = np.full((n, n_tags), np.inf)
    vmax = np.full((n, n_tags), -np.inf)
    idx = np.floor((ts - start) / step).astype(np.int64)
    keep = (idx >= 0) & (idx < n)
    idx, c, v = idx[keep], col[keep], value[keep]
    np.add.at(total, (idx, c), v)
    np.add.at(count, (idx, c), 1.0)
    np.minimum.at(vmin, (idx, c), v)
    np.maximum.at(vmax, (idx, c), v)
    return _finish(t, total, count, vmin, vmax)


def buckets_from_rollups(
    parts: list[tuple[npt.NDArray[np.int64], F64, F64, F64, npt.NDArray[np.int64]]],
    step: float, start: float, end: float,
) -> Buckets:  # fmt: skip
    """Per tag (bucket start, vsum, vmin, vmax, count) rows of a finer rollup tier, merged into
    the grid. A tier bucket belongs to the grid bucket its start falls in (step is a multiple
    of the tier width, so none straddles)."""
    n = max(0, int(round((end - start) / step)))
    t = start + step * np.arange(n, dtype=np.float64)
    n_tags = len(parts)
    total = np.zeros((n, n_tags))
    count = np.zeros((n, n_tags))
    vmin = np.full((n, n_tags), np.inf)
    vmax = np.full((n, n_tags), -np.inf)
    for j, (bucket, vsum, lo, hi, cnt) in enumerate(parts):
        idx = np.floor((bucket.astype(np.float64) - start) / step).astype(np.int64)
        keep = (idx >= 0) & (idx < n) & (cnt > 0)
        idx = idx[keep]
        np.add.at(total[:, j], idx, vsum[keep])
        np.add.at(count[:, j], idx, cnt[keep].astype(np.float64))
        np.minimum.at(vmin[:, j], idx, lo[keep])
        np.maximum.at(vmax[:, j], idx, hi[keep])
    return _finish(t, total, count, vmin, vmax)


def _finish(t: F64, total: F64, count: F64, vmin: F64, vmax: F64) -> Buckets:
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1.0), np.nan)
        spread = np.where(count > 0, vmax - vmin, np.nan)
    return Buckets(t, mean, spread, count)


def carry_forward(mean: F64, limit: int) -> F64:
    """Fill empty buckets with the tag's previous mean, for at most `limit` buckets in a row."""
    out = mean.copy()
    n = out.shape[0]
    if n == 0:
        return out
    rows = np.arange(n)[:, None]
    seen = np.where(~np.isnan(out), rows, -1)
    last = np.maximum.accumulate(seen, axis=0)
    ok = (last >= 0) & (rows - last <= limit)
    filled = np.take_along_axis(out, np.maximum(last, 0), axis=0)
    return np.where(ok, filled, np.nan)


def time_of_day(t: F64) -> F64:
    """sin and cos of the time of day (UTC): lets the residual fit follow a daily cycle."""
    angle = 2 * np.pi * np.mod(t, DAY) / DAY
    return np.column_stack([np.sin(angle), np.cos(angle)])


def design(t: F64, mean: F64, level: F64) -> F64:
    """Regressors of the residual fit: every tag's mean and its square about its typical level
    (pumps and fans follow affinity laws: pressure goes with the square of speed), the time of
    day, and a constant. Tags x 2 + 3 columns."""
    return np.column_stack([mean, np.square(mean - level), time_of_day(t), np.ones(t.shape[0])])


def tod_rows(n_tags: int) -> slice:
    """Where the time-of-day coefficients sit in `FeatureState.beta`."""
    return slice(2 * n_tags, 2 * n_tags + 2)


def rolling(mean: F64, window: int) -> tuple[F64, F64]:
    """Trailing rolling mean and standard deviation (ddof 1) over `window` buckets, over the
    buckets that hold data; NaN until a full window has passed, and where fewer than half of
    its buckets hold data (a gap must not look like a calm, flat signal)."""
    n, j = mean.shape
    out_m = np.full((n, j), np.nan)
    out_s = np.full((n, j), np.nan)
    if n < window:
        return out_m, out_s
    have = ~np.isnan(mean)
    # Centre on a level of the series before summing: a month of cumulative sums would
    # otherwise lose the noise in the digits of the level.
    first = np.argmax(have, axis=0)
    base = np.nan_to_num(mean[first, np.arange(j)])
    x = np.where(have, mean - base, 0.0)
    zeros = np.zeros((1, j))
    c0 = np.vstack([zeros, np.cumsum(have, axis=0, dtype=np.float64)])
    c1 = np.vstack([zeros, np.cumsum(x, axis=0)])
    c2 = np.vstack([zeros, np.cumsum(x * x, axis=0)])
    cnt = c0[window:] - c0[:-window]
    s1 = c1[window:] - c1[:-window]
    s2 = c2[window:] - c2[:-window]
    enough = (cnt >= max(2.0, window / 2)) & (cnt > 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = s1 / cnt
        var = np.maximum(s2 - s1 * m, 0.0) / (cnt - 1)
    out_m[window - 1 :] = np.where(enough, m + base, np.nan)
    out_s[window - 1 :] = np.where(enough, np.sqrt(var), np.nan)
    return out_m, out_s


@dataclass(slots=True)
class FeatureState:
    """What the features learned from the training range; saved in the model's artifact."""

    window: int
    beta: F64
    """(2 tags + 3) x tags: column j predicts tag j from the others (its own rows are 0)."""
    level: F64
    """Typical level of each tag (training median): the centre of the squared regressors."""
    center: F64
    """(6, tags): median of each raw feature per tag."""
    scale: F64
    """(6, tags): robust scale of each raw feature per tag."""
    eps_spread: F64
    eps_rstd: F64
    min_count: F64
    """A bucket with fewer samples than this says nothing about spread (neutral z)."""

    def arrays(self) -> dict[str, F64]:
        return {"beta": self.beta, "level": self.level, "center": self.center, "scale": self.scale,
                "eps_spread": self.eps_spread, "eps_rstd": self.eps_rstd, "min_count": self.min_count}  # fmt: skip

    @classmethod
    def from_arrays(cls, window: int, a: dict[str, F64]) -> FeatureState:
        return cls(window, a["beta"], a["level"], a["center"], a["scale"], a["eps_spread"], a["eps_rstd"],
                   a["min_count"])  # fmt: skip


def raw_features(b: Buckets, window: int, eps_spread: F64, eps_rstd: F64) -> tuple[F64, F64]:
    """The six raw features per bucket and tag, (buckets, 6, tags), before the residual is
    taken (its slot holds the filled mean); and the filled means themselves."""
    mean = carry_forward(b.mean, max(1, int(window * MAX_CARRY)))
    n, j = mean.shape
    out = np.full((n, len(RAW_FEATURES), j), np.nan)
    out[:, 0] = mean
    if n > 1:
        out[1:, 1] = mean[1:] - mean[:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        out[:, 2] = np.log(b.spread + eps_spread)
    rmean, rstd = rolling(b.mean, window)  # over the buckets with data, not the carried ones
    out[:, 3] = mean - rmean
    with np.errstate(invalid="ignore", divide="ignore"):
        out[:, 4] = np.log(rstd + eps_rstd)
    out[:, 5] = mean
    return out, mean


def residuals(t: F64, mean: F64, beta: F64, level: F64) -> F64:
    return mean - design(t, np.nan_to_num(mean), level) @ beta


def fit_state(b: Buckets, window: int) -> tuple[FeatureState, F64]:
    """Learn the residual fit and the robust scales from a training range; returns the state
    and the raw features of the range (so training does not compute them twice)."""
    level = np.abs(_nanmedian(b.mean)) + 1.0
    eps_spread = np.maximum(0.01 * _nanmedian(b.spread), 1e-9 * level)
    _, rstd = rolling(b.mean, window)
    eps_rstd = np.maximum(0.01 * _nanmedian(rstd), 1e-9 * level)
    raw, mean = raw_features(b, window, eps_spread, eps_rstd)
    ok = ~np.isnan(mean).any(axis=1)
    daily = len(b) > 0 and float(b.t[-1] - b.t[0]) >= DAY
    level = _nanmedian(mean)
    beta = _fit_residuals(b.t[ok], mean[ok], level, daily=daily)
    raw[:, 5] = residuals(b.t, mean, beta, level)
    usable = ~np.isnan(raw).reshape(len(b), -1).any(axis=1)
    sample = raw[usable]
    if sample.shape[0] == 0:
        raise ValueError("no complete feature window in the training range")
    center = np.median(sample, axis=0)
    mad = np.median(np.abs(sample - center), axis=0) * 1.4826
    sd = np.std(sample, axis=0)
    scale = np.maximum(mad, 0.5 * sd) + 1e-9 * (np.abs(center) + 1.0)
    counts = np.median(b.count, axis=0)
    state = FeatureState(window, beta, level, center, scale, eps_spread, eps_rstd, 0.5 * counts)
    return state, raw


def _nanmedian(a: F64) -> F64:
    out = np.zeros(a.shape[1])
    for j in range(a.shape[1]):
        col = a[:, j]
        col = col[~np.isnan(col)]
        out[j] = float(np.median(col)) if col.size else 0.0
    return out


def _fit_residuals(t: F64, mean: F64, level: F64, *, daily: bool) -> F64:
    """Ridge fit of each tag on the others (standardized columns, so a tag in thousands does
    not drown one in tenths; a small ridge keeps identical or constant tags solvable). The time
    of day takes part only when the range covers a whole day: on a shorter range it would
    mistake a trend for a daily cycle and extrapolate it."""
    n, j = mean.shape
    x = design(t, mean, level)
    width = x.shape[1]
    if not daily:
        x[:, tod_rows(j)] = 0.0
    beta = np.zeros((width, j))
    if n < 3:
        return beta
    mu = x.mean(axis=0)
    sd = x.std(axis=0)
    sd[sd == 0] = 1.0
    mu[-1], sd[-1] = 0.0, 1.0  # the constant stays a constant
    xs = (x - mu) / sd
    for k in range(j):
        cols = [c for c in range(width) if c not in (k, j + k)]
        a = xs[:, cols]
        gram = a.T @ a + 1e-6 * n * np.eye(len(cols))
        coef = np.linalg.solve(gram, a.T @ mean[:, k])
        # back to raw regressors: x_s = (x - mu) / sd
        raw = np.zeros(width)
        raw[cols] = coef / sd[cols]
        raw[-1] = coef[-1] - float(np.sum(coef[:-1] * mu[cols][:-1] / sd[cols][:-1]))
        beta[:, k] = raw
    return beta


def zscores(raw: F64, state: FeatureState, count: F64) -> F64:
    """Robust z per raw feature and tag; spread is neutral where a bucket is too sparse."""
    z = (raw - state.center) / state.scale
    sparse = count < state.min_count
    z[:, 2][sparse] = 0.0
    return np.clip(z, -Z_CAP, Z_CAP)


def pool(z: F64) -> F64:
    """(buckets, 6, tags) z-scores -> (buckets, 8) forest columns (NaN rows stay NaN)."""
    az = np.abs(z)
    cols = [
        az[:, 0].max(axis=1), az[:, 1].max(axis=1),
        np.maximum(z[:, 2], 0).max(axis=1), np.maximum(-z[:, 2], 0).max(axis=1),
        az[:, 3].max(axis=1),
        np.maximum(z[:, 4], 0).max(axis=1), np.maximum(-z[:, 4], 0).max(axis=1),
        az[:, 5].max(axis=1),
    ]  # fmt: skip
    return np.column_stack(cols)


def window_features(
    mean: F64, spread: F64, count: F64, t: F64, s: StackedState
) -> tuple[F64, F64]:  # fmt: skip
    """The last row of many windows at once, each with its own device's state: `mean` is
    (windows, window + 2, tags) of bucket means (NaN where empty) ending at the bucket being
    judged, whose spread, count (windows, tags) and start `t` (windows,) are given. Equal to the
    last row of `features` over the same buckets (the live scorer's path; the test compares)."""
    n, rows, j = mean.shape
    w = rows - 2
    limit = max(1, int(w * MAX_CARRY))
    value, previous = _carried(mean, limit), _carried(mean[:, :-1], limit)
    tail = mean[:, -w:, :]
    have = ~np.isnan(tail)
    cnt = have.sum(axis=1).astype(np.float64)
    first = np.argmax(have, axis=1)[:, None, :]  # centred like `rolling`, on a level of the window
    base = np.nan_to_num(np.take_along_axis(tail, first, axis=1))
    x = np.where(have, tail - base, 0.0)
    s1, s2 = x.sum(axis=1), (x * x).sum(axis=1)
    enough = (cnt >= max(2.0, w / 2)) & (cnt > 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rmean = np.where(enough, s1 / cnt + base[:, 0, :], np.nan)
        rstd = np.where(enough, np.sqrt(np.maximum(s2 - s1 * (s1 / cnt), 0.0) / (cnt - 1)), np.nan)
        raw = np.stack([value, value - previous, np.log(spread + s.eps_spread), value - rmean,
                        np.log(rstd + s.eps_rstd), value], axis=1)  # fmt: skip
    filled0 = np.nan_to_num(value)
    angle = 2 * np.pi * np.mod(t, DAY) / DAY
    design_rows = np.concatenate([filled0, np.square(filled0 - s.level), np.sin(angle)[:, None],
                                  np.cos(angle)[:, None], np.ones((n, 1))], axis=1)  # fmt: skip
    raw[:, 5] = value - np.einsum("nk,nkj->nj", design_rows, s.beta)
    z = (raw - s.center) / s.scale
    z[:, 2][count < s.min_count] = 0.0
    z = np.clip(z, -Z_CAP, Z_CAP)
    return pool(z), z


def _carried(block: F64, limit: int) -> F64:
    """The newest row of (windows, rows, tags) blocks as `carry_forward` fills it: the newest
    value within `limit` rows back, else NaN (only what is needed: no full filled copy)."""
    newest_first = ~np.isnan(block[:, ::-1, :])
    back = np.argmax(newest_first, axis=1)
    found = newest_first.any(axis=1) & (back <= limit)
    picked = np.take_along_axis(block, (block.shape[1] - 1 - back)[:, None, :], axis=1)[:, 0, :]
    return np.where(found, picked, np.nan)


@dataclass(slots=True)
class StackedState:
    """FeatureStates of several devices with the same number of tags and window, one row per
    window to judge (gathered with the devices' indices)."""

    beta: F64
    level: F64
    center: F64
    scale: F64
    eps_spread: F64
    eps_rstd: F64
    min_count: F64

    @classmethod
    def of(cls, states: list[FeatureState]) -> StackedState:
        return cls(*(np.stack([getattr(s, name) for s in states]) for name in
                     ("beta", "level", "center", "scale", "eps_spread", "eps_rstd", "min_count")))  # fmt: skip

    def take(self, rows: npt.NDArray[np.intp]) -> StackedState:
        return StackedState(self.beta[rows], self.level[rows], self.center[rows], self.scale[rows],
                            self.eps_spread[rows], self.eps_rstd[rows], self.min_count[rows])  # fmt: skip


def features(b: Buckets, state: FeatureState) -> tuple[F64, F64]:
    """Pooled forest columns (buckets, 8) and per-tag z-scores (buckets, 6, tags) of a range.
    A row is NaN where the window is incomplete (the first W-1 buckets, a silent tag)."""
    raw, mean = raw_features(b, state.window, state.eps_spread, state.eps_rstd)
    raw[:, 5] = residuals(b.t, mean, state.beta, state.level)
    z = zscores(raw, state, b.count)
    return pool(z), z


def top_tags(z: F64, columns: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """For each row, the tag that set its pooled column's value: z is (rows, 6, tags). A broken
    relation shows in the residuals of every tag in it (Flow off Speed's line moves Speed's
    residual too), so among the tags with a large residual the one that also stands out on its
    own features is named."""
    rows = np.arange(z.shape[0])
    source = np.asarray(POOLED_SOURCE)[columns]
    src = z[rows, source]
    high = np.argmax(np.where(np.isnan(src), -np.inf, src), axis=1)
    low = np.argmin(np.where(np.isnan(src), np.inf, src), axis=1)
    largest = np.argmax(np.nan_to_num(np.abs(src), nan=-1.0), axis=1)
    res = np.nan_to_num(np.abs(src))
    own = np.nan_to_num(np.abs(z[:, :5])).max(axis=1)
    related = np.argmax(np.where(res >= 0.5 * res.max(axis=1, keepdims=True), own, -1.0), axis=1)
    out = np.select([source == 5, np.isin(columns, (2, 5)), np.isin(columns, (3, 6))], [related, high, low], largest)
    return np.asarray(out, dtype=np.intp)
