"""An IsolationForest's trees as flat numpy arrays, walked level by level for all trees at once.

scikit-learn's `score_samples` walks the trees one after another and costs ~5-12 ms a call
however few rows it gets (see shared/BASELINES.md); a server with a model per device scores
each device's window as it completes, so that fixed cost would be paid per device and step.
Here a call on one row costs ~0.1 ms and a call on thousands about what scikit-learn needs.
The result equals `-forest.score_samples(X)` (tests/server/test_ml_features.py checks it):
the same float32 rounding of the input, the same path lengths, the same normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import IsolationForest  # type: ignore[import-untyped]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

CHUNK_ROWS = 512
"""Rows per pass: (trees x rows) index arrays that stay in the cache (512: 37 ms for 10k rows, 2048: 48)."""


def average_path_length(n: F64) -> F64:
    """c(n): the mean path length of an unsuccessful search in a binary search tree of n
    points (Liu et al.), as scikit-learn computes it."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    two = n == 2
    more = n > 2
    out[two] = 1.0
    out[more] = 2.0 * (np.log(n[more] - 1.0) + np.euler_gamma) - 2.0 * (n[more] - 1.0) / n[more]
    return out


@dataclass(slots=True)
class Arrays:
    """Flat tree arrays: a leaf points to itself (threshold +inf), so a walk may run on past it."""

    left: I64
    right: I64
    feature: I64
    threshold: F64
    value: F64
    """At leaves: depth + c(samples in the leaf), the path length the score averages."""
    roots: I64
    levels: int
    denominator: float
    children: I64 = field(init=False)
    """left and right side by side: entry 2i is node i's left child, 2i + 1 its right one."""

    def __post_init__(self) -> None:
        self.children = np.column_stack([self.left, self.right]).ravel()


class CompiledForest:
    """Scores rows with a fitted IsolationForest's trees; anomaly score in (0, 1], higher is
    more anomalous (the paper's s(x, n), i.e. -score_samples)."""

    def __init__(self, forest: IsolationForest) -> None:
        lefts, rights, feats, thresholds, values, roots = [], [], [], [], [], []
        offset = 0
        depth_max = 0
        for tree, used in zip(forest.estimators_, forest.estimators_features_, strict=True):
            t = tree.tree_
            left = np.asarray(t.children_left, dtype=np.int64)
            right = np.asarray(t.children_right, dtype=np.int64)
            n = left.shape[0]
            depth = np.zeros(n, dtype=np.int64)
            for node in range(n):  # children always come after their parent
                if left[node] >= 0:
                    depth[left[node]] = depth[node] + 1
                    depth[right[node]] = depth[node] + 1
            leaf = left < 0
            own = np.arange(n, dtype=np.int64) + offset
            lefts.append(np.where(leaf, own, left + offset))
            rights.append(np.where(leaf, own, right + offset))
            feat = np.asarray(used, dtype=np.int64)[np.maximum(np.asarray(t.feature, dtype=np.int64), 0)]
            feats.append(np.where(leaf, 0, feat))
            thresholds.append(np.where(leaf, np.inf, np.asarray(t.threshold, dtype=np.float64)))
            samples = np.asarray(t.n_node_samples, dtype=np.float64)
            values.append(np.where(leaf, depth + average_path_length(samples), 0.0))
            roots.append(offset)
            offset += n
            depth_max = max(depth_max, int(depth.max()))
        denominator = len(forest.estimators_) * float(average_path_length(np.array([forest.max_samples_]))[0])
        self.arrays = Arrays(
            np.concatenate(lefts), np.concatenate(rights), np.concatenate(feats), np.concatenate(thresholds),
            np.concatenate(values), np.asarray(roots, dtype=np.int64), depth_max, denominator,
        )  # fmt: skip
        self.n_features = int(forest.n_features_in_)

    def score(self, x: F64) -> F64:
        """Anomaly scores of the rows of x (rows x features, finite)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got shape {x.shape}")
        out = np.empty(x.shape[0])
        for lo in range(0, x.shape[0], CHUNK_ROWS):
            out[lo : lo + CHUNK_ROWS] = self._score(x[lo : lo + CHUNK_ROWS])
        return out

    def _score(self, x: F64) -> F64:
        a = self.arrays
        node = np.repeat(a.roots[:, None], x.shape[0], axis=1)
        return walk(a, x, node, np.full(x.shape[0], a.denominator))


def walk(a: Arrays, x: F64, node: I64, denominator: F64) -> F64:
    """Walk rows down their trees: `node` is (trees, rows) of root indices (a row's own trees;
    a tree slot a row does not use holds a leaf of value 0)."""
    n = x.shape[0]
    flat = np.ascontiguousarray(x.astype(np.float32).astype(np.float64).T).ravel()  # float32 inputs, as sklearn
    cols = np.arange(n, dtype=np.int64)
    children = a.children
    for _ in range(a.levels):  # flat takes: a gather costs less than 2-D fancy indexing
        right = flat.take(a.feature.take(node) * n + cols) > a.threshold.take(node)
        node = children.take(2 * node + right)
    depths = a.value.take(node).sum(axis=0)
    return np.asarray(2.0 ** (-depths / denominator), dtype=np.float64)


class ForestSet:
    """Many devices' forests in one set of arrays: one walk scores rows of different devices,
    each row in its own device's trees. What makes a flush cost a few numpy calls however many
    devices completed a window in it (the live scorer's path)."""

    def __init__(self, forests: list[CompiledForest]) -> None:
        parts = [f.arrays for f in forests]
        # node 0: a shared leaf of value 0 for the tree slots a smaller forest does not fill
        offsets = np.cumsum([1] + [p.left.size for p in parts])[:-1]
        shifted = list(zip(parts, offsets, strict=True))
        self.left = np.concatenate([np.zeros(1, np.int64)] + [p.left + o for p, o in shifted])
        self.right = np.concatenate([np.zeros(1, np.int64)] + [p.right + o for p, o in shifted])
        self.feature = np.concatenate([np.zeros(1, np.int64)] + [p.feature for p in parts])
        self.threshold = np.concatenate([np.full(1, np.inf)] + [p.threshold for p in parts])
        self.value = np.concatenate([np.zeros(1)] + [p.value for p in parts])
        trees = max((p.roots.size for p in parts), default=0)
        self.roots = np.zeros((len(parts), trees), np.int64)
        for i, (p, o) in enumerate(zip(parts, offsets, strict=True)):
            self.roots[i, : p.roots.size] = p.roots + o
        self.levels = max((p.levels for p in parts), default=0)
        self.denominator = np.asarray([p.denominator for p in parts], dtype=np.float64)
        self.all = Arrays(self.left, self.right, self.feature, self.threshold, self.value, np.zeros(0, np.int64),
                          self.levels, 0.0)  # fmt: skip

    def score(self, x: F64, forest: npt.NDArray[np.intp]) -> F64:
        """Row i of x in forest `forest[i]`."""
        out = np.empty(x.shape[0])
        for lo in range(0, x.shape[0], CHUNK_ROWS):
            which = forest[lo : lo + CHUNK_ROWS]
            out[lo : lo + CHUNK_ROWS] = walk(self.all, x[lo : lo + CHUNK_ROWS], self.roots[which].T,
                                             self.denominator[which])  # fmt: skip
        return out
