"""SQLite's staging table: commits land in `samples_recent` and move into `samples` in bulk.
Every read sees both tables as one, before, during and after a move, and nothing staged is
lost to a stop, clean or not."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from server.storage.database import Database
from server.storage.historian.columns import SampleColumns
from server.storage.historian.sqlite_store import SqliteSampleStore

T0 = 1_767_225_600.0
NEVER = 1e9


def chunk(tag: int, ts: list[float] | np.ndarray, value: float = 1.0) -> SampleColumns:
    n = len(ts)
    return SampleColumns(
        np.full(n, tag, np.int64), np.asarray(ts, np.float64), np.full(n, value), np.zeros(n, np.int16)
    )


def rows_in(path: Path) -> tuple[int, int]:
    """(settled, staged) row counts, read beside the store."""
    with sqlite3.connect(path) as c:
        return (c.execute("SELECT count(*) FROM samples").fetchone()[0],
                c.execute("SELECT count(*) FROM samples_recent").fetchone()[0])  # fmt: skip


@pytest.fixture
async def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "staging.db"
    db = Database(f"sqlite:///{path}")
    await db.migrate()
    await db.dispose()
    return path


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteSampleStore]:
    s = SqliteSampleStore(str(db_path), settle_rows=1_000_000, settle_s=NEVER)
    await s.start()
    yield s
    await s.close()


async def moved(store: SqliteSampleStore) -> None:
    """Wait until a move the last write started has run: the writer thread runs jobs in order."""
    await store.pending_windows()


async def test_staged_and_settled_samples_read_as_one(store: SqliteSampleStore, db_path: Path) -> None:
    await store.write(chunk(1, T0 + np.arange(100), 1.0), [])
    await store.write(chunk(2, [T0 + 5.0], 2.0), [])
    assert rows_in(db_path) == (0, 101)
    assert await store.count([1]) == 100 and await store.count([1, 2]) == 101
    assert await store.latest(1) == (T0 + 99, 1.0, 0)

    store.settle_s = 0  # the next write moves everything after its commit
    await store.write(chunk(1, T0 + 100 + np.arange(50), 1.0), [])
    await moved(store)
    assert rows_in(db_path) == (151, 0)

    store.settle_s = NEVER  # staged again: newer samples, and late ones between settled ones
    await store.write(chunk(1, T0 + 150 + np.arange(30), 3.0), [])
    await store.write(chunk(1, T0 + 10.5 + np.arange(5), 4.0), [])
    await store.write(chunk(3, [T0 + 1.0], 5.0), [])
    assert rows_in(db_path) == (151, 36)

    everything = np.sort(np.concatenate([T0 + np.arange(180), T0 + 10.5 + np.arange(5)]))
    raw = await store.read_raw(1, T0, T0 + 1000, 10_000)
    assert raw.ts.tolist() == everything.tolist()  # in time order across both tables, no duplicate
    first = await store.read_raw(1, T0, T0 + 1000, 20)
    assert first.ts.tolist() == everything[:20].tolist() and 4.0 in first.value.tolist()
    middle = await store.read_raw(1, T0 + 140, T0 + 160, 100)
    assert middle.ts.tolist() == (T0 + 140 + np.arange(20)).tolist()

    assert await store.latest(1) == (T0 + 179, 3.0, 0)
    assert await store.latest(2) == (T0 + 5.0, 2.0, 0)  # settled only
    assert await store.latest_many([1, 2, 3, 4]) == {
        1: (T0 + 179, 3.0, 0), 2: (T0 + 5.0, 2.0, 0), 3: (T0 + 1.0, 5.0, 0)
    }  # fmt: skip
    assert await store.count([1, 2, 3]) == 187
    span = await store.read_span(T0, T0 + 11)
    assert sorted(zip(span.tag_id.tolist(), span.ts.tolist(), strict=True)) == sorted(
        [(1, T0 + k) for k in range(11)] + [(1, T0 + 10.5), (2, T0 + 5.0), (3, T0 + 1.0)]
    )

    await store.delete_tags([1])  # from both tables
    assert await store.count([1]) == 0 and await store.latest(1) is None
    assert rows_in(db_path) == (1, 1)


async def test_a_move_is_due_by_rows_or_by_age(store: SqliteSampleStore, db_path: Path) -> None:
    store.settle_rows = 100
    await store.write(chunk(1, T0 + np.arange(60)), [])
    await moved(store)
    assert rows_in(db_path) == (0, 60)
    await store.write(chunk(1, T0 + 60 + np.arange(60)), [])  # 120 staged >= 100
    await moved(store)
    assert rows_in(db_path) == (120, 0)

    await store.write(chunk(1, T0 + 120 + np.arange(150)), [])  # a batch as big as a move skips the stage
    assert rows_in(db_path) == (270, 0)

    store.settle_s = 0.2
    await store.write(chunk(1, [T0 + 500.0]), [])
    await moved(store)
    assert rows_in(db_path) == (270, 1)  # young: stays staged
    await asyncio.sleep(0.25)
    await store.write(chunk(1, [T0 + 501.0]), [])
    await moved(store)
    assert rows_in(db_path) == (272, 0)
    assert await store.count([1]) == 272


async def test_stops_clean_or_not_lose_nothing_staged(db_path: Path) -> None:
    s = SqliteSampleStore(str(db_path), settle_rows=1_000_000, settle_s=NEVER)
    await s.start()
    await s.write(chunk(1, T0 + np.arange(10)), [])
    assert rows_in(db_path) == (0, 10)
    await s.close()  # a clean stop moves them
    assert rows_in(db_path) == (10, 0)

    with sqlite3.connect(db_path) as c:  # what a crash leaves: committed, still staged
        c.executemany(
            "INSERT INTO samples_recent (tag_id, ts, value, quality) VALUES (?, ?, ?, 0)",
            [(1, T0 + 10 + k, 2.0) for k in range(5)],
        )
    s = SqliteSampleStore(str(db_path))
    await s.start()
    try:
        assert rows_in(db_path) == (15, 0)
        assert await s.count([1]) == 15
    finally:
        await s.close()


async def test_readers_never_see_a_move_half_done(store: SqliteSampleStore) -> None:
    """Each read is one statement over both tables: during a move it sees the rows in one table
    or the other, never in both or neither, so the count only ever grows."""
    store.settle_s = 0  # every write moves what it staged
    written: list[int] = [0]
    counts: list[int] = []

    async def write() -> None:
        for k in range(60):
            await store.write(chunk(1, T0 + k * 100 + np.arange(97)), [])
            written[0] += 97

    async def read() -> None:
        while written[0] < 60 * 97:
            counts.append(await store.count([1]))

    await asyncio.gather(write(), read())
    await moved(store)
    counts.append(await store.count([1]))
    assert len(counts) > 20
    assert all(a <= b for a, b in zip(counts, counts[1:], strict=False)), counts
    assert all(c % 97 == 0 for c in counts) and counts[-1] == 60 * 97


@pytest.mark.parametrize("n", [1, 127, 128, 129, 259, 10_000 + 5])
async def test_every_value_comes_back_bit_for_bit(store: SqliteSampleStore, n: int) -> None:
    """Staged or straight into `samples` (the largest size), whatever the batch's size."""
    rng = np.random.default_rng(n)
    ts = T0 + np.cumsum(rng.uniform(0.001, 1.0, n))
    batch = SampleColumns(np.full(n, 9, np.int64), ts, rng.normal(0, 1e6, n), rng.integers(0, 3, n).astype(np.int16))
    store.settle_rows = 10_000  # the largest size goes straight into `samples`
    await store.write(batch, [])
    raw = await store.read_raw(9, T0, T0 + 1e6, n + 1)
    assert raw.ts.tolist() == ts.tolist()
    assert raw.value.tolist() == batch.value.tolist() and raw.quality.tolist() == batch.quality.tolist()
