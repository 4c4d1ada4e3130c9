"""Alarm engine under load: 10k conditions, 10k samples/s through the pipeline.

The real server (`python -m server.cli run`, default settings) in its own process; this process
is the load generator (the lean keep-alive HTTP client of bench.ingest_latency) and the stream
client. Namespace: `--devices` devices × `--tags` tags (default 1,000 × 10 = 10k tags), one limit
condition per tag (hi 90, deadband 1): 10k conditions. Load: open loop, `--rate` POSTs per
second, each of `--batch` devices' tags (default 100 × 10 × 10 = 10k samples/s), every sample
stamped with the send time. Values sit at 50 except each probe tag (T0 of every `--probe-every`-th device), which
alternates 95 / 50 on each message of its device: one alarm transition per probe message.

Two phases on the same server and namespace, `--duration` s each after `--warmup` s:
- baseline: no conditions yet; latency = sample → WS values frame of the probe tags
  (the stream coalesces values for 50 ms; alarm events are sent at once);
- alarms: with the 10k conditions; latency = sample → WS alarm event (the event's
  `changed_at` is the sample's time; same clock, same machine).
Engine time per sample: what the server's engine measured itself (`GET /api/v1/alarms/engine`,
perf_counter around each batch it judges) over the alarm phase; beside it the difference in the
server's CPU between the two phases per sample (noisier: it also holds the stream's events).

    python -m bench.alarms [--devices 1000] [--tags 10] [--rate 100] [--batch 10] [--duration 15]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

from bench.common import BACKENDS, Row, bench_database, percentile, publish, wait_for_quiet
from bench.ingest_latency import PASSWORD, LeanHttp, ServerProcess, cpu_ticks


async def login(base: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        r = await c.post("/api/v1/auth/login", json={"tenant": "bench", "username": "admin", "password": PASSWORD})
        r.raise_for_status()
        return str(r.json()["access_token"])


async def build(base: str, token: str, a: argparse.Namespace) -> list[str]:
    """Devices, tags and (later) conditions through the API, 16 requests at a time."""
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60, limits=limits) as c:
        r = await c.post("/api/v1/nodes", json={"parent": None, "node_class": "folder", "browse_name": "Plant1"})
        r.raise_for_status()
        gate = asyncio.Semaphore(16)

        async def node(parent: str, cls: str, name: str) -> None:
            async with gate:
                r = await c.post("/api/v1/nodes", json={"parent": parent, "node_class": cls, "browse_name": name})
                r.raise_for_status()

        await asyncio.gather(*(node("Plant1", "device", f"Dev{d:04d}") for d in range(a.devices)))

        async def tags(d: int) -> None:  # created by the first telemetry (the tenant's policy: create)
            body = {"device": f"Plant1/Dev{d:04d}", "values": {f"T{k}": 50.0 for k in range(a.tags)}}
            async with gate:
                r = await c.post("/api/v1/telemetry", json=body)
                r.raise_for_status()

        await asyncio.gather(*(tags(d) for d in range(a.devices)))
    return [f"Plant1/Dev{d:04d}/T0" for d in range(0, a.devices, a.probe_every)]


async def conditions(base: str, token: str, a: argparse.Namespace) -> float:
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60,
                                 limits=httpx.Limits(max_connections=16)) as c:  # fmt: skip
        gate = asyncio.Semaphore(16)

        async def one(d: int, k: int) -> None:
            body = {"name": f"Dev{d:04d} T{k} high", "priority": "high",
                    "spec": {"kind": "limit", "tag": f"Plant1/Dev{d:04d}/T{k}", "hi": 90, "deadband": 1}}  # fmt: skip
            async with gate:
                r = await c.post("/api/v1/alarms/conditions", json=body)
                r.raise_for_status()

        await asyncio.gather(*(one(d, k) for d in range(a.devices) for k in range(a.tags)))
    return time.perf_counter() - started


async def phase(base: str, token: str, a: argparse.Namespace, pid: int, probes: list[str],
                alarms: bool) -> dict[str, Any]:  # fmt: skip
    ws_url = base.replace("http://", "ws://") + "/api/v1/stream"
    lat: list[float] = []
    measuring = [False]
    counts = {"events": 0, "frames": 0}
    async with websockets.connect(ws_url, max_size=None, ping_interval=None) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        assert json.loads(await ws.recv())["type"] == "hello"
        if not alarms:
            await ws.send(json.dumps({"type": "subscribe", "id": 1, "nodes": probes}))
            while json.loads(await ws.recv()).get("type") != "subscribed":
                pass

        async def receive() -> None:
            async for raw in ws:
                now = time.time()
                msg = json.loads(raw)
                if alarms and msg.get("type") == "event" and msg.get("kind") == "alarm":
                    counts["events"] += 1
                    if measuring[0] and msg.get("event") in ("activated", "cleared"):
                        lat.append(now - float(msg["changed_at"]))
                elif not alarms and msg.get("type") == "values" and not msg.get("snapshot"):
                    counts["frames"] += 1
                    if measuring[0]:
                        lat.extend(now - float(u["t"]) for u in msg["updates"])

        recv = asyncio.create_task(receive())
        client = LeanHttp(base, token)
        tasks: set[asyncio.Task[Any]] = set()
        errors = [0]
        flip: dict[int, bool] = {}

        async def post(i: int) -> None:
            items = []
            now = time.time()
            for j in range(a.batch):
                d = (i * a.batch + j) % a.devices
                values = {f"T{k}": 50.0 for k in range(a.tags)}
                if d % a.probe_every == 0:
                    flip[d] = not flip.get(d, False)
                    values["T0"] = 95.0 if flip[d] else 50.0
                items.append({"device": f"Plant1/Dev{d:04d}", "ts": now, "values": values})
            body = json.dumps(items).encode()
            try:
                if await client.post("/api/v1/telemetry", body) != 201:
                    errors[0] += 1
            except (OSError, ValueError, asyncio.IncompleteReadError):
                errors[0] += 1

        total = int((a.warmup + a.duration) * a.rate)
        first = int(a.warmup * a.rate)
        t0 = time.perf_counter()
        cpu0: dict[str, float] = {}
        late = 0
        for i in range(total):
            if i == first:
                measuring[0] = True
                cpu0 = {"server": cpu_ticks(pid), "machine": cpu_ticks(), "wall": time.perf_counter()}
            delay = t0 + i / a.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.005:
                late += 1
            task = asyncio.create_task(post(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        wall = time.perf_counter() - cpu0["wall"]
        server_cpu = (cpu_ticks(pid) - cpu0["server"]) / wall
        machine = (cpu_ticks() - cpu0["machine"]) / wall
        await asyncio.gather(*tasks)
        await asyncio.sleep(1.0)
        measuring[0] = False
        client.close()
        recv.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recv
    return {"lat": lat, "server_cpu": server_cpu, "machine": machine, "errors": errors[0], "late": late,
            "rate": (total - first) / wall, **counts}  # fmt: skip


async def engine(base: str, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
        r = await c.get("/api/v1/alarms/engine")
        r.raise_for_status()
        return dict(r.json())


SETTLE_S = 12.0
"""After building the namespace and after creating the conditions: the server's gc freezer runs
10 s after the last configuration change (what a plant sees once its engineers are done)."""


def gc_pauses(path: Path) -> str:
    """The server's garbage collections over the whole run (diagnostic launcher bench._server_diag)."""
    data = json.loads(path.read_text())
    parts = []
    for gen in (0, 1, 2):
        pauses = sorted(p for g, _, p in data["events"] if g == gen)
        if pauses:
            long = sum(1 for p in pauses if p > 0.05)
            parts.append(f"gen{gen} ×{len(pauses)} (median {percentile(pauses, 50) * 1000:.1f} ms, max "
                         f"{pauses[-1] * 1000:.0f} ms, {long} over 50 ms)")  # fmt: skip
    return (
        f"Diagnostic gc log of the whole server run: {', '.join(parts)}; {data['tracked']:,} objects tracked at exit."
    )


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


async def bench_backend(backend: str, a: argparse.Namespace) -> tuple[list[Row], str]:
    async with bench_database(backend) as db:
        gc_log = db.tmp / "gc.json" if a.gc_log else None
        server = ServerProcess(db.url, db.tmp, gc_log=gc_log)
        server.env["IIOT_OPCUA_PORT"] = "0"
        server.env["IIOT_COAP_PORT"] = "0"
        server.start()
        try:
            assert server.proc is not None
            token = await login(server.base)
            t = time.perf_counter()
            probes = await build(server.base, token, a)
            built_s = time.perf_counter() - t
            await asyncio.sleep(SETTLE_S)  # the server freezes the new long-lived objects (server/gc_freezer.py)
            quiet = wait_for_quiet(max_wait=a.max_quiet_wait)
            print(f"  {backend}: {a.devices * a.tags:,} tags in {built_s:.0f} s; baseline …", flush=True)
            base = await phase(server.base, token, a, server.proc.pid, probes, alarms=False)
            configured_s = await conditions(server.base, token, a)
            print(f"  {backend}: {a.devices * a.tags:,} conditions in {configured_s:.0f} s; alarms …", flush=True)
            await asyncio.sleep(SETTLE_S)
            wait_for_quiet(max_wait=a.max_quiet_wait)
            token = await login(server.base)
            before = await engine(server.base, token)
            alarm = await phase(server.base, token, a, server.proc.pid, probes, alarms=True)
            after = await engine(server.base, token)
        finally:
            server.stop()
        gc_note = gc_pauses(gc_log) if gc_log is not None and gc_log.exists() else ""
    samples_s = alarm["rate"] * a.tags * a.batch
    judged = after["samples"] - before["samples"]
    engine_us = (after["busy_s"] - before["busy_s"]) / judged * 1e6 if judged else float("nan")
    differential_us = (alarm["server_cpu"] - base["server_cpu"]) / samples_s * 1e6
    a50, a99 = percentile(alarm["lat"], 50), percentile(alarm["lat"], 99)
    b50, b99 = percentile(base["lat"], 50), percentile(base["lat"], 99)
    load = f"{a.devices * a.tags:,} conditions, {samples_s:,.0f} samples/s"
    rows = [
        Row(backend, f"Sample → alarm event on the stream p50 / p99 ({load})", f"{ms(a50)} / {ms(a99)}",
            f"{ms(b50)} / {ms(b99)} (sample → values frame, no conditions, 50 ms coalescing)", f"{a99 / b99:.2f}",
            "p99 < 50 ms", "yes" if a99 < 0.05 else "**no**"),
        Row(backend, f"Alarm engine time per sample, measured in the server ({load})", f"{engine_us:.1f} µs",
            f"server {base['server_cpu'] * 100:.0f}% of a core without conditions, "
            f"{alarm['server_cpu'] * 100:.0f}% with ({differential_us:+.1f} µs per sample)", "—", "— (report)",
            "n/a"),
    ]  # fmt: skip
    note = (
        f"{backend}: {quiet}; namespace built in {built_s:.0f} s, {a.devices * a.tags:,} conditions created through "
        f"the API in {configured_s:.0f} s. Baseline: {base['rate']:.0f} req/s achieved ({base['late']} sends > 5 ms "
        f"late), {len(base['lat']):,} probe values in {base['frames']:,} frames, {base['errors']} errors, machine "
        f"{base['machine'] * 100:.0f}%. Alarms: {alarm['rate']:.0f} req/s ({alarm['late']} late), "
        f"{len(alarm['lat']):,} activations/clearings measured of {alarm['events']:,} alarm events, "
        f"{alarm['errors']} errors, machine {alarm['machine'] * 100:.0f}%; max {ms(max(alarm['lat'], default=0))}."
        + (f" {gc_note}" if gc_note else "")
    )
    print(f"  {backend}: " + "; ".join(f"{r.figure}: {r.value} vs {r.baseline}" for r in rows), flush=True)
    return rows, note


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--tags", type=int, default=10, help="tags per device, each with a limit condition")
    p.add_argument("--rate", type=float, default=100, help="POSTs per second")
    p.add_argument("--batch", type=int, default=10, help="devices per POST (all their tags)")
    p.add_argument("--probe-every", type=int, default=10, help="every n-th device's T0 alternates 95 / 50")
    p.add_argument("--duration", type=float, default=15)
    p.add_argument("--warmup", type=float, default=3)
    p.add_argument("--max-quiet-wait", type=float, default=120)
    p.add_argument("--backend", choices=[*BACKENDS, "both"], default="sqlite")
    p.add_argument("--gc-log", action="store_true", help="diagnostic: log the server's gc pauses (bench._server_diag)")
    p.add_argument("--no-doc", action="store_true")
    a = p.parse_args(args)
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    rows: list[Row] = []
    notes = [
        f"Real server in its own process (default settings, CoAP and OPC UA off), this process the load generator "
        f"and stream client. {a.devices:,} devices × {a.tags} tags, one limit condition per tag (hi 90, deadband 1); "
        f"open loop {a.rate:g} POST/s of {a.batch} devices × {a.tags} values ({a.rate * a.batch * a.tags:,.0f} "
        f"samples/s), every {a.probe_every}th device's T0 alternating 95/50 (one transition per probe sample, "
        f"{a.rate * a.batch / a.probe_every:.0f}/s); {a.duration:g} s measured after {a.warmup:g} s per phase. "
        "CPU shares are "
        "% of one core (200% = both cores).",
    ]
    for backend in BACKENDS if a.backend == "both" else (a.backend,):
        print(f"Alarm engine on {backend}", flush=True)
        r, n = asyncio.run(bench_backend(backend, a))
        rows += r
        notes.append(n)
    publish("Alarm engine: sample → alarm event, 10k conditions", rows, notes,
            ("python -m bench.alarms " + " ".join(args)).strip(), write=not a.no_doc)  # fmt: skip
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
