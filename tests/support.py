"""Test support: real databases, a real server on a real port, and thin HTTP/WS clients."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy.engine import make_url
from websockets.sync.client import ClientConnection, connect

from server.app import Server, loop_factory
from server.config import Settings, load_settings
from server.storage.database import Database

CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_URL = os.environ.get("IIOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["sqlite", "postgresql"]
SYSTEM_PASSWORD = "system-admin-pass"
JWT_SECRET = "test-secret-" + "x" * 40


def unavailable(reason: str) -> None:
    """Skip when a service is missing on a developer box; fail in CI, where it must be there."""
    if CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


async def _pg_admin(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)


def create_postgres_database() -> str:
    """A fresh database on the local server; dropped by drop_postgres_database."""
    name = f"iiot_test_{uuid.uuid4().hex[:12]}"

    async def run() -> None:
        conn = await _pg_admin(POSTGRES_URL)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    try:
        asyncio.run(run())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        unavailable(f"PostgreSQL at {POSTGRES_URL} is unreachable ({exc}); set IIOT_TEST_POSTGRES_URL")
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    name = make_url(url).database

    async def run() -> None:
        conn = await _pg_admin(POSTGRES_URL)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(run())


@contextmanager
def database_url(backend: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'iiot.db'}"
        return
    url = create_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_settings(tmp: Path, db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp, "database_url": db_url, "http_port": free_port(), "jwt_secret": JWT_SECRET,
        "historian_flush_interval_s": 0.02, "historian_rollup_interval_s": 0.5, "stream_heartbeat_s": 1.0,
        "stream_flush_interval_s": 0.02, "log_level": "warning", "coap_port": 0, "opcua_port": 0,
        # Every test logs in from 127.0.0.1: the limiter is tested on a server of its own.
        "login_max_failures": 1000,
    }  # fmt: skip
    return load_settings(None, **(values | overrides))


class LiveServer:
    """`iiot-server` on its own thread and event loop, serving HTTP on a real port."""

    def __init__(self, settings: Settings, *, fresh: bool = True) -> None:
        """`fresh=False`: a restart on a database that has the system tenant already."""
        self.settings, self.fresh = settings, fresh
        self.base = f"http://127.0.0.1:{settings.http_port}"
        self.ws_url = f"ws://127.0.0.1:{settings.http_port}/api/v1/stream"
        self.server: Server | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="live-server", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            db = Database(self.settings.database_url)
            await db.migrate()
            await db.dispose()
            # No collection on this thread: the console tests' QObjects live in this process.
            self.server = Server(self.settings, bcrypt_rounds=4, freeze_gc=False)
            if self.fresh:
                await self.server.admin.create_tenant(None, "system", "System", "root", SYSTEM_PASSWORD)
            await self.server.serve(install_signal_handlers=False, access_log=False)

        try:  # on the loop `iiot-server run` uses (uvloop where installed)
            with asyncio.Runner(loop_factory=loop_factory(self.settings.event_loop)) as runner:
                runner.run(main())
        except BaseException as exc:  # reported by start()
            self._error = exc

    def start(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._error:
                raise RuntimeError(f"server failed to start: {self._error!r}")
            try:
                if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                    if threading.current_thread() is threading.main_thread():
                        # What Server.start does in production, here on the thread that owns
                        # the console tests' QObjects: later full collections skip it all.
                        gc.collect()
                        gc.freeze()
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not start within 30 s")

    def stop(self) -> None:
        if self.server is not None and self.loop is not None and hasattr(self.server, "http"):
            self.loop.call_soon_threadsafe(setattr, self.server.http, "should_exit", True)
        self._thread.join(30)

    def call(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the server's loop (to inspect the historian directly)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def client(self, token: str | None = None, api_key: str | None = None) -> Api:
        return Api(self, token, api_key)

    def login(self, tenant: str, username: str, password: str) -> Api:
        r = httpx.post(
            self.base + "/api/v1/auth/login", json={"tenant": tenant, "username": username, "password": password}
        )
        assert r.status_code == 200, r.text
        return Api(self, r.json()["access_token"], refresh=r.json()["refresh_token"])

    def system(self) -> Api:
        return self.login("system", "root", SYSTEM_PASSWORD)

    def new_tenant(self, prefix: str = "t") -> TenantHandle:
        """A fresh tenant with an admin and one user per built-in role (password = role name * 3)."""
        name = f"{prefix}{uuid.uuid4().hex[:10]}"
        system = self.system()
        r = system.post(
            "/api/v1/tenants", json={"name": name, "admin_username": "admin", "admin_password": "admin-password"}
        )
        assert r.status_code == 201, r.text
        admin = self.login(name, "admin", "admin-password")
        users = {"admin": admin}
        for role in ("engineer", "supervisor", "operator", "viewer"):
            r = admin.post("/api/v1/users", json={"username": role, "password": role * 3, "roles": [role]})
            assert r.status_code == 201, r.text
            users[role] = self.login(name, role, role * 3)
        return TenantHandle(name, users)


@dataclass
class TenantHandle:
    name: str
    users: dict[str, Api]

    @property
    def admin(self) -> Api:
        return self.users["admin"]

    @property
    def engineer(self) -> Api:
        return self.users["engineer"]

    def build_plant(self) -> dict[str, str]:
        """Plant1/Area1/Pump7 with tags Flow and Pressure; returns their node ids."""
        api = self.engineer
        ids = {}
        for parent, cls, name in [
            (None, "folder", "Plant1"), ("Plant1", "folder", "Area1"), ("Plant1/Area1", "device", "Pump7"),
            ("Plant1/Area1/Pump7", "tag", "Flow"), ("Plant1/Area1/Pump7", "tag", "Pressure"),
        ]:  # fmt: skip
            r = api.post("/api/v1/nodes", json={"parent": parent, "node_class": cls, "browse_name": name})
            assert r.status_code == 201, r.text
            ids[name] = r.json()["node_id"]
        return ids


class Api:
    def __init__(self, live: LiveServer, token: str | None, api_key: str | None = None, refresh: str | None = None):
        self.live, self.token, self.refresh_token = live, token, refresh
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if api_key:
            headers["X-API-Key"] = api_key
        self.http = httpx.Client(base_url=live.base, headers=headers, timeout=30)

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.http.get(url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.http.post(url, **kw)

    def patch(self, url: str, **kw: Any) -> httpx.Response:
        return self.http.patch(url, **kw)

    def put(self, url: str, **kw: Any) -> httpx.Response:
        return self.http.put(url, **kw)

    def delete(self, url: str, **kw: Any) -> httpx.Response:
        return self.http.delete(url, **kw)

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, url, **kw)

    @contextmanager
    def stream(self) -> Iterator[Stream]:
        with connect(self.live.ws_url, open_timeout=10) as ws:
            ws.send(json.dumps({"type": "auth", "token": self.token}))
            s = Stream(ws)
            hello = s.next()
            assert hello["type"] == "hello", hello
            yield s


class Stream:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    def send(self, msg: dict[str, Any]) -> None:
        self.ws.send(json.dumps(msg))

    def next(self, timeout: float = 5) -> dict[str, Any]:
        return json.loads(self.ws.recv(timeout))

    def next_of(self, kind: str, timeout: float = 5) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.next(max(0.01, deadline - time.monotonic()))
            if msg["type"] == kind:
                return msg


def wait_for(check: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    """Poll `check` until it returns something true; the test fails with `what` if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {result!r}")
        time.sleep(0.05)


class LoopThread:
    """An event loop on its own thread, for peers (field servers, devices) that outlive one call."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any, timeout: float = 20) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def cancel_all() -> None:  # asyncua leaves session watchdogs behind
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.call(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def forget_session(url: str, client_id: str) -> None:
    """Remove the server's persistent session (clean start, expiry 0) and its retained Sparkplug
    STATE from the broker, so test runs leave nothing behind."""
    parts = urlsplit(url)
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    try:
        client.connect(parts.hostname or "127.0.0.1", parts.port or 1883, clean_start=True, properties=props)
        client.loop_start()
        client.publish(f"spBv1.0/STATE/{client_id}", b"", qos=1, retain=True).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()
    except (OSError, RuntimeError, ValueError):
        pass
