"""Analytics endpoint latency (/api/v1/analytics/*) on `--days` (default 30) of 1 Hz history.

Two tags (Flow: a daily cycle plus noise; Pressure: following Flow, stamped 0.4 s later) get
`--days` of 1 Hz samples each (2.59M per tag for 30 days), written through the real
`HistorianWriter` (which maintains the rollup tiers; `stop()` merges them) while the server is
stopped. Then the real server (`python -m server.cli run`, its own process, default settings)
answers GET requests from this process (httpx, keep-alive); each figure is the median of
`--repeat` warm requests, end to end (HTTP, auth, historian reads, numpy, JSON), for a 1-day range
(raw samples: under 100,000 in the range) and the whole range (rollups).

Baseline, same database, same run: the raw historian read of the same range
(`SampleStore.read_raw`, what an exact answer would have to read first), median of
`--raw-repeat`. Also reported: the exact maths in numpy on the same samples already in memory,
and `source=raw` (exact statistics over the whole range) through the endpoint.

    python -m bench.analytics [--days 30] [--repeat 7] [--raw-repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import numpy as np

from bench.common import BACKENDS, Row, Timer, bench_database, fmt_ms, median, publish, wait_for_quiet, yes_no
from bench.ingest_latency import PASSWORD, ServerProcess
from server.analytics import correlation, stats, trend
from server.analytics.data import Samples
from server.storage.historian.columns import SampleColumns
from server.storage.historian.postgres_store import PostgresSampleStore
from server.storage.historian.sqlite_store import SqliteSampleStore
from server.storage.historian.writer import HistorianWriter

GOAL_S = 0.300
DAY = 86_400
FLOW, PRESSURE = "Plant1/Pump1/Flow", "Plant1/Pump1/Pressure"

Store = SqliteSampleStore | PostgresSampleStore


def day_of(tag_id: int, which: str, start: float, day: int) -> SampleColumns:
    """One day of 1 Hz samples of Flow or Pressure (`day` counts from the oldest)."""
    ts = start + day * DAY + np.arange(DAY, dtype=np.float64)
    rng = np.random.default_rng(day)
    flow = 50 + 20 * np.sin(ts * (2 * np.pi / DAY)) + rng.normal(0, 1, DAY)
    if which == "pressure":
        ts, value = ts + 0.4, 2.0 + 0.05 * flow + rng.normal(0, 0.05, DAY)
    else:
        value = flow
    return SampleColumns(np.full(DAY, tag_id, np.int64), ts, value, np.zeros(DAY, np.int16))


def open_store(backend: str, dsn: str) -> Store:
    return PostgresSampleStore(dsn) if backend == "postgresql" else SqliteSampleStore(dsn)


async def tag_ids(backend: str, dsn: str) -> dict[str, int]:
    sql = f"SELECT path, id FROM nodes WHERE path IN ('{FLOW}', '{PRESSURE}')"
    if backend == "sqlite":
        c = sqlite3.connect(dsn)
        try:
            return {str(p): int(i) for p, i in c.execute(sql).fetchall()}
        finally:
            c.close()
    conn = await asyncpg.connect(dsn)
    try:
        return {str(r[0]): int(r[1]) for r in await conn.fetch(sql)}
    finally:
        await conn.close()


async def fill(backend: str, dsn: str, ids: dict[str, int], days: int, start: float) -> float:
    store = open_store(backend, dsn)
    await store.start()
    writer = HistorianWriter(store, batch_size=DAY, rollup_interval=30.0)
    await writer.start()
    t0 = time.perf_counter()
    futures = []
    for d in range(days):
        futures.append(await writer.submit(day_of(ids[FLOW], "flow", start, d)))
        futures.append(await writer.submit(day_of(ids[PRESSURE], "pressure", start, d)))
    await asyncio.gather(*futures)
    await writer.stop()
    built = time.perf_counter() - t0
    assert await store.count([ids[FLOW], ids[PRESSURE]]) == 2 * days * DAY
    await store.close()
    if backend == "postgresql":
        conn = await asyncpg.connect(dsn)
        await conn.execute("VACUUM ANALYZE")
        await conn.close()
    return built


def make_namespace(base: str) -> httpx.Client:
    r = httpx.post(base + "/api/v1/auth/login", json={"tenant": "bench", "username": "admin", "password": PASSWORD})
    r.raise_for_status()
    c = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {r.json()['access_token']}"}, timeout=120)
    for parent, cls, name in [
        (None, "folder", "Plant1"), ("Plant1", "device", "Pump1"), ("Plant1/Pump1", "tag", "Flow"),
        ("Plant1/Pump1", "tag", "Pressure"),
    ]:  # fmt: skip
        r = c.post("/api/v1/nodes", json={"parent": parent, "node_class": cls, "browse_name": name})
        assert r.status_code in (201, 409), r.text
    return c


def login(base: str) -> httpx.Client:
    r = httpx.post(base + "/api/v1/auth/login", json={"tenant": "bench", "username": "admin", "password": PASSWORD})
    r.raise_for_status()
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {r.json()['access_token']}"}, timeout=120)


def time_get(c: httpx.Client, what: str, params: dict[str, Any], repeat: int) -> tuple[list[float], dict[str, Any]]:
    r = c.get(f"/api/v1/analytics/{what}", params=params)  # warm-up
    assert r.status_code == 200, r.text
    times = []
    for _ in range(repeat):
        with Timer() as t:
            r = c.get(f"/api/v1/analytics/{what}", params=params)
        assert r.status_code == 200, r.text
        times.append(t.elapsed)
    body: dict[str, Any] = r.json()
    return times, body


def describe(what: str, body: dict[str, Any]) -> str:
    if what == "series":
        return f"{body['mode']}, {body['count']} pts"
    src = body.get("source", "?")
    res = f" {body['resolution_s']:.0f} s" if body.get("resolution_s") else ""
    if what == "forecast":
        return f"{src}{res}, {body['method']}, step {body['step_s']:.0f} s, {body['n']} pts"
    if what == "correlation":
        return f"{src}{res}, n={body['n']}, r={body['r']:.3f}"
    return f"{src}{res}, {body.get('points', '?')} pts"


async def time_raw_read(backend: str, dsn: str, tag: int, start: float, end: float, repeat: int) -> list[float]:
    store = open_store(backend, dsn)
    await store.start()
    times = []
    try:
        for _ in range(repeat):
            with Timer() as t:
                raw = await store.read_raw(tag, start, end, 10_000_000)
            times.append(t.elapsed)
    finally:
        await store.close()
    assert len(raw) > 0
    return times


def numpy_times(days: int, start: float) -> dict[str, float]:
    """The exact maths on the whole range's samples already in memory (no I/O)."""
    parts = [day_of(1, "flow", start, d) for d in range(days)]
    t, y = np.concatenate([p.ts for p in parts]), np.concatenate([p.value for p in parts])
    parts = [day_of(2, "pressure", start, d) for d in range(days)]
    pt, py = np.concatenate([p.ts for p in parts]), np.concatenate([p.value for p in parts])
    jobs: dict[str, Callable[[], object]] = {
        "statistics": lambda: stats.describe(y),
        "trend": lambda: trend.trend(t, y),
        "correlation": lambda: correlation.correlate(Samples(t, y), Samples(pt, py)),
    }
    out = {}
    for name, job in jobs.items():
        with Timer() as timer:
            job()
        out[name] = timer.elapsed
    return out


async def bench_backend(backend: str, a: argparse.Namespace) -> tuple[list[Row], list[str]]:
    end = float(int(time.time()) // 3600 * 3600 - 3600)
    start = end - a.days * DAY
    rows, notes = [], []
    async with bench_database(backend) as db:
        server = ServerProcess(db.url, db.tmp)
        server.start()
        try:
            make_namespace(server.base).close()
        finally:
            server.stop()
        ids = await tag_ids(backend, db.dsn)
        print(f"analytics on {backend}: writing {a.days} days of 1 Hz history for 2 tags", flush=True)
        built = await fill(backend, db.dsn, ids, a.days, start)
        notes.append(f"{backend}: {2 * a.days * DAY:,} samples written through the writer in {built:.1f} s.")
        server.start()
        try:
            c = login(server.base)
            notes.append(f"{backend}: {wait_for_quiet()}.")
            raw_read = await time_raw_read(backend, db.dsn, ids[FLOW], start, end, a.raw_repeat)
            raw_day = await time_raw_read(backend, db.dsn, ids[FLOW], end - DAY, end, a.raw_repeat)
            cases = [
                ("series", {"window_s": 3600, "max_points": 2000}),
                ("statistics", {}),
                ("trend", {}),
                ("correlation", {"other": PRESSURE}),
                ("forecast", {"horizon": 100, "confidence": 95}),
                ("forecast", {"horizon": 100, "confidence": 95, "method": "linear"}),
            ]
            for label, span, baseline in (("1 d", DAY, raw_day), (f"{a.days} d", a.days * DAY, raw_read)):
                b = median(baseline)
                for what, extra in cases:
                    params = {"node": FLOW, "start": end - span, "end": end, **extra}
                    times, body = time_get(c, what, params, a.repeat)
                    m = median(times)
                    how = describe(what, body)
                    name = what + (f" ({extra['method']})" if "method" in extra else "")
                    print(f"  {label:>5} {name:<20} median {m * 1000:8.1f} ms (max {max(times) * 1000:.1f}; {how})",
                          flush=True)  # fmt: skip
                    rows.append(Row(
                        backend, f"{name}, {label} ({how})", f"{fmt_ms(m)} (max {max(times) * 1000:.0f})",
                        f"{fmt_ms(b)} (raw read)", f"{m / b:.3f}", "< 300 ms", yes_no(m < GOAL_S),
                    ))  # fmt: skip
            times, body = time_get(c, "statistics", {"node": FLOW, "start": start, "end": end, "source": "raw"}, 1)
            m, b = median(times), median(raw_read)
            rows.append(Row(
                backend, f"statistics source=raw (exact), {a.days} d ({body['points']:,} samples)",
                f"{fmt_ms(m)}", f"{fmt_ms(b)} (raw read)", f"{m / b:.3f}", "n/a (exact on request)", "n/a",
            ))  # fmt: skip
            c.close()
        finally:
            server.stop()
    return rows, notes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", type=int, default=30, help="days of 1 Hz history per tag (default 30 = 2.59M samples)")
    p.add_argument("--repeat", type=int, default=7, help="timed requests per figure after one warm-up (default 7)")
    p.add_argument("--raw-repeat", type=int, default=3, help="timed raw historian reads (default 3)")
    p.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    p.add_argument("--no-doc", action="store_true", help="print only, do not append to docs/benchmarks.md")
    a = p.parse_args(argv)
    backends = BACKENDS if a.backend == "both" else (a.backend,)
    rows: list[Row] = []
    start = float(int(time.time()) // 3600 * 3600 - 3600) - a.days * DAY
    in_memory = numpy_times(a.days, start)
    notes = [
        f"Two tags, {a.days} days of 1 Hz history each ({a.days * DAY:,} samples per tag) written through "
        "`HistorianWriter` (rollups merged by `stop()`), then the real server in its own process. Measured: "
        f"GET /api/v1/analytics/<endpoint> end to end from an httpx client on the same machine, median of {a.repeat} "
        "warm requests (the client's own CPU, a few ms, is included). 1 d holds 86,400 samples, under the 100,000 "
        "that `source=auto` computes on raw samples (correlation: both tags together), else rollups (statistics and "
        "trend on the finest tier with at most 50,000 buckets, correlation at most 10,000 per tag, forecasts on a "
        "step from the ladder of divisors of a day with at most `max_points` = 1000 points). Baseline: the raw "
        f"historian read of the same range (`SampleStore.read_raw` of Flow), median of {a.raw_repeat}. "
        "Ratio = endpoint ÷ raw read.",
        "Exact maths in numpy on the whole range's samples already in memory (no I/O, one run): "
        + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in in_memory.items())
        + f" ({a.days * DAY:,} samples; correlation aligns both tags on a 1 s grid).",
    ]
    for backend in backends:
        r, n = asyncio.run(bench_backend(backend, a))
        rows += r
        notes += n
    cmd = "python -m bench.analytics " + " ".join(argv if argv is not None else sys.argv[1:])
    publish("Analytics endpoint latency", rows, notes, cmd.strip(), write=not a.no_doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
