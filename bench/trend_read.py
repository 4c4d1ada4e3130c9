"""Decimated trend reads (HistoryReader, 2,000 points) beside the naive GROUP BY over raw rows.

Builds `--days` (default 30) of 1 Hz history for one tag (2.59M samples) through the real
`HistorianWriter` (which maintains the rollup tiers; `stop()` merges them), then times
`HistoryReader(store, writer).read(tag, end - range, end, 2000)` for ranges from 1 hour to
1 year ending at the newest sample; the 1-year range covers whatever history was built. Each read is
timed end to end (SQL, row conversion, numpy decimation); median of `--repeat` warm runs.

Baseline, same database, same run: the naive min/max per bucket over the raw rows,
    SELECT floor(ts / width) AS b, min(value), max(value) FROM samples
    WHERE tag_id = ? AND ts >= ? AND ts < ? GROUP BY b ORDER BY b
with width = range / 2000 (SQLite: CAST(ts / width AS INTEGER), ts > 0; PostgreSQL: on
date_part('epoch', ts)), through the raw driver, median of `--naive-repeat` runs.

    python -m bench.trend_read [--days 30] [--points 2000] [--repeat 9] [--naive-repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time

import asyncpg
import numpy as np

from bench.common import BACKENDS, Row, Timer, bench_database, fmt_ms, median, publish, wait_for_quiet, yes_no
from server.storage.historian.columns import SampleColumns
from server.storage.historian.postgres_store import PostgresSampleStore
from server.storage.historian.reader import HistoryReader
from server.storage.historian.sqlite_store import SqliteSampleStore
from server.storage.historian.writer import HistorianWriter

TAG = 1
GOAL_S = 0.100
RANGES = [
    ("1 h", 3600),
    ("6 h", 6 * 3600),
    ("1 d", 86400),
    ("7 d", 7 * 86400),
    ("30 d", 30 * 86400),
    ("1 y", 365 * 86400),
]

_NAIVE_SQLITE = (
    "SELECT CAST(ts / ? AS INTEGER) AS b, min(value), max(value) FROM samples "
    "WHERE tag_id = ? AND ts >= ? AND ts < ? GROUP BY b ORDER BY b"
)
_NAIVE_PG = (
    "SELECT floor(date_part('epoch', ts) / $4) AS b, min(value), max(value) FROM samples "
    "WHERE tag_id = $1 AND ts >= to_timestamp($2) AND ts < to_timestamp($3) GROUP BY b ORDER BY b"
)


def history(days: int, end: float, day: int) -> SampleColumns:
    """One day of 1 Hz samples (`day` counts from the oldest): a daily cycle plus noise."""
    n = 86400
    start = end - days * 86400 + day * 86400
    ts = start + np.arange(n, dtype=np.float64)
    rng = np.random.default_rng(day)
    value = 50 + 20 * np.sin(ts * (2 * np.pi / 86400)) + rng.normal(0, 1, n)
    return SampleColumns(np.full(n, TAG, np.int64), ts, value, np.zeros(n, np.int16))


async def build(backend: str, dsn: str, days: int, end: float) -> tuple[object, HistorianWriter, float]:
    store: SqliteSampleStore | PostgresSampleStore
    store = PostgresSampleStore(dsn) if backend == "postgresql" else SqliteSampleStore(dsn)
    await store.start()
    writer = HistorianWriter(store, batch_size=86_400, rollup_interval=30.0)
    await writer.start()
    t0 = time.perf_counter()
    futures = [await writer.submit(history(days, end, d)) for d in range(days)]
    await asyncio.gather(*futures)
    await writer.stop()  # merges every rollup delta into the tier tables
    built = time.perf_counter() - t0
    count = await store.count([TAG])
    assert count == days * 86400, count
    return store, writer, built


async def time_reader(
    reader: HistoryReader, start: float, end: float, points: int, repeat: int
) -> tuple[list[float], str]:
    await reader.read(TAG, start, end, points)  # warm-up
    times = []
    for _ in range(repeat):
        with Timer() as t:
            res = await reader.read(TAG, start, end, points)
        times.append(t.elapsed)
    n = len(res.raw) if res.raw is not None else len(res.decimated.t)  # type: ignore[union-attr]
    assert n <= points, n
    return times, f"{res.mode}, {n} pts, {res.resolution_s or 0:.0f} s"


async def time_naive(backend: str, dsn: str, start: float, end: float, points: int, repeat: int) -> list[float]:
    width = (end - start) / points
    times = []
    if backend == "sqlite":
        c = sqlite3.connect(dsn)
        try:
            for _ in range(repeat):
                with Timer() as t:
                    rows = c.execute(_NAIVE_SQLITE, (width, TAG, start, end)).fetchall()
                times.append(t.elapsed)
        finally:
            c.close()
    else:
        conn = await asyncpg.connect(dsn)
        try:
            for _ in range(repeat):
                with Timer() as t:
                    rows = await conn.fetch(_NAIVE_PG, TAG, start, end, width)
                times.append(t.elapsed)
        finally:
            await conn.close()
    assert 0 < len(rows) <= points + 1, len(rows)
    return times


async def bench_backend(backend: str, a: argparse.Namespace) -> tuple[list[Row], list[str]]:
    end = float(int(time.time()) // 3600 * 3600)
    rows, notes = [], []
    async with bench_database(backend) as db:
        print(
            f"trend read on {backend}: building {a.days} days of 1 Hz history ({a.days * 86400:,} samples)", flush=True
        )
        store, writer, built = await build(backend, db.dsn, a.days, end)
        if backend == "postgresql":
            conn = await asyncpg.connect(db.dsn)
            await conn.execute("VACUUM ANALYZE")
            await conn.close()
        notes.append(
            f"{backend}: history built through the writer in {built:.1f} s ({a.days * 86400 / built:,.0f} samples/s)."
        )
        notes.append(f"{backend}: {wait_for_quiet()}.")
        reader = HistoryReader(store, writer)  # type: ignore[arg-type]
        for label, span in RANGES:
            start = end - span
            ours, how = await time_reader(reader, start, end, a.points, a.repeat)
            naive = await time_naive(backend, db.dsn, start, end, a.points, a.naive_repeat)
            m, b = median(ours), median(naive)
            print(
                f"  {label:>5}: reader median {m * 1000:8.1f} ms (max {max(ours) * 1000:.1f}; {how}); "
                f"naive median {b * 1000:8.1f} ms",
                flush=True,
            )
            rows.append(
                Row(
                    backend,
                    f"decimated read, {label} range, {a.points} pts ({how})",
                    f"{fmt_ms(m)} (max {max(ours) * 1000:.0f})",
                    f"{fmt_ms(b)} (naive GROUP BY)",
                    f"{m / b:.3f}",
                    "< 100 ms",
                    yes_no(m < GOAL_S),
                )  # fmt: skip
            )
        await store.close()  # type: ignore[attr-defined]
    return rows, notes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", type=int, default=30, help="days of 1 Hz history to build (default 30 = 2.59M samples)")
    p.add_argument("--points", type=int, default=2000, help="max points per read (default 2000)")
    p.add_argument("--repeat", type=int, default=9, help="timed reads per range after one warm-up (default 9)")
    p.add_argument("--naive-repeat", type=int, default=3, help="timed naive queries per range (default 3)")
    p.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    p.add_argument("--no-doc", action="store_true", help="print only, do not append to docs/benchmarks.md")
    a = p.parse_args(argv)
    backends = BACKENDS if a.backend == "both" else (a.backend,)
    rows: list[Row] = []
    notes = [
        f"One tag, {a.days} days of 1 Hz history ({a.days * 86400:,} samples) written through `HistorianWriter` "
        "(rollups merged by `stop()` before timing). Measured: `HistoryReader.read(tag, end - range, end, "
        f"{a.points})`, end to end, median of {a.repeat} warm reads; ranges end at the newest sample, the 1 y range "
        f"covers the {a.days} days built. Baseline: the naive `GROUP BY floor(ts / width)` min/max over the raw rows "
        f"(width = range / {a.points}) through the raw driver, median of {a.naive_repeat}. Ratio = reader ÷ naive.",
    ]
    for backend in backends:
        r, n = asyncio.run(bench_backend(backend, a))
        rows += r
        notes += n
    cmd = "python -m bench.trend_read " + " ".join(argv if argv is not None else sys.argv[1:])
    publish("Decimated trend read", rows, notes, cmd.strip(), write=not a.no_doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
