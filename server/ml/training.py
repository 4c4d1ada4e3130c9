"""Training: the historian's rollups of a device's tags over a range become feature windows,
an IsolationForest is fitted on them, and the threshold and envelope are read off the same
windows. `train` is plain CPU work for a worker thread (never the event loop); it reports
progress through a callback and stops at the next step when asked to.

The forest grows in slices of trees (`warm_start`), so progress is real, not a timer; the
last fifth of the range (in time) is first held out to measure the false-alarm rate a model
of this range would have on data it has not seen, then the final forest uses all of it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import IsolationForest  # type: ignore[import-untyped]

from server.ml import features as ft
from server.ml.model import AnomalyModel
from server.storage.historian.store import RollupSource

F64 = npt.NDArray[np.float64]
TIER = 10
"""Training reads the historian's finest rollup tier; the step is a multiple of it."""
MIN_WINDOWS = 200
HOLDOUT = 0.2
TREES_PER_SLICE = 10

Progress = Callable[[str, float], None]
"""phase, fraction done (0..1) of the whole job."""


class Cancelled(Exception):
    """The job was deleted or the server is stopping."""


class NotEnoughData(ValueError):
    """The range holds too few complete windows to learn from."""


@dataclass(frozen=True, slots=True)
class TrainParams:
    step_s: int = 10
    window_s: int = 300
    contamination: float = 1e-4
    n_estimators: int = 100
    margin: float = 1.0
    forest_margin: float = 0.25
    seed: int = 0

    @property
    def window(self) -> int:
        return max(3, self.window_s // self.step_s)

    def as_dict(self) -> dict[str, Any]:
        return {"step_s": self.step_s, "window_s": self.window_s, "contamination": self.contamination,
                "n_estimators": self.n_estimators, "margin": self.margin, "forest_margin": self.forest_margin,
                "seed": self.seed}  # fmt: skip


def align(start: float, end: float, step: float) -> tuple[float, float]:
    """Whole buckets only: the first that starts at or after `start`, the last that ends by `end`."""
    return math.ceil(start / step) * step, math.floor(end / step) * step


class HistorySource:
    """Bucketed history of a device's tags, from the rollups (and those still in the writer)."""

    def __init__(self, rollups: RollupSource) -> None:
        self.rollups = rollups

    async def buckets(self, tag_ids: list[int], start: float, end: float, step: float) -> ft.Buckets:
        """Buckets of `step` s that start in [start, end) (both multiples of step)."""
        parts = []
        for tag_id in tag_ids:
            r = await self.rollups.read_rollup(TIER, tag_id, start, end)
            keep = (r.bucket >= start) & (r.bucket < end)
            parts.append((r.bucket[keep], r.vsum[keep], r.vmin[keep], r.vmax[keep], r.count[keep]))
        return ft.buckets_from_rollups(parts, step, start, end)


def _check(cancelled: Callable[[], bool]) -> None:
    if cancelled():
        raise Cancelled("training was cancelled")


def _grow(
    x: F64, params: TrainParams, progress: Callable[[float], None], cancelled: Callable[[], bool]
) -> IsolationForest:
    forest: IsolationForest | None = None
    grown = 0
    while grown < params.n_estimators:
        _check(cancelled)
        grown = min(params.n_estimators, grown + TREES_PER_SLICE)
        if forest is None:
            forest = IsolationForest(n_estimators=grown, random_state=params.seed, warm_start=True)
        else:
            forest.set_params(n_estimators=grown)
        forest.fit(x)
        progress(grown / params.n_estimators)
    assert forest is not None
    return forest


def train(
    b: ft.Buckets, tags: list[str], tag_names: list[str], params: TrainParams, progress: Progress,
    cancelled: Callable[[], bool] = lambda: False,
) -> tuple[AnomalyModel, dict[str, Any]]:  # fmt: skip
    """Fit a model on a device's bucketed training range; returns it and its metrics."""
    started = time.perf_counter()
    progress("features", 0.30)
    silent = [name for j, name in enumerate(tag_names) if not np.any(b.count[:, j] > 0)]
    if silent:
        raise NotEnoughData(f"no samples in the training range for: {', '.join(silent)}")
    try:
        state, raw = ft.fit_state(b, params.window)
    except ValueError as exc:
        raise NotEnoughData(str(exc)) from None
    z = ft.zscores(raw, state, b.count)
    pooled = ft.pool(z)
    ok = ~np.isnan(pooled).any(axis=1)
    x = pooled[ok]
    if x.shape[0] < MIN_WINDOWS:
        raise NotEnoughData(
            f"the range holds {x.shape[0]} complete windows of {params.step_s} s; at least {MIN_WINDOWS} "
            f"are needed (about {MIN_WINDOWS * params.step_s / 3600:.1f} h of data plus the window)"
        )
    _check(cancelled)
    q = 1.0 - params.contamination

    # Held-out check: fit on the first 80 % (in time), judge the rest with that fit's threshold.
    split = int(x.shape[0] * (1 - HOLDOUT))
    head, tail = x[:split], x[split:]
    check = _grow(head, params, lambda f: progress("validating", 0.35 + 0.25 * f), cancelled)
    head_scores = -check.score_samples(head)
    probe = _model(tags, tag_names, params, state, check, head_scores, head, q)
    tail_score = np.maximum(probe.normalise(-check.score_samples(tail)), probe.envelope(tail)[0])
    holdout_rate = float(np.mean(tail_score > 1.0)) if tail.shape[0] else 0.0

    forest = _grow(x, params, lambda f: progress("training", 0.60 + 0.30 * f), cancelled)
    progress("scoring", 0.92)
    scores = -forest.score_samples(x)
    model = _model(tags, tag_names, params, state, forest, scores, x, q)
    final = np.maximum(model.normalise(scores), model.envelope(x)[0])
    model.train_quantiles = np.quantile(final, np.linspace(0, 1, 11))
    windows_per_day = 86_400 / params.step_s
    metrics = {
        "train_windows": int(x.shape[0]),
        "skipped_windows": int((~ok).sum()),
        "holdout_windows": int(tail.shape[0]),
        "holdout_anomaly_rate": holdout_rate,
        "holdout_anomalous_windows_per_day": holdout_rate * windows_per_day,
        "train_anomaly_rate": float(np.mean(final > 1.0)),
        "threshold_raw": model.threshold,
        "median_raw": model.median,
        "score_quantiles": {f"p{int(p * 100)}": float(v)
                            for p, v in zip(np.linspace(0, 1, 11), model.train_quantiles, strict=True)},
        "fit_seconds": round(time.perf_counter() - started, 3),
        "daily_cycle": bool(np.any(state.beta[ft.tod_rows(len(tags))] != 0)),
    }  # fmt: skip
    return model, metrics


def _model(
    tags: list[str], tag_names: list[str], params: TrainParams, state: ft.FeatureState, forest: IsolationForest,
    scores: F64, x: F64, q: float,
) -> AnomalyModel:  # fmt: skip
    return AnomalyModel(
        tags=tags, tag_names=tag_names, step=float(params.step_s), state=state, forest=forest,
        threshold=float(np.quantile(scores, q)), median=float(np.median(scores)),
        envelope_hi=np.quantile(x, q, axis=0), envelope_mid=np.median(x, axis=0),
        margin=params.margin, contamination=params.contamination, forest_margin=params.forest_margin,
    )  # fmt: skip


def feature_record(model: AnomalyModel) -> dict[str, Any]:
    """The feature set as the registry records it (also in the artifact's own metadata)."""
    s = model.state
    per_tag = [
        {"tag": tag, "name": name,
         "center": {f: float(s.center[i, j]) for i, f in enumerate(ft.RAW_FEATURES)},
         "scale": {f: float(s.scale[i, j]) for i, f in enumerate(ft.RAW_FEATURES)}}
        for j, (tag, name) in enumerate(zip(model.tags, model.tag_names, strict=True))
    ]  # fmt: skip
    return {
        "step_s": model.step, "window": model.window, "window_s": model.window * model.step,
        "raw_features": list(ft.RAW_FEATURES), "columns": list(ft.POOLED_FEATURES), "tags": per_tag,
        "envelope": {f: {"median": float(m), "edge": float(h)}
                     for f, m, h in zip(ft.POOLED_FEATURES, model.envelope_mid, model.envelope_hi, strict=True)},
    }  # fmt: skip
