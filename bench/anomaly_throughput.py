"""Anomaly scoring throughput and latency, and training time on 30 days of 1 s data (issue #7 §4).

Scoring (in process, no database): the server's `AnomalyScorer` on a `Bus`, fed `ValueBatch`
messages as the ingest pipeline publishes them (100 devices' readings per message), every score
going to a sink that counts it (the alarm engine's place). Devices are the simulator's pumps
(6 tags each); one model trained on a day of a pump serves every device (the scorer's work per
device is the same whichever model it holds). Two shapes, 60k samples/s each:
`--devices` x 6 tags at `--rate` Hz (default 1,000 x 6 x 10 Hz: 100 windows/s) and ten times the
devices at a tenth of the rate (10,000 x 6 x 1 Hz: 1,000 windows/s).
- capacity: the messages are built first, then published as fast as the scorer takes them,
  with a flush every 0.1 s of data time; samples / (time in the bus handler + time in flushes);
- latency: the same load paced in real time for `--seconds` (generated as it goes, in the same
  process and on the same loop as the scorer, so the generator's work competes with it);
  latency = from the arrival of the sample that completes a window to that window's score (the
  scorer records it per window; a window's first sample waits for the window to fill by design:
  that is the step, 10 s).
Baseline, same run: scoring per sample, as a naive consumer would: each sample updates its
device's bucket, then the window ending at that sample is scored by a scikit-learn call on one
row (`-forest.score_samples`); run for a few seconds, samples/s reported. Beside it, micro-batches
with a scikit-learn `score_samples` call per device and flush in place of the one walk over every
device's trees (what batching in time alone gives when each device has its own model).

Training: `--days` (30) of 1 s data of one pump (6 tags; a simulated day repeated) written through
the real `HistorianWriter` (rollups merged), then what a training job does: read the 10 s rollups
(`HistorySource.buckets`), `train` (features, a held-out check fit, the final fit, scores), and
the skops artifact. Baseline: scikit-learn alone on the same feature rows (IsolationForest.fit +
score_samples for the threshold).

    python -m bench.anomaly_throughput [--devices 1000] [--rate 10] [--seconds 60] [--days 30]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.common import BACKENDS, Row, bench_database, fmt_ms, fmt_rate, percentile, publish, wait_for_quiet, yes_no
from server.bus import Bus, ValueBatch
from server.domain.quality import Quality
from server.domain.sample import TagUpdate
from server.ml import features as ft
from server.ml.forest import ForestSet
from server.ml.model import AnomalyModel
from server.ml.scorer import AnomalyScorer
from server.ml.training import HistorySource, TrainParams, train
from server.sim.plant import Plant
from server.storage.historian.columns import SampleColumns
from server.storage.historian.postgres_store import PostgresSampleStore
from server.storage.historian.sqlite_store import SqliteSampleStore
from server.storage.historian.writer import HistorianWriter

F64 = npt.NDArray[np.float64]
TAGS = 6
PER_MESSAGE = 100
GOAL_RATE = 50_000
GOAL_LATENCY_S = 0.200
T0 = 1_767_225_600.0


class Sink:
    def __init__(self) -> None:
        self.scores = 0
        self.anomalous = 0

    def anomaly_score(self, tenant_id: int, device_node_id: str, score: float, ts: float | None = None) -> None:
        self.scores += 1
        self.anomalous += score > 1.0


def pump_day(seconds: int = 86_400, seed: int = 3) -> F64:
    plant = Plant(seed=seed, pumps=1)
    path = plant.by_name["Pump1"].path
    names = [t.name for t in plant.by_name["Pump1"].tags]
    out = np.empty((seconds, TAGS))
    for k in range(seconds):
        frame, _ = plant.step(T0 + k)
        out[k] = [frame[path][n] for n in names]
    return out


def model_of(day: F64) -> AnomalyModel:
    n = day.shape[0]
    ts = T0 + np.arange(n, dtype=np.float64)
    b = ft.buckets_from_samples(np.tile(np.arange(TAGS), n), np.repeat(ts, TAGS), day.reshape(-1), TAGS, 10,
                                T0, T0 + n)  # fmt: skip
    names = [f"T{j}" for j in range(TAGS)]
    model, _ = train(b, names, names, TrainParams(), lambda *_: None)
    return model


def messages(day: F64, devices: int, rate: float, seconds: float, start: float) -> Iterator[list[ValueBatch]]:
    """Per reading time (every 1/rate s), the messages holding each device's 6 readings, 100
    devices a message; built as they are needed (a minute of 60k/s would not fit in memory)."""
    for k in range(int(seconds * rate)):
        t = start + k / rate
        row = [float(v) for v in day[(int(t - T0)) % day.shape[0]]]
        yield [
            ValueBatch(1, [TagUpdate(1, d * TAGS + j, "", "", t, row[j], Quality.GOOD)
                           for d in range(lo, min(devices, lo + PER_MESSAGE)) for j in range(TAGS)])
            for lo in range(0, devices, PER_MESSAGE)
        ]  # fmt: skip


def day_buckets(day: F64) -> ft.Buckets:
    n = day.shape[0]
    ts = T0 + np.arange(n, dtype=np.float64)
    return ft.buckets_from_samples(np.tile(np.arange(TAGS), n), np.repeat(ts, TAGS), day.reshape(-1), TAGS, 10,
                                   T0, T0 + n)  # fmt: skip


async def scorer_for(
    model: AnomalyModel, day: F64, devices: int, sink: Sink, flush_interval: float, start: float
) -> AnomalyScorer:
    """Every device primed with a full window of history ending at `start` (as on activation)."""
    ring = day_buckets(day).tail(model.window)
    step = model.step

    async def primer(ids: list[int], lo: float, hi: float, width: float) -> ft.Buckets:
        return ft.Buckets(hi - step * np.arange(model.window, 0, -1, dtype=np.float64), ring.mean, ring.spread,
                          ring.count)  # fmt: skip

    scorer = AnomalyScorer(Bus(), sink, flush_interval=flush_interval, max_pending=10**9, clock=lambda: start)
    entries = [(1, f"dev{d}", 1, 1, model, list(range(d * TAGS, (d + 1) * TAGS))) for d in range(devices)]
    await scorer.activate_many(entries, primer)
    await scorer.start()
    return scorer


async def capacity(model: AnomalyModel, day: F64, devices: int, rate: float, seconds: float) -> dict[str, Any]:
    """Samples per second of scorer time (bus handler + flushes), messages pre-built."""
    sink = Sink()
    start = T0 + 86_400
    scorer = await scorer_for(model, day, devices, sink, 3600, start)
    handler = 0.0
    next_flush = start + 0.1
    for k, batch in enumerate(messages(day, devices, rate, seconds, start)):
        if start + k / rate >= next_flush:
            scorer.flush()
            next_flush += 0.1
        started = time.perf_counter()
        for m in batch:
            scorer.bus.publish(m)
        handler += time.perf_counter() - started
    scorer.flush()
    await scorer.stop()
    spent = handler + scorer.busy_s
    return {"rate": scorer.samples / spent, "samples": scorer.samples, "windows": sink.scores,
            "handler_s": handler, "flush_s": scorer.busy_s, "anomalous": sink.anomalous}  # fmt: skip


async def paced(model: AnomalyModel, day: F64, devices: int, rate: float, seconds: float) -> dict[str, Any]:
    """The load in real time: each reading time's messages built and published at that time;
    latencies from the scorer, after a first bucket end (the process's first burst pays for
    fresh memory pages, reported apart)."""
    sink = Sink()
    start = float(np.ceil(time.time() / 10) * 10 + 10)
    scorer = await scorer_for(model, day, devices, sink, 0.1, start)
    loop = asyncio.get_running_loop()
    wall0, cpu0 = loop.time(), time.process_time()
    lag: list[float] = []
    batches = messages(day, devices, rate, seconds + 10, start)
    first: list[float] = []
    lat: list[float] = []
    warm = int(11 * rate)  # a second after the first bucket end: its scores are in by then
    for k in range(int((seconds + 10) * rate)):
        t = start + k / rate
        delay = t - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        (first if k <= warm else lat).extend(scorer.latencies)  # drained: the scorer keeps only 10,000
        scorer.latencies.clear()
        lag.append(time.time() - t)
        for m in next(batches):  # built now, then published: the generator's work is not in the way
            scorer.bus.publish(m)
    await asyncio.sleep(0.3)
    wall, cpu = loop.time() - wall0, time.process_time() - cpu0
    await scorer.stop()
    lat.extend(scorer.latencies)
    return {
        "samples": scorer.samples, "wall": wall, "cpu": cpu, "windows": sink.scores, "p50": percentile(lat, 50),
        "p99": percentile(lat, 99), "max": max(lat) if lat else float("nan"), "send_lag_p99": percentile(lag, 99),
        "first_max": max(first) if first else float("nan"), "measured": len(lat),
    }  # fmt: skip


def per_sample(model: AnomalyModel, day: F64, devices: int, rate: float, budget_s: float) -> dict[str, Any]:
    """The naive consumer: each sample updates its device's bucket, then the window ending at
    that sample (the complete buckets before it and the one being filled) is scored with a
    scikit-learn call on that one row."""
    ring = day_buckets(day).tail(model.window)
    step = model.step
    acc = {d: [np.zeros(TAGS), np.zeros(TAGS), np.full(TAGS, np.inf), np.full(TAGS, -np.inf)] for d in range(devices)}
    start = T0 + 86_400
    t = np.r_[start - step * np.arange(model.window, 0, -1), start]
    started = time.perf_counter()
    n = 0
    for batch in messages(day, min(devices, PER_MESSAGE), rate, 5, start):
        for u in batch[0].updates:
            d, j = divmod(u.tag_id, TAGS)
            s, c, lo, hi = acc[d]
            s[j] += u.value
            c[j] += 1
            lo[j], hi[j] = min(lo[j], u.value), max(hi[j], u.value)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.vstack([ring.mean, np.where(c > 0, s / c, np.nan)])
                spread = np.vstack([ring.spread, np.where(c > 0, hi - lo, np.nan)])
            b = ft.Buckets(t, mean, spread, np.vstack([ring.count, c]))
            pooled, _ = ft.features(b, model.state)
            model.forest.score_samples(np.nan_to_num(pooled[-1:]))
            n += 1
            if time.perf_counter() - started > budget_s:
                return {"rate": n / (time.perf_counter() - started), "samples": n}
    return {"rate": n / (time.perf_counter() - started), "samples": n}


async def sklearn_batched(model: AnomalyModel, day: F64, devices: int, rate: float, seconds: float) -> float:
    """Micro-batches, but the forests through scikit-learn: one `score_samples` call per device
    and flush (each device has a model of its own on a server; here they share one, so the
    calls are made per row, as they would be per device)."""
    original = ForestSet.score

    def through_sklearn(self: ForestSet, x: F64, forest: npt.NDArray[np.intp]) -> F64:
        return np.asarray([-model.forest.score_samples(x[i : i + 1])[0] for i in range(x.shape[0])])

    ForestSet.score = through_sklearn  # type: ignore[method-assign]
    try:
        return float((await capacity(model, day, devices, rate, seconds))["rate"])
    finally:
        ForestSet.score = original  # type: ignore[method-assign]


# -- training -------------------------------------------------------------------------------


async def training(backend: str, days: int, day: F64) -> dict[str, Any]:
    async with bench_database(backend) as db:
        store: SqliteSampleStore | PostgresSampleStore
        store = PostgresSampleStore(db.dsn) if backend == "postgresql" else SqliteSampleStore(db.dsn)
        await store.start()
        writer = HistorianWriter(store, batch_size=86_400, rollup_interval=30.0)
        await writer.start()
        end = T0 + days * 86_400
        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        futures = []
        for d in range(days):
            ts = T0 + d * 86_400 + np.arange(86_400, dtype=np.float64)
            values = day + rng.normal(0, 0.01, day.shape)
            cols = SampleColumns(np.tile(np.arange(1, TAGS + 1, dtype=np.int64), 86_400), np.repeat(ts, TAGS),
                                 values.reshape(-1), np.zeros(86_400 * TAGS, np.int16))  # fmt: skip
            futures.append(await writer.submit(cols))
        await asyncio.gather(*futures)
        await writer.stop()
        built = time.perf_counter() - t0
        print(f"  {backend}: {days} days x {TAGS} tags written in {built:.0f} s", flush=True)
        note = wait_for_quiet()
        source = HistorySource(writer)
        tags = list(range(1, TAGS + 1))
        names = [f"T{j}" for j in range(TAGS)]
        t0 = time.perf_counter()
        b = await source.buckets(tags, T0, end, 10)
        t_read = time.perf_counter() - t0
        t1 = time.perf_counter()
        model, metrics = await asyncio.to_thread(train, b, names, names, TrainParams(), lambda *_: None)
        t_fit = time.perf_counter() - t1
        t2 = time.perf_counter()
        blob = await asyncio.to_thread(model.dumps)
        t_dump = time.perf_counter() - t2
        total = time.perf_counter() - t0
        pooled, _ = ft.features(b, model.state)
        rows = pooled[~np.isnan(pooled).any(axis=1)]
        from sklearn.ensemble import IsolationForest  # type: ignore[import-untyped]

        t3 = time.perf_counter()
        bare = IsolationForest(n_estimators=100, random_state=0).fit(rows)
        bare.score_samples(rows)
        t_bare = time.perf_counter() - t3
        await store.close()
        return {"read": t_read, "fit": t_fit, "dump": t_dump, "total": total, "bare": t_bare, "rows": len(b),
                "windows": metrics["train_windows"], "artifact": len(blob), "built": built, "note": note}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--rate", type=float, default=10.0, help="readings per device per second")
    p.add_argument("--seconds", type=float, default=60.0, help="data time of each scoring run")
    p.add_argument("--days", type=int, default=30, help="history for the training time")
    p.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--no-doc", action="store_true")
    a = p.parse_args(argv)
    print("  simulating a day of a pump, training the scoring model", flush=True)
    day = pump_day()
    model = model_of(day)
    rows: list[Row] = []
    notes: list[str] = []
    shapes = [(a.devices, a.rate), (a.devices * 10, a.rate / 10)]
    for devices, rate in shapes:
        shape = f"{devices:,} devices × {TAGS} tags × {rate:g} Hz"
        note = wait_for_quiet()
        cap = asyncio.run(capacity(model, day, devices, rate, a.seconds))
        base = per_sample(model, day, devices, rate, 5.0)
        sk = asyncio.run(sklearn_batched(model, day, devices, rate, min(a.seconds, 30)))
        live = asyncio.run(paced(model, day, devices, rate, a.seconds))
        offered = devices * TAGS * rate
        rows.append(Row("—", f"scoring capacity, samples/s ({shape}; {cap['windows'] / a.seconds:,.0f} windows/s)",
                        fmt_rate(cap["rate"]), f"{fmt_rate(base['rate'])} (per-sample calls)",
                        f"{cap['rate'] / base['rate']:,.0f}×", f"≥ {GOAL_RATE // 1000}k/s",
                        yes_no(cap["rate"] >= GOAL_RATE)))  # fmt: skip
        rows.append(Row("—", f"sample → score p99, paced {fmt_rate(offered)} ({shape})", fmt_ms(live["p99"]),
                        "—", "—", "< 200 ms", yes_no(live["p99"] < GOAL_LATENCY_S)))  # fmt: skip
        notes.append(
            f"{shape}: {note}. Capacity: {cap['samples']:,} samples, {cap['windows']:,} windows in "
            f"{cap['handler_s']:.2f} s in the bus handler + {cap['flush_s']:.2f} s in flushes; micro-batches "
            f"with one scikit-learn score_samples call per device and flush instead of the one walk over all "
            f"devices' trees: {fmt_rate(sk)}; per-sample "
            f"scikit-learn calls: {base['samples']:,} samples in 5 s. Paced {a.seconds:.0f} s after a first 10 s "
            f"(whose bucket end cost {fmt_ms(live['first_max'])}: fresh memory): {live['samples']:,} samples, "
            f"{live['windows']:,} windows ({live['measured']:,} measured), process CPU "
            f"{live['cpu'] / live['wall']:.0%} of a core (incl. this load generator), latency p50 "
            f"{fmt_ms(live['p50'])} / p99 {fmt_ms(live['p99'])} / max {fmt_ms(live['max'])}; the generator ran p99 "
            f"{fmt_ms(live['send_lag_p99'])} behind its schedule."
        )
    backends = BACKENDS if a.backend == "both" else (a.backend,)
    for backend in backends:
        tr = asyncio.run(training(backend, a.days, day))
        rows.append(Row(backend, f"training on {a.days} days of 1 s data ({TAGS} tags, {tr['windows']:,} windows)",
                        fmt_ms(tr["total"]), f"{fmt_ms(tr['bare'])} (scikit-learn alone on the rows)",
                        f"{tr['total'] / tr['bare']:.1f}", "—", "—"))  # fmt: skip
        notes.append(
            f"training, {backend}: {tr['note']}; history written in {tr['built']:.0f} s; read of the 10 s rollups "
            f"{fmt_ms(tr['read'])} ({tr['rows']:,} buckets × {TAGS} tags), features + check fit + final fit + scores "
            f"{fmt_ms(tr['fit'])}, skops artifact {fmt_ms(tr['dump'])} ({tr['artifact'] / 1024:.0f} KiB)."
        )
    publish("Anomaly scoring throughput and training time", rows, notes,
            "python -m bench.anomaly_throughput " + " ".join(argv or []), write=not a.no_doc)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
