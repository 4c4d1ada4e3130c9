"""CoAP ingest (UDP → `iiot-server` → historian) beside a bare aiocoap server, same run.

The real server (`python -m server.cli run`, default settings: historian flush 0.2 s, stream
coalescing 50 ms; `coap_port` a free UDP port) runs in its own process on a throwaway SQLite or
PostgreSQL database. Devices authenticate with an API key of the tenant (`engineer` role, made
through `POST /api/v1/api-keys`) in the URI query, as `server/ingest/coap.py` requires. Its
`POST /telemetry` answers 2.04 Changed only after the historian committed the values, so the
request latency is publish → stored. The baseline is a bare aiocoap server in its own process
of the same kind (plain asyncio, udp6 transport, bound to 127.0.0.1): one resource whose
`render_post` does `json.loads` of the payload and answers 2.04 Changed with the same small JSON
body the server sends.

Load: this process (asyncio + uvloop), aiocoap clients sending confirmable POSTs
`/telemetry?key=…` with `{"device": "Plant1/DevNNN", "values": {…}}`, `--values` unique values
each (request sequence × 100000 + index). aiocoap keeps NSTART = 1 (one confirmable exchange
in flight per peer, RFC 7252 §4.7), so `--concurrency` outstanding requests means that many
client endpoints (one aiocoap context and UDP socket each, i.e. that many devices of one
request at a time), not one socket with a backlog. One sample = one tag value.
  * throughput, closed loop: each endpoint posts again as soon as its answer arrives. The bare
    server and the server take turns, `--rounds` each (default 2, order reversed every round,
    so other work on a shared machine falls on both alike), each turn `--warmup` s then
    `--duration`/`--rounds` s measured; requests/s and samples/s count the 2.04 answers received
    inside the measured windows; request latency p50/p99 of the requests sent in them;
  * latency, open loop: `--rate` requests/s (default 100 × 10 values = 1k samples/s) spread
    over the same endpoints (the next idle one takes the next request; a send that finds none
    idle waits and is counted late), for `--warmup` + `--duration` s. Request latency = 2.04
    received − just before `request()`; on the server that is publish → stored. Publish → WS
    frame: one WebSocket client subscribed to the plant, per value, as in bench.ingest_latency
    (each tag updated every devices/rate s, 200 ms by default, longer than the 50 ms coalescing
    window). The baseline has no stream: its request latency stands beside both.
The open loop runs against the baseline first, then the server, on the same client endpoints;
the server, the bare server and this process share the 2 cores.

    python -m bench.ingest_coap [--concurrency 50] [--values 10] [--duration 10] [--rate 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiocoap  # type: ignore[import-untyped, unused-ignore]
import httpx
from aiocoap import resource  # type: ignore[import-untyped, unused-ignore]
from aiocoap.numbers.codes import Code  # type: ignore[import-untyped, unused-ignore]
from aiocoap.numbers.contentformat import ContentFormat  # type: ignore[import-untyped, unused-ignore]

from bench._adapters import (
    LATE_LIMIT,
    LATE_WARNING,
    STREAM_ROOT,
    CpuWindow,
    LeanGet,
    cpu_text,
    extra_env,
    free_udp_port,
    helper_process,
    ms,
    open_stream,
    p50_p99,
    port_env,
    settle_gc,
)
from bench.common import BACKENDS, Row, bench_database, fmt_rate, publish, wait_for_quiet, yes_no
from bench.ingest_latency import STREAM_COALESCE_S, Results, ServerProcess, receiver, setup_namespace, tag_values

REQUEST_TIMEOUT_S = 30.0
"""A request not answered by then is counted as an error (aiocoap retransmits CONs until ~93 s)."""
SEPARATE_RESPONSE_S = 0.1
"""aiocoap's EMPTY_ACK_DELAY: an answer slower than this goes as empty ACK + a separate CON response."""
GOAL = 0.8


def payload(device: int, seq: int, values: int) -> bytes:
    return json.dumps({"device": f"{STREAM_ROOT}/Dev{device:03d}", "values": tag_values(values, seq)}).encode()


async def post(ctx: aiocoap.Context, uri: str, body: bytes) -> Any:
    """One confirmable POST; the response code, or the exception's class name."""
    msg = aiocoap.Message(code=Code.POST, uri=uri, payload=body, content_format=ContentFormat.JSON)
    try:
        response = await asyncio.wait_for(ctx.request(msg).response, REQUEST_TIMEOUT_S)
    except (TimeoutError, aiocoap.error.Error, OSError) as exc:
        return exc.__class__.__name__
    return response.code


# -- the bare server (its own process) ------------------------------------------------------


class _BareTelemetry(resource.Resource):  # type: ignore[misc, unused-ignore]
    async def render_post(self, request: Any) -> Any:
        doc = json.loads(request.payload)
        items = doc if isinstance(doc, list) else [doc]
        body = {"accepted": sum(len(i["values"]) for i in items), "created_tags": []}
        return aiocoap.Message(code=Code.CHANGED, payload=json.dumps(body, separators=(",", ":")).encode(),
                               content_format=ContentFormat.JSON)  # fmt: skip


async def bare_server(port: int, lean: bool) -> None:
    site = resource.Site()
    site.add_resource(("telemetry",), _BareTelemetry())
    context = aiocoap.Context
    if lean:  # diagnostic: the server's own aiocoap context (deduplication, task name)
        from server.ingest.coap_context import IngestCoapContext

        context = IngestCoapContext
    ctx = await context.create_server_context(site, bind=("127.0.0.1", port), transports=["udp6"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await ctx.shutdown()


def bare_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench.ingest_coap _bare")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--lean", action="store_true")
    logging.basicConfig(level=logging.ERROR)
    a = p.parse_args(argv)
    asyncio.run(bare_server(a.port, a.lean))  # plain asyncio, as the server runs
    print(json.dumps({"stopped": True}), flush=True)
    return 0


# -- load -----------------------------------------------------------------------------------


@dataclass
class Closed:
    answered: int  # 2.04 answers received inside the measured windows
    seconds: float  # measured seconds, all windows together
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # core-seconds per process in the windows
    turns: list[float] = field(default_factory=list)  # req/s of each turn, to show how the machine swings

    @property
    def requests_per_s(self) -> float:
        return self.answered / self.seconds if self.seconds else float("nan")

    @property
    def cpu(self) -> dict[str, float]:
        return {name: used / self.seconds for name, used in self.cpu_seconds.items()}

    @property
    def slow(self) -> int:
        """Answers slower than SEPARATE_RESPONSE_S."""
        return sum(1 for x in self.latencies if x > SEPARATE_RESPONSE_S)

    def add(self, other: Closed) -> None:
        self.turns.append(other.requests_per_s)
        self.answered += other.answered
        self.seconds += other.seconds
        self.latencies += other.latencies
        self.errors.update(other.errors)
        for name, used in other.cpu_seconds.items():
            self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + used


async def closed_loop(uri: str, clients: list[aiocoap.Context], a: argparse.Namespace, seqs: itertools.count[int],
                      cpu: CpuWindow, seconds: float) -> Closed:  # fmt: skip
    """Every endpoint posts again as soon as its answer arrives; `a.warmup` s, then `seconds` measured."""
    t0 = time.perf_counter()
    begin, end = t0 + a.warmup, t0 + a.warmup + seconds
    out = Closed(0, seconds)

    async def worker(w: int, ctx: aiocoap.Context) -> None:
        while time.perf_counter() < end:
            body = payload(w % a.devices, next(seqs), a.values)
            sent = time.perf_counter()
            code = await post(ctx, uri, body)
            done = time.perf_counter()
            if code != Code.CHANGED:
                if sent >= begin:
                    out.errors[str(code)] += 1
                continue
            if begin <= done <= end:
                out.answered += 1
            if begin <= sent < end:
                out.latencies.append(done - sent)

    async def window() -> None:
        await asyncio.sleep(max(0.0, begin - time.perf_counter()))
        cpu.start()
        await asyncio.sleep(max(0.0, end - time.perf_counter()))
        out.cpu_seconds = {name: share * seconds for name, share in cpu.stop().items()}

    window_task = asyncio.create_task(window())
    await asyncio.gather(*(worker(w, ctx) for w, ctx in enumerate(clients)))
    await window_task
    return out


async def closed_rounds(targets: dict[str, tuple[str, int]], clients: list[aiocoap.Context], a: argparse.Namespace,
                        seqs: itertools.count[int]) -> dict[str, Closed]:  # fmt: skip
    """`a.rounds` rounds, the targets taking turns (order reversed every round), so that other work on
    this shared machine falls on both alike; `a.duration` measured seconds per target in all."""
    totals = {name: Closed(0, 0.0) for name in targets}
    order = list(targets)
    for r in range(a.rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            uri, pid = targets[name]
            cpu = CpuWindow({name: pid, "load generator": os.getpid()})
            settle_gc()
            totals[name].add(await closed_loop(uri, clients, a, seqs, cpu, a.duration / a.rounds))
            await asyncio.sleep(0.5)  # the last answers, and the historian, settle
    return totals


@dataclass
class Open:
    res: Results
    achieved: float
    waited: int  # sends that found no idle endpoint
    late: int
    cpu: dict[str, float]
    errors: Counter[str] = field(default_factory=Counter)


async def open_loop(uri: str, clients: list[aiocoap.Context], a: argparse.Namespace, seq0: int, res: Results,
                    cpu: CpuWindow) -> Open:  # fmt: skip
    idle: asyncio.Queue[aiocoap.Context] = asyncio.Queue()
    for ctx in clients:
        idle.put_nowait(ctx)
    errors: Counter[str] = Counter()
    total = int((a.warmup + a.duration) * a.rate)
    measured_from = int(a.warmup * a.rate)

    async def one(ctx: aiocoap.Context, seq: int, measured: bool) -> None:
        try:
            body = payload(seq % a.devices, seq, a.values)
            sent = time.perf_counter()
            res.send[seq] = sent
            code = await post(ctx, uri, body)
            if code != Code.CHANGED:
                errors[str(code)] += 1
            elif measured:
                res.post.append(time.perf_counter() - sent)
        finally:
            idle.put_nowait(ctx)

    tasks: set[asyncio.Task[None]] = set()
    waited = late = 0
    cpu.start()
    t0 = time.perf_counter()
    for i in range(total):
        delay = t0 + i / a.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.005:
            late += 1
        try:
            ctx = idle.get_nowait()
        except asyncio.QueueEmpty:
            waited += 1
            ctx = await idle.get()
        task = asyncio.create_task(one(ctx, seq0 + i, i >= measured_from))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    wall = time.perf_counter() - t0
    shares = cpu.stop()
    if tasks:
        await asyncio.gather(*tasks)
    return Open(res, total / wall, waited, late, shares, errors)


# -- one backend ----------------------------------------------------------------------------


def api_key(base: str, token: str) -> str:
    r = httpx.post(base + "/api/v1/api-keys", headers={"Authorization": f"Bearer {token}"},
                   json={"name": "bench-device", "roles": ["engineer"]})  # fmt: skip
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


@dataclass
class Side:
    """One target's results: the bare server's or the iiot server's."""

    closed: Closed
    open: Open
    stream: list[float] = field(default_factory=list)
    frames: int = 0


async def open_phase(
    uri: str, pid: int, name: str, clients: list[aiocoap.Context], a: argparse.Namespace,
    seqs: itertools.count[int], stream: tuple[str, str] | None = None,
) -> tuple[Open, Results]:  # fmt: skip
    res = Results()
    seq0 = next(seqs)
    for _ in range(int((a.warmup + a.duration) * a.rate) + 1):
        next(seqs)  # reserve the open loop's sequence numbers
    recv_task: asyncio.Task[None] | None = None
    ws = None
    if stream is not None:
        ws = await open_stream(*stream)
        await asyncio.sleep(0.5)  # the snapshot frame
        recv_task = asyncio.create_task(receiver(ws, res, {}, [seq0 + int(a.warmup * a.rate)]))
    try:
        settle_gc()
        opened = await open_loop(uri, clients, a, seq0, res, CpuWindow({name: pid, "load generator": os.getpid()}))
        if ws is not None:
            await asyncio.sleep(1.0)  # stragglers
    finally:
        if recv_task is not None:
            recv_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recv_task
        if ws is not None:
            await ws.close()
    return opened, res


async def bench_backend(backend: str, a: argparse.Namespace) -> tuple[list[Row], str]:
    async with bench_database(backend) as db:
        coap_port, bare_port = free_udp_port(), free_udp_port()
        server = ServerProcess(db.url, db.tmp)
        server.env |= port_env(coap_port) | a.extra_env
        clients: list[aiocoap.Context] = []
        try:
            server.start()
            assert server.proc is not None
            token = setup_namespace(server.base, a.devices, a.values)
            key = api_key(server.base, token)
            lean = ["--lean"] if a.bare_lean else []
            bare = await helper_process("bench.ingest_coap", "--port", str(bare_port), *lean)
            try:
                clients = [await aiocoap.Context.create_client_context(transports=["udp6"])
                           for _ in range(a.concurrency)]  # fmt: skip
                server_uri = f"coap://127.0.0.1:{coap_port}/telemetry?key={key}"
                bare_uri = f"coap://127.0.0.1:{bare_port}/telemetry?key={key}"
                for uri in (server_uri, bare_uri):  # both answer, and the server's key cache is warm
                    code = await post(clients[0], uri, payload(0, 1, a.values))
                    if code != Code.CHANGED:
                        raise RuntimeError(f"{uri.split('?')[0]} answered {code} to a first POST")
                quiet = wait_for_quiet(max_wait=a.max_quiet_wait)
                seqs = itertools.count(2)
                print(f"  {backend}: closed loop, {a.rounds} rounds …", flush=True)
                targets = {"bare server": (bare_uri, bare.pid), "server": (server_uri, server.proc.pid)}
                before = await historian_counts(server.base, token)
                closed = await closed_rounds(targets, clients, a, seqs)
                after = await historian_counts(server.base, token)
                commits = (after[0] - before[0], after[1] - before[1])
                print(f"  {backend}: open loop …", flush=True)
                bare_open, _ = await open_phase(bare_uri, bare.pid, "bare server", clients, a, seqs)
                srv_open, srv_res = await open_phase(server_uri, server.proc.pid, "server", clients, a, seqs,
                                                     stream=(server.base, token))  # fmt: skip
                bare_side = Side(closed["bare server"], bare_open)
                server_side = Side(closed["server"], srv_open, list(srv_res.latencies), srv_res.frames)
                stats = await server_stats(server.base, token)
            finally:
                for ctx in clients:
                    with contextlib.suppress(Exception):
                        await ctx.shutdown()
                if bare.returncode is None:
                    bare.terminate()
                await bare.wait()
        finally:
            server.stop()
    return rows_and_note(backend, a, quiet, bare_side, server_side, stats, commits)


async def api_get(base: str, token: str, path: str) -> tuple[int, Any]:
    client = LeanGet(base, token)
    try:
        return await client.get(path)
    finally:
        client.close()


async def historian_counts(base: str, token: str) -> tuple[int, int]:
    """(commits, samples written) so far: how the coalescer and the writer batched the requests."""
    status, body = await api_get(base, token, "/api/v1/status")
    if status != 200:
        raise RuntimeError(f"GET /api/v1/status answered {status}: {body}")
    return int(body["historian_commits"]), int(body["samples_written"])


async def server_stats(base: str, token: str) -> dict[str, Any]:
    status, body = await api_get(base, token, "/api/v1/ingest/stats")
    return dict(body.get("coap", {})) if status == 200 else {"status": status}


def rows_and_note(backend: str, a: argparse.Namespace, quiet: str, bare: Side, srv: Side,
                  stats: dict[str, Any], commits: tuple[int, int]) -> tuple[list[Row], str]:  # fmt: skip
    ratio = srv.closed.requests_per_s / bare.closed.requests_per_s
    b50, b99 = p50_p99(bare.open.res.post)
    s50, s99 = p50_p99(srv.open.res.post)
    w50, w99 = p50_p99(srv.stream)
    load = f"{a.rate:g} req/s × {a.values}"
    base = "(bare aiocoap server, POST → 2.04)"
    rows = [
        Row(backend, f"CoAP ingest, samples/s (closed loop, {a.concurrency} outstanding CON POSTs × {a.values} values)",
            f"{fmt_rate(srv.closed.requests_per_s * a.values)} ({srv.closed.requests_per_s:,.0f} req/s)",
            f"{fmt_rate(bare.closed.requests_per_s * a.values)} ({bare.closed.requests_per_s:,.0f} req/s, bare "
            "aiocoap server)", f"{ratio:.0%}", f"≥ {GOAL:.0%} of the bare server", yes_no(ratio >= GOAL)),
        Row(backend, f"CoAP POST → 2.04 after commit (= stored) p50 ({load})", ms(s50), f"{ms(b50)} {base}",
            f"{s50 / b50:.1f}", "— (report)", "n/a"),
        Row(backend, f"CoAP POST → 2.04 after commit (= stored) p99 ({load})", ms(s99), f"{ms(b99)} {base}",
            f"{s99 / b99:.1f}", "— (report)", "n/a"),
        Row(backend, f"CoAP POST → WS frame p50 ({load})", ms(w50), f"{ms(b50)} {base}", f"{w50 / b50:.1f}",
            "— (report)", "n/a"),
        Row(backend, f"CoAP POST → WS frame p99 ({load})", ms(w99), f"{ms(b99)} {base}", f"{w99 / b99:.1f}",
            "— (report)", "n/a"),
    ]  # fmt: skip
    measured = int(a.duration * a.rate)

    def closed_text(c: Closed) -> str:
        p50, p99 = p50_p99(c.latencies)
        errors = f", errors {dict(c.errors)}" if c.errors else ""
        turns = " / ".join(f"{t:,.0f}" for t in c.turns)
        return (f"{c.requests_per_s:,.0f} req/s (turns {turns}), request p50 {ms(p50)} / p99 {ms(p99)} / max "
                f"{ms(max(c.latencies, default=float('nan')))}, {c.slow:,} of {len(c.latencies):,} answers > "
                f"{SEPARATE_RESPONSE_S * 1000:.0f} ms (empty ACK + separate response){errors} "
                f"(CPU: {cpu_text(c.cpu)})")  # fmt: skip

    def open_text(o: Open) -> str:
        errors = f", errors {dict(o.errors)}" if o.errors else ""
        errors += LATE_WARNING if o.late > LATE_LIMIT * measured else ""
        return (f"{len(o.res.post):,} of {measured:,} requests answered 2.04, max {ms(max(o.res.post, default=0))}, "
                f"achieved {o.achieved:.1f} req/s ({o.late} sends > 5 ms late, {o.waited} waited for an idle "
                f"endpoint){errors} (CPU: {cpu_text(o.cpu)})")  # fmt: skip

    note = (
        f"{backend}: {quiet}. Closed loop: bare {closed_text(bare.closed)}; server {closed_text(srv.closed)}. "
        f"In its closed-loop turns (warm-up included) the server committed {commits[0]:,} times, "
        f"{commits[1] / max(commits[0], 1):,.0f} samples per commit. "
        f"Open loop: bare {open_text(bare.open)}; server {open_text(srv.open)}; stream {len(srv.stream):,} of "
        f"{measured * a.values:,} values in {srv.frames:,} frames, max {ms(max(srv.stream, default=float('nan')))}. "
        f"Server counters at the end: received {stats.get('received', 0):,}, accepted {stats.get('accepted', 0):,}, "
        f"rejected {stats.get('rejected') or {}}, dead-lettered {stats.get('dead_lettered', 0)}."
    )
    print(f"  {backend}: " + "; ".join(f"{r.figure}: {r.value} vs {r.baseline}" for r in rows), flush=True)
    return rows, note


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["_bare"]:
        return bare_main(args[1:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=int, default=50, help="outstanding requests = client endpoints (default 50)")
    p.add_argument("--values", type=int, default=10, help="values (tags) per request (default 10)")
    p.add_argument("--devices", type=int, default=20, help="devices the requests rotate over (default 20)")
    p.add_argument("--duration", type=float, default=10, help="measured seconds of each load phase (default 10)")
    p.add_argument("--warmup", type=float, default=2, help="seconds of load before measuring (default 2)")
    p.add_argument("--rounds", type=int, default=2, help="closed-loop turns per target, alternating (default 2)")
    p.add_argument("--rate", type=float, default=100, help="requests/s in the open-loop latency phase (default 100)")
    p.add_argument("--max-quiet-wait", type=float, default=120, help="seconds to wait for an idle machine")
    p.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                   help="diagnostic: an extra server setting, e.g. IIOT_OPCUA_PORT=0 (repeatable)")  # fmt: skip
    p.add_argument("--bare-lean", action="store_true",
                   help="diagnostic: the bare server on server/ingest/coap_context.py")  # fmt: skip
    p.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    p.add_argument("--no-doc", action="store_true", help="print only, do not append to docs/benchmarks.md")
    a = p.parse_args(args)
    a.extra_env = extra_env(a.server_env)
    logging.getLogger("coap").setLevel(logging.ERROR)  # aiocoap's client logs every retransmission
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    backends = BACKENDS if a.backend == "both" else (a.backend,)
    rows: list[Row] = []
    notes = [
        "Real server (`python -m server.cli run`, default settings: historian flush 0.2 s, stream coalescing "
        f"{STREAM_COALESCE_S * 1000:.0f} ms; CoAP on a free UDP port) in its own process; it answers "
        "`POST /telemetry` 2.04 only after the historian commit, so its request latency is publish → stored. "
        "Baseline: a bare aiocoap server in its own process (plain asyncio like the server, udp6, one resource: "
        "`json.loads`, 2.04 with a small JSON body). Load generator and stream client in this process (uvloop, "
        f"aiocoap clients): confirmable POSTs with the tenant's API key in the query, {a.values} values each over "
        f"{a.devices} devices; aiocoap allows one confirmable exchange per peer (NSTART 1), so {a.concurrency} "
        f"outstanding requests = {a.concurrency} client endpoints (UDP sockets). Throughput: closed loop, each "
        f"endpoint posts again on its answer; bare server and server take {a.rounds} turns each, alternating, "
        f"{a.warmup:g} s warm-up + {a.duration / a.rounds:g} s measured per turn; 2.04 answers counted inside the "
        f"measured windows. Latency: open loop {a.rate:g} req/s ({a.rate * a.values:,.0f} samples/s, each tag "
        f"updated every {a.devices / a.rate * 1000:.0f} ms) over the same endpoints, {a.duration:g} s measured after "
        f"{a.warmup:g} s; request latency = 2.04 received − just before the request; WS = frame received − just "
        "before the request, per value (one client subscribed to the plant); baseline first, then the server, "
        "same endpoints. CPU shares are % of one core (200% = both cores).",
    ]
    for backend in backends:
        print(f"CoAP ingest on {backend}: {a.concurrency} outstanding × {a.values} values; latency at {a.rate:g} req/s",
              flush=True)  # fmt: skip
        r, n = asyncio.run(bench_backend(backend, a))
        rows += r
        notes.append(n)
    cmd = "python -m bench.ingest_coap " + " ".join(args)
    title = "CoAP ingest against a bare aiocoap server"
    if a.extra_env:
        title += f" (diagnostic: server with {', '.join(a.server_env)})"
    if a.bare_lean:
        title += " (diagnostic: the bare server on the server's own aiocoap context)"
    publish(title, rows, notes, cmd.strip(), write=not a.no_doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
