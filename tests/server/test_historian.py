"""Historian on both databases: what goes in is stored once, rollups equal the raw maths,
decimated reads stay within N points, and a crash leaves nothing a restart can't repair."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server.app import open_sample_store
from server.domain import rollup
from server.storage.database import Database
from server.storage.historian import writer as writer_module
from server.storage.historian.columns import SampleColumns
from server.storage.historian.reader import HistoryReader
from server.storage.historian.store import SampleStore
from server.storage.historian.writer import HistorianWriter, recover
from tests.support import BACKENDS, database_url

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[SampleStore]:
    db = Database(db_url)
    await db.migrate()
    s = open_sample_store(db)
    await db.dispose()
    await s.start()
    yield s
    await s.close()


def series(tag: int, n: int, start: float = T0, step: float = 1.0, seed: int = 1) -> SampleColumns:
    rng = np.random.default_rng(seed)
    ts = start + np.arange(n) * step
    return SampleColumns(np.full(n, tag, np.int64), ts, rng.normal(50, 10, n), np.zeros(n, np.int16))


async def test_writer_stores_every_sample_exactly_once(store: SampleStore) -> None:
    writer = HistorianWriter(store, batch_size=5_000, flush_interval=0.01, rollup_interval=0.05)
    await writer.start()
    futures = [await writer.submit(series(t, 7_001, seed=t)) for t in (1, 2, 3)]
    for f in futures:
        await f
    await writer.stop()
    assert await store.count([1, 2, 3]) == 21_003
    assert await store.count([4]) == 0
    assert await store.pending_windows() == []


async def test_rollups_match_raw_maths_in_every_tier(store: SampleStore) -> None:
    data = series(7, 3 * 3600 + 17, step=1.0)
    data.quality[::97] = 2  # Bad samples are stored but never averaged in
    writer = HistorianWriter(store, batch_size=2_000, flush_interval=0.01, rollup_interval=0.05)
    await writer.start()
    # Out of order and in pieces, as field devices deliver.
    for idx in np.array_split(np.random.default_rng(3).permutation(len(data)), 9):
        idx.sort()
        await writer.submit(SampleColumns(data.tag_id[idx], data.ts[idx], data.value[idx], data.quality[idx]))
    await writer.stop()
    good = data.quality != 2
    for width in rollup.TIERS:
        stored = await store.read_rollup(width, 7, T0 - 86_400, T0 + 86_400)
        buckets = np.floor(data.ts[good] / width) * width
        for i, b in enumerate(stored.bucket.tolist()):
            sel = data.value[good][buckets == b]
            assert stored.count[i] == len(sel)
            assert stored.vmin[i] == pytest.approx(sel.min())
            assert stored.vmax[i] == pytest.approx(sel.max())
            assert stored.vsum[i] == pytest.approx(sel.sum())
        assert int(stored.count.sum()) == int(good.sum())


@pytest.mark.parametrize("span", [600, 3 * 3600, 2 * 86_400])
async def test_decimated_read_is_bounded_and_keeps_extremes(store: SampleStore, span: int) -> None:
    n = min(span, 2 * 86_400)
    step = span / n
    data = series(9, n, step=step)
    data.value[n // 3] = 1e6  # a spike a trend must never hide
    writer = HistorianWriter(store, batch_size=50_000, flush_interval=0.01, rollup_interval=0.05)
    await writer.start()
    await writer.submit(data)
    await writer.stop()
    reader = HistoryReader(store, writer)
    result = await reader.read(9, T0, T0 + span, 200)
    assert result.mode == "decimated"
    dec = result.decimated
    assert dec is not None
    assert 1 < len(dec.t) <= 200
    assert dec.vmax.max() == 1e6
    assert dec.vmin.min() == pytest.approx(np.delete(data.value, n // 3).min())
    assert int(dec.count.sum()) == n
    raw = await reader.read(9, T0, T0 + 100 * step, 1_000)
    assert raw.mode == "raw" and raw.raw is not None and len(raw.raw) == 100


async def test_decimated_read_includes_rollups_not_yet_merged(store: SampleStore) -> None:
    writer = HistorianWriter(store, batch_size=1_000, flush_interval=0.01, rollup_interval=3600)
    await writer.start()
    await (await writer.submit(series(5, 20_000)))
    reader = HistoryReader(store, writer)
    result = await reader.read(5, T0, T0 + 20_000, 100)
    assert result.decimated is not None and int(result.decimated.count.sum()) == 20_000
    await writer.stop()


class _StaleRead:
    """A store whose first tier read returns what it saw, but only once `gate` is open: the
    writer merges its deltas into the tables in between."""

    def __init__(self, inner: SampleStore) -> None:
        self.inner, self.gate, self.reads = inner, asyncio.Event(), 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def read_rollup(self, width: int, tag_id: int, start: float, end: float) -> rollup.Rollup:
        self.reads += 1
        seen = await self.inner.read_rollup(width, tag_id, start, end)
        if self.reads == 1:
            await self.gate.wait()
        return seen


async def test_a_tier_read_that_a_merge_overlaps_counts_every_sample_once(store: SampleStore) -> None:
    slow = _StaleRead(store)
    writer = HistorianWriter(slow, batch_size=1_000, flush_interval=0.01, rollup_interval=3600)
    await writer.start()
    await (await writer.submit(series(5, 5_000)))
    read = asyncio.create_task(writer.read_rollup(60, 5, T0, T0 + 5_000))
    while not slow.reads:
        await asyncio.sleep(0.001)
    await writer.stop()  # merges the deltas while the read holds the tables' old state
    slow.gate.set()
    assert int((await read).count.sum()) == 5_000  # read again: not 0 (missed), not 10,000
    assert slow.reads == 2


async def test_a_reader_holding_merges_off_does_not_hold_commits(
    store: SampleStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "READ_TRIES", 0)  # the first read already holds merges off
    slow = _StaleRead(store)
    writer = HistorianWriter(slow, flush_interval=0.001, rollup_interval=0.01)  # type: ignore[arg-type]
    await writer.start()
    read = asyncio.create_task(writer.read_rollup(60, 5, T0, T0 + 5_000))
    while not slow.reads:
        await asyncio.sleep(0.001)
    merges = writer.stats.rollup_merges
    for k in range(3):  # commits go on while the read holds; merges wait for it
        await asyncio.wait_for(await writer.submit(series(5, 100, start=T0 + 100 * k)), 5)
        await asyncio.sleep(0.02)
    assert writer.stats.rollup_merges == merges and writer.stats.batches == 3
    slow.gate.set()
    assert int((await read).count.sum()) == 300  # no merge ran during it: all in memory, once
    async with asyncio.timeout(5):
        while writer.stats.rollup_merges == merges:  # and the merges resume
            await asyncio.sleep(0.005)
    await writer.stop()
    assert int((await store.read_rollup(600, 5, T0, T0 + 5_000)).count.sum()) == 300


async def test_tier_reads_during_ingest_and_merges_never_miss_or_double(store: SampleStore) -> None:
    writer = HistorianWriter(store, batch_size=500, flush_interval=0.005, rollup_interval=0.01, coarse_interval=0.03)
    await writer.start()
    acked = 0
    sent = 0

    async def feed() -> None:
        nonlocal acked, sent
        for k in range(60):
            sent += 200
            await (await writer.submit(series(6, 200, start=T0 + k * 200, seed=k)))
            acked += 200

    feeding = asyncio.create_task(feed())
    reads = 0
    while not feeding.done():
        before = acked
        for width in (10, 600):
            got = int((await writer.read_rollup(width, 6, T0, T0 + 86_400)).count.sum())
            assert before <= got <= sent, (width, before, got, sent)
        reads += 1
    await feeding
    await writer.stop()
    assert reads > 5 and writer.stats.rollup_merges > 5
    assert int((await store.read_rollup(600, 6, T0, T0 + 86_400)).count.sum()) == 12_000


class _Recording:
    """A store that notes the recovery windows each commit records."""

    def __init__(self, inner: SampleStore) -> None:
        self.inner = inner
        self.recorded: list[list[int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def write(self, batch: SampleColumns, windows: list[int]) -> None:
        self.recorded.append(windows)
        await self.inner.write(batch, windows)


async def test_a_window_is_recorded_once_until_a_full_merge_clears_it(store: SampleStore) -> None:
    rec = _Recording(store)
    writer = HistorianWriter(rec, flush_interval=0.001, rollup_interval=3600)
    await writer.start()
    for start in (T0, T0 + 100, T0 + 600):
        await (await writer.submit(series(3, 10, start=start)))
    assert rec.recorded == [[T0], [], [T0 + 600]]  # the second commit is the samples alone
    assert await store.pending_windows() == [T0, T0 + 600]  # what recovery would recompute
    await writer.stop()
    assert await store.pending_windows() == []

    writer = HistorianWriter(rec, flush_interval=0.001, rollup_interval=0.01, coarse_interval=0.01)
    await writer.start()
    await (await writer.submit(series(3, 10, start=T0 + 1200)))
    async with asyncio.timeout(10):
        while await store.pending_windows():  # until a full merge has cleared the window
            await asyncio.sleep(0.005)
    await (await writer.submit(series(3, 10, start=T0 + 1210)))
    assert rec.recorded[-2:] == [[T0 + 1200], [T0 + 1200]]  # recorded again after the clear
    await writer.stop()


class _Timed:
    """A store that notes when each commit starts and ends."""

    def __init__(self, inner: SampleStore) -> None:
        self.inner = inner
        self.commits: list[tuple[float, float]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def write(self, batch: SampleColumns, windows: list[int]) -> None:
        began = time.monotonic()
        await self.inner.write(batch, windows)
        self.commits.append((began, time.monotonic()))


async def test_under_load_commits_are_spaced_and_an_idle_writer_commits_at_once(store: SampleStore) -> None:
    timed = _Timed(store)
    writer = HistorianWriter(timed, flush_interval=0.001, rollup_interval=3600, commit_spacing=0.2)
    await writer.start()
    await asyncio.sleep(0.1)
    sent = time.monotonic()
    await (await writer.submit(series(2, 10), urgent=True))
    assert timed.commits[0][0] - sent < 0.1  # idle: at once
    # Callers that wait for their commit, each sending again at once (CoAP's coalesced calls).
    for k in range(1, 4):
        await (await writer.submit(series(2, 10, start=T0 + 10 * k), urgent=True))
    starts_after_last_end = [b - a[1] for a, (b, _) in zip(timed.commits, timed.commits[1:], strict=False)]
    assert len(starts_after_last_end) == 3 and min(starts_after_last_end) >= 0.19, starts_after_last_end
    # A full batch does not wait.
    full = await writer.submit(series(2, writer.batch_size, start=T0 + 100))
    began = time.monotonic()
    await full
    assert timed.commits[-1][0] - began < 0.1
    await writer.stop()
    assert await store.count([2]) == 40 + writer.batch_size


async def test_recovery_rebuilds_rollups_of_windows_left_pending(store: SampleStore) -> None:
    data = series(11, 4 * 3600)
    # Commit samples but "crash" before the rollup merge: only the pending windows survive.
    windows = sorted({int(w) for w in np.floor(data.ts / 600) * 600})
    await store.write(data, windows)
    assert await store.pending_windows() == windows
    assert await recover(store) == len(windows)
    assert await store.pending_windows() == []
    for width in rollup.TIERS:
        stored = await store.read_rollup(width, 11, T0 - 86_400, T0 + 86_400)
        assert int(stored.count.sum()) == len(data), width
        assert stored.vmax.max() == pytest.approx(data.value.max())


async def test_latest_and_delete(store: SampleStore) -> None:
    writer = HistorianWriter(store, flush_interval=0.01, rollup_interval=0.05)
    await writer.start()
    await (await writer.submit(series(21, 50)))
    await writer.stop()
    latest = await store.latest(21)
    assert latest is not None and latest[0] == pytest.approx(T0 + 49)
    await store.delete_tags([21])
    assert await store.count([21]) == 0
    assert await store.latest(21) is None
    assert len(await store.read_rollup(60, 21, T0, T0 + 3600)) == 0


async def test_a_lone_sample_does_not_wait_for_the_rollup_timer(store: SampleStore) -> None:
    import asyncio

    writer = HistorianWriter(store, batch_size=10_000, flush_interval=0.01, rollup_interval=3600)
    await writer.start()
    done = await writer.submit(series(1, 1))
    await asyncio.wait_for(done, 10)  # it used to sleep until the (here hour-long) rollup timer
    await writer.stop()
    assert await store.count([1]) == 1


async def test_an_urgent_chunk_ends_the_linger(store: SampleStore) -> None:
    """Right after a commit the writer lingers for more chunks; a chunk whose senders wait for
    their answer (CoAP's coalescer) goes at once, and takes the lingering ones with it."""
    import asyncio

    writer = HistorianWriter(store, flush_interval=10, rollup_interval=3600, linger=10, linger_gap=10)
    await writer.start()
    await asyncio.wait_for(await writer.submit(series(1, 1)), 5)  # idle: at once
    lingering = await writer.submit(series(2, 1, seed=2))  # just after a commit: lingers
    await asyncio.sleep(0.3)
    assert not lingering.done()
    urgent = await writer.submit(series(3, 1, seed=3), urgent=True)
    await asyncio.wait_for(asyncio.gather(lingering, urgent), 5)
    again = await writer.submit(series(4, 1, seed=4), urgent=True)  # and again right after a commit
    await asyncio.wait_for(again, 5)
    await writer.stop()
    assert [await store.count([t]) for t in (1, 2, 3, 4)] == [1, 1, 1, 1]


async def test_forgotten_tags_are_never_written(store: SampleStore) -> None:
    writer = HistorianWriter(store, batch_size=10_000, flush_interval=3600, rollup_interval=3600)
    await writer.start()
    await writer.submit(series(1, 10))
    await writer.submit(series(2, 10))
    writer.forget([1])
    assert writer.queued == 10
    await writer.stop()
    assert (await store.count([1]), await store.count([2])) == (0, 10)


async def test_coarse_tiers_lag_in_the_table_but_never_in_a_read(store: SampleStore) -> None:
    """Fast merges leave the 600 s+ tiers to the slower full merge; reads add what is pending,
    and a crash in between is repaired by recovery (the pending windows are still there)."""
    writer = HistorianWriter(store, batch_size=1_000, flush_interval=0.01, rollup_interval=0.01, coarse_interval=3600)
    await writer.start()
    data = series(31, 7200)
    await (await writer.submit(data))
    import asyncio

    while writer.stats.rollup_merges == 0:
        await asyncio.sleep(0.01)
    assert int((await store.read_rollup(60, 31, T0, T0 + 7200)).count.sum()) == 7200
    assert len(await store.read_rollup(3600, 31, T0, T0 + 7200)) == 0  # not merged yet...
    reader = HistoryReader(store, writer)
    result = await reader.read(31, T0, T0 + 30 * 86_400, 100)  # ...but a month-long read sees it all
    assert result.decimated is not None and int(result.decimated.count.sum()) == 7200
    assert await store.pending_windows()  # recovery would still cover the coarse tiers
    assert await recover(store) > 0
    for width in rollup.TIERS:
        assert int((await store.read_rollup(width, 31, T0 - 86_400, T0 + 86_400)).count.sum()) == 7200, width
    writer._fast, writer._coarse = [], []  # the "crashed" writer's memory is gone
    await writer.stop()
