"""Historian writer throughput (samples/s) beside the raw driver in the same run.

Per backend and repetition, in a fresh migrated database:
  * baseline: the raw driver into `samples_raw`, a copy of the `samples` table (same columns, same
    (tag_id, ts) index), 10k rows per transaction. SQLite: stdlib sqlite3 `executemany` with the
    store's own pragmas (WAL, synchronous=NORMAL), rows pre-built as tuples. PostgreSQL: asyncpg
    `copy_to_table(format="binary")` of a pre-encoded COPY stream. Encoding is outside the timing,
    so this is the driver/database ceiling.
  * writer: `HistorianWriter(store)` with its defaults (batch 10k, flush 0.2 s, rollups merged every
    5 s), fed `SampleColumns` chunks (default 1,000 samples = 1,000 tags at one second, like one
    ingest request), all submitted without waiting, timed until every future resolved AND
    `writer.stop()` returned (so the final rollup merge is paid for).
Every measurement runs in a fresh database; the order of baseline and writer alternates between
repetitions; the best repetition of each counts.

Two data shapes by default, because the rollup merge costs one upsert per (tag, bucket, tier):
  * 1000x1000: 1,000 tags x 1,000 s at 1 Hz (few tags, long span: a backfill; ~0.12 rollup rows/sample)
  * 100000x10: 100,000 tags x 10 s at 1 Hz (many tags, short span: what a live plant sends in 10 s;
    ~0.5-0.6 rollup rows/sample, and still optimistic, since live the writer merges every 5 s of data)

    python -m bench.writer_throughput [--shape 1000x1000 --shape 100000x10] [--chunk 1000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sqlite3
import sys
import time
from dataclasses import dataclass

import asyncpg
import numpy as np

from bench.common import BACKENDS, Row, bench_database, fmt_rate, publish, wait_for_quiet, yes_no
from server.storage.historian.columns import SampleColumns
from server.storage.historian.postgres_store import PostgresSampleStore
from server.storage.historian.sqlite_store import SqliteSampleStore
from server.storage.historian.writer import HistorianWriter

RAW_BATCH = 10_000
PG_EPOCH = 946_684_800.0  # 2000-01-01 UTC, the origin of binary timestamptz

_COPY_ROW = np.dtype(
    [
        ("n", ">i2"), ("l1", ">i4"), ("tag", ">i4"), ("l2", ">i4"), ("ts", ">i8"),
        ("l3", ">i4"), ("value", ">f8"), ("l4", ">i4"), ("quality", ">i2"),
    ]
)  # fmt: skip


def make_samples(tags: int, seconds: int, seed: int = 1) -> SampleColumns:
    """`tags` tags at 1 Hz for `seconds`, in time order, from yesterday 00:00 UTC (bucket-aligned)."""
    n = tags * seconds
    rng = np.random.default_rng(seed)
    start = float((int(time.time()) // 86400 - 1) * 86400)
    tag_id = np.tile(np.arange(1, tags + 1, dtype=np.int64), seconds)
    ts = np.repeat(start + np.arange(seconds, dtype=np.float64), tags)
    value = rng.normal(50.0, 10.0, n)
    quality = np.zeros(n, np.int16)
    return SampleColumns(tag_id, ts, value, quality)


def chunks(s: SampleColumns, size: int) -> list[SampleColumns]:
    return [
        SampleColumns(s.tag_id[i : i + size], s.ts[i : i + size], s.value[i : i + size], s.quality[i : i + size])
        for i in range(0, len(s), size)
    ]


def encode_copy(s: SampleColumns) -> bytes:
    rows = np.empty(len(s), _COPY_ROW)
    rows["n"], rows["l1"], rows["l2"], rows["l3"], rows["l4"] = 4, 4, 8, 8, 2
    rows["tag"] = s.tag_id
    rows["ts"] = np.rint((s.ts - PG_EPOCH) * 1e6).astype(np.int64)
    rows["value"] = s.value
    rows["quality"] = s.quality
    return b"PGCOPY\n\xff\r\n\x00" + bytes(8) + rows.tobytes() + b"\xff\xff"


# --- baselines -------------------------------------------------------------------------------


def sqlite_make_raw_table(path: str) -> None:
    c = sqlite3.connect(path)
    try:
        for (sql,) in c.execute("SELECT sql FROM sqlite_master WHERE tbl_name = 'samples' AND sql IS NOT NULL"):
            sql = sql.replace("CREATE TABLE samples ", "CREATE TABLE samples_raw ")
            sql = sql.replace("ix_samples_tag_ts ON samples ", "ix_samples_raw_tag_ts ON samples_raw ")
            c.execute(sql)
        c.commit()
    finally:
        c.close()


def sqlite_baseline(path: str, s: SampleColumns) -> float:
    rows = list(zip(s.tag_id.tolist(), s.ts.tolist(), s.value.tolist(), s.quality.tolist(), strict=True))
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")
    gc.collect()
    t0 = time.perf_counter()
    for i in range(0, len(rows), RAW_BATCH):
        c.execute("BEGIN IMMEDIATE")
        c.executemany(
            "INSERT INTO samples_raw (tag_id, ts, value, quality) VALUES (?, ?, ?, ?)", rows[i : i + RAW_BATCH]
        )
        c.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    assert c.execute("SELECT count(*) FROM samples_raw").fetchone()[0] == len(rows)
    c.close()
    return elapsed


async def pg_make_raw_table(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE samples_raw (LIKE samples INCLUDING ALL)")
    finally:
        await conn.close()


async def pg_checkpoint(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def pg_baseline(dsn: str, s: SampleColumns) -> float:
    payloads = [encode_copy(c) for c in chunks(s, RAW_BATCH)]
    cols = ["tag_id", "ts", "value", "quality"]
    await pg_checkpoint(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        gc.collect()
        t0 = time.perf_counter()
        for p in payloads:
            async with conn.transaction():
                await conn.copy_to_table("samples_raw", source=memoryview(p), columns=cols, format="binary")
        elapsed = time.perf_counter() - t0
        assert await conn.fetchval("SELECT count(*) FROM samples_raw") == len(s)
    finally:
        await conn.close()
    return elapsed


# --- the writer under test --------------------------------------------------------------------


async def run_writer(backend: str, dsn: str, s: SampleColumns, chunk: int) -> tuple[float, float, dict[str, object]]:
    """Returns (seconds until all futures resolved, seconds until stop() returned, writer stats)."""
    parts = chunks(s, chunk)
    if backend == "postgresql":
        await pg_checkpoint(dsn)
        store: SqliteSampleStore | PostgresSampleStore = PostgresSampleStore(dsn)
    else:
        store = SqliteSampleStore(dsn)
    await store.start()
    spent = {"write": 0.0, "merge": 0.0}
    _time_method(store, "write", spent, "write")
    _time_method(store, "merge_rollups", spent, "merge")
    writer = HistorianWriter(store)
    await writer.start()
    gc.collect()
    t0 = time.perf_counter()
    futures = [await writer.submit(p) for p in parts]
    await asyncio.gather(*futures)
    committed = time.perf_counter() - t0
    await writer.stop()
    stopped = time.perf_counter() - t0
    count = await store.count(list(range(1, int(s.tag_id.max()) + 1)))
    await store.close()
    assert count == len(s), (count, len(s))
    st = writer.stats
    return committed, stopped, {
        "batches": st.batches, "merges": st.rollup_merges, "failures": st.failures,
        "in store.write": f"{spent['write']:.2f} s", "in store.merge_rollups": f"{spent['merge']:.2f} s",
    }  # fmt: skip


def _time_method(obj: object, name: str, spent: dict[str, float], key: str) -> None:
    """Wrap one coroutine method of this store instance to add up the wall time spent in it."""
    inner = getattr(obj, name)

    async def timed(*args: object, **kwargs: object) -> object:
        t0 = time.perf_counter()
        try:
            return await inner(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - t0

    setattr(obj, name, timed)


@dataclass
class Best:
    raw: float  # seconds, best repetition
    writer: float  # seconds until stop() returned, best repetition
    committed: float  # seconds until the last future resolved, in that repetition
    stats: dict[str, object]


async def bench_backend(backend: str, s: SampleColumns, chunk: int, repeat: int) -> Best:
    best_raw = best_writer = float("inf")
    committed_at_best = 0.0
    stats: dict[str, object] = {}
    for rep in range(repeat):
        order = ("raw", "writer") if rep % 2 == 0 else ("writer", "raw")
        for what in order:
            # Each measurement in a database of its own: neither inherits the other's grown files.
            async with bench_database(backend) as db:
                if what == "raw":
                    if backend == "sqlite":
                        sqlite_make_raw_table(db.dsn)
                        raw = sqlite_baseline(db.dsn, s)
                    else:
                        await pg_make_raw_table(db.dsn)
                        raw = await pg_baseline(db.dsn, s)
                    best_raw = min(best_raw, raw)
                    print(
                        f"  {backend} rep {rep + 1}: raw     {len(s) / raw:>12,.0f} samples/s ({raw:.2f} s)", flush=True
                    )
                else:
                    committed, stopped, st = await run_writer(backend, db.dsn, s, chunk)
                    print(
                        f"  {backend} rep {rep + 1}: writer  {len(s) / stopped:>12,.0f} samples/s ({stopped:.2f} s; "
                        f"all committed at {committed:.2f} s; {st})",
                        flush=True,
                    )
                    if stopped < best_writer:
                        best_writer, committed_at_best, stats = stopped, committed, st
    return Best(best_raw, best_writer, committed_at_best, stats)


def rows_for(backend: str, shape: str, n: int, r: Best) -> Row:
    raw_rate = n / r.raw
    rate = n / r.writer
    ratio = rate / raw_rate
    if backend == "postgresql":
        goal, ok = "≥ 60% of raw COPY and ≥ 150k/s", ratio >= 0.60 and rate >= 150_000
        base = f"{fmt_rate(raw_rate)} (COPY binary)"
    else:
        goal, ok = "≥ 70% of raw executemany", ratio >= 0.70
        base = f"{fmt_rate(raw_rate)} (executemany)"
    figure = f"writer throughput, samples/s; {shape}"
    return Row(backend, figure, fmt_rate(rate), base, f"{ratio:.0%}", goal, yes_no(ok))


def parse_shape(text: str) -> tuple[int, int]:
    tags, _, seconds = text.lower().partition("x")
    return int(tags), int(seconds)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--shape", action="append", metavar="TAGSxSECONDS",
        help="data shape, tags x seconds at 1 Hz; repeatable (default: 1000x1000 and 100000x10, 1M samples each)",
    )  # fmt: skip
    p.add_argument("--chunk", type=int, default=1000, help="samples per writer.submit() (default 1000)")
    p.add_argument("--repeat", type=int, default=2, help="repetitions per backend and shape; best counts (default 2)")
    p.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    p.add_argument("--no-doc", action="store_true", help="print only, do not append to docs/benchmarks.md")
    a = p.parse_args(argv)
    shapes = a.shape or ["1000x1000", "100000x10"]
    backends = BACKENDS if a.backend == "both" else (a.backend,)
    rows: list[Row] = []
    notes: list[str] = []
    for shape in shapes:
        tags, seconds = parse_shape(shape)
        s = make_samples(tags, seconds)
        n = len(s)
        label = f"{tags:,} tags × {seconds:,} s"
        for backend in backends:
            print(f"writer throughput on {backend}: {label} = {n:,} samples, chunks of {a.chunk}", flush=True)
            quiet = wait_for_quiet()
            r = asyncio.run(bench_backend(backend, s, a.chunk, a.repeat))
            rows.append(rows_for(backend, label, n, r))
            notes.append(
                f"{backend}, {label}: {quiet}; writer {n / r.writer:,.0f}/s to `stop()` "
                f"({n / r.committed:,.0f}/s to the last commit; the rest is the final rollup merge), "
                f"raw {n / r.raw:,.0f}/s; writer stats {r.stats}."
            )
    notes.insert(
        0,
        f"1 Hz samples fed as `SampleColumns` chunks of {a.chunk} (one chunk ≈ one ingest request), all "
        "submitted without waiting; writer defaults (batch 10k, flush 0.2 s, rollup merge every 5 s); timed "
        f"until `writer.stop()` returned, so the final rollup merge counts. Best of {a.repeat} repetitions, every "
        "measurement in a fresh database, baseline/writer order alternating. Baseline: the raw driver into "
        "`samples_raw`, a copy of `samples` (same columns, same (tag_id, ts) index), 10k rows per transaction, "
        "rows pre-built / COPY stream pre-encoded outside the timing (SQLite: stdlib `executemany`, WAL + "
        "synchronous=NORMAL like the store; PostgreSQL: asyncpg `copy_to_table(format='binary')`, CHECKPOINT "
        "before each timed run). The rollup merge is one upsert per (tag, bucket, tier): 1,000 tags × 1,000 s "
        "make ~0.12 rollup rows per sample, 100,000 tags × 10 s make 0.5 (live, with a merge every 5 s of data, "
        "it would be ~1 per sample, so the many-tags row is still optimistic).",
    )
    cmd = "python -m bench.writer_throughput " + " ".join(argv if argv is not None else sys.argv[1:])
    publish("Historian writer throughput", rows, notes, cmd.strip(), write=not a.no_doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
