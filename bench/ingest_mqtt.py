"""MQTT ingest: sustained samples/s and publish → stored / → stream latency, beside a bare aiomqtt subscriber.

Broker: a private Mosquitto started for the run on a free port (`max_queued_messages 0`: the
system broker's default of 1,000 queued messages per session would drop QoS 1 messages as soon
as a subscriber falls behind, which is the very state a throughput test creates).

Throughput (one sample = one tag value). Messages are `{"ts": ..., "values": {10 tags}}` on
`bench/devices/Plant1/DevNNN/telemetry`, published at QoS 1 by `--publishers` `mosquitto_pub -l`
processes (C, ~27k msg/s each here, so the publishers cost little CPU) as fast as the broker takes
them; the consumer is started and subscribed first, so what it can't keep up with queues in the
broker. The consumer's rate is the slope between the moments it has done 10 % and 90 % of the
messages (start-up and tail excluded):
- baseline: a bare aiomqtt subscriber in its own process — MQTT 5, QoS 1, Receive Maximum 1,000
  (as the server), `json.loads` of each payload, aiomqtt's automatic acknowledgement;
- the server (`python -m server.cli run`, its MQTT adapter on the private broker), done = its
  ingest counters (`GET /api/v1/ingest/stats`, accepted samples, counted after the historian
  commit) polled every 0.2 s;
- on PostgreSQL also `--processes` server processes sharing one database and one shared
  subscription (`$share/iiot/...`), which is how the platform scales past one core.

Latency: an open-loop publisher in this process (aiomqtt, QoS 1) at `--latency-rate` messages/s
of 10 values (default 1,000 = 10k samples/s) with unique values; publish → stream frame from one
WebSocket client subscribed to the plant; publish → stored by polling the newest stored value of
one probe tag every 5 ms straight from the database (so it includes up to ~5 ms of polling delay).
Beside them, the bare subscriber's publish → receive at the same rate.

    python -m bench.ingest_mqtt [--messages 100000] [--values 10] [--processes 2] [--backend both]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import asyncpg
import httpx
import websockets
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.common import BACKENDS, ROOT, Row, bench_database, fmt_rate, percentile, publish, wait_for_quiet
from bench.ingest_latency import PASSWORD, cpu_ticks, free_port
from server.storage.historian.sqlite_store import over_samples

TENANT = "bench"
TOPIC = "bench/devices/Plant1/Dev{:03d}/telemetry"


# -- the broker ------------------------------------------------------------------------------


class Broker:
    """A private mosquitto with unlimited per-session queues."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        conf = tmp / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 0\nmax_queued_bytes 0\n"
        )
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                import socket

                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def payload_lines(path: Path, messages: int, values: int) -> None:
    with path.open("w") as f:
        for i in range(messages):
            body = {"ts": 1.7e9 + i * 0.001, "values": {f"T{k:04d}": float(i * 100 + k) for k in range(values)}}
            f.write(json.dumps(body, separators=(",", ":")) + "\n")


def start_publishers(broker: Broker, files: list[Path]) -> list[subprocess.Popen[bytes]]:
    """One mosquitto_pub per device topic, each reading its own file of messages."""
    procs = []
    for d, file in enumerate(files):
        cmd = ["mosquitto_pub", "-p", str(broker.port), "-q", "1", "-V", "5", "-t", TOPIC.format(d), "-l"]
        procs.append(subprocess.Popen(cmd, stdin=file.open("rb")))
    return procs


# -- the bare subscriber (its own process: python -m bench.ingest_mqtt --bare ...) ---------------


async def bare_subscriber(port: int, expect: int, out: Path, latency: bool) -> None:
    """Counts messages; writes the times it reached each 1 % (or, for latency, each value's arrival)."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.ReceiveMaximum = 1000  # as the server asks
    marks: list[float] = []
    arrivals: list[tuple[float, float]] = []
    step = max(1, expect // 100)
    n = 0
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=f"bare-{uuid.uuid4().hex[:6]}", protocol=aiomqtt.ProtocolVersion.V5,
        properties=props, max_queued_incoming_messages=0,
    ) as client:  # fmt: skip
        await client.subscribe("+/devices/#", qos=1)
        Path(str(out) + ".ready").write_text("ok")  # noqa: ASYNC240 - a test process, nothing else runs
        cpu0, wall0 = time.process_time(), time.perf_counter()
        async for msg in client.messages:
            if n == 0:
                cpu0, wall0 = time.process_time(), time.perf_counter()
            body = json.loads(msg.payload)  # type: ignore[arg-type]
            n += 1
            if latency:
                arrivals.append((time.time(), next(iter(body["values"].values()))))
            elif n % step == 0:
                marks.append(time.perf_counter())
            if n >= expect:
                break
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    out.write_text(json.dumps({"marks": marks, "arrivals": arrivals, "count": n, "cpu": cpu / wall}))  # noqa: ASYNC240


def run_bare(
    broker: Broker, tmp: Path, expect: int, loop: str, *, latency: bool = False
) -> tuple[subprocess.Popen[bytes], Path]:
    out = tmp / f"bare-{uuid.uuid4().hex[:6]}.json"
    cmd = [sys.executable, "-m", "bench.ingest_mqtt", "--bare", str(broker.port), str(expect), str(out)]
    cmd += ["--event-loop", loop]
    if latency:
        cmd.append("--bare-latency")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)})
    ready = Path(str(out) + ".ready")
    deadline = time.monotonic() + 30
    while not ready.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("bare subscriber did not subscribe")
        time.sleep(0.05)
    return proc, out


# -- the server processes ----------------------------------------------------------------------


@dataclass
class Servers:
    """`processes` iiot-server processes on one database; more than one share the subscription."""

    db_url: str
    tmp: Path
    broker: Broker
    processes: int = 1
    loop: str = "asyncio"
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)

    def env(self, i: int) -> dict[str, str]:
        env = os.environ | {
            "IIOT_DATA_DIR": str(self.tmp), "IIOT_DATABASE_URL": self.db_url, "IIOT_LOG_LEVEL": "warning",
            "IIOT_ADMIN_PASSWORD": PASSWORD, "PYTHONPATH": str(ROOT), "IIOT_MQTT_URL": self.broker.url,
            "IIOT_MQTT_CLIENT_ID": f"iiot-bench-{i}-{uuid.uuid4().hex[:6]}", "IIOT_COAP_PORT": "0",
            "IIOT_OPCUA_PORT": "0", "IIOT_MQTT_SPARKPLUG": "false", "IIOT_EVENT_LOOP": self.loop,
        }  # fmt: skip
        if self.processes > 1:
            env["IIOT_MQTT_SHARED_GROUP"] = "iiot"
        env.pop("IIOT_CONFIG", None)
        return env

    def start(self) -> None:
        cli = [sys.executable, "-m", "server.cli"]
        subprocess.run([*cli, "init", "--tenant", TENANT, "--admin", "admin"], env=self.env(0), cwd=ROOT,
                       check=True, capture_output=True)  # fmt: skip
        for i in range(self.processes):
            port = free_port()
            env = self.env(i) | {"IIOT_HTTP_PORT": str(port)}
            log = (self.tmp / f"server-{i}.log").open("wb")
            self.procs.append(subprocess.Popen([*cli, "run"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
            self.ports.append(port)
        for port, proc in zip(self.ports, self.procs, strict=True):
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {(self.tmp / 'server-0.log').read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                        break
                time.sleep(0.1)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}"

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def login(base: str) -> str:
    r = httpx.post(base + "/api/v1/auth/login", json={"tenant": TENANT, "username": "admin", "password": PASSWORD})
    r.raise_for_status()
    return str(r.json()["access_token"])


def setup_devices(base: str, token: str, devices: int, values: int) -> None:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
        assert c.post("/api/v1/nodes", json={"node_class": "folder", "browse_name": "Plant1"}).status_code == 201
        for d in range(devices):
            r = c.post("/api/v1/nodes", json={"parent": "Plant1", "node_class": "device", "browse_name": f"Dev{d:03d}"})
            assert r.status_code == 201, r.text
            tags = {f"T{k:04d}": 0.0 for k in range(values)}
            r = c.post("/api/v1/telemetry", json={"device": f"Plant1/Dev{d:03d}", "values": tags, "ts": 1.6e9})
            assert r.status_code == 201, r.text


def accepted(servers: Servers, clients: list[httpx.Client]) -> int:
    total = 0
    for c in clients:
        stats = c.get("/api/v1/ingest/stats").json()
        total += int(stats.get("mqtt", {}).get("accepted", 0))
    return total


def slope(marks: list[tuple[float, int]], total: int) -> float:
    """Rate between the 10 % and 90 % points (interpolated): start-up and tail excluded."""

    def at(fraction: float) -> float:
        goal = fraction * total
        for (t0, n0), (t1, n1) in zip(marks, marks[1:], strict=False):
            if n0 <= goal <= n1 and n1 > n0:
                return t0 + (t1 - t0) * (goal - n0) / (n1 - n0)
        raise RuntimeError(f"never reached {fraction:.0%} of {total:,}")

    return 0.8 * total / (at(0.9) - at(0.1))


# -- throughput ---------------------------------------------------------------------------------


@dataclass
class Throughput:
    msg_rate: float
    cpu: float  # consumer process(es), cores
    machine: float
    seconds: float


def measure_bare(broker: Broker, tmp: Path, files: list[Path], messages: int, loop: str) -> Throughput:
    proc, out = run_bare(broker, tmp, messages, loop)
    m0, t0 = cpu_ticks(), time.perf_counter()
    pubs = start_publishers(broker, files)
    proc.wait(600)
    wall = time.perf_counter() - t0
    machine = (cpu_ticks() - m0) / wall
    for p in pubs:
        p.wait(60)
    data = json.loads(out.read_text())
    marks = [(t, (i + 1) * max(1, messages // 100)) for i, t in enumerate(data["marks"])]
    return Throughput(slope(marks, messages), float(data["cpu"]), machine, wall)


def measure_server(servers: Servers, files: list[Path], messages: int, values: int, token: str) -> Throughput:
    expect = messages * values
    clients = [
        httpx.Client(base_url=f"http://127.0.0.1:{p}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        for p in servers.ports
    ]
    base_count = accepted(servers, clients)
    cpu0 = sum(cpu_ticks(p.pid) for p in servers.procs)
    m0, t0 = cpu_ticks(), time.perf_counter()
    pubs = start_publishers(servers.broker, files)
    marks: list[tuple[float, int]] = []
    deadline = time.monotonic() + 600
    while True:
        n = accepted(servers, clients) - base_count
        marks.append((time.perf_counter(), n))
        if n >= expect or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    cpu = (sum(cpu_ticks(p.pid) for p in servers.procs) - cpu0) / wall
    machine = (cpu_ticks() - m0) / wall
    for p in pubs:
        p.wait(60)
    for c in clients:
        c.close()
    if marks[-1][1] < expect:
        raise RuntimeError(f"server stored {marks[-1][1]:,} of {expect:,} samples")
    return Throughput(slope(marks, expect) / values, cpu, machine, wall)


# -- latency ------------------------------------------------------------------------------------


@dataclass
class Latency:
    stream: list[float] = field(default_factory=list)
    stored: list[float] = field(default_factory=list)
    sent: dict[float, float] = field(default_factory=dict)  # first value of a message -> perf_counter at publish
    wall_sent: dict[float, float] = field(default_factory=dict)  # ... -> time.time() at publish


async def publish_open_loop(port: int, rate: float, seconds: float, devices: int, values: int, lat: Latency) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"pub-{uuid.uuid4().hex[:6]}") as client:
        t0 = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            seq = 10_000_000 + i
            body = {"values": {f"T{k:04d}": float(seq * 100 + k) for k in range(values)}}
            lat.sent[float(seq * 100)] = time.perf_counter()
            lat.wall_sent[float(seq * 100)] = time.time()
            await client.publish(TOPIC.format(i % devices), json.dumps(body), qos=1)


async def stream_receiver(ws: websockets.ClientConnection, lat: Latency) -> None:
    async for raw in ws:
        now = time.perf_counter()
        msg = json.loads(raw)
        if msg.get("type") != "values" or msg.get("snapshot"):
            continue
        for u in msg["updates"]:
            v = float(u["v"])
            first = v - (v % 100)
            if v == first and first in lat.sent:
                lat.stream.append(now - lat.sent[first])


async def probe_stored(db_url: str, probe_node: str, lat: Latency, stop: asyncio.Event) -> None:
    """The newest stored value of one tag, every 5 ms, straight from the database."""
    seen: set[float] = set()

    def note(value: float | None) -> None:
        if value is not None and value in lat.sent and value not in seen:
            seen.add(value)
            lat.stored.append(time.perf_counter() - lat.sent[value])

    query = (
        "SELECT value FROM samples WHERE tag_id = (SELECT id FROM nodes WHERE node_id = {p}) ORDER BY ts DESC LIMIT 1"
    )
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(db_url.split("///", 1)[1], check_same_thread=False)
        tag = "(SELECT id FROM nodes WHERE node_id = ?)"
        lite = over_samples(f"SELECT value, ts FROM {{t}} WHERE tag_id = {tag}") + " ORDER BY ts DESC LIMIT 1"
        try:
            while not stop.is_set():
                row = await asyncio.to_thread(lambda: conn.execute(lite, (probe_node, probe_node)).fetchone())
                note(row[0] if row else None)
                await asyncio.sleep(0.005)
        finally:
            conn.close()
        return
    pg = await asyncpg.connect(db_url)
    try:
        while not stop.is_set():
            note(await pg.fetchval(query.format(p="$1"), probe_node))
            await asyncio.sleep(0.005)
    finally:
        await pg.close()


async def measure_latency(servers: Servers, token: str, a: argparse.Namespace) -> Latency:
    lat = Latency()
    ws_url = servers.base.replace("http://", "ws://") + "/api/v1/stream"
    async with websockets.connect(ws_url, max_size=None, ping_interval=None) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        assert json.loads(await ws.recv())["type"] == "hello"
        await ws.send(json.dumps({"type": "subscribe", "id": 1, "subtrees": ["Plant1"]}))
        while json.loads(await ws.recv()).get("type") != "subscribed":
            pass
        await asyncio.sleep(0.5)
        recv = asyncio.create_task(stream_receiver(ws, lat))
        stop = asyncio.Event()
        probe = asyncio.create_task(probe_stored(servers.db_url, "ns=2;s=Plant1/Dev000/T0000", lat, stop))
        await publish_open_loop(servers.broker.port, a.latency_rate, a.latency_seconds, a.devices, a.values, lat)
        await asyncio.sleep(1.0)
        stop.set()
        await probe
        recv.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recv
    return lat


def bare_latency(broker: Broker, tmp: Path, a: argparse.Namespace) -> list[float]:
    total = int(a.latency_rate * a.latency_seconds)
    proc, out = run_bare(broker, tmp, total, a.event_loop, latency=True)
    lat = Latency()
    asyncio.run(publish_open_loop(broker.port, a.latency_rate, a.latency_seconds, a.devices, a.values, lat))
    proc.wait(60)
    arrivals = json.loads(out.read_text())["arrivals"]
    return [t - lat.wall_sent[v] for t, v in arrivals if v in lat.wall_sent]


# -- the run ------------------------------------------------------------------------------------


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="iiot-bench-mqtt-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def split_files(tmp: Path, messages: int, values: int, publishers: int) -> list[Path]:
    files = []
    for d in range(publishers):
        path = tmp / f"pub-{d}.txt"
        payload_lines(path, messages // publishers, values)
        files.append(path)
    return files


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


async def _server_run(
    backend: str, processes: int, broker: Broker, files: list[Path], a: argparse.Namespace, latency: bool
) -> tuple[Throughput, Latency | None]:
    async with bench_database(backend) as db:
        servers = Servers(db.url, db.tmp, broker, processes, a.event_loop)
        try:
            servers.start()
            token = login(servers.base)
            setup_devices(servers.base, token, a.devices, a.values)
            wait_for_quiet()
            thr = await asyncio.to_thread(measure_server, servers, files, a.messages, a.values, token)
            if latency:
                await asyncio.sleep(3)  # the throughput run's last commits and rollup merge settle
            lat = await measure_latency(servers, token, a) if latency else None
        finally:
            servers.stop()
    return thr, lat


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=100_000, help="messages per throughput run (default 100k)")
    p.add_argument("--values", type=int, default=10, help="values per message (default 10)")
    p.add_argument("--devices", type=int, default=20, help="devices (topics) the messages spread over")
    p.add_argument("--publishers", type=int, default=4, help="mosquitto_pub processes (default 4)")
    p.add_argument("--processes", type=int, default=2, help="server processes of the shared-subscription run")
    p.add_argument("--latency-rate", type=float, default=1000, help="messages/s of the latency run (default 1000)")
    p.add_argument("--latency-seconds", type=float, default=10)
    p.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    p.add_argument("--event-loop", choices=["asyncio", "uvloop"], default="asyncio", help="for server and baseline")
    p.add_argument("--no-doc", action="store_true")
    p.add_argument("--bare", nargs=3, metavar=("PORT", "EXPECT", "OUT"), help=argparse.SUPPRESS)
    p.add_argument("--bare-latency", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.bare:
        coro = bare_subscriber(int(a.bare[0]), int(a.bare[1]), Path(a.bare[2]), a.bare_latency)
        if a.event_loop == "uvloop":
            import uvloop

            uvloop.run(coro)
        else:
            asyncio.run(coro)
        return 0
    a.devices = max(a.devices, a.publishers)
    backends = BACKENDS if a.backend == "both" else (a.backend,)
    rows: list[Row] = []
    notes: list[str] = []
    samples = a.messages * a.values
    with workdir() as tmp:
        broker = Broker(tmp)
        try:
            files = split_files(tmp, a.messages, a.values, a.publishers)
            quiet = wait_for_quiet()
            bare = measure_bare(broker, tmp, files, a.messages, a.event_loop)
            bare_lat = bare_latency(broker, tmp, a)
            print(f"  bare aiomqtt: {bare.msg_rate:,.0f} msg/s; latency p50 {ms(percentile(bare_lat, 50))}", flush=True)
            notes.append(
                f"Baseline, bare aiomqtt subscriber: {bare.msg_rate:,.0f} msg/s ({fmt_rate(bare.msg_rate * a.values)} "
                f"samples), subscriber {bare.cpu:.0%} of one core, whole machine {bare.machine:.0%} busy; {quiet}. "
                f"Latency at "
                f"{a.latency_rate:g} msg/s: publish → received p50 {ms(percentile(bare_lat, 50))}, "
                f"p99 {ms(percentile(bare_lat, 99))} ({len(bare_lat):,} messages)."
            )
            runs = [(b, 1) for b in backends]
            if "postgresql" in backends and a.processes > 1:
                runs.append(("postgresql", a.processes))
            for backend, procs in runs:
                print(f"  server on {backend}, {procs} process(es)...", flush=True)
                thr, lat = asyncio.run(_server_run(backend, procs, broker, files, a, latency=procs == 1))
                label = f"{procs} processes, shared subscription" if procs > 1 else "1 process"
                rate = thr.msg_rate * a.values
                ratio = thr.msg_rate / bare.msg_rate
                goal, met = (
                    ("≥ 80% of bare (msg/s)", ratio >= 0.8) if procs == 1 else ("≥ 50k samples/s", rate >= 50_000)
                )
                rows.append(
                    Row(
                        backend,
                        f"MQTT ingest, {a.values}-value messages, {label}: samples/s stored",
                        fmt_rate(rate),
                        f"{fmt_rate(bare.msg_rate * a.values)} (1 bare aiomqtt)",
                        f"{ratio:.0%}",
                        goal,
                        "yes" if met else "**no**",
                    )
                )
                notes.append(
                    f"{backend}, {label}: {thr.msg_rate:,.0f} msg/s = {rate:,.0f} samples/s between 10 % and 90 % of "
                    f"{samples:,} samples; {thr.seconds:.1f} s from the first publish to the last commit; server "
                    f"process(es) {thr.cpu:.0%} of one core, whole machine {thr.machine:.0%} (200% = both cores)."
                )
                if lat is not None:
                    s50, s99 = percentile(lat.stream, 50), percentile(lat.stream, 99)
                    d50, d99 = percentile(lat.stored, 50), percentile(lat.stored, 99)
                    b50, b99 = percentile(bare_lat, 50), percentile(bare_lat, 99)
                    load = f"{a.latency_rate * a.values:,.0f} samples/s"
                    rows += [
                        Row(backend, f"MQTT publish → stream frame p50 / p99 at {load}", f"{ms(s50)} / {ms(s99)}",
                            f"{ms(b50)} / {ms(b99)} (bare receive)", f"{s99 / b99:.1f}", "p99 < 100 ms",
                            "yes" if s99 < 0.1 else "**no**"),
                        Row(backend, f"MQTT publish → stored p50 / p99 at {load}", f"{ms(d50)} / {ms(d99)}",
                            "—", "—", "— (report)", "n/a"),
                    ]  # fmt: skip
                    notes.append(
                        f"{backend} latency: {len(lat.stream):,} stream values of "
                        f"{int(a.latency_rate * a.latency_seconds):,} messages; {len(lat.stored):,} probe-tag values "
                        "seen stored (polled every 5 ms: a value overwritten within one poll is not seen)."
                    )
        finally:
            broker.stop()
    notes.insert(
        0,
        f"{a.messages:,} messages × {a.values} values over {a.devices} device topics, QoS 1, from {a.publishers} "
        f"`mosquitto_pub -l` processes into a private mosquitto (unlimited session queues); the server in its own "
        "process(es) with default settings (MQTT 5 persistent session, acknowledged after commit, Receive Maximum "
        f"1,000), CoAP and the OPC UA server off; event loop {a.event_loop} in the server and the baseline alike. "
        "Rate = slope between 10 % and 90 % done. All on the same 2 cores.",
    )
    cmd = "python -m bench.ingest_mqtt " + " ".join(argv if argv is not None else sys.argv[1:])
    publish("MQTT ingest throughput and latency", rows, notes, cmd, write=not a.no_doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
