"""OPC UA client adapter: sustained samples/s and source → stored / → stream-frame latency, beside
a bare asyncua subscription against the same field server in the same run.

Field server (own process, `python -m bench.ingest_opcua field`): an asyncua `Server` on 127.0.0.1
and a free port, `--vars` Double variables (default 1,000: `ns=2;s=V0000`…) in one folder. It
rewrites every variable every `--period-ms` (default 100 ms; 0 = as fast as it can), in chunks of
50 spread over the period, with `write_attribute_value` (asyncua's fast local write, which triggers
its monitored items). When it can't keep the schedule it writes as fast as it can (a field server
in Python manages ~5-9k writes/s on one core here, so the default 10k/s target means flat out).
Each value encodes the write's sequence number and its time: `(cycle << 24) | ticks`, ticks =
0.1 ms since the field server started (exact in a double), the source timestamp is the same
instant. Every process is on this machine, so `time.time()` is comparable and any receiver
computes latency = its `time.time()` on receipt − the decoded write time.

One sample = one tag value. Phases alternate against the same field load, `--rounds` times:
- baseline (own process, `python -m bench.ingest_opcua baseline`): a bare asyncua client with one
  subscription and one monitored item per variable, with the adapter's parameters (publishing
  interval, sampling interval, queue size, discard oldest, source + server timestamps) and
  `--baseline handler` (default: `Client.create_subscription(params, handler)` +
  `subscribe_data_change`, a `datachange_notification` that counts and decodes; asyncua runs it
  in a task per notification) or `raw` (the adapter's own path: `uaclient.create_subscription`
  with a callback per Publish response, no tasks). Figure: notifications/s, notification latency.
- server: the real server (`bench.ingest_latency.ServerProcess`: `python -m server.cli run` on a
  throwaway SQLite or PostgreSQL database; its own OPC UA server and CoAP off) with one "opcua"
  connection (POST /api/v1/connections) mapping every variable to a tag (`--devices` devices of
  vars/devices tags each). It is enabled only during its phases (PATCH enabled), so the field
  server never feeds two clients at once. Figures: accepted samples/s (`GET /api/v1/ingest/stats`,
  counted after the historian commit) over the measured window; source → WS frame latency of
  every Good value seen by one WebSocket client subscribed to the plant; source → stored latency
  of `--probes` tags per device (default 2), their newest stored value polled from the database
  every `--probe-ms` (default 20 ms, so it includes 0–20 ms of polling delay).
Each phase: `--warmup` s after the subscription delivers, then `--duration` s measured. CPU of
each process over the window from /proc/<pid>/stat. The goal (issue): the server's samples/s at
least 80 % of the bare client's. The field server is CPU-bound and shares 2 cores with everything
else, so what it writes differs from phase to phase: the rate ratio is therefore taken on each
consumer's share of the field's writes during its own windows (the raw samples/s ratio beside it).
Latency ratios are server ÷ bare client.

    python -m bench.ingest_opcua [--vars 1000] [--period-ms 100] [--publishing-ms 100] [--duration 10]
        [--rounds 2] [--baseline handler|raw] [--backend sqlite|postgresql|both] [--no-doc]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeNotif
from asyncua.server.server import Server
from asyncua.ua.attribute_ids import AttributeIds

from bench._field_bench import (
    Api,
    Child,
    StoredProbe,
    cpu_now,
    cpu_used,
    flags,
    ms,
    open_stream,
    read_stream,
    say,
    serve_commands,
    spread,
    uvloop_here,
)
from bench.common import BACKENDS, Row, bench_database, fmt_rate, publish, wait_for_quiet, yes_no
from bench.ingest_latency import ServerProcess, free_port, setup_namespace

NS_URI = "urn:iiot:bench:field"
TICK_S = 1e-4
TICK_BITS = 24
TICK_MASK = (1 << TICK_BITS) - 1
WRAP_S = (1 << TICK_BITS) * TICK_S  # 1,677.7 s: ticks wrap, decode() unwraps against the receiver's clock
CHUNK = 50
GOAL = 0.8

# -- value encoding ----------------------------------------------------------------------------


def encode(cycle: int, t: float, t0: float) -> float:
    return float((cycle << TICK_BITS) | (int((t - t0) / TICK_S) & TICK_MASK))


def decode(value: float, t0: float, now: float) -> tuple[int, float]:
    """(cycle, write time) of a value, the write time unwrapped to the one closest before `now`."""
    v = int(value)
    t = t0 + (v & TICK_MASK) * TICK_S
    return v >> TICK_BITS, t + round((now - t) / WRAP_S) * WRAP_S


def node_name(i: int) -> str:
    return f"V{i:04d}"


def node_id(i: int, ns: int) -> ua.NodeId:
    return ua.NodeId(ua.String(node_name(i)), ua.Int16(ns))


# -- the field server (child process) ------------------------------------------------------------


async def field_role(a: argparse.Namespace) -> None:
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    server = Server()
    await server.init()
    url = f"opc.tcp://127.0.0.1:{a.port}"
    server.set_endpoint(url)
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace(NS_URI)
    folder = await server.nodes.objects.add_folder(
        ua.NodeId(ua.String("Field"), ua.Int16(idx)), ua.QualifiedName("Field", idx)
    )
    ids: list[ua.NodeId] = []
    for i in range(a.vars):
        var = await folder.add_variable(
            node_id(i, idx), ua.QualifiedName(node_name(i), idx), 0.0, ua.VariantType.Double
        )
        ids.append(var.nodeid)
    await server.start()
    t0 = time.time()
    counts = {"writes": 0, "cycles": 0, "late_chunks": 0}
    good = ua.StatusCode()

    async def write_forever() -> None:
        period = a.period_ms / 1000
        chunks = math.ceil(len(ids) / CHUNK)
        start = time.perf_counter()
        k = 0  # chunks written so far, over all cycles
        cycle = 0
        while True:
            cycle += 1
            for c in range(chunks):
                for nid in ids[c * CHUNK : (c + 1) * CHUNK]:
                    now = time.time()
                    stamp = cast(ua.DateTime, datetime.fromtimestamp(now, UTC))  # asyncua takes aware datetimes
                    dv = ua.DataValue(
                        ua.Variant(encode(cycle, now, t0), ua.VariantType.Double), StatusCode=good,
                        SourceTimestamp=stamp, ServerTimestamp=stamp,
                    )  # fmt: skip
                    await server.write_attribute_value(nid, dv)
                counts["writes"] += min(CHUNK, len(ids) - c * CHUNK)
                k += 1
                delay = start + k * period / chunks - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                    continue
                if period > 0 and delay < -0.005:
                    counts["late_chunks"] += 1
                if delay < -period:  # more than a cycle behind: no catch-up burst later, just go on flat out
                    start, k = time.perf_counter(), 0
                await asyncio.sleep(0)  # let the server answer Publish requests
            counts["cycles"] = cycle

    async def stats() -> dict[str, Any]:
        return {"t": time.time(), **counts}

    task = asyncio.create_task(write_forever())
    say({"endpoint": url, "t0": t0, "ns": idx})
    try:
        await serve_commands({"stats": stats})
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.stop()


# -- the bare asyncua baseline (child process) ---------------------------------------------------


def subscription_params(client: Client, publishing_ms: float) -> ua.CreateSubscriptionParameters:
    """What the adapter asks for (server/ingest/opcua_client.py, ConnectionLink._subscribe)."""
    return ua.CreateSubscriptionParameters(
        RequestedPublishingInterval=publishing_ms, RequestedLifetimeCount=10_000,
        RequestedMaxKeepAliveCount=client.get_keepalive_count(publishing_ms), MaxNotificationsPerPublish=0,
        PublishingEnabled=True, Priority=0,
    )  # fmt: skip


@dataclass
class Tally:
    t0: float
    measuring: bool = False
    started: float = 0.0
    count: int = 0
    latencies: list[float] = field(default_factory=list)

    def value(self, v: Any, now: float) -> None:
        if self.measuring and isinstance(v, float):
            self.count += 1
            self.latencies.append(now - decode(v, self.t0, now)[1])


class Handler:
    """The documented high-level handler: one call per data change."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def datachange_notification(self, node: Node, val: Any, data: DataChangeNotif) -> None:
        self.tally.value(val, time.time())


async def baseline_role(a: argparse.Namespace) -> None:
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    tally = Tally(a.t0)
    client = Client(a.endpoint, timeout=10)
    await client.connect()
    ids = [node_id(i, a.ns) for i in range(a.vars)]
    params = subscription_params(client, a.publishing_ms)
    if a.mode == "raw":

        def on_publish(result: ua.PublishResult) -> None:
            now = time.time()
            for note in result.NotificationMessage.NotificationData or ():
                if isinstance(note, ua.DataChangeNotification):
                    for mi in note.MonitoredItems:
                        tally.value(mi.Value.Value.Value if mi.Value and mi.Value.Value else None, now)

        created = await client.uaclient.create_subscription(params, on_publish)
        requests = [
            ua.MonitoredItemCreateRequest(
                ItemToMonitor=ua.ReadValueId(NodeId=nid, AttributeId=AttributeIds.Value),
                MonitoringMode=ua.MonitoringMode.Reporting,
                RequestedParameters=ua.MonitoringParameters(
                    ClientHandle=h, SamplingInterval=a.sampling_ms, QueueSize=a.queue, DiscardOldest=True
                ),
            )
            for h, nid in enumerate(ids, start=1)
        ]
        for start in range(0, len(requests), 1000):
            await client.uaclient.create_monitored_items(
                ua.CreateMonitoredItemsParameters(
                    SubscriptionId=created.SubscriptionId, ItemsToCreate=requests[start : start + 1000],
                    TimestampsToReturn=ua.TimestampsToReturn.Both,
                )
            )  # fmt: skip
    else:
        sub = await client.create_subscription(params, Handler(tally))
        for start in range(0, len(ids), 1000):
            await sub.subscribe_data_change(
                [client.get_node(n) for n in ids[start : start + 1000]], queuesize=a.queue,
                sampling_interval=a.sampling_ms,
            )  # fmt: skip

    async def begin() -> dict[str, Any]:
        tally.count, tally.latencies = 0, []
        tally.measuring = True
        tally.started = time.perf_counter()
        return {"t": time.time()}

    async def end() -> dict[str, Any]:
        tally.measuring = False
        elapsed = time.perf_counter() - tally.started
        lat_us = [round(x * 1e6) for x in tally.latencies]
        return {"elapsed": elapsed, "count": tally.count, "latency_us": lat_us}

    say({"subscribed": len(ids)})
    try:
        await serve_commands({"start": begin, "stop": end})
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 5)


# -- the benchmark ------------------------------------------------------------------------------


@dataclass
class Phase:
    kind: str  # "baseline" | "server"
    rate: float  # samples (notifications) per second
    count: int
    elapsed: float
    offered: float  # field writes/s in the window
    cpu: dict[str, float]
    frame: list[float] = field(default_factory=list)  # server: source → WS frame
    stored: list[float] = field(default_factory=list)  # server: source → stored (probe tags)
    latency: list[float] = field(default_factory=list)  # baseline: source → notification


class Bench:
    def __init__(self, a: argparse.Namespace, backend: str) -> None:
        self.a, self.backend = a, backend
        args = {"port": free_port(), "vars": a.vars, "period-ms": a.period_ms}
        self.field = Child("field", ["bench.ingest_opcua", "field", *flags(args)])
        self.info: dict[str, Any] = {}
        self.measuring = False
        self.frame: list[float] = []
        self.stored: list[float] = []
        self.setup_s: dict[str, float] = {}

    def config(self) -> dict[str, Any]:
        a = self.a
        per = a.vars // a.devices
        items = [
            {"node_id": f"ns={self.info['ns']};s={node_name(i)}", "device": f"Plant1/Opc{i // per:02d}",
             "tag": f"T{i % per:03d}"}
            for i in range(a.vars)
        ]  # fmt: skip
        return {
            "endpoint": self.info["endpoint"], "publishing_interval_ms": a.publishing_ms,
            "sampling_interval_ms": a.sampling_ms, "queue_size": a.queue, "timeout_s": 10, "reconnect_min_s": 0.2,
            "reconnect_max_s": 2, "items": items,
        }  # fmt: skip

    def on_frame_value(self, node: str, value: float, ts: float, now: float) -> None:
        if self.measuring:
            self.frame.append(now - decode(value, self.info["t0"], now)[1])

    def on_stored_value(self, node: str, value: float, now: float) -> None:
        if self.measuring:
            self.stored.append(now - decode(value, self.info["t0"], now)[1])

    async def baseline_phase(self) -> Phase:
        a = self.a
        args = {
            "endpoint": self.info["endpoint"], "ns": self.info["ns"], "t0": repr(self.info["t0"]), "vars": a.vars,
            "publishing-ms": a.publishing_ms, "sampling-ms": a.sampling_ms, "queue": a.queue, "mode": a.baseline,
            "event-loop": a.event_loop,
        }  # fmt: skip
        child = Child("baseline", ["bench.ingest_opcua", "baseline", *flags(args)])
        try:
            await child.start()
            await asyncio.sleep(a.warmup)
            pids = {"field": self.field.pid, "client": child.pid, "bench": os.getpid()}
            f0, c0 = await self.field.ask("stats"), cpu_now(pids)
            await child.ask("start")
            await asyncio.sleep(a.duration)
            res = await child.ask("stop")
            f1, c1 = await self.field.ask("stats"), cpu_now(pids)
        finally:
            await child.stop()
        offered = (f1["writes"] - f0["writes"]) / (f1["t"] - f0["t"])
        latency = [x / 1e6 for x in res["latency_us"]]
        return Phase("baseline", res["count"] / res["elapsed"], int(res["count"]), float(res["elapsed"]), offered,
                     cpu_used(c0, c1), latency=latency)  # fmt: skip

    async def server_phase(self, api: Api, server_pid: int, cid: int) -> Phase:
        a = self.a
        _, before = await api.accepted("opcua")
        await api.set_enabled(cid, True)
        await api.wait_accepted("opcua", before + a.vars, 60, "the server's first values")
        await asyncio.sleep(a.warmup)
        pids = {"field": self.field.pid, "server": server_pid, "bench": os.getpid()}
        self.frame, self.stored = [], []
        f0, c0, (t0, n0) = await self.field.ask("stats"), cpu_now(pids), await api.accepted("opcua")
        self.measuring = True
        await asyncio.sleep(a.duration)
        self.measuring = False
        f1, c1, (t1, n1) = await self.field.ask("stats"), cpu_now(pids), await api.accepted("opcua")
        await api.set_enabled(cid, False)
        await api.wait_settled("opcua")
        offered = (f1["writes"] - f0["writes"]) / (f1["t"] - f0["t"])
        return Phase("server", (n1 - n0) / (t1 - t0), n1 - n0, t1 - t0, offered, cpu_used(c0, c1),
                     frame=self.frame, stored=self.stored)  # fmt: skip

    async def run(self) -> tuple[list[Phase], str, dict[str, Any], dict[str, float]]:
        """All phases on one backend: (phases, quiet note, adapter counters, set-up seconds)."""
        a = self.a
        phases: list[Phase] = []
        async with bench_database(self.backend) as db:
            server = ServerProcess(db.url, db.tmp)
            server.env |= {"IIOT_OPCUA_PORT": "0", "IIOT_COAP_PORT": "0", "IIOT_EVENT_LOOP": a.event_loop}
            api: Api | None = None
            stop = asyncio.Event()
            tasks: list[asyncio.Task[None]] = []
            try:
                self.info = await self.field.start()
                t_start = time.perf_counter()
                await asyncio.to_thread(server.start)
                assert server.proc is not None
                token = await asyncio.to_thread(setup_namespace, server.base, 0, 0)
                api = Api(server.base, token)
                t_setup = time.perf_counter()
                cid = await api.create_connection("opcua", "field", self.config(), enabled=True)
                # First enable: the adapter creates the devices and tags, subscribes, stores the first values.
                await api.wait_accepted("opcua", a.vars, 120, "the connection's first values")
                self.setup_s = {"server start": t_setup - t_start, "first enable": time.perf_counter() - t_setup}
                print(f"  {self.backend}: server started in {self.setup_s['server start']:.1f} s; first enable "
                      f"(devices and {a.vars:,} tags created, subscribed, first values stored) "
                      f"{self.setup_s['first enable']:.1f} s", flush=True)  # fmt: skip
                await api.set_enabled(cid, False)
                await api.wait_settled("opcua")
                per = a.vars // a.devices
                picks = sorted({k * per // a.probes for k in range(a.probes)})
                probes = [await api.node_id(f"Plant1/Opc{d:02d}/T{k:03d}") for d in range(a.devices) for k in picks]
                ws = await open_stream(server.base, token, "Plant1")
                probe = StoredProbe(db, probes, self.on_stored_value, a.probe_ms / 1000)
                tasks = [
                    asyncio.create_task(read_stream(ws, self.on_frame_value)),
                    asyncio.create_task(probe.run(stop)),
                ]
                quiet = await asyncio.to_thread(wait_for_quiet)
                for r in range(a.rounds):
                    for kind in ("baseline", "server") if r % 2 == 0 else ("server", "baseline"):
                        p = (
                            await self.baseline_phase()
                            if kind == "baseline"
                            else await self.server_phase(api, server.proc.pid, cid)
                        )
                        print(f"  {self.backend} round {r + 1} {kind}: {p.rate:,.0f} samples/s "
                              f"(field offered {p.offered:,.0f}/s), cpu {_cores(p.cpu)}", flush=True)  # fmt: skip
                        phases.append(p)
                stats = await api.stats("opcua")
                await ws.close()
            finally:
                stop.set()
                for t in tasks:
                    t.cancel()
                for t in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await t
                if api is not None:
                    await api.close()
                await asyncio.to_thread(server.stop)
                await self.field.stop()
        return phases, quiet, stats, self.setup_s


def _cores(cpu: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in cpu.items() if k != "wall")


def summarize(
    backend: str,
    phases: list[Phase],
    quiet: str,
    stats: dict[str, Any],
    setup_s: dict[str, float],
    a: argparse.Namespace,
) -> tuple[list[Row], str]:
    base = [p for p in phases if p.kind == "baseline"]
    srv = [p for p in phases if p.kind == "server"]
    b_rate = sum(p.count for p in base) / sum(p.elapsed for p in base)
    s_rate = sum(p.count for p in srv) / sum(p.elapsed for p in srv)
    # The field server is CPU-bound and shares the cores, so what it offers differs between phases:
    # each consumer's rate is also taken relative to what the field wrote during its own windows.
    b_offered = sum(p.offered * p.elapsed for p in base) / sum(p.elapsed for p in base)
    s_offered = sum(p.offered * p.elapsed for p in srv) / sum(p.elapsed for p in srv)
    b_share, s_share = b_rate / b_offered, s_rate / s_offered
    ratio, raw_ratio = s_share / b_share, s_rate / b_rate
    bare = spread([x for p in base for x in p.latency])
    frame = spread([x for p in srv for x in p.frame])
    stored = spread([x for p in srv for x in p.stored])

    def cpu(ps: list[Phase], who: str) -> float:
        return sum(p.cpu[who] * p.cpu["wall"] for p in ps) / sum(p.count for p in ps) * 1e6

    b_cpu, s_cpu = cpu(base, "client"), cpu(srv, "server")
    load = f"{a.vars:,} items, publishing {a.publishing_ms:g} ms"
    vs = f"{ms(bare['p50'])} / {ms(bare['p99'])} (→ bare notification)"
    rows = [
        Row(backend, f"OPC UA client ingest, samples/s ({load}; share of the field's writes)",
            f"{fmt_rate(s_rate)} ({s_share:.0%})", f"{fmt_rate(b_rate)} ({b_share:.0%}; bare asyncua {a.baseline})",
            f"{ratio:.0%} (raw {raw_ratio:.0%})", f"≥ {GOAL:.0%} of bare asyncua", yes_no(ratio >= GOAL)),
        Row(backend, "OPC UA source change → WS frame latency p50 / p99", f"{ms(frame['p50'])} / {ms(frame['p99'])}",
            vs, f"{frame['p50'] / bare['p50']:.1f} / {frame['p99'] / bare['p99']:.1f}", "— (report)", "n/a"),
        Row(backend, f"OPC UA source change → stored latency p50 / p99 (probes polled every {a.probe_ms:g} ms)",
            f"{ms(stored['p50'])} / {ms(stored['p99'])}", vs,
            f"{stored['p50'] / bare['p50']:.1f} / {stored['p99'] / bare['p99']:.1f}", "— (report)", "n/a"),
        Row(backend, "OPC UA CPU per sample (server process vs bare client process)", f"{s_cpu:.0f} µs",
            f"{b_cpu:.0f} µs", f"{s_cpu / b_cpu:.1f}", "— (report)", "n/a"),
    ]  # fmt: skip
    target = "as fast as it can" if a.period_ms == 0 else f"target {a.vars * 1000 / a.period_ms:,.0f}/s"
    per_phase = "; ".join(f"{p.kind} {p.rate:,.0f}/s of {p.offered:,.0f}/s offered ({_cores(p.cpu)})" for p in phases)
    setup = ", ".join(f"{k} {v:.1f} s" for k, v in setup_s.items())
    note = (
        f"{backend}: {quiet}; set-up: {setup}. The field wrote {b_offered:,.0f} values/s during the baseline "
        f"phases and {s_offered:,.0f}/s during the server phases ({target}); ratio = (server samples/s ÷ field "
        f"writes/s in its windows) ÷ (the same for the bare client), raw = server ÷ bare samples/s. Per phase (CPU "
        f"in cores, 100% = one core): {per_phase}. At {s_cpu:.0f} µs per sample one core would take "
        f"~{fmt_rate(1e6 / s_cpu)} (the field server, not the adapter, sets the rate here). Latency: WS frame over "
        f"{frame['n']:,.0f} values (max {ms(frame['max'])}), stored over {stored['n']:,.0f} probe values (max "
        f"{ms(stored['max'])}), bare notification over {bare['n']:,.0f} (max {ms(bare['max'])}). Adapter counters at "
        f"the end: received {stats.get('received', 0):,}, accepted {stats.get('accepted', 0):,}, rejected "
        f"{stats.get('rejected') or {}}, reconnects {stats.get('reconnects', 0)}."
    )
    return rows, note


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("field", "baseline"):
        return child_main(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vars", type=int, default=1000, help="field variables = monitored items = tags (default 1000)")
    p.add_argument("--devices", type=int, default=10, help="devices the tags are spread over (default 10)")
    p.add_argument("--period-ms", type=float, default=100, help="field rewrites every variable this often; 0 = "
                   "as fast as it can (default 100)")  # fmt: skip
    p.add_argument("--publishing-ms", type=float, default=100, help="subscription publishing interval (default 100)")
    p.add_argument("--sampling-ms", type=float, default=0, help="monitored item sampling interval (default 0)")
    p.add_argument("--queue", type=int, default=10, help="monitored item queue size (default 10, the adapter's)")
    p.add_argument("--baseline", choices=["handler", "raw"], default="handler", help="bare client API (see above)")
    p.add_argument("--duration", type=float, default=10, help="measured seconds per phase (default 10)")
    p.add_argument("--warmup", type=float, default=3, help="seconds before measuring, per phase (default 3)")
    p.add_argument("--rounds", type=int, default=2, help="baseline + server phase pairs (default 2)")
    p.add_argument("--probe-ms", type=float, default=20, help="stored-value probe interval (default 20)")
    p.add_argument("--probes", type=int, default=2, help="probe tags per device for the stored latency (default 2)")
    p.add_argument(
        "--event-loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="event loop of the server and the bare client alike (default asyncio, the server's default)",
    )
    p.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    p.add_argument("--no-doc", action="store_true", help="print only, do not append to docs/benchmarks.md")
    a = p.parse_args(argv)
    if a.vars % a.devices:
        p.error("--vars must be a multiple of --devices")
    backends = BACKENDS if a.backend == "both" else (a.backend,)
    rows: list[Row] = []
    notes = [
        f"Field: asyncua Server in its own process, {a.vars:,} Double variables rewritten "
        + (f"every {a.period_ms:g} ms" if a.period_ms else "as fast as it can")
        + " (value = sequence number and write time, source timestamp = write time). "
        f"Alternating phases against it, {a.rounds} of each, {a.warmup:g} s warm-up + {a.duration:g} s measured: "
        f"a bare asyncua client ({a.baseline} API) in its own process, and the real server "
        "(`python -m server.cli run`, northbound OPC UA and CoAP off) with one opcua connection of "
        f"{a.vars:,} items over {a.devices} devices (publishing {a.publishing_ms:g} ms, sampling {a.sampling_ms:g} ms, "
        f"queue {a.queue}), enabled only in its phases; event loop {a.event_loop} in the server and the bare client. "
        "Server samples/s = accepted (after the historian commit) ÷ window; latency = receipt − write time on the "
        "same clock: every Good value of one WS client subscribed "
        f"to the plant, and {a.probes} probe tags per device polled from the database every {a.probe_ms:g} ms. Goal: "
        "≥ 80 % of the bare client's samples/s. All processes share the machine's 2 cores with PostgreSQL."
    ]
    for backend in backends:
        print(f"opcua ingest on {backend}: {a.vars} items, field period {a.period_ms:g} ms", flush=True)
        with uvloop_here():  # this process only: the children use --event-loop, like the server
            phases, quiet, stats, setup_s = asyncio.run(Bench(a, backend).run())
        r, n = summarize(backend, phases, quiet, stats, setup_s, a)
        rows += r
        notes.append(n)
    cmd = "python -m bench.ingest_opcua " + " ".join(argv)
    publish("OPC UA client ingest", rows, notes, cmd.strip(), write=not a.no_doc)
    return 0


def child_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog=f"bench.ingest_opcua {argv[0]}")
    p.add_argument("--vars", type=int, required=True)
    if argv[0] == "field":
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--period-ms", type=float, required=True)
        asyncio.run(field_role(p.parse_args(argv[1:])))
        return 0
    p.add_argument("--endpoint", required=True)
    p.add_argument("--ns", type=int, required=True)
    p.add_argument("--t0", type=float, required=True)
    p.add_argument("--publishing-ms", type=float, required=True)
    p.add_argument("--sampling-ms", type=float, required=True)
    p.add_argument("--queue", type=int, required=True)
    p.add_argument("--mode", choices=["handler", "raw"], required=True)
    p.add_argument("--event-loop", choices=["asyncio", "uvloop"], required=True)
    args = p.parse_args(argv[1:])
    if args.event_loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(baseline_role(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
