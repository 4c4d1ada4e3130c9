"""SQLite historian backend: stdlib sqlite3 on dedicated threads, big transactions, WAL."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import numpy as np

from server.domain.rollup import TIERS, Rollup
from server.storage.historian.columns import RawSeries, SampleColumns
from server.storage.schema import rollup_table_name

T = TypeVar("T")

_MERGE = """
INSERT INTO {t} (tag_id, bucket, vmin, vmax, vsum, count, first, first_ts, last, last_ts)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (tag_id, bucket) DO UPDATE SET
  vmin = min({t}.vmin, excluded.vmin),
  vmax = max({t}.vmax, excluded.vmax),
  vsum = {t}.vsum + excluded.vsum,
  count = {t}.count + excluded.count,
  first = CASE WHEN excluded.first_ts < {t}.first_ts THEN excluded.first ELSE {t}.first END,
  first_ts = min({t}.first_ts, excluded.first_ts),
  last = CASE WHEN excluded.last_ts >= {t}.last_ts THEN excluded.last ELSE {t}.last END,
  last_ts = max({t}.last_ts, excluded.last_ts)
"""
_ROLLUP_COLS = "tag_id, bucket, vmin, vmax, vsum, count, first, first_ts, last, last_ts"


def _rollup_from_rows(rows: list[tuple[float, ...]]) -> Rollup:
    if not rows:
        return Rollup.empty()
    a = np.array(rows, dtype=np.float64)
    return Rollup(
        a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2], a[:, 3], a[:, 4],
        a[:, 5].astype(np.int64), a[:, 6], a[:, 7], a[:, 8], a[:, 9],
    )  # fmt: skip


@contextmanager
def _transaction(c: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    c.execute("BEGIN IMMEDIATE")
    try:
        yield c
    except BaseException:
        c.execute("ROLLBACK")
        raise
    c.execute("COMMIT")


class SqliteSampleStore:
    """One writer thread (SQLite has one writer anyway) and a small pool of reader threads."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="historian-sqlite-w")
        self._readers = ThreadPoolExecutor(2, thread_name_prefix="historian-sqlite-r")
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    async def _w(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, lambda: fn(self._conn()))

    async def _r(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, lambda: fn(self._conn()))

    async def start(self) -> None:
        await self._w(lambda c: None)

    async def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()

    async def write(self, batch: SampleColumns, windows: list[int]) -> None:
        def run(c: sqlite3.Connection) -> None:
            # Row tuples are built here, on the writer thread, not on the event loop.
            columns = (batch.tag_id.tolist(), batch.ts.tolist(), batch.value.tolist(), batch.quality.tolist())
            rows = zip(*columns, strict=True)
            with _transaction(c):
                c.executemany("INSERT INTO samples (tag_id, ts, value, quality) VALUES (?, ?, ?, ?)", rows)
                c.executemany("INSERT INTO rollup_pending (min_ts, max_ts) VALUES (?, ?)", [(w, w) for w in windows])

        await self._w(run)

    async def merge_rollups(self, tiers: dict[int, Rollup], *, clear_pending: bool = True) -> None:
        def run(c: sqlite3.Connection) -> None:
            # Row tuples are built on the writer thread, not on the event loop.
            prepared = [(_MERGE.format(t=rollup_table_name(w)), r.rows()) for w, r in tiers.items()]
            with _transaction(c):
                for sql, rows in prepared:
                    c.executemany(sql, rows)
                if clear_pending:
                    c.execute("DELETE FROM rollup_pending")

        await self._w(run)

    async def pending_windows(self) -> list[int]:
        rows = await self._w(lambda c: c.execute("SELECT DISTINCT min_ts FROM rollup_pending").fetchall())
        return sorted(int(r[0]) for r in rows)

    async def clear_pending(self, windows: list[int]) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.executemany("DELETE FROM rollup_pending WHERE min_ts = ?", [(w,) for w in windows])

        await self._w(run)

    async def replace_rollups(self, width: int, start: int, end: int, rollup: Rollup) -> None:
        table = rollup_table_name(width)
        rows = rollup.rows()

        def run(c: sqlite3.Connection) -> None:
            with _transaction(c):
                c.execute(f"DELETE FROM {table} WHERE bucket >= ? AND bucket < ?", (start, end))
                c.executemany(f"INSERT INTO {table} ({_ROLLUP_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)

        await self._w(run)

    async def read_span(self, start: float, end: float) -> SampleColumns:
        sql = "SELECT tag_id, ts, value, quality FROM samples WHERE ts >= ? AND ts < ?"
        rows = await self._r(lambda c: c.execute(sql, (start, end)).fetchall())
        if not rows:
            return SampleColumns.from_lists([], [], [], [])
        a = np.array(rows, dtype=np.float64)
        return SampleColumns(a[:, 0].astype(np.int64), a[:, 1], a[:, 2], a[:, 3].astype(np.int16))

    async def read_rollup_span(self, width: int, start: int, end: int) -> Rollup:
        sql = f"SELECT {_ROLLUP_COLS} FROM {rollup_table_name(width)} WHERE bucket >= ? AND bucket < ?"
        return _rollup_from_rows(await self._r(lambda c: c.execute(sql, (start, end)).fetchall()))

    async def read_raw(self, tag_id: int, start: float, end: float, limit: int) -> RawSeries:
        sql = "SELECT ts, value, quality FROM samples WHERE tag_id = ? AND ts >= ? AND ts < ? ORDER BY ts LIMIT ?"
        rows = await self._r(lambda c: c.execute(sql, (tag_id, start, end, limit)).fetchall())
        if not rows:
            return RawSeries(np.empty(0), np.empty(0), np.empty(0, np.int16))
        a = np.array(rows, dtype=np.float64)
        return RawSeries(a[:, 0], a[:, 1], a[:, 2].astype(np.int16))

    async def read_rollup(self, width: int, tag_id: int, start: float, end: float) -> Rollup:
        sql = (
            f"SELECT {_ROLLUP_COLS} FROM {rollup_table_name(width)} "
            "WHERE tag_id = ? AND bucket >= ? AND bucket < ? ORDER BY bucket"
        )
        lo = int(start // width * width)
        return _rollup_from_rows(await self._r(lambda c: c.execute(sql, (tag_id, lo, end)).fetchall()))

    async def latest(self, tag_id: int) -> tuple[float, float, int] | None:
        sql = "SELECT ts, value, quality FROM samples WHERE tag_id = ? ORDER BY ts DESC LIMIT 1"
        row = await self._r(lambda c: c.execute(sql, (tag_id,)).fetchone())
        return (float(row[0]), float(row[1]), int(row[2])) if row else None

    async def latest_many(self, tag_ids: list[int]) -> dict[int, tuple[float, float, int]]:
        sql = "SELECT ts, value, quality FROM samples WHERE tag_id = ? ORDER BY ts DESC LIMIT 1"

        def run(c: sqlite3.Connection) -> dict[int, tuple[float, float, int]]:
            out = {}
            for tag_id in tag_ids:  # one index probe each, all on the reader thread
                row = c.execute(sql, (tag_id,)).fetchone()
                if row:
                    out[tag_id] = (float(row[0]), float(row[1]), int(row[2]))
            return out

        return await self._r(run)

    async def count(self, tag_ids: list[int]) -> int:
        marks = ",".join("?" * len(tag_ids)) or "NULL"
        sql = f"SELECT count(*) FROM samples WHERE tag_id IN ({marks})"
        return int((await self._r(lambda c: c.execute(sql, tag_ids).fetchone()))[0])

    async def delete_tags(self, tag_ids: list[int]) -> None:
        params = [(t,) for t in tag_ids]

        def run(c: sqlite3.Connection) -> None:
            with _transaction(c):
                c.executemany("DELETE FROM samples WHERE tag_id = ?", params)
                for w in TIERS:
                    c.executemany(f"DELETE FROM {rollup_table_name(w)} WHERE tag_id = ?", params)

        await self._w(run)
