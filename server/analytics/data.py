"""The two shapes analytics input takes: raw samples, or rollup buckets covering a range exactly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from server.analytics.errors import NonFiniteData, NotEnoughData

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Samples:
    """Raw samples of one tag, sorted by time, Bad quality already removed."""

    ts: F64
    value: F64

    def __len__(self) -> int:
        return int(self.ts.shape[0])


@dataclass(frozen=True, slots=True)
class Buckets:
    """Per-bucket aggregates of one tag (only buckets holding samples), sorted by start.

    Partial buckets at the edges of a range are aggregated from raw samples, so the buckets
    hold exactly the samples of the range: count, sum, min and max over them are exact.
    """

    start: F64
    width: float
    count: I64
    vsum: F64
    vmin: F64
    vmax: F64
    first_ts: F64
    last_ts: F64

    def __len__(self) -> int:
        return int(self.start.shape[0])

    @property
    def samples(self) -> int:
        return int(self.count.sum())

    @property
    def mean(self) -> F64:
        return self.vsum / self.count

    @property
    def t_mid(self) -> F64:
        """Where a bucket's samples sit in time: midway between its first and last sample."""
        return (self.first_ts + self.last_ts) / 2


def require_finite(values: F64, what: str = "the series") -> None:
    """NaN gaps are refused with where they are: dropping them silently would change every figure."""
    bad = ~np.isfinite(values)
    if bad.any():
        raise NonFiniteData(f"{what} holds {int(bad.sum())} non-finite value(s) (NaN or infinity), the first at index "
                            f"{int(np.argmax(bad))}; analytics needs finite numbers")  # fmt: skip


def require_count(n: int, minimum: int, what: str) -> None:
    if n == 0:
        raise NotEnoughData(f"no samples in the range: {what} needs at least {minimum}")
    if n < minimum:
        raise NotEnoughData(f"{n} sample(s) in the range: {what} needs at least {minimum}")
