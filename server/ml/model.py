"""A trained anomaly model of one device: its feature state, its IsolationForest, its threshold
and training envelope, saved with skops and loaded only with an explicit list of trusted types.

Scores are normalised so that 1.0 is the model's threshold whatever the model: an alarm
condition's `threshold: 1.0` means "as the model was trained", and a retrained model does
not need its conditions edited. Both parts of a window's score follow one recipe — an edge at
the (1 - contamination) quantile of the training windows, the alarm level a margin beyond it,
in units of (edge - training median); 0 is the median, 1 the alarm level:

- the forest part: the IsolationForest's score, with `forest_margin` (default 0.25);
- the envelope part: the most extreme pooled feature against that feature's own edge, with
  `margin` (default 1).

The score is the larger of the two. The envelope is there because an IsolationForest can't
rank what lies beyond everything it saw: every tree puts such a point in its outermost leaf,
so a transmitter stuck flat scores like the calmest training window of that feature. The
forest's margin is there because its score is bounded and its tail moves as a process wanders
in the days after training: at the bare quantile it raised about four times the false alarms
the contamination promises (docs/anomaly.md shows the measurements).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import skops.io as sio  # type: ignore[import-untyped]
from sklearn.ensemble import IsolationForest  # type: ignore[import-untyped]

from server.ml import features as ft
from server.ml.forest import CompiledForest

F64 = npt.NDArray[np.float64]

FORMAT = 1
TRUSTED_TYPES = [
    "sklearn.ensemble._iforest.IsolationForest",
    "sklearn.tree._classes.ExtraTreeRegressor",
    "sklearn.tree._tree.Tree",
]
"""The only non-builtin types an artifact may hold besides numpy arrays and scalars (which
skops trusts by itself). Anything else in a file refuses the whole file."""
SMALL_CALL = 256
"""Up to this many rows the compiled walk is faster; above it scikit-learn's Cython is."""


class UntrustedArtifact(ValueError):
    """An artifact names a type outside TRUSTED_TYPES (or is not a skops file at all)."""


@dataclass(slots=True)
class Scored:
    """Scores of the complete windows of a range: one entry per window, `t` = window end."""

    t: F64
    score: F64
    forest: F64
    envelope: F64
    top_feature: list[str]
    top_tag: list[int]


Scalar = float | F64
"""One model's parameter, or one per row (rows of different devices' models, the live path)."""


def normalise(raw: F64, median: Scalar, threshold: Scalar, forest_margin: Scalar) -> F64:
    return np.asarray((raw - median) / (np.maximum(threshold - median, 1e-12) * (1.0 + forest_margin)))


def envelope(pooled: F64, hi: F64, mid: F64, margin: Scalar) -> tuple[F64, npt.NDArray[np.intp]]:
    extent = np.maximum(hi - mid, 1e-9)
    excess = (pooled - hi) / (extent * np.reshape(margin, (-1, 1)))
    col = np.argmax(excess, axis=1)
    return excess[np.arange(pooled.shape[0]), col], col


def combine(
    forest_raw: F64, pooled: F64, z: F64, median: Scalar, threshold: Scalar, forest_margin: Scalar, hi: F64,
    mid: F64, margin: Scalar,
) -> tuple[F64, F64, F64, list[str], list[int]]:  # fmt: skip
    """The score of rows from both parts, and what stood out: the envelope's column when it
    decides, else the pooled column furthest above its training median (in extents). z: the
    rows' (6, tags) z-scores."""
    forest = normalise(forest_raw, median, threshold, forest_margin)
    env, env_col = envelope(pooled, hi, mid, margin)
    score = np.maximum(forest, env)
    rel = (pooled - mid) / np.maximum(hi - mid, 1e-9)
    col = np.where(env >= forest, env_col, np.argmax(rel, axis=1))
    names = [ft.POOLED_FEATURES[c] for c in col.tolist()]
    return score, forest, env, names, ft.top_tags(z, col).tolist()


@dataclass(slots=True)
class AnomalyModel:
    tags: list[str]
    """Node ids of the device's tags, in feature-column order."""
    tag_names: list[str]
    step: float
    state: ft.FeatureState
    forest: IsolationForest
    threshold: float
    """Raw forest score at the (1 - contamination) quantile of the training windows."""
    median: float
    envelope_hi: F64
    envelope_mid: F64
    margin: float
    contamination: float
    forest_margin: float = 0.0
    train_quantiles: F64 = field(default_factory=lambda: np.zeros(0))
    """Deciles (0, 10, ... 100 %) of the training windows' normalised scores (for drift)."""
    _compiled: CompiledForest | None = None

    @property
    def window(self) -> int:
        return self.state.window

    @property
    def warmup(self) -> int:
        """Buckets of history a window needs before it can be scored."""
        return self.state.window

    def compiled(self) -> CompiledForest:
        if self._compiled is None:
            self._compiled = CompiledForest(self.forest)
        return self._compiled

    def forest_scores(self, x: F64) -> F64:
        if x.shape[0] <= SMALL_CALL:
            return self.compiled().score(x)
        return np.asarray(-self.forest.score_samples(x), dtype=np.float64)

    def normalise(self, raw: F64) -> F64:
        """Forest scores on the model's scale: 1.0 at threshold + forest_margin x (threshold - median)."""
        return normalise(raw, self.median, self.threshold, self.forest_margin)

    def envelope(self, pooled: F64) -> tuple[F64, npt.NDArray[np.intp]]:
        return envelope(pooled, self.envelope_hi, self.envelope_mid, self.margin)

    def score_rows(self, pooled: F64, z: F64) -> tuple[F64, F64, F64, list[str], list[int]]:
        """Rows of complete windows (no NaN) -> score, forest part, envelope part, top feature
        and tag (the pooled column and tag that stood out most, for the operator)."""
        if pooled.shape[0] == 0:
            e = np.zeros(0)
            return e, e, e, [], []
        return combine(
            self.forest_scores(pooled), pooled, z, self.median, self.threshold, self.forest_margin,
            self.envelope_hi, self.envelope_mid, self.margin,
        )  # fmt: skip

    def score_buckets(self, b: ft.Buckets) -> Scored:
        """Every complete window of a bucketed range (history, or a caller's samples)."""
        pooled, z = ft.features(b, self.state)
        ok = ~np.isnan(pooled).any(axis=1)
        score, forest, env, names, tags = self.score_rows(pooled[ok], z[ok])
        return Scored(b.t[ok] + self.step, score, forest, env, names, tags)

    # -- artifact -----------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "tags": list(self.tags), "tag_names": list(self.tag_names), "step": self.step,
            "window": self.window, "threshold": self.threshold, "median": self.median, "margin": self.margin,
            "contamination": self.contamination, "forest_margin": self.forest_margin,
            "features": list(ft.POOLED_FEATURES),
            "raw_features": list(ft.RAW_FEATURES),
        }  # fmt: skip

    def dumps(self) -> bytes:
        doc = {
            "meta": self.meta(),
            "forest": self.forest,
            "state": self.state.arrays(),
            "envelope_hi": self.envelope_hi,
            "envelope_mid": self.envelope_mid,
            "train_quantiles": self.train_quantiles,
        }
        data: bytes = sio.dumps(doc, compression=zipfile.ZIP_DEFLATED, compresslevel=6)
        return data

    @classmethod
    def loads(cls, data: bytes) -> AnomalyModel:
        """Refuses (UntrustedArtifact) a file naming any type outside TRUSTED_TYPES."""
        try:
            untrusted = sio.get_untrusted_types(data=data)
        except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
            raise UntrustedArtifact(f"not a model artifact: {exc}") from None
        refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
        if refused:
            raise UntrustedArtifact(f"the artifact holds types that are not trusted: {', '.join(refused)}")
        doc = sio.loads(data, trusted=TRUSTED_TYPES)
        if not isinstance(doc, dict) or not isinstance(doc.get("forest"), IsolationForest):
            raise UntrustedArtifact("the artifact does not hold an anomaly model")
        meta = doc["meta"]
        if meta.get("format") != FORMAT:
            raise UntrustedArtifact(f"artifact format {meta.get('format')!r} is not {FORMAT}")
        state = ft.FeatureState.from_arrays(int(meta["window"]), {k: np.asarray(v) for k, v in doc["state"].items()})
        return cls(
            tags=list(meta["tags"]), tag_names=list(meta["tag_names"]), step=float(meta["step"]), state=state,
            forest=doc["forest"], threshold=float(meta["threshold"]), median=float(meta["median"]),
            envelope_hi=np.asarray(doc["envelope_hi"]), envelope_mid=np.asarray(doc["envelope_mid"]),
            margin=float(meta["margin"]), contamination=float(meta["contamination"]),
            forest_margin=float(meta["forest_margin"]), train_quantiles=np.asarray(doc["train_quantiles"]),
        )  # fmt: skip
