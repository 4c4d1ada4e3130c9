"""Decimated history: raw when it fits, otherwise the coarsest rollup tier that is fine enough."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from server.domain import rollup
from server.storage.historian.columns import RawSeries
from server.storage.historian.store import RollupSource, SampleStore

RAW_DECIMATION_LIMIT = 50_000
"""Below the finest tier we bucket raw samples in numpy; this caps the rows read for that."""


@dataclass(slots=True)
class HistoryResult:
    mode: str  # "raw" or "decimated"
    resolution_s: float | None
    raw: RawSeries | None = None
    decimated: rollup.Decimated | None = None


class HistoryReader:
    def __init__(self, store: SampleStore, rollups: RollupSource | None = None) -> None:
        self.store = store
        # The writer adds the rollup deltas still in its memory: a decimated read is never behind.
        self.rollups: RollupSource = rollups or store

    async def read(self, tag_id: int, start: float, end: float, max_points: int) -> HistoryResult:
        raw = await self.store.read_raw(tag_id, start, end, max_points + 1)
        if len(raw) <= max_points:
            return HistoryResult("raw", None, raw=raw)
        # One bucket may straddle each edge of the range: leave room for it.
        buckets = max(max_points - 1, 1)
        span = end - start
        tier = rollup.choose_tier(span, buckets)
        width = rollup.bucket_width(span, buckets, tier)
        if tier is None:
            dense = await self.store.read_raw(tag_id, start, end, RAW_DECIMATION_LIMIT + 1)
            if len(dense) <= RAW_DECIMATION_LIMIT:
                usable = dense.quality != 2
                dec = rollup.decimate_raw(dense.ts[usable], dense.value[usable], width)
                return self._clip(dec, start, end, width)
            # Too dense to bucket raw rows quickly: the finest tier, at a slightly coarser width.
            tier = rollup.TIERS[0]
            width = float(np.ceil(width / tier) * tier)
        stored = await self.rollups.read_rollup(tier, tag_id, start, end)
        return self._clip(rollup.decimate_rollup(stored, width), start, end, width)

    @staticmethod
    def _clip(dec: rollup.Decimated, start: float, end: float, width: float) -> HistoryResult:
        keep = (dec.t + width > start) & (dec.t < end)
        if not keep.all():
            fields = ("t", "vmin", "vmax", "avg", "first", "last", "count")
            dec = rollup.Decimated(*(getattr(dec, f)[keep] for f in fields))
        return HistoryResult("decimated", width, decimated=dec)
