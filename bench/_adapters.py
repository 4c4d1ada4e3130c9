"""What the protocol-adapter benchmarks (`bench.ingest_amqp`, `bench.ingest_coap`) share.

The real server comes from `bench.ingest_latency.ServerProcess`; these are the small pieces
around it: free ports, a lean keep-alive GET for polling the server, the WebSocket stream
subscription, CPU accounting per process during a measured window, and a helper process that
reports back on its stdout.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

from bench.common import ROOT, percentile, read_response
from bench.ingest_latency import PASSWORD, cpu_ticks, free_port

TENANT = "bench"
STREAM_ROOT = "Plant1"
LATE_LIMIT = 0.01
"""More than this share of open-loop sends > 5 ms late: the load generator itself fell behind."""
LATE_WARNING = " — **the load generator fell behind: its latency figures are not reliable**"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_env(coap_port: int | None = None) -> dict[str, str]:
    """The server's other listeners on free ports (CoAP and OPC UA stay on, as by default), so a
    run never shares 5683/4840 with another server on this machine."""
    return {
        "IIOT_COAP_PORT": str(coap_port if coap_port is not None else free_udp_port()),
        "IIOT_OPCUA_PORT": str(free_port()),
    }


def extra_env(pairs: list[str]) -> dict[str, str]:
    """`--server-env KEY=VALUE` flags (diagnostics: e.g. `IIOT_OPCUA_PORT=0`) as a dict."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.startswith("IIOT_"):
            raise SystemExit(f"--server-env {pair!r}: expected IIOT_<SETTING>=<value>")
        out[key] = value
    return out


def login(base: str) -> str:
    r = httpx.post(base + "/api/v1/auth/login", json={"tenant": TENANT, "username": "admin", "password": PASSWORD})
    r.raise_for_status()
    return str(r.json()["access_token"])


def process_pid(comm: str) -> int | None:
    """The pid of a running process by its executable name (e.g. RabbitMQ's `beam.smp`)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == comm:
                    return int(entry.name)
            except OSError:
                continue
    return None


class CpuWindow:
    """CPU used per named process and by the whole machine between start() and stop(), in cores."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self.t0 = 0.0
        self.c0: dict[str, float] = {}
        self.m0 = 0.0

    def _read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, pid in self.pids.items():
            try:
                out[name] = cpu_ticks(pid)
            except OSError:  # the process is gone
                out[name] = self.c0.get(name, 0.0)
        return out

    def start(self) -> CpuWindow:
        self.t0, self.c0, self.m0 = time.perf_counter(), self._read(), cpu_ticks()
        return self

    def stop(self) -> dict[str, float]:
        wall = max(1e-9, time.perf_counter() - self.t0)
        c1, m1 = self._read(), cpu_ticks()
        out = {name: (c1[name] - self.c0[name]) / wall for name in self.pids}
        out["machine"] = (m1 - self.m0) / wall
        out["rest"] = max(0.0, out["machine"] - sum(v for k, v in out.items() if k != "machine"))
        return out


def cpu_text(cpu: dict[str, float]) -> str:
    """`server 85%, broker 40%, …` in % of one core (200% = both cores of this machine busy)."""
    return ", ".join(f"{name} {share:.0%}" for name, share in cpu.items())


class LeanGet:
    """One keep-alive HTTP/1.1 connection for GETs that return JSON with a Content-Length (FastAPI
    does): polling the server 20 times a second through httpx would cost the load generator
    ~0.1 core on this 2-core machine."""

    def __init__(self, base: str, token: str) -> None:
        hostport = base.split("://", 1)[1]
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)
        self.head = f"Host: {hostport}\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\n".encode()
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, path: str) -> tuple[int, Any]:
        if self.conn is None:
            self.conn = await asyncio.open_connection(self.host, self.port)
        r, w = self.conn
        try:
            w.write(b"GET %s HTTP/1.1\r\n%s\r\n" % (path.encode(), self.head))
            status, body = await read_response(r)
        except (OSError, IndexError, ValueError, asyncio.IncompleteReadError):
            self.close()
            raise
        return status, json.loads(body) if body else None

    def close(self) -> None:
        if self.conn is not None:
            self.conn[1].close()
            self.conn = None


async def open_stream(base: str, token: str) -> websockets.ClientConnection:
    """A stream client subscribed to the whole test plant (docs/protocol.md §8), snapshot consumed."""
    ws = await websockets.connect(base.replace("http://", "ws://") + "/api/v1/stream", max_size=None,
                                  ping_interval=None)  # fmt: skip
    await ws.send(json.dumps({"type": "auth", "token": token}))
    assert json.loads(await ws.recv())["type"] == "hello"
    await ws.send(json.dumps({"type": "subscribe", "id": 1, "subtrees": [STREAM_ROOT]}))
    while json.loads(await ws.recv()).get("type") != "subscribed":
        pass
    # The snapshot frame (the set-up values) follows; the receiver ignores values it did not send.
    return ws


async def helper_process(module: str, *args: str) -> asyncio.subprocess.Process:
    """`python -m <module> _bare …` in its own process (plain asyncio, like the server), started
    once it printed `ready`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, "_bare", *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if line.strip() != b"ready":
        await proc.wait()
        raise RuntimeError(f"{module} helper did not start (said {line!r}, exit code {proc.returncode})")
    return proc


async def helper_result(proc: asyncio.subprocess.Process, limit_s: float) -> dict[str, Any]:
    """The helper's last stdout line, a JSON object, once it exits."""
    assert proc.stdout is not None
    try:
        out = await asyncio.wait_for(proc.stdout.read(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"helper process did not finish within {limit_s:.0f} s") from None
    await proc.wait()
    lines = out.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"helper process failed (exit code {proc.returncode}): {out.decode()[-1000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def settle_gc() -> None:
    """Before a timed phase: collect, then freeze what survives, so that a full collection of the
    load generator's own heap (aiocoap keeps every exchange ~4 min for deduplication) does not
    stall it in the middle of a measurement."""
    gc.collect()
    gc.freeze()


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def p50_p99(values: list[float]) -> tuple[float, float]:
    return percentile(values, 50), percentile(values, 99)
