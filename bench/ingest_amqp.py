"""AMQP ingest (RabbitMQ → `iiot-server` → historian) beside a bare aio-pika consumer, same run.

The real server (`python -m server.cli run`, default settings: `amqp_prefetch` 3000, historian
flush 0.2 s, stream coalescing 50 ms) runs in its own process on a throwaway SQLite or
PostgreSQL database and consumes the machine's RabbitMQ (`IIOT_BENCH_AMQP_URL`, default
amqp://guest:guest@127.0.0.1/). Each run declares its own exchanges and queues (unique names;
the server's declared exactly as `server/ingest/amqp.py` declares them: durable topic exchange,
durable queue with its dead-letter arguments, bound with `telemetry.#`; the baseline's the same
way) and deletes them at the end. Messages are persistent, routing key
`telemetry.bench.Plant1/DevNNN` (round-robin over `--devices`), body `{"values": {"T0000": …}}`
with `--values` unique values (message sequence × 100000 + index). One sample = one tag value.

Throughput. The namespace is set up through the API on a first server process with AMQP off,
which then stops. `--messages` messages are published once (aio-pika, publisher confirms, 500
in flight); the exchange routes a copy into the server's queue and one into the baseline's, so
both drain the same bytes from a full queue and no publisher competes for the 2 cores.
  * baseline: a bare aio-pika consumer in its own process (plain asyncio like the server; same
    prefetch; aio-pika's `consume()` callback per delivery; `json.loads` of the body, then
    `ack()`), timed from its first delivery to its last ack;
  * server: a second server process with AMQP on, same database; `GET /api/v1/ingest/stats`
    (accepted samples, counted after the historian commit, before the ack) is polled every
    100 ms, timed from the first poll that sees samples to the first that sees all of them.
Both rates count only what was processed inside the timed span, so neither includes connecting
or start-up. The broker (Erlang), the server and this process share the 2 cores.

Latency. Open loop, `--rate` messages/s for `--warmup` + `--duration` s, published by this
process (asyncio + uvloop, no confirms); send time = just before `publish()`.
  * baseline: the bare consumer again, on its own exchange and queue; latency = its ack − send
    (perf_counter is CLOCK_MONOTONIC, common to all processes of the machine);
  * publish → WS frame, per value: one WebSocket client subscribed to the plant, as in
    bench.ingest_latency; each tag is updated every devices/rate s (200 ms by default), longer
    than the 50 ms coalescing window, so no value is coalesced away;
  * publish → stored, per message: this process polls the database itself every `--poll-ms`
    (its own connection: SQLite in WAL mode, or asyncpg) for the newest `T0000` rows of every
    device; latency = start of the first query that sees the message's row − send: the commit
    happened between the previous query's snapshot and this one's, so this is accurate to one poll
    period plus one query (both reported). `GET /api/v1/values` would not do: it reads the live
    cache, which is updated before the commit.

    python -m bench.ingest_amqp [--messages 20000] [--values 10] [--rate 100] [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import asyncpg
from aio_pika.abc import AbstractIncomingMessage

from bench._adapters import (
    LATE_LIMIT,
    LATE_WARNING,
    STREAM_ROOT,
    TENANT,
    CpuWindow,
    LeanGet,
    cpu_text,
    extra_env,
    helper_process,
    helper_result,
    login,
    ms,
    open_stream,
    p50_p99,
    port_env,
    process_pid,
    settle_gc,
)
from bench.common import BACKENDS, BenchDb, Row, bench_database, fmt_rate, publish, wait_for_quiet, yes_no
from bench.ingest_latency import STREAM_COALESCE_S, Results, ServerProcess, receiver, setup_namespace, tag_values
from server.config import Settings
from server.ingest.amqp import BINDING
from server.storage.historian.sqlite_store import over_samples

AMQP_URL = os.environ.get("IIOT_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1/")
DEFAULT_PREFETCH = int(Settings.model_fields["amqp_prefetch"].default)
PREFILL_WINDOW = 500
STATS_POLL_S = 0.1
STALL_S = 30.0
GOAL = 0.8


@dataclass(frozen=True)
class Topology:
    """The server's exchange and queue (same name), and the baseline's (`<name>.bare`)."""

    name: str

    @property
    def bare(self) -> str:
        return f"{self.name}.bare"

    def queues(self) -> list[str]:
        return [self.name, f"{self.name}.dlq", self.bare, f"{self.bare}.dlq"]


def routing_key(seq: int, devices: int) -> str:
    return f"telemetry.{TENANT}.{STREAM_ROOT}/Dev{seq % devices:03d}"


def message(seq: int, values: int) -> aio_pika.Message:
    body = json.dumps({"values": tag_values(values, seq)}).encode()
    return aio_pika.Message(body, content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT)


# -- broker topology ------------------------------------------------------------------------


async def declare(t: Topology) -> None:
    """Both queues bound to the server's exchange (for the pre-fill), the baseline's also to its own."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(t.name, aio_pika.ExchangeType.TOPIC, durable=True)
        bare_exchange = await channel.declare_exchange(t.bare, aio_pika.ExchangeType.TOPIC, durable=True)
        for name in (t.name, t.bare):
            await channel.declare_queue(f"{name}.dlq", durable=True)
            queue = await channel.declare_queue(
                name, durable=True, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{name}.dlq"}
            )
            await queue.bind(exchange, BINDING)
            if name == t.bare:
                await queue.bind(bare_exchange, BINDING)
    finally:
        await connection.close()


async def depths_and_detach(t: Topology) -> dict[str, int]:
    """Messages ready in each queue; then the baseline's queue leaves the server's exchange."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        out = {}
        for name in (t.name, t.bare):
            queue = await channel.declare_queue(name, passive=True)
            out[name] = int(queue.declaration_result.message_count or 0)
        await (await channel.get_queue(t.bare)).unbind(t.name, BINDING)
        return out
    finally:
        await connection.close()


async def delete(t: Topology) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    try:
        for name in t.queues():
            with contextlib.suppress(Exception):  # a refusal closes the channel: one channel each
                await (await connection.channel()).queue_delete(name)
        for name in (t.name, t.bare):
            with contextlib.suppress(Exception):
                await (await connection.channel()).exchange_delete(name)
    finally:
        await connection.close()


async def prefill(t: Topology, a: argparse.Namespace) -> float:
    """Publish `--messages` with confirms, PREFILL_WINDOW in flight; returns the seconds it took."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(t.name, ensure=False)
        t0 = time.perf_counter()
        for start in range(1, a.messages + 1, PREFILL_WINDOW):
            seqs = range(start, min(start + PREFILL_WINDOW, a.messages + 1))
            await asyncio.gather(*(exchange.publish(message(s, a.values), routing_key(s, a.devices)) for s in seqs))
        return time.perf_counter() - t0
    finally:
        await connection.close()


# -- the bare consumer (its own process) ----------------------------------------------------


@dataclass
class _Tally:
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    received: list[tuple[int, float]] = field(default_factory=list)


async def bare_consumer(a: argparse.Namespace) -> dict[str, Any]:
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=a.prefetch)
    queue = await channel.get_queue(a.queue)
    done = asyncio.Event()
    tally = _Tally()
    cpu = CpuWindow({"bare consumer": os.getpid(), "broker": a.broker_pid or None})
    shares: dict[str, float] = {}

    async def on_message(msg: AbstractIncomingMessage) -> None:
        if tally.count == 0 and not tally.first:
            tally.first = time.perf_counter()
            cpu.start()
        doc = json.loads(msg.body)
        await msg.ack()
        tally.count += 1
        if a.record:
            first_value = next(iter(doc["values"].values()))
            tally.received.append((int(first_value) // 100_000, time.perf_counter()))
        if tally.count == a.expect:
            tally.last = time.perf_counter()
            shares.update(cpu.stop())
            done.set()

    tag = await queue.consume(on_message)
    print("ready", flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), a.timeout)
    with contextlib.suppress(Exception):
        await queue.cancel(tag)
    await connection.close()
    return {"count": tally.count, "first": tally.first, "last": tally.last, "cpu": shares,
            "received": tally.received}  # fmt: skip


def bare_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench.ingest_amqp _bare")
    p.add_argument("--queue", required=True)
    p.add_argument("--prefetch", type=int, required=True)
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--broker-pid", type=int, default=0)
    p.add_argument("--record", action="store_true", help="report (sequence, ack time) per message")
    result = asyncio.run(bare_consumer(p.parse_args(argv)))  # plain asyncio, as the server runs
    print(json.dumps(result), flush=True)
    return 0


def bare_args(t: Topology, a: argparse.Namespace, expect: int, timeout: float, broker: int | None) -> list[str]:
    return ["--queue", t.bare, "--prefetch", str(a.prefetch), "--expect", str(expect), "--timeout", str(timeout),
            "--broker-pid", str(broker or 0)]  # fmt: skip


# -- throughput -----------------------------------------------------------------------------


@dataclass
class Drain:
    samples_per_s: float
    messages_per_s: float
    span: float
    counted: int
    cpu: dict[str, float]
    detail: str = ""


async def bare_throughput(t: Topology, a: argparse.Namespace, broker: int | None) -> Drain:
    proc = await helper_process("bench.ingest_amqp", *bare_args(t, a, a.messages, 600, broker))
    r = await helper_result(proc, 660)
    if r["count"] != a.messages:
        raise RuntimeError(f"bare consumer received {r['count']} of {a.messages} messages")
    span = r["last"] - r["first"]
    counted = a.messages - 1  # after the first delivery
    return Drain(counted * a.values / span, counted / span, span, counted * a.values, r["cpu"])


async def server_throughput(server: ServerProcess, token: str, a: argparse.Namespace, broker: int | None) -> Drain:
    assert server.proc is not None
    expect = a.messages * a.values
    client = LeanGet(server.base, token)
    cpu = CpuWindow({"server": server.proc.pid, "broker": broker, "load generator": os.getpid()})
    first: tuple[float, int] | None = None
    progress = (time.perf_counter(), -1)
    amqp: dict[str, Any] = {}
    try:
        while True:
            started = time.perf_counter()
            status, body = await client.get("/api/v1/ingest/stats")
            now = time.perf_counter()
            if status == 401:  # the token of the set-up process expired: log in again
                client.close()
                client = LeanGet(server.base, login(server.base))
                continue
            if status != 200:
                raise RuntimeError(f"GET /api/v1/ingest/stats answered {status}: {body}")
            amqp = dict(body.get("amqp", {}))
            accepted = int(amqp.get("accepted", 0))
            if accepted and first is None:
                first = (now, accepted)
                cpu.start()
            if accepted >= expect:
                break
            if accepted != progress[1]:
                progress = (now, accepted)
            elif now - progress[0] > STALL_S:
                raise RuntimeError(f"server stalled at {accepted:,} of {expect:,} samples; stats {amqp}")
            await asyncio.sleep(max(0.0, STATS_POLL_S - (time.perf_counter() - started)))
    finally:
        client.close()
    if first is None or now <= first[0]:
        raise RuntimeError("the server drained the queue before the second poll; raise --messages")
    shares = cpu.stop()
    span = now - first[0]
    counted = accepted - first[1]
    detail = (f"accepted {first[1]:,} → {accepted:,} samples in {span:.2f} s; received {amqp.get('received', 0):,}, "
              f"rejected {amqp.get('rejected', {})}, dead-lettered {amqp.get('dead_lettered', 0)}, "
              f"reconnects {amqp.get('reconnects', 0)}")  # fmt: skip
    return Drain(counted / span, counted / span / a.values, span, counted, shares, detail)


# -- latency --------------------------------------------------------------------------------


@dataclass
class Load:
    achieved: float
    late: int
    cpu: dict[str, float]


async def open_loop(exchange_name: str, a: argparse.Namespace, seq0: int, send: dict[int, float],
                    cpu: CpuWindow) -> Load:  # fmt: skip
    """`--rate` messages/s for warmup + duration seconds; send[seq] = just before publish()."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel(publisher_confirms=False)
        exchange = await channel.get_exchange(exchange_name, ensure=False)

        async def one(seq: int) -> None:
            msg, key = message(seq, a.values), routing_key(seq, a.devices)
            send[seq] = time.perf_counter()
            await exchange.publish(msg, key)

        total = int((a.warmup + a.duration) * a.rate)
        tasks: set[asyncio.Task[None]] = set()
        late = 0
        settle_gc()
        cpu.start()
        t0 = time.perf_counter()
        for i in range(total):
            delay = t0 + i / a.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.005:
                late += 1
            task = asyncio.create_task(one(seq0 + i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
        return Load(total / wall, late, cpu.stop())
    finally:
        await connection.close()


class StoredPoller:
    """Which messages are committed, and since when: the newest `T0000` rows of every device,
    read by this process's own database connection every `period` seconds."""

    def __init__(self, db: BenchDb, tag_ids: list[int], period: float) -> None:
        self.db, self.tag_ids, self.period = db, tag_ids, period
        self.seen: dict[int, float] = {}
        self.polls = 0
        self.query_s = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        since = time.time() - 1.0
        margin = 0.25  # rows stamped a little earlier may commit a little later
        if self.db.backend == "sqlite":
            conn = sqlite3.connect(self.db.dsn, timeout=5, isolation_level=None)
            conn.execute("PRAGMA query_only = ON")
            marks = ",".join("?" * len(self.tag_ids))
            sql = over_samples(f"SELECT value, ts FROM {{t}} WHERE tag_id IN ({marks}) AND ts > ?")

            async def query(after: float) -> list[tuple[float, float]]:
                args = (*self.tag_ids, after)
                return list(conn.execute(sql, args * 2).fetchall())  # µs: not worth a thread

            close: Any = conn.close
        else:
            pg = await asyncpg.connect(self.db.dsn)
            stmt = await pg.prepare("SELECT value, extract(epoch FROM ts)::float8 FROM samples "
                                    "WHERE tag_id = ANY($1::int[]) AND ts > to_timestamp($2)")  # fmt: skip

            async def query(after: float) -> list[tuple[float, float]]:
                return [(r[0], r[1]) for r in await stmt.fetch(self.tag_ids, after)]

            close = pg.close
        try:
            newest = since
            while not stop.is_set():
                started = time.perf_counter()
                rows = await query(max(since, newest - margin))
                self.query_s += time.perf_counter() - started
                self.polls += 1
                for value, ts in rows:
                    self.seen.setdefault(int(value) // 100_000, started)
                    newest = max(newest, ts)
                await asyncio.sleep(max(0.0, self.period - (time.perf_counter() - started)))
        finally:
            result = close()
            if asyncio.iscoroutine(result):
                await result


async def tag_ids_of(db: BenchDb, devices: int) -> list[int]:
    paths = [f"{STREAM_ROOT}/Dev{d:03d}/T0000" for d in range(devices)]
    if db.backend == "sqlite":
        with contextlib.closing(sqlite3.connect(db.dsn)) as conn:
            marks = ",".join("?" * len(paths))
            ids = [int(r[0]) for r in conn.execute(f"SELECT id FROM nodes WHERE path IN ({marks})", paths)]
    else:
        pg = await asyncpg.connect(db.dsn)
        try:
            ids = [int(r[0]) for r in await pg.fetch("SELECT id FROM nodes WHERE path = ANY($1::text[])", paths)]
        finally:
            await pg.close()
    if len(ids) != devices:
        raise RuntimeError(f"found {len(ids)} of {devices} T0000 tags in the database")
    return ids


@dataclass
class Latency:
    load: Load
    stored: list[float] = field(default_factory=list)  # per message
    stream: list[float] = field(default_factory=list)  # per value
    expected_messages: int = 0
    detail: str = ""


def first_measured(seq0: int, a: argparse.Namespace) -> int:
    return seq0 + int(a.warmup * a.rate)


async def bare_latency(t: Topology, a: argparse.Namespace, seq0: int, broker: int | None) -> Latency:
    total = int((a.warmup + a.duration) * a.rate)
    args = bare_args(t, a, total, a.warmup + a.duration + 30, broker)
    proc = await helper_process("bench.ingest_amqp", *args, "--record")
    send: dict[int, float] = {}
    cpu = CpuWindow({"bare consumer": proc.pid, "broker": broker, "load generator": os.getpid()})
    load = await open_loop(t.bare, a, seq0, send, cpu)
    r = await helper_result(proc, 60)
    start = first_measured(seq0, a)
    lat = [acked - send[s] for s, acked in r["received"] if s >= start and s in send]
    return Latency(load, stored=lat, expected_messages=total - (start - seq0),
                   detail=f"{r['count']:,} of {total:,} messages acked")  # fmt: skip


async def server_latency(server: ServerProcess, token: str, a: argparse.Namespace, db: BenchDb, tag_ids: list[int],
                         seq0: int, t: Topology, broker: int | None) -> Latency:  # fmt: skip
    assert server.proc is not None
    res = Results()
    start = first_measured(seq0, a)
    ws = await open_stream(server.base, token)
    await asyncio.sleep(0.5)  # the snapshot frame
    recv_task = asyncio.create_task(receiver(ws, res, {}, [start]))
    poller = StoredPoller(db, tag_ids, a.poll_ms / 1000)
    stop = asyncio.Event()
    poll_task = asyncio.create_task(poller.run(stop))
    cpu = CpuWindow({"server": server.proc.pid, "broker": broker, "load generator": os.getpid()})
    try:
        load = await open_loop(t.name, a, seq0, res.send, cpu)
        await asyncio.sleep(1.5)  # stragglers
    finally:
        stop.set()
        await poll_task
        recv_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recv_task
        await ws.close()
    total = int((a.warmup + a.duration) * a.rate)
    measured = range(start, seq0 + total)
    stored = [poller.seen[s] - res.send[s] for s in measured if s in poller.seen]
    period = poller.query_s / max(1, poller.polls)
    detail = (f"stored: {len(stored):,} of {len(measured):,} messages seen, {poller.polls:,} polls, "
              f"{period * 1000:.2f} ms per query; stream: {len(res.latencies):,} of {len(measured) * a.values:,} "
              f"values in {res.frames:,} frames")  # fmt: skip
    return Latency(load, stored=stored, stream=list(res.latencies), expected_messages=len(measured), detail=detail)


# -- one backend ----------------------------------------------------------------------------


async def bench_backend(backend: str, a: argparse.Namespace) -> tuple[list[Row], str]:
    topo = Topology(f"iiot-bench-{uuid.uuid4().hex[:10]}")
    broker = process_pid("beam.smp")
    async with bench_database(backend) as db:
        setup = ServerProcess(db.url, db.tmp)
        setup.env |= port_env() | a.extra_env
        try:
            setup.start()
            token = setup_namespace(setup.base, a.devices, a.values)
        finally:
            setup.stop()
        tag_ids = await tag_ids_of(db, a.devices)
        await declare(topo)
        try:
            fill_s = await prefill(topo, a)
            depths = await depths_and_detach(topo)
            if set(depths.values()) != {a.messages}:
                raise RuntimeError(f"queues hold {depths} messages, expected {a.messages} each")
            quiet = wait_for_quiet(max_wait=a.max_quiet_wait)
            print(f"  {backend}: pre-filled {a.messages:,} messages in {fill_s:.1f} s; bare consumer …", flush=True)
            bare = await bare_throughput(topo, a, broker)
            print(f"  {backend}: bare consumer {fmt_rate(bare.samples_per_s)} samples; server …", flush=True)
            server = ServerProcess(db.url, db.tmp)
            server.env |= (
                port_env()
                | {
                    "IIOT_AMQP_URL": AMQP_URL,
                    "IIOT_AMQP_EXCHANGE": topo.name,
                    "IIOT_AMQP_QUEUE": topo.name,
                    "IIOT_AMQP_PREFETCH": str(a.prefetch),
                }
                | a.extra_env
            )
            try:
                server.start()
                drained = await server_throughput(server, token, a, broker)
                print(f"  {backend}: server {fmt_rate(drained.samples_per_s)} samples; latency …", flush=True)
                seq0 = a.messages + 1
                bare_lat = await bare_latency(topo, a, seq0, broker)
                seq1 = seq0 + int((a.warmup + a.duration) * a.rate) + 1
                srv_lat = await server_latency(server, token, a, db, tag_ids, seq1, topo, broker)
            finally:
                server.stop()
        finally:
            await delete(topo)
    return rows_and_note(backend, a, fill_s, quiet, bare, drained, bare_lat, srv_lat)


def rows_and_note(backend: str, a: argparse.Namespace, fill_s: float, quiet: str, bare: Drain, drained: Drain,
                  bare_lat: Latency, srv_lat: Latency) -> tuple[list[Row], str]:  # fmt: skip
    ratio = drained.samples_per_s / bare.samples_per_s
    b50, b99 = p50_p99(bare_lat.stored)
    s50, s99 = p50_p99(srv_lat.stored)
    w50, w99 = p50_p99(srv_lat.stream)
    load = f"{a.rate:g} msg/s × {a.values}"
    base = "(bare consumer, publish → ack)"
    rows = [
        Row(backend, f"AMQP ingest, samples/s ({a.messages:,} queued msgs × {a.values} values, prefetch {a.prefetch})",
            fmt_rate(drained.samples_per_s), f"{fmt_rate(bare.samples_per_s)} (bare aio-pika consumer)",
            f"{ratio:.0%}", f"≥ {GOAL:.0%} of the bare consumer", yes_no(ratio >= GOAL)),
        Row(backend, f"AMQP publish → stored p50 ({load})", ms(s50), f"{ms(b50)} {base}", f"{s50 / b50:.1f}",
            "— (report)", "n/a"),
        Row(backend, f"AMQP publish → stored p99 ({load})", ms(s99), f"{ms(b99)} {base}", f"{s99 / b99:.1f}",
            "— (report)", "n/a"),
        Row(backend, f"AMQP publish → WS frame p50 ({load})", ms(w50), f"{ms(b50)} {base}", f"{w50 / b50:.1f}",
            "— (report)", "n/a"),
        Row(backend, f"AMQP publish → WS frame p99 ({load})", ms(w99), f"{ms(b99)} {base}", f"{w99 / b99:.1f}",
            "— (report)", "n/a"),
    ]  # fmt: skip
    missing = srv_lat.expected_messages - len(srv_lat.stored)

    def top(xs: list[float]) -> str:
        return ms(max(xs, default=float("nan")))

    def late(load: Load) -> str:
        warn = LATE_WARNING if load.late > LATE_LIMIT * a.rate * (a.warmup + a.duration) else ""
        return f"{load.late} sends > 5 ms late{warn}"

    note = (
        f"{backend}: {quiet}; pre-fill {a.messages:,} messages into both queues in {fill_s:.1f} s "
        f"({a.messages / fill_s:,.0f} msg/s). Throughput: bare consumer {bare.messages_per_s:,.0f} msg/s over "
        f"{bare.span:.2f} s (CPU: {cpu_text(bare.cpu)}); server {drained.messages_per_s:,.0f} msg/s, "
        f"{drained.detail} (CPU: {cpu_text(drained.cpu)}). Latency phase, bare: {bare_lat.detail}, achieved "
        f"{bare_lat.load.achieved:.1f} msg/s ({late(bare_lat.load)}), max {top(bare_lat.stored)} "
        f"(CPU: {cpu_text(bare_lat.load.cpu)}); server: {srv_lat.detail}, achieved {srv_lat.load.achieved:.1f} msg/s "
        f"({late(srv_lat.load)}), max stored {top(srv_lat.stored)}, max WS {top(srv_lat.stream)}, "
        f"{missing} messages never seen stored (CPU: {cpu_text(srv_lat.load.cpu)})."
    )
    print(f"  {backend}: " + "; ".join(f"{r.figure}: {r.value} vs {r.baseline}" for r in rows), flush=True)
    return rows, note


def broker_reachable() -> str | None:
    async def check() -> None:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
        await connection.close()

    try:
        asyncio.run(check())
    except Exception as exc:  # noqa: BLE001 - reported as the reason
        return f"{exc.__class__.__name__}: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["_bare"]:
        return bare_main(args[1:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=20_000, help="messages queued for the throughput part")
    p.add_argument("--values", type=int, default=10, help="values (tags) per message (default 10)")
    p.add_argument("--devices", type=int, default=20, help="devices the messages rotate over (default 20)")
    p.add_argument(
        "--prefetch",
        type=int,
        default=DEFAULT_PREFETCH,
        help=f"consumer prefetch, server and baseline (default: the server's, {DEFAULT_PREFETCH})",
    )
    p.add_argument("--rate", type=float, default=100, help="messages/s in the latency part (default 100)")
    p.add_argument("--duration", type=float, default=10, help="measured seconds of the latency part (default 10)")
    p.add_argument("--warmup", type=float, default=2, help="seconds of load before measuring (default 2)")
    p.add_argument("--poll-ms", type=float, default=2, help="database poll period for publish → stored (default 2)")
    p.add_argument("--max-quiet-wait", type=float, default=120, help="seconds to wait for an idle machine")
    p.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                   help="diagnostic: an extra server setting, e.g. IIOT_OPCUA_PORT=0 (repeatable)")  # fmt: skip
    p.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    p.add_argument("--no-doc", action="store_true", help="print only, do not append to docs/benchmarks.md")
    a = p.parse_args(args)
    a.extra_env = extra_env(a.server_env)
    problem = broker_reachable()
    if problem:
        print(f"RabbitMQ at {AMQP_URL} is unreachable ({problem}); start it (`rabbitmq-server -detached`) "
              "or set IIOT_BENCH_AMQP_URL", file=sys.stderr)  # fmt: skip
        return 2
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    backends = BACKENDS if a.backend == "both" else (a.backend,)
    rows: list[Row] = []
    notes = [
        "Real server (`python -m server.cli run`, default settings but `amqp_prefetch` "
        f"{a.prefetch}: historian flush 0.2 s, stream coalescing {STREAM_COALESCE_S * 1000:.0f} ms) in its own "
        "process, consuming the machine's RabbitMQ on a durable queue of its own; persistent messages, routing key "
        f"`telemetry.bench.<device>`, {a.values} values each over {a.devices} devices. Throughput: {a.messages:,} "
        "messages published once (confirms) into the server's queue and an identical one for the baseline, then "
        "drained; baseline = a bare aio-pika consumer in its own process (plain asyncio, same prefetch, a callback "
        "per delivery, `json.loads`, `ack()`), timed first delivery → last ack; server timed by polling "
        "`/api/v1/ingest/stats` (accepted, counted after the historian commit) every 100 ms, first poll with samples "
        f"→ first with all. Latency: open loop {a.rate:g} msg/s ({a.rate * a.values:,.0f} samples/s, each tag "
        f"updated every {a.devices / a.rate * 1000:.0f} ms), {a.duration:g} s measured after {a.warmup:g} s "
        "warm-up, publisher in this process (uvloop, no confirms). Baseline = the bare consumer's ack − send. "
        "Stream = WS frame received − send, per value (one client subscribed to the plant). Stored = first "
        f"database poll (this process's own connection, every {a.poll_ms:g} ms) that sees the message's row − "
        "send, accurate to one poll period plus one query; `/api/v1/values` reads the live cache "
        "(updated before the commit), so it cannot tell stored. CPU shares are % of one core (200% = both cores).",
    ]
    for backend in backends:
        print(f"AMQP ingest on {backend}: {a.messages:,} messages × {a.values} values; latency at {a.rate:g} msg/s",
              flush=True)  # fmt: skip
        r, n = asyncio.run(bench_backend(backend, a))
        rows += r
        notes.append(n)
    cmd = "python -m bench.ingest_amqp " + " ".join(args)
    title = "AMQP ingest against a bare aio-pika consumer"
    if a.extra_env:
        title += f" (diagnostic: server with {', '.join(a.server_env)})"
    publish(title, rows, notes, cmd.strip(), write=not a.no_doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
