"""What a historian backend must do; one implementation per database dialect."""

from __future__ import annotations

from typing import Protocol

from server.domain.rollup import Rollup
from server.storage.historian.columns import RawSeries, SampleColumns

RECOVERY_WINDOW = 600
"""Batches record which 10-minute windows they touched; recovery recomputes those windows."""


class RollupSource(Protocol):
    """Where readers get a tier's buckets: the store itself, or the writer, which adds the
    deltas still in its memory."""

    async def read_rollup(self, width: int, tag_id: int, start: float, end: float) -> Rollup:
        """Buckets of the `width` tier from the one holding `start` up to `end`, by bucket."""


class SampleStore(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, batch: SampleColumns, windows: list[int]) -> None:
        """Commit samples and, in the same transaction, the windows whose rollups are pending."""

    async def merge_rollups(self, tiers: dict[int, Rollup], *, clear_pending: bool = True) -> None:
        """Merge rollup deltas into the tier tables (and clear the pending windows), atomically."""

    async def pending_windows(self) -> list[int]: ...

    async def replace_rollups(self, width: int, start: int, end: int, rollup: Rollup) -> None:
        """Replace the tier's rows with bucket in [start, end) (recovery)."""

    async def clear_pending(self, windows: list[int]) -> None: ...

    async def read_span(self, start: float, end: float) -> SampleColumns:
        """All tags' raw samples in [start, end); recovery only."""

    async def read_rollup_span(self, width: int, start: int, end: int) -> Rollup: ...

    async def read_raw(self, tag_id: int, start: float, end: float, limit: int) -> RawSeries: ...

    async def read_rollup(self, width: int, tag_id: int, start: float, end: float) -> Rollup: ...

    async def latest(self, tag_id: int) -> tuple[float, float, int] | None: ...

    async def latest_many(self, tag_ids: list[int]) -> dict[int, tuple[float, float, int]]:
        """Newest sample of each tag, in one round trip (cold start of the live cache)."""

    async def count(self, tag_ids: list[int]) -> int: ...

    async def delete_tags(self, tag_ids: list[int]) -> None: ...
