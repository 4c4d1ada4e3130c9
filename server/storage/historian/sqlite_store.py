"""SQLite historian backend: stdlib sqlite3 on dedicated threads, big transactions, WAL.

Commits go to `samples_recent`, which has no index, and the writer moves what piled up there
into `samples` once it holds `settle_rows` rows or is `settle_s` old. In WAL mode every commit
writes each page it changed, whole: with one index leaf per tag, a commit of 200 tags' samples
wrote about 200 pages however few samples it held. Readers see both tables in one statement
(one snapshot), so a move never shows a sample twice or hides it."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import numpy as np

from server.domain.rollup import TIERS, Rollup
from server.storage.historian.columns import RawSeries, SampleColumns
from server.storage.schema import rollup_table_name

T = TypeVar("T")
log = logging.getLogger(__name__)

_COLS = "tag_id, ts, value, quality"
_INSERT = "INSERT INTO {t} (tag_id, ts, value, quality) VALUES (?, ?, ?, ?)"


def over_samples(select: str) -> str:
    """`select` (with `{t}` for the table) over `samples` and `samples_recent`, as one compound
    statement: one snapshot, and SQLite merges two ordered arms without sorting the first. Its
    parameters come twice, once per table. Also for tools that read the file directly."""
    return f"{select.format(t='samples')} UNION ALL {select.format(t='samples_recent')}"


_RAW = (
    over_samples("SELECT ts, value, quality FROM {t} WHERE tag_id = ? AND ts >= ? AND ts < ?") + " ORDER BY ts LIMIT ?"
)
_LATEST = over_samples("SELECT ts, value, quality FROM {t} WHERE tag_id = ?") + " ORDER BY ts DESC LIMIT 1"
_SPAN = over_samples(f"SELECT {_COLS} FROM {{t}} WHERE ts >= ? AND ts < ?")

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


_PENDING = "INSERT INTO rollup_pending (min_ts, max_ts) VALUES (?, ?)"


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

    def __init__(self, path: str, *, settle_rows: int = 10_000, settle_s: float = 1.0) -> None:
        self._path = path
        self.settle_rows, self.settle_s = settle_rows, settle_s
        self._staged = 0
        """Rows in `samples_recent` since the last move (writer thread only)."""
        self._staged_since = 0.0
        self._settling = False
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
        await self._w(self._settle)  # what an unclean stop left staged

    async def close(self) -> None:
        try:
            await self._w(self._settle)
        except sqlite3.Error as exc:  # the rows stay staged, and readers see them there
            log.error("historian: could not move staged samples at shutdown: %s", exc)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()

    async def write(self, batch: SampleColumns, windows: list[int]) -> None:
        # A batch as big as a move goes straight into `samples`: it amortises its index pages itself.
        direct = len(batch) >= self.settle_rows

        def run(c: sqlite3.Connection) -> bool:
            # Row tuples are built here, on the writer thread, not on the event loop.
            columns = (batch.tag_id.tolist(), batch.ts.tolist(), batch.value.tolist(), batch.quality.tolist())
            rows = zip(*columns, strict=True)
            with _transaction(c):
                c.executemany(_INSERT.format(t="samples" if direct else "samples_recent"), rows)
                if windows:
                    c.executemany(
                        "INSERT INTO rollup_pending (min_ts, max_ts) VALUES (?, ?)", [(w, w) for w in windows]
                    )
            if not direct:
                if not self._staged:
                    self._staged_since = time.monotonic()
                self._staged += len(batch)
            return self._settle_due()

        if await self._w(run) and not self._settling:
            # After the commit, so these senders' answers don't wait for the move; the writer
            # thread runs it before the next write.
            self._settling = True
            asyncio.get_running_loop().run_in_executor(self._writer, self._settle_logged)

    def _settle_due(self) -> bool:
        staged = self._staged
        return staged >= self.settle_rows or (staged > 0 and time.monotonic() - self._staged_since >= self.settle_s)

    def _settle_logged(self) -> None:
        try:
            self._settle(self._conn())
        except sqlite3.Error as exc:  # the rows stay staged (and visible); the next write retries
            log.error("historian: moving %d staged samples failed (will retry): %s", self._staged, exc)
        finally:
            self._settling = False

    def _settle(self, c: sqlite3.Connection) -> None:
        """Move every staged sample into `samples`, in one transaction (writer thread)."""
        with _transaction(c):
            c.execute(f"INSERT INTO samples ({_COLS}) SELECT {_COLS} FROM samples_recent")
            c.execute("DELETE FROM samples_recent")
        self._staged = 0

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
        rows = await self._r(lambda c: c.execute(_SPAN, (start, end, start, end)).fetchall())
        if not rows:
            return SampleColumns.from_lists([], [], [], [])
        a = np.array(rows, dtype=np.float64)
        return SampleColumns(a[:, 0].astype(np.int64), a[:, 1], a[:, 2], a[:, 3].astype(np.int16))

    async def read_rollup_span(self, width: int, start: int, end: int) -> Rollup:
        sql = f"SELECT {_ROLLUP_COLS} FROM {rollup_table_name(width)} WHERE bucket >= ? AND bucket < ?"
        return _rollup_from_rows(await self._r(lambda c: c.execute(sql, (start, end)).fetchall()))

    async def read_raw(self, tag_id: int, start: float, end: float, limit: int) -> RawSeries:
        args = (tag_id, start, end, tag_id, start, end, limit)
        rows = await self._r(lambda c: c.execute(_RAW, args).fetchall())
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
        row = await self._r(lambda c: c.execute(_LATEST, (tag_id, tag_id)).fetchone())
        return (float(row[0]), float(row[1]), int(row[2])) if row else None

    async def latest_many(self, tag_ids: list[int]) -> dict[int, tuple[float, float, int]]:
        indexed = "SELECT ts, value, quality FROM samples WHERE tag_id = ? ORDER BY ts DESC LIMIT 1"
        # SQLite gives a bare column of an aggregate query the values of the row that max() picked.
        staged = "SELECT tag_id, max(ts), value, quality FROM samples_recent GROUP BY tag_id"

        def run(c: sqlite3.Connection) -> dict[int, tuple[float, float, int]]:
            out: dict[int, tuple[float, float, int]] = {}
            c.execute("BEGIN")  # one snapshot for both tables: a move in between changes nothing
            try:
                recent = {int(r[0]): (float(r[1]), float(r[2]), int(r[3])) for r in c.execute(staged)}
                for tag_id in tag_ids:  # one index probe each, all on the reader thread
                    row = c.execute(indexed, (tag_id,)).fetchone()
                    if row:
                        out[tag_id] = (float(row[0]), float(row[1]), int(row[2]))
                    newer = recent.get(tag_id)
                    if newer and (tag_id not in out or newer[0] >= out[tag_id][0]):
                        out[tag_id] = newer
            finally:
                c.execute("COMMIT")
            return out

        return await self._r(run)

    async def count(self, tag_ids: list[int]) -> int:
        marks = ",".join("?" * len(tag_ids)) or "NULL"
        sql = " + ".join(f"(SELECT count(*) FROM {t} WHERE tag_id IN ({marks}))" for t in ("samples", "samples_recent"))
        return int((await self._r(lambda c: c.execute(f"SELECT {sql}", tag_ids * 2).fetchone()))[0])

    async def delete_tags(self, tag_ids: list[int]) -> None:
        params = [(t,) for t in tag_ids]

        def run(c: sqlite3.Connection) -> None:
            with _transaction(c):
                c.executemany("DELETE FROM samples WHERE tag_id = ?", params)
                c.executemany("DELETE FROM samples_recent WHERE tag_id = ?", params)
                for w in TIERS:
                    c.executemany(f"DELETE FROM {rollup_table_name(w)} WHERE tag_id = ?", params)

        await self._w(run)
