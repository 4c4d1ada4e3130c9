"""Rollup maths: per-bucket min/max/sum/count/first/last, merged and coarsened with numpy.

The historian keeps one table per tier; these functions are the only place that knows how
buckets combine, so the writer, start-up recovery and decimated reads all agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

TIERS: tuple[int, ...] = (10, 60, 600, 3600, 86400)
"""Bucket widths in seconds. Neighbouring tiers differ by at most 24x, so a read of any range
touches at most ~24 x max_points rollup rows."""

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(slots=True)
class Rollup:
    """Columns of aggregate rows, one row per (tag, bucket start)."""

    tag_id: I64
    bucket: I64
    vmin: F64
    vmax: F64
    vsum: F64
    count: I64
    first: F64
    first_ts: F64
    last: F64
    last_ts: F64

    def __len__(self) -> int:
        return int(self.tag_id.shape[0])

    def rows(self) -> list[tuple[int, int, float, float, float, int, float, float, float, float]]:
        return list(
            zip(
                self.tag_id.tolist(),
                self.bucket.tolist(),
                self.vmin.tolist(),
                self.vmax.tolist(),
                self.vsum.tolist(),
                self.count.tolist(),
                self.first.tolist(),
                self.first_ts.tolist(),
                self.last.tolist(),
                self.last_ts.tolist(),
                strict=True,
            )
        )

    @classmethod
    def empty(cls) -> Rollup:
        f, i = np.empty(0, np.float64), np.empty(0, np.int64)
        return cls(i, i, f, f, f, i, f, f, f, f)

    @classmethod
    def concat(cls, parts: list[Rollup]) -> Rollup:
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in FIELDS))


FIELDS = ("tag_id", "bucket", "vmin", "vmax", "vsum", "count", "first", "first_ts", "last", "last_ts")


def _key(tag_id: I64, bucket: I64) -> I64:
    # Bucket starts are non-negative epoch seconds below 2**32 (until 2106), tag ids below 2**31.
    return (tag_id << 32) | bucket


def _group_starts(sorted_key: I64) -> npt.NDArray[np.intp]:
    if sorted_key.size == 0:
        return np.empty(0, np.intp)
    return np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])


def _reduce(key: I64, ts: F64, value: F64) -> tuple[I64, Rollup]:
    """Group samples on an int64 key; returns the group keys and their aggregates."""
    order = np.lexsort((ts, key))
    key, ts, value = key[order], ts[order], value[order]
    starts = _group_starts(key)
    ends = np.r_[starts[1:], key.size] - 1
    zeros = np.zeros(starts.size, np.int64)
    return key[starts], Rollup(
        tag_id=zeros,
        bucket=zeros,
        vmin=np.minimum.reduceat(value, starts),
        vmax=np.maximum.reduceat(value, starts),
        vsum=np.add.reduceat(value, starts),
        count=np.diff(np.r_[starts, key.size]).astype(np.int64),
        first=value[starts],
        first_ts=ts[starts],
        last=value[ends],
        last_ts=ts[ends],
    )


def aggregate(tag_id: I64, ts: F64, value: F64, width: int) -> Rollup:
    """Aggregate raw samples (Bad quality already removed) into buckets of `width` seconds."""
    if tag_id.size == 0:
        return Rollup.empty()
    bucket = (np.floor(ts / width) * width).astype(np.int64)
    keys, r = _reduce(_key(tag_id, bucket), ts, value)
    r.tag_id, r.bucket = keys >> 32, keys & 0xFFFFFFFF
    return r


def merge(parts: list[Rollup] | Rollup, width: int | None = None) -> Rollup:
    """Combine rollup rows with equal (tag, bucket); with `width`, re-bucket them coarser first."""
    r = parts if isinstance(parts, Rollup) else Rollup.concat(parts)
    if len(r) == 0:
        return r
    bucket = r.bucket if width is None else (r.bucket // width) * width
    key = _key(r.tag_id, bucket)
    by_first = np.lexsort((r.first_ts, key))
    skey = key[by_first]
    starts = _group_starts(skey)
    by_last = np.lexsort((r.last_ts, key))
    ends = np.r_[starts[1:], skey.size] - 1
    return Rollup(
        tag_id=skey[starts] >> 32,
        bucket=skey[starts] & 0xFFFFFFFF,
        vmin=np.minimum.reduceat(r.vmin[by_first], starts),
        vmax=np.maximum.reduceat(r.vmax[by_first], starts),
        vsum=np.add.reduceat(r.vsum[by_first], starts),
        count=np.add.reduceat(r.count[by_first], starts),
        first=r.first[by_first][starts],
        first_ts=r.first_ts[by_first][starts],
        last=r.last[by_last][ends],
        last_ts=r.last_ts[by_last][ends],
    )


WIDTH_SLACK = 1.5
"""Output buckets may be this much wider than asked (fewer points) before a finer tier is used."""


def choose_tier(span_s: float, max_buckets: int) -> int | None:
    """The coarsest stored tier whose whole multiples come close to the bucket a read needs
    (a 6 h trend wants 10.8 s buckets: 20 s from the 10 s tier would halve its points, so it
    is bucketed from raw samples instead); None means raw."""
    needed = span_s / max(max_buckets, 1)
    for width in reversed(TIERS):
        if width <= needed and np.ceil(needed / width) * width <= needed * WIDTH_SLACK:
            return width
    return None


def bucket_width(span_s: float, max_buckets: int, tier: int | None) -> float:
    """Output bucket width: a whole multiple of the tier so stored buckets never straddle two."""
    needed = span_s / max(max_buckets, 1)
    if tier is None:
        return needed
    return float(np.ceil(needed / tier) * tier)


@dataclass(slots=True)
class Decimated:
    """Columns of a decimated series for one tag: what a trend needs to draw an envelope."""

    t: F64
    vmin: F64
    vmax: F64
    avg: F64
    first: F64
    last: F64
    count: I64


def decimate_rollup(r: Rollup, width: float) -> Decimated:
    """Re-bucket one tag's rollup rows into output buckets of `width`, aligned on the epoch."""
    if len(r) == 0:
        f = np.empty(0, np.float64)
        return Decimated(f, f, f, f, f, f, np.empty(0, np.int64))
    idx = np.floor(r.bucket / width).astype(np.int64)
    shifted = Rollup(np.zeros_like(idx), idx, r.vmin, r.vmax, r.vsum, r.count, r.first, r.first_ts, r.last, r.last_ts)
    m = merge(shifted)
    return Decimated(
        t=m.bucket.astype(np.float64) * width,
        vmin=m.vmin,
        vmax=m.vmax,
        avg=m.vsum / m.count,
        first=m.first,
        last=m.last,
        count=m.count,
    )


def decimate_raw(ts: F64, value: F64, width: float) -> Decimated:
    """Bucket raw samples directly, for ranges finer than the smallest tier."""
    if ts.size == 0:
        return decimate_rollup(Rollup.empty(), width)
    keys, r = _reduce(np.floor(ts / width).astype(np.int64), ts, value)
    return Decimated(
        t=keys.astype(np.float64) * width,
        vmin=r.vmin,
        vmax=r.vmax,
        avg=r.vsum / r.count,
        first=r.first,
        last=r.last,
        count=r.count,
    )
