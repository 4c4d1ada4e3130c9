"""HTTP ingest -> WebSocket frame latency, p50 and p99, at a steady sample rate.

The real server (`python -m server.cli init` + `run`, default settings: historian flush 0.2 s,
stream coalescing 50 ms) runs in its own process on a real port; this process is the load
generator and the stream client (asyncio + uvloop; a minimal keep-alive HTTP/1.1 client, since
httpx costs ~5 ms CPU per request, which on 2 cores would starve the server; websockets).

Load: open loop, `--rate` POST /api/v1/telemetry per second of `--values` values each (default
100 x 100 = 10k samples/s), round-robin over `--devices` devices with `--values` tags each, so a tag
is updated every devices/rate seconds (200 ms by default, longer than the 50 ms coalescing window:
no value is coalesced away). Every value is unique (request sequence * 100000 + index), so each
update in a frame identifies its request. Latency = receipt of the WS frame containing the value -
just before the POST was issued (same process, perf_counter). The first `--warmup` seconds are
not counted. Beside it: WS ping -> pong round trip on the same socket during the same load (the
transport and event-loop floor), and the POST response time (it answers after the historian commit).

    python -m bench.ingest_latency [--rate 100] [--values 100] [--duration 15] [--devices 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import websockets

from bench.common import BACKENDS, ROOT, Row, bench_database, percentile, publish, read_response, wait_for_quiet

PASSWORD = "bench-admin-password"
STREAM_COALESCE_S = 0.05  # server default stream_flush_interval_s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_ticks(pid: int | None = None) -> float:
    """CPU seconds used by a process (utime + stime), or by the whole machine (busy) if pid is None."""
    hz = os.sysconf("SC_CLK_TCK")
    if pid is None:
        f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        v = [int(x) for x in f]
        return (sum(v) - v[3] - v[4]) / hz  # minus idle and iowait
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / hz


@dataclass
class Results:
    send: dict[int, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)  # (sent, received) per measured value
    post: list[float] = field(default_factory=list)
    ping: list[float] = field(default_factory=list)
    counted: set[int] = field(default_factory=set)
    received_values: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    frames: int = 0


class ServerProcess:
    def __init__(self, db_url: str, tmp: Path, *, gc_log: Path | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = os.environ | {
            "IIOT_DATA_DIR": str(tmp),
            "IIOT_DATABASE_URL": db_url,
            "IIOT_HTTP_PORT": str(self.port),
            "IIOT_LOG_LEVEL": "warning",
            "IIOT_ADMIN_PASSWORD": PASSWORD,
            "PYTHONPATH": str(ROOT),
        }
        self.env.pop("IIOT_CONFIG", None)
        # Diagnostics only: the same CLI behind bench._server_diag, which logs every gc pause.
        self.module = "bench._server_diag" if gc_log or os.environ.get("IIOT_BENCH_PROFILE") else "server.cli"
        if gc_log:
            self.env["IIOT_BENCH_GC_LOG"] = str(gc_log)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "server.log"

    def start(self) -> None:
        cli = [sys.executable, "-m", "server.cli"]
        run = [sys.executable, "-m", self.module, "run"]
        subprocess.run([*cli, "init", "--tenant", "bench", "--admin", "admin"], env=self.env, cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
        self.proc = subprocess.Popen(run, env=self.env, cwd=ROOT, stdout=self.log.open("wb"),
                                     stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("server did not start within 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def setup_namespace(base: str, devices: int, values: int) -> str:
    r = httpx.post(base + "/api/v1/auth/login", json={"tenant": "bench", "username": "admin", "password": PASSWORD})
    r.raise_for_status()
    token = str(r.json()["access_token"])
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
        r = c.post("/api/v1/nodes", json={"parent": None, "node_class": "folder", "browse_name": "Plant1"})
        assert r.status_code == 201, r.text
        for d in range(devices):
            r = c.post("/api/v1/nodes", json={"parent": "Plant1", "node_class": "device", "browse_name": f"Dev{d:03d}"})
            assert r.status_code == 201, r.text
            # The first telemetry creates the tags (tenant default: unknown_tags = create).
            r = c.post("/api/v1/telemetry", json={"device": f"Plant1/Dev{d:03d}", "values": tag_values(values, 0)})
            assert r.status_code == 201, r.text
            assert len(r.json()["created_tags"]) == values, r.text
    return token


def tag_values(n: int, seq: int) -> dict[str, float]:
    base = seq * 100_000
    return {f"T{k:04d}": float(base + k) for k in range(n)}


async def receiver(
    ws: websockets.ClientConnection, res: Results, pings: dict[int, float], start_seq: list[int]
) -> None:
    async for raw in ws:
        now = time.perf_counter()
        msg = json.loads(raw)
        kind = msg.get("type")
        if kind == "values" and not msg.get("snapshot"):
            res.frames += 1
            for u in msg["updates"]:
                seq = int(u["v"]) // 100_000
                sent = res.send.get(seq)
                if sent is None:
                    continue
                res.received_values += 1
                if seq >= start_seq[0]:
                    res.latencies.append(now - sent)
                    res.spans.append((sent, now))
                    res.counted.add(seq)
        elif kind == "pong":
            sent = pings.pop(msg.get("id"), None)
            if sent is not None:
                res.ping.append(now - sent)


async def pinger(ws: websockets.ClientConnection, pings: dict[int, float], stop: asyncio.Event) -> None:
    i = 0
    while not stop.is_set():
        i += 1
        pings[i] = time.perf_counter()
        await ws.send(json.dumps({"type": "ping", "id": i}))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


class LeanHttp:
    """Keep-alive HTTP/1.1 POSTs over plain asyncio streams: ~10x less client CPU than httpx."""

    def __init__(self, base: str, token: str) -> None:
        hostport = base.split("://", 1)[1]
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)
        self.head = (
            f"Host: {hostport}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        ).encode()
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.opened = 0

    async def post(self, path: str, body: bytes) -> int:
        now = time.monotonic()
        while self.idle and now - self.idle[-1][2] > 2.0:  # uvicorn drops keep-alive connections idle 5 s
            self.idle.pop()[1].close()
        if self.idle:
            r, w, _ = self.idle.pop()
        else:
            r, w = await asyncio.open_connection(self.host, self.port)
            self.opened += 1
        w.write(b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s" % (path.encode(), self.head, len(body), body))
        status, _ = await read_response(r)
        self.idle.append((r, w, time.monotonic()))
        return status

    def close(self) -> None:
        for _, w, _ in self.idle:
            w.close()


async def post(client: LeanHttp, seq: int, device: str, values: int, res: Results, measured: bool) -> None:
    body = json.dumps({"device": device, "values": tag_values(values, seq)}).encode()
    t0 = time.perf_counter()
    res.send[seq] = t0
    try:
        status: int | str = await client.post("/api/v1/telemetry", body)
    except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
        status = exc.__class__.__name__
    ok = status == 201
    if not ok:
        res.errors += 1
        res.error_kinds[str(status)] = res.error_kinds.get(str(status), 0) + 1
    elif measured:
        res.post.append(time.perf_counter() - t0)


async def load(base: str, token: str, a: argparse.Namespace, server_pid: int) -> tuple[Results, dict[str, float]]:
    res = Results()
    pings: dict[int, float] = {}
    ws_url = base.replace("http://", "ws://") + "/api/v1/stream"
    start_seq = [1 << 60]
    async with websockets.connect(ws_url, max_size=None, ping_interval=None) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        assert json.loads(await ws.recv())["type"] == "hello"
        await ws.send(json.dumps({"type": "subscribe", "id": 1, "subtrees": ["Plant1"]}))
        while json.loads(await ws.recv()).get("type") != "subscribed":
            pass
        await asyncio.sleep(0.5)  # let the snapshot frame arrive; it is ignored anyway
        recv_task = asyncio.create_task(receiver(ws, res, pings, start_seq))
        client = LeanHttp(base, token)
        try:
            stop_ping = asyncio.Event()
            ping_task: asyncio.Task[None] | None = None
            tasks: set[asyncio.Task[None]] = set()
            total = int((a.warmup + a.duration) * a.rate)
            first_measured = int(a.warmup * a.rate)
            t0 = time.perf_counter()
            cpu0: dict[str, float] = {}
            window_start = t0
            late = 0
            for i in range(1, total + 1):
                if i == first_measured + 1:
                    start_seq[0] = i
                    ping_task = asyncio.create_task(pinger(ws, pings, stop_ping))
                    cpu0 = {"server": cpu_ticks(server_pid), "client": cpu_ticks(os.getpid()), "machine": cpu_ticks(),
                            "wall": time.perf_counter()}  # fmt: skip
                    window_start = cpu0["wall"]
                target = t0 + (i - 1) / a.rate
                delay = target - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -0.005:
                    late += 1
                device = f"Plant1/Dev{i % a.devices:03d}"
                task = asyncio.create_task(post(client, i, device, a.values, res, i > first_measured))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            wall = time.perf_counter() - cpu0["wall"]
            cpu = {
                "server": (cpu_ticks(server_pid) - cpu0["server"]) / wall,
                "client": (cpu_ticks(os.getpid()) - cpu0["client"]) / wall,
                "machine": (cpu_ticks() - cpu0["machine"]) / wall,
                "late_sends": float(late),
                "achieved_rate": (total - first_measured) / wall,
                "connections": float(client.opened),
                "window_start": window_start,
                "window_end": time.perf_counter(),
            }
            stop_ping.set()
            if tasks:
                await asyncio.gather(*tasks)
            if ping_task is not None:
                await ping_task
            await asyncio.sleep(1.0)  # stragglers
        finally:
            client.close()
        recv_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recv_task
    return res, cpu


async def bench_backend(backend: str, a: argparse.Namespace) -> tuple[list[Row], str]:
    gc_note = ""
    async with bench_database(backend) as db:
        gc_log = db.tmp / "gc.json" if (a.gc_log or a.gc_freeze) else None
        server = ServerProcess(db.url, db.tmp, gc_log=gc_log)
        try:
            server.start()
            token = setup_namespace(server.base, a.devices, a.values)
            assert server.proc is not None
            if a.gc_freeze:
                server.proc.send_signal(signal.SIGUSR1)  # gc.collect() + gc.freeze() in the server
            quiet = wait_for_quiet()
            res, cpu = await load(server.base, token, a, server.proc.pid)
        finally:
            server.stop()
        if gc_log is not None:
            gc_note = " " + gc_summary(gc_log, res, cpu)
    measured_requests = int(a.duration * a.rate)
    expected = measured_requests * a.values
    lat = res.latencies
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    ping50, ping99 = percentile(res.ping, 50), percentile(res.ping, 99)
    post50, post99 = percentile(res.post, 50), percentile(res.post, 99)
    missing = expected - len(lat)
    print(
        f"  {backend}: ingest->WS p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms over "
        f"{len(lat):,} values ({missing:,} missing); ping p50 {ping50 * 1000:.1f} / p99 {ping99 * 1000:.1f} ms; "
        f"POST p50 {post50 * 1000:.1f} / p99 {post99 * 1000:.1f} ms; errors {res.errors} {res.error_kinds}; cpu {cpu}",
        flush=True,
    )
    load_label = f"{a.rate:g} req/s × {a.values} values"
    rows = [
        Row(backend, f"HTTP ingest → WS frame latency p50 ({load_label})", f"{p50 * 1000:.1f} ms",
            f"{ping50 * 1000:.1f} ms (WS ping RTT p50)", f"{p50 / ping50:.1f}", "— (report)", "n/a"),
        Row(backend, f"HTTP ingest → WS frame latency p99 ({load_label})", f"{p99 * 1000:.1f} ms",
            f"{ping99 * 1000:.1f} ms (WS ping RTT p99)", f"{p99 / ping99:.1f}", "— (report)", "n/a"),
        Row(backend, "POST /telemetry response time p50 / p99 (answers after commit)",
            f"{post50 * 1000:.0f} / {post99 * 1000:.0f} ms", "—", "—", "—", "n/a"),
    ]  # fmt: skip
    other = max(0.0, cpu["machine"] - cpu["server"] - cpu["client"])
    kinds = f" {res.error_kinds}" if res.error_kinds else ""
    note = (
        f"{backend}: {quiet}; {len(lat):,} values measured of {expected:,} sent ({missing:,} missing, "
        f"{res.errors} HTTP errors{kinds}), "
        f"max {max(lat) * 1000:.0f} ms; achieved {cpu['achieved_rate']:.1f} req/s ({cpu['late_sends']:.0f} sends "
        f"> 5 ms late); CPU during the window: server process {cpu['server']:.0%} of one core, load generator "
        f"{cpu['client']:.0%}, whole machine {cpu['machine']:.0%} of one core (200% = both cores busy; the "
        f"rest, {other:.0%}, is PostgreSQL and any other process); {cpu['connections']:.0f} "
        "HTTP connections. Missing values were superseded by a newer value of the same tag inside one coalescing "
        "window (the stream sends the latest value per tag) or arrived after the 1 s grace." + gc_note
    )
    return rows, note


def gc_summary(path: Path, res: Results, cpu: dict[str, float]) -> str:
    """Server gc pauses in the measured window, and how many of the slowest 1% of values overlap one."""
    data = json.loads(path.read_text())
    lo, hi = cpu["window_start"], cpu["window_end"] + 1.0
    events = [(int(g), end, pause) for g, end, pause in data["events"] if lo <= end <= hi and g >= 0]
    frozen = [int(p) for g, _, p in data["events"] if g == -1]
    parts = []
    for gen in (0, 1, 2):
        pauses = sorted(p for g, _, p in events if g == gen)
        if pauses:
            parts.append(
                f"gen{gen} ×{len(pauses)} (median {percentile(pauses, 50) * 1000:.1f} ms, "
                f"max {pauses[-1] * 1000:.1f} ms)"
            )
    cut = percentile(res.latencies, 99)
    slow = [span for span, lat in zip(res.spans, res.latencies, strict=True) if lat >= cut]
    gen2 = [(end - pause, end) for g, end, pause in events if g == 2]
    hit = sum(1 for s0, s1 in slow if any(g0 < s1 and g1 > s0 for g0, g1 in gen2))
    freeze = f"gc.freeze() after set-up ({frozen[0]:,} objects frozen); " if frozen else ""
    return (
        f"Diagnostic gc log of the server process: {freeze}during the measured window {', '.join(parts)}; "
        f"{hit:,} of the {len(slow):,} slowest values (≥ p99) were in flight during a gen2 pause; "
        f"{data['tracked']:,} objects tracked by gc at exit."
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=100, help="POST requests per second (default 100)")
    p.add_argument("--values", type=int, default=100, help="values per request (default 100)")
    p.add_argument("--devices", type=int, default=20, help="devices the requests rotate over (default 20)")
    p.add_argument("--duration", type=float, default=15, help="measured seconds (default 15)")
    p.add_argument("--warmup", type=float, default=2, help="seconds of load before measuring (default 2)")
    p.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    p.add_argument("--gc-log", action="store_true", help="diagnostic: log the server's gc pauses (bench._server_diag)")
    p.add_argument("--gc-freeze", action="store_true", help="diagnostic: gc.freeze() the server after set-up")
    p.add_argument("--no-doc", action="store_true", help="print only, do not append to docs/benchmarks.md")
    a = p.parse_args(argv)
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    backends = BACKENDS if a.backend == "both" else (a.backend,)
    rows: list[Row] = []
    notes = [
        f"Real server (`python -m server.cli run`, default settings: historian flush 0.2 s, stream coalescing "
        f"{STREAM_COALESCE_S * 1000:.0f} ms) in its own process on a real port; load generator and stream client in "
        f"this process (asyncio + uvloop, a minimal keep-alive HTTP/1.1 client, websockets), on the same 2 cores as "
        "the server and PostgreSQL. "
        f"Open loop, {a.rate:g} POST/s × {a.values} values = {a.rate * a.values:,.0f} samples/s over "
        f"{a.devices} devices "
        f"(each tag updated every {a.devices / a.rate * 1000:.0f} ms), {a.duration:g} s measured after {a.warmup:g} s "
        "warm-up; one WS client subscribed to the subtree. Latency per value: WS frame received − just before its "
        "POST. Baseline: WS ping→pong round trip on the same socket under the same load. The issue sets no goal.",
    ]
    for backend in backends:
        print(f"ingest latency on {backend}: {a.rate:g} req/s x {a.values} values for {a.duration:g} s", flush=True)
        r, n = asyncio.run(bench_backend(backend, a))
        rows += r
        notes.append(n)
    cmd = "python -m bench.ingest_latency " + " ".join(argv if argv is not None else sys.argv[1:])
    title = "HTTP ingest → WebSocket latency"
    if a.gc_freeze:
        title += " (diagnostic: server gc.freeze() after set-up, gc log)"
    elif a.gc_log:
        title += " (diagnostic: server gc log)"
    publish(title, rows, notes, cmd.strip(), write=not a.no_doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
