"""Shared parts of `bench.ingest_opcua` and `bench.ingest_modbus` (field-protocol adapters).

- `Child` / `serve_commands`: the field device and the bare-library baseline each run in a process
  of their own (`python -m bench.<module> field|baseline ...`); the benchmark drives them with one
  command per line on their stdin, and they answer with one `@bench {json}` line on stdout.
- `cpu_now` / `cpu_used`: CPU seconds of named processes and of the whole machine from /proc
  (`bench.ingest_latency.cpu_ticks`), turned into cores used over a window.
- `Api`: the few REST calls a benchmark needs (connections, ingest counters, node ids).
- `open_stream` / `read_stream`: a WebSocket client subscribed to a subtree, calling back per value.
- `StoredProbe`: the newest stored value of a few tags, polled straight from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import asyncpg
import httpx
import websockets

from bench.common import ROOT, BenchDb, percentile
from bench.ingest_latency import cpu_ticks
from server.storage.historian.sqlite_store import over_samples

PREFIX = "@bench "

# -- child processes -------------------------------------------------------------------------


def say(payload: dict[str, Any]) -> None:
    """A child's answer (or its READY line) to the benchmark."""
    print(PREFIX + json.dumps(payload), flush=True)


async def serve_commands(handlers: Mapping[str, Callable[[], Awaitable[dict[str, Any]]]]) -> None:
    """Answer one command per stdin line until stdin closes (the benchmark is done with us)."""
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        command = line.strip()
        handler = handlers.get(command)
        say(await handler() if handler is not None else {"error": f"unknown command {command!r}"})


def flags(options: dict[str, object]) -> list[str]:
    """{"period-ms": 100} -> ["--period-ms", "100"]: a child's command line."""
    return [part for key, value in options.items() for part in (f"--{key}", str(value))]


class Child:
    """`python -m <module> <args>` with the line protocol above; its other output is passed through."""

    def __init__(self, name: str, module_args: list[str]) -> None:
        self.name, self.args = name, module_args
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, limit_s: float = 60.0) -> dict[str, Any]:
        """Start it and return its READY payload."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", *self.args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, limit=1 << 26,  # answers carry raw latencies
        )  # fmt: skip
        return await self._reply(limit_s)

    async def ask(self, command: str, limit_s: float = 30.0) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"{command}\n".encode())
        await self.proc.stdin.drain()
        return await self._reply(limit_s)

    async def _reply(self, limit_s: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + limit_s
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), max(0.1, deadline - time.monotonic()))
            if not line:
                rc = await self.proc.wait()
                raise RuntimeError(f"{self.name} process exited with code {rc}")
            text = line.decode(errors="replace")
            if text.startswith(PREFIX):
                reply: dict[str, Any] = json.loads(text[len(PREFIX) :])
                if "error" in reply:
                    raise RuntimeError(f"{self.name}: {reply['error']}")
                return reply
            sys.stdout.write(f"  [{self.name}] {text}")

    async def stop(self) -> None:
        """Close its stdin (it exits by itself), else terminate, else kill: only this process."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        for action in (None, proc.terminate, proc.kill):
            if action is not None:
                with contextlib.suppress(ProcessLookupError):
                    action()
            try:
                await asyncio.wait_for(proc.wait(), 10)
                return
            except TimeoutError:
                continue


@contextlib.contextmanager
def uvloop_here() -> Iterator[None]:
    """uvloop for this process's asyncio.run() calls (less CPU for the stream client), the policy
    restored afterwards (bench.run_all runs every benchmark in one process)."""
    before = asyncio.get_event_loop_policy()
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(before)


# -- CPU from /proc --------------------------------------------------------------------------


def cpu_now(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process and of the whole machine, and the wall clock."""
    out = {"wall": time.perf_counter(), "machine": cpu_ticks()}
    for name, pid in pids.items():
        out[name] = cpu_ticks(pid)
    return out


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Cores used between two `cpu_now` samples (1.0 = one core busy), plus "wall" seconds."""
    wall = after["wall"] - before["wall"]
    out = {k: (after[k] - before[k]) / wall for k in after if k != "wall" and k in before}
    out["wall"] = wall
    return out


# -- the server's API and stream ---------------------------------------------------------------


class Api:
    def __init__(self, base: str, token: str) -> None:
        self.http = httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    async def create_connection(self, kind: str, name: str, config: dict[str, Any], *, enabled: bool) -> int:
        body = {"kind": kind, "name": name, "enabled": enabled, "config": config}
        r = await self.http.post("/api/v1/connections", json=body)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    async def set_enabled(self, connection_id: int, enabled: bool) -> None:
        r = await self.http.patch(f"/api/v1/connections/{connection_id}", json={"enabled": enabled})
        assert r.status_code == 200, r.text

    async def stats(self, kind: str) -> dict[str, Any]:
        r = await self.http.get("/api/v1/ingest/stats")
        r.raise_for_status()
        return dict(r.json().get(kind) or {"received": 0, "accepted": 0, "rejected": {}, "reconnects": 0})

    async def accepted(self, kind: str) -> tuple[float, int]:
        """(time.perf_counter() in the middle of the request, accepted samples of the adapter)."""
        t0 = time.perf_counter()
        accepted = int((await self.stats(kind))["accepted"])
        return (t0 + time.perf_counter()) / 2, accepted

    async def node_id(self, path: str) -> str:
        r = await self.http.get(f"/api/v1/nodes/{path}")
        r.raise_for_status()
        return str(r.json()["node_id"])

    async def wait_accepted(self, kind: str, at_least: int, limit_s: float, what: str) -> int:
        deadline = time.monotonic() + limit_s
        while True:
            _, n = await self.accepted(kind)
            if n >= at_least:
                return n
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {limit_s:g} s waiting for {what} ({n:,} of {at_least:,})")
            await asyncio.sleep(0.2)

    async def wait_settled(self, kind: str, quiet_s: float = 1.0, limit_s: float = 30.0) -> None:
        """Until the adapter's accepted counter stops moving (a disabled connection has wound down)."""
        deadline = time.monotonic() + limit_s
        _, last = await self.accepted(kind)
        still_since = time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            _, n = await self.accepted(kind)
            if n != last:
                last, still_since = n, time.monotonic()
            elif time.monotonic() - still_since >= quiet_s:
                return
        raise RuntimeError(f"{kind}: values still arrive {limit_s:g} s after the connections were disabled")

    async def close(self) -> None:
        await self.http.aclose()


async def open_stream(base: str, token: str, subtree: str) -> websockets.ClientConnection:
    ws = await websockets.connect(base.replace("http://", "ws://") + "/api/v1/stream", max_size=None,
                                  ping_interval=None)  # fmt: skip
    await ws.send(json.dumps({"type": "auth", "token": token}))
    assert json.loads(await ws.recv())["type"] == "hello"
    await ws.send(json.dumps({"type": "subscribe", "id": 1, "subtrees": [subtree]}))
    while json.loads(await ws.recv()).get("type") != "subscribed":
        pass
    return ws


async def read_stream(ws: websockets.ClientConnection, on_value: Callable[[str, float, float, float], None]) -> None:
    """Calls on_value(node_id, value, sample ts, time.time() at receipt) for every Good value of every live frame."""
    with contextlib.suppress(websockets.ConnectionClosed):
        async for raw in ws:
            now = time.time()
            msg = json.loads(raw)
            if msg.get("type") != "values" or msg.get("snapshot"):
                continue
            for u in msg["updates"]:
                if u["q"] == 0:
                    on_value(u["n"], float(u["v"]), float(u["t"]), now)


class StoredProbe:
    """The newest stored value of a few tags, straight from the database every `interval` s;
    on_value(node_id, value, time.time()) is called when a tag's newest value changes. It sees a
    value up to one interval after its commit, and only the newest one of each poll."""

    def __init__(
        self, db: BenchDb, node_ids: list[str], on_value: Callable[[str, float, float], None], interval: float
    ) -> None:
        self.db, self.node_ids, self.on_value, self.interval = db, node_ids, on_value, interval
        self.polls = 0

    async def run(self, stop: asyncio.Event) -> None:
        last: dict[str, float] = {}

        def seen(node: str, value: float | None, now: float) -> None:
            if value is not None and last.get(node) != value:
                if node in last:  # the first poll only finds what was there already
                    self.on_value(node, value, now)
                last[node] = value

        if self.db.backend == "sqlite":
            conn = sqlite3.connect(f"file:{self.db.dsn}?mode=ro", uri=True, timeout=5)
            try:
                marks = ",".join("?" * len(self.node_ids))
                ids = dict(conn.execute(f"SELECT id, node_id FROM nodes WHERE node_id IN ({marks})", self.node_ids))
                query = over_samples("SELECT value, ts FROM {t} WHERE tag_id = ?") + " ORDER BY ts DESC LIMIT 1"
                while not stop.is_set():
                    for tag_id, node in ids.items():  # ~20 µs each: cheaper inline than in a thread
                        row = conn.execute(query, (tag_id, tag_id)).fetchone()
                        seen(node, row[0] if row else None, time.time())
                    self.polls += 1
                    await asyncio.sleep(self.interval)
            finally:
                conn.close()
            return
        pg = await asyncpg.connect(self.db.dsn)
        try:
            rows = await pg.fetch("SELECT id, node_id FROM nodes WHERE node_id = ANY($1::text[])", self.node_ids)
            ids = {int(r["id"]): str(r["node_id"]) for r in rows}
            query = (
                "SELECT t.id, s.value FROM unnest($1::int[]) AS t(id) CROSS JOIN LATERAL "
                "(SELECT value FROM samples WHERE tag_id = t.id ORDER BY ts DESC LIMIT 1) AS s"
            )
            while not stop.is_set():
                for row in await pg.fetch(query, list(ids)):
                    seen(ids[int(row["id"])], float(row["value"]), time.time())
                self.polls += 1
                await asyncio.sleep(self.interval)
        finally:
            await pg.close()


# -- figures -----------------------------------------------------------------------------------


def spread(values: list[float]) -> dict[str, float]:
    """p50, p99 and max of latencies in seconds (NaN when there are none)."""
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
        "n": float(len(values)),
    }


def ms(x: float) -> str:
    return "—" if x != x else f"{x * 1000:.1f} ms"  # NaN: nothing measured
