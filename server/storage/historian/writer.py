"""Batches samples by size and time, commits them, and keeps the rollup tiers up to date.

Rollup deltas are accumulated in memory: the fine tiers (10 s, 60 s) are merged into their
tables every `rollup_interval` seconds, the coarse ones (600 s and up) every
`coarse_interval` — an open hour bucket of every tag is not rewritten every few seconds,
which is what made the merge cost as much as the samples with many tags. Readers add the
deltas still in memory, so a trend is never behind. Each sample batch records the 10-minute
windows it touched in the same transaction; they are cleared only by a full merge, so after a
crash `recover()` recomputes exactly those windows from the raw samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from server.domain import rollup
from server.domain.errors import Unavailable
from server.storage.historian.columns import SampleColumns
from server.storage.historian.store import RECOVERY_WINDOW, SampleStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class WriterStats:
    batches: int = 0
    samples: int = 0
    rollup_merges: int = 0
    failures: int = 0
    last_flush_s: float = 0.0


@dataclass(slots=True)
class _Pending:
    chunk: SampleColumns
    done: asyncio.Future[None] = field(repr=False)
    urgent: bool = False


class HistorianWriter:
    def __init__(
        self,
        store: SampleStore,
        *,
        batch_size: int = 10_000,
        flush_interval: float = 0.2,
        rollup_interval: float = 5.0,
        coarse_interval: float = 60.0,
        max_pending: int = 500_000,
        linger: float = 0.05,
        linger_gap: float = 0.005,
        commit_spacing: float = 0.002,
    ) -> None:
        self.store = store
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.rollup_interval = rollup_interval
        self.coarse_interval = max(coarse_interval, rollup_interval)
        self.max_pending = max_pending
        self.linger = min(linger, flush_interval)
        """Under load (the last commit just ended) a commit waits up to this long for more chunks,
        so back-to-back commits don't shrink to a few hundred samples each; when idle it goes at once."""
        self.linger_gap = linger_gap
        """...but only while chunks keep coming: a gap this long ends the wait. Senders that wait
        for their commit before sending more (CoAP and HTTP clients, a bounded AMQP prefetch)
        can't add anything, so lingering would only add to their latency."""
        self.commit_spacing = commit_spacing
        """Under load a commit starts at least this long after the last one ended (urgent chunks
        included; a full batch goes at once). Each commit has a fixed cost on the event loop (a
        thread hand-off or round trips, a transaction): CoAP's coalesced calls made 600 commits
        a second of 6 requests each on SQLite, and 2 ms took CoAP from 77% to 90% of the bare
        server there (2026-12-05). An idle writer still commits at once."""
        self._urgent = 0
        """Queued chunks whose senders asked not to linger (see `submit_nowait`)."""
        self._arrived = asyncio.Event()
        self._last_flush_end = -math.inf
        self.stats = WriterStats()
        self._queue: list[_Pending] = []
        self._queued = 0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._fast: list[rollup.Rollup] = []  # finest-tier deltas not yet in the 10 s / 60 s tables
        self._unaggregated: list[SampleColumns] = []
        """Committed batches not yet in `_fast`: aggregated together once they hold
        AGGREGATE_EVERY samples, or when a merge or a reader needs them. A small commit's own
        numpy calls (hundreds a second with CoAP) cost more than its rows."""
        self._unaggregated_n = 0
        self._coarse: list[rollup.Rollup] = []  # 600 s deltas not yet in the 600 s+ tables
        self._last_rollup = self._last_full = time.monotonic()
        self._recorded: set[int] = set()
        """Recovery windows already in `rollup_pending` (they stay until a full merge): a commit
        records only new ones, so most commits are the samples alone."""
        self._merge_seq = 0
        """Odd while a merge into the tier tables is under way; see `read_rollup`."""
        self._merge_idle = asyncio.Event()
        self._merge_idle.set()
        self._readers_holding = 0
        self._readers_gone = asyncio.Event()
        self._readers_gone.set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        self._recorded.clear()  # recovery clears the rows: a restarted writer records afresh
        await recover(self.store)
        self._task = asyncio.create_task(self._run(), name="historian-writer")

    async def stop(self) -> None:
        """Flush everything queued and persist the rollups; nothing accepted is dropped."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    def submit_nowait(self, chunk: SampleColumns, *, urgent: bool = False) -> asyncio.Future[None]:
        """Queue a chunk; the future resolves when it is committed (or fails with the reason).

        `urgent`: its senders wait for this commit before they can send more, and the caller has
        batched them already (CoAP's coalescer); the next commit then goes without lingering.
        Lingering there only added its gap to every request: the coalesced calls arrive together
        right after a commit, then nothing comes until the next one."""
        if self._stopping:
            raise Unavailable("historian is shutting down")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        first = not self._queue
        self._queue.append(_Pending(chunk, fut, urgent))
        self._queued += len(chunk)
        self._urgent += urgent
        self._arrived.set()
        if first or self._queued >= self.batch_size:
            # The first chunk starts the flush_interval clock; a full batch goes at once.
            self._wake.set()
        if self._queued >= self.max_pending:
            self._room.clear()
        return fut

    async def submit(self, chunk: SampleColumns, *, urgent: bool = False) -> asyncio.Future[None]:
        """Queue a chunk, waiting for room first: back-pressure instead of unbounded memory."""
        await self._room.wait()
        return self.submit_nowait(chunk, urgent=urgent)

    def unmerged(self, tag_id: int, width: int) -> rollup.Rollup:
        """This tag's deltas not yet in the `width` tier table, at a width that divides it."""
        self._aggregate()
        parts = [r for r in self._fast if len(r)]
        if width >= COARSE_BASE and parts:
            parts = [rollup.merge(rollup.merge(parts), COARSE_BASE)]
        if width >= COARSE_BASE:
            parts = [r for r in self._coarse if len(r)] + parts
        if not parts:
            return rollup.Rollup.empty()
        r = rollup.Rollup.concat(parts)
        return _only(r, r.tag_id == tag_id)

    async def read_rollup(self, width: int, tag_id: int, start: float, end: float) -> rollup.Rollup:
        """The tier as stored plus this tag's deltas still in memory, each delta counted once.

        A merge moves deltas from memory into the tables; a read of the tables that overlapped
        it may have seen them there or not, so it is done again (a seqlock). Merges come every
        few seconds, so one retry is rare; a read that keeps losing holds the merges off."""
        for attempt in range(READ_TRIES + 1):
            holding = attempt == READ_TRIES
            if holding:
                self._readers_holding += 1
                self._readers_gone.clear()
            try:
                while not self._merge_idle.is_set():  # woken by one merge's end, another may have begun
                    await self._merge_idle.wait()
                seq = self._merge_seq
                stored = await self.store.read_rollup(width, tag_id, start, end)
                if seq % 2 == 0 and seq == self._merge_seq:
                    break
            finally:
                if holding:
                    self._readers_holding -= 1
                    if not self._readers_holding:
                        self._readers_gone.set()
        fresh = self.unmerged(tag_id, width)
        if not len(fresh):
            return stored
        fresh = rollup.merge(fresh, width)
        fresh = _only(fresh, (fresh.bucket >= start // width * width) & (fresh.bucket < end))
        return rollup.merge([stored, fresh])

    @property
    def _deltas(self) -> bool:
        """Rollup deltas the tier tables don't have yet."""
        return bool(self._fast or self._coarse or self._unaggregated)

    def _aggregate(self) -> None:
        """Committed batches into finest-tier deltas (Bad samples are stored, not aggregated)."""
        if not self._unaggregated:
            return
        usable = SampleColumns.concat(self._unaggregated).usable()
        self._fast.append(rollup.aggregate(usable.tag_id, usable.ts, usable.value, rollup.TIERS[0]))
        self._unaggregated, self._unaggregated_n = [], 0

    def forget(self, tag_ids: list[int]) -> None:
        """Drop queued samples and unmerged rollups of deleted tags (their ids never return)."""
        gone = np.asarray(tag_ids, dtype=np.int64)
        for item in self._queue:
            keep = ~np.isin(item.chunk.tag_id, gone)
            if not keep.all():
                c = item.chunk
                self._queued -= int((~keep).sum())
                item.chunk = SampleColumns(c.tag_id[keep], c.ts[keep], c.value[keep], c.quality[keep])
        self._aggregate()
        self._fast = [_only(r, ~np.isin(r.tag_id, gone)) for r in self._fast]
        self._coarse = [_only(r, ~np.isin(r.tag_id, gone)) for r in self._coarse]

    @property
    def queued(self) -> int:
        return self._queued

    async def _run(self) -> None:
        while True:
            if not self._queue and not self._stopping:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.rollup_interval)
                except TimeoutError:
                    pass
            elif self._queued < self.batch_size and not self._stopping:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.flush_interval)
                except TimeoutError:
                    pass
            self._wake.clear()
            if not self._urgent and time.monotonic() - self._last_flush_end < self.linger:
                await self._linger()
            gap = self.commit_spacing - (time.monotonic() - self._last_flush_end)
            if gap > 0 and self._queue and self._queued < self.batch_size and not self._stopping:
                with contextlib.suppress(TimeoutError):  # a full batch or stop() sets _wake
                    await asyncio.wait_for(self._wake.wait(), gap)
            if self._queue:
                await self._flush()
                self._last_flush_end = time.monotonic()
            now = time.monotonic()
            merged = True
            # A reader holding merges off (see `read_rollup`) postpones this one, not the commits.
            holding = not self._readers_gone.is_set() and not self._stopping
            if self._deltas and not holding and (self._stopping or now - self._last_rollup >= self.rollup_interval):
                merged = await self._merge_rollups(full=self._stopping or now - self._last_full >= self.coarse_interval)
            # Stop only after a full merge (a fast one may have been under way when stop() came),
            # or when the database refuses it: the pending windows then let recovery finish the job.
            if self._stopping and not self._queue and (not self._deltas or not merged):
                return

    async def _linger(self) -> None:
        """Wait for more chunks while they keep coming, up to `linger`; a full batch goes at once."""
        deadline = time.monotonic() + self.linger
        while self._queue and self._queued < self.batch_size and not self._stopping and not self._urgent:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), min(self.linger_gap, left))
            except TimeoutError:
                break  # nothing came within the gap: nobody is adding more
        self._wake.clear()

    def _take(self) -> list[_Pending]:
        """Whole chunks up to about one batch; a chunk is never split across two commits."""
        n = total = 0
        for item in self._queue:
            n += 1
            total += len(item.chunk)
            if total >= self.batch_size:
                break
        taken = self._queue[:n]
        del self._queue[:n]
        self._queued -= total
        self._urgent -= sum(p.urgent for p in taken)
        if self._queued < self.max_pending:
            self._room.set()
        return taken

    async def _flush(self) -> None:
        taken = self._take()
        batch = SampleColumns.concat([p.chunk for p in taken])
        windows = np.unique(np.floor(batch.ts / RECOVERY_WINDOW)).astype(np.int64) * RECOVERY_WINDOW
        new = [w for w in windows.tolist() if w not in self._recorded]
        started = time.perf_counter()
        try:
            await self.store.write(batch, new)
        except Exception as exc:
            self.stats.failures += 1
            log.error("historian write of %d samples failed: %s", len(batch), exc)
            for p in taken:
                if not p.done.done():
                    p.done.set_exception(Unavailable(f"historian write failed: {exc}"))
            return
        self._recorded.update(new)
        self._unaggregated.append(batch)
        self._unaggregated_n += len(batch)
        if self._unaggregated_n >= AGGREGATE_EVERY:
            self._aggregate()
        self.stats.batches += 1
        self.stats.samples += len(batch)
        self.stats.last_flush_s = time.perf_counter() - started
        for p in taken:
            if not p.done.done():
                p.done.set_result(None)

    async def _merge_rollups(self, *, full: bool) -> bool:
        while not self._readers_gone.is_set():  # only when stopping (see _run); before the snapshot
            await self._readers_gone.wait()
        self._aggregate()
        finest = rollup.merge(self._fast) if self._fast else rollup.Rollup.empty()
        minute = rollup.merge(finest, rollup.TIERS[1])
        tiers = {rollup.TIERS[0]: finest, rollup.TIERS[1]: minute}
        coarse = rollup.merge([*self._coarse, rollup.merge(minute, COARSE_BASE)], COARSE_BASE)
        if full:
            tiers |= rollup_tiers(coarse, start=COARSE_BASE)
        self._merge_seq += 1
        self._merge_idle.clear()
        try:
            # Only a full merge clears the recovery windows: until then the coarse tiers lack them.
            await self.store.merge_rollups(tiers, clear_pending=full)
        except Exception as exc:
            # Keep the deltas; the pending windows still cover them if we never succeed.
            self.stats.failures += 1
            log.error("historian rollup merge failed (will retry): %s", exc)
            self._fast = [finest]
            return False
        else:
            self._fast = []
            self._coarse = [] if full else [coarse]
            if full:
                self._recorded.clear()
        finally:
            self._merge_seq += 1
            self._merge_idle.set()
        self._last_rollup = time.monotonic()
        if full:
            self._last_full = self._last_rollup
        self.stats.rollup_merges += 1
        return True


COARSE_BASE = 600
"""The finest of the coarse tiers, merged every `coarse_interval`."""

AGGREGATE_EVERY = 20_000
"""Committed samples held before they are aggregated into finest-tier deltas."""

READ_TRIES = 3
"""Reads of a tier that a merge overlapped before the next one holds merges off."""


def rollup_tiers(base: rollup.Rollup, start: int | None = None) -> dict[int, rollup.Rollup]:
    """The tiers from `start` (default the finest) up, each built from the one below it."""
    first = start if start is not None else rollup.TIERS[0]
    tiers = {first: base}
    previous = base
    for width in rollup.TIERS:
        if width > first:
            previous = rollup.merge(previous, width)
            tiers[width] = previous
    return tiers


def _only(r: rollup.Rollup, keep: npt.NDArray[np.bool_]) -> rollup.Rollup:
    return rollup.Rollup(*(getattr(r, f)[keep] for f in rollup.FIELDS))


async def recover(store: SampleStore) -> int:
    """Recompute rollups of the windows a crash left pending; returns how many windows."""
    windows = await store.pending_windows()
    if not windows:
        return 0
    log.warning("recomputing rollups of %d window(s) left pending by an unclean stop", len(windows))
    affected: dict[int, set[int]] = {w: set() for w in rollup.TIERS if w > RECOVERY_WINDOW}
    for start in windows:
        end = start + RECOVERY_WINDOW
        usable = (await store.read_span(start, end)).usable()
        finest = rollup.aggregate(usable.tag_id, usable.ts, usable.value, rollup.TIERS[0])
        current = finest
        await store.replace_rollups(rollup.TIERS[0], start, end, current)
        for width in rollup.TIERS[1:]:
            if width > RECOVERY_WINDOW:
                affected[width].add(start // width * width)
                continue
            current = rollup.merge(current, width)
            await store.replace_rollups(width, start, end, current)
    finer = RECOVERY_WINDOW
    for width in sorted(affected):
        for bucket in sorted(affected[width]):
            parts = await store.read_rollup_span(finer, bucket, bucket + width)
            await store.replace_rollups(width, bucket, bucket + width, rollup.merge(parts, width))
        finer = width
    await store.clear_pending(windows)
    return len(windows)
