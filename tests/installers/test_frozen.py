"""The frozen programs (PyInstaller bundles) work, not just import: every database driver, the
migrations, each protocol library on a real socket, Qt's platform plugins."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from installers.build import Bundle
from tests.installers.conftest import BUILD_TIMEOUT, need
from tests.support import database_url, forget_session, free_port, unavailable

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT)

MQTT_URL = os.environ.get("IIOT_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
AMQP_URL = os.environ.get("IIOT_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1/")


def frozen_env(tmp: Path, **values: str) -> dict[str, str]:
    """A clean environment: nothing from the checkout or its virtualenv leaks into the bundle."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ")}
    return keep | {"IIOT_DATA_DIR": str(tmp), "IIOT_HMI_CONFIG_DIR": str(tmp / "hmi")} | values


def run(exe: Path, *args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=timeout, check=False)


def test_server_version(server_bundle: Bundle, tmp_path: Path) -> None:
    r = run(server_bundle.executable, "--version", env=frozen_env(tmp_path))
    assert r.returncode == 0 and r.stdout.strip() == "iiot-server 0.1.0", r.stderr


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_server_migrates_and_checks_each_database(server_bundle: Bundle, tmp_path: Path, backend: str) -> None:
    """SQLAlchemy imports the DBAPI driver only when an engine is made, and Alembic runs its
    scripts from files: both fail only in a frozen program that lacks them."""
    with database_url(backend, tmp_path) as url:
        env = frozen_env(tmp_path, IIOT_DATABASE_URL=url)
        r = run(server_bundle.executable, "--check", env=env)
        assert r.returncode == 2 and "iiot-server migrate" in r.stderr, r.stderr  # reached the empty database
        r = run(server_bundle.executable, "migrate", env=env)
        assert r.returncode == 0 and "schema empty ->" in r.stdout, r.stdout + r.stderr
        r = run(server_bundle.executable, "--check", env=env)
        assert r.returncode == 0, r.stderr
        assert "reachable and current" in r.stdout
        assert "protocol adapters loaded: mqtt, coap, amqp, opcua_client, modbus, opcua_server" in r.stdout


def _reachable(url: str, default_port: int) -> None:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=3).close()
    except OSError as exc:
        unavailable(f"{url} is unreachable ({exc})")


async def _probe_protocols(coap_port: int, opcua_port: int) -> tuple[str, int]:
    """One real exchange with the frozen server's CoAP and OPC UA listeners."""
    import aiocoap
    from asyncua import Client

    ctx = await aiocoap.Context.create_client_context()
    try:
        req = aiocoap.Message(code=aiocoap.GET, uri=f"coap://127.0.0.1:{coap_port}/.well-known/core")
        resp = await asyncio.wait_for(ctx.request(req).response, 10)
    finally:
        await ctx.shutdown()
    endpoints = await Client(f"opc.tcp://127.0.0.1:{opcua_port}/").connect_and_get_server_endpoints()
    return resp.payload.decode(), len(endpoints)


async def _delete_amqp(url: str, name: str) -> None:
    import aio_pika

    conn = await aio_pika.connect(url)
    async with conn:
        channel = await conn.channel()
        await channel.queue_delete(name)
        await channel.exchange_delete(name)


def test_server_runs_every_protocol_frozen(server_bundle: Bundle, tmp_path: Path) -> None:
    """The frozen server with MQTT, AMQP, CoAP and OPC UA switched on: each adapter starts, the
    HTTP API answers, and a CoAP and an OPC UA client get real answers from it."""
    _reachable(MQTT_URL, 1883)
    _reachable(AMQP_URL, 5672)
    http, coap, opcua = free_port(), free_port(), free_port()
    name = f"iiot-frozen-{uuid.uuid4().hex[:10]}"
    env = frozen_env(
        tmp_path, IIOT_HTTP_PORT=str(http), IIOT_COAP_PORT=str(coap), IIOT_OPCUA_PORT=str(opcua),
        IIOT_MQTT_URL=MQTT_URL, IIOT_MQTT_CLIENT_ID=name, IIOT_AMQP_URL=AMQP_URL, IIOT_AMQP_EXCHANGE=name,
        IIOT_AMQP_QUEUE=name,
    )  # fmt: skip
    assert run(server_bundle.executable, "migrate", env=env).returncode == 0
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(server_bundle.executable), "run"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        expected = ["mqtt: connected", "amqp: consuming", "coap: serving", "opcua server: listening",
                    "iiot-server started"]  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(e in log.read_text() for e in expected):
            assert proc.poll() is None, log.read_text()
            time.sleep(0.3)
        text = log.read_text()
        assert all(e in text for e in expected), text
        base = f"http://127.0.0.1:{http}"
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"{base}/health", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
        assert health.json() == {"status": "ok", "version": "0.1.0"}
        assert httpx.get(f"{base}/ready", timeout=5).json()["status"] == "ready"
        links, endpoints = asyncio.run(_probe_protocols(coap, opcua))
        assert "</telemetry>" in links and endpoints >= 1
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        asyncio.run(_delete_amqp(AMQP_URL, name))
        forget_session(MQTT_URL, name)  # its persistent session would stay on the broker for a week
    assert code == 0, log.read_text()
    assert "historian flushed" in log.read_text()
    assert "Traceback" not in log.read_text()


def test_console_version_and_self_test(hmi_bundle: Bundle, tmp_path: Path) -> None:
    env = frozen_env(tmp_path)
    r = run(hmi_bundle.executable, "--version", env=env)
    assert r.returncode == 0 and r.stdout.strip() == "iiot-hmi 0.1.0", r.stderr
    r = run(hmi_bundle.executable, "--self-test", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "window rendered" in r.stdout and r.stdout.strip().endswith("ok")


def test_console_carries_its_x11_platform_plugin(hmi_bundle: Bundle) -> None:
    """xcb and the libxcb-* libraries it loads are in the bundle and resolve there; only the
    OpenGL/EGL and core xcb libraries the .deb depends on come from the system."""
    internal = hmi_bundle.path / "_internal"
    qt = internal / "PySide6" / "Qt"
    xcb = qt / "plugins" / "platforms" / "libqxcb.so"
    assert xcb.is_file() and (qt / "plugins" / "platforms" / "libqoffscreen.so").is_file()
    assert list(internal.rglob("libxcb-cursor.so.0*")), "libxcb-cursor0 missing from the bundle"
    env = {"LD_LIBRARY_PATH": f"{internal}:{qt / 'lib'}"}
    out = subprocess.run(["ldd", str(xcb)], capture_output=True, text=True, env=env, check=True).stdout
    assert "not found" not in out, out


def test_console_starts_on_x11(hmi_bundle: Bundle, tmp_path: Path) -> None:
    """On a real X server (Xvfb) the frozen console loads its xcb plugin and stays up."""
    need("xvfb-run")
    env = frozen_env(tmp_path, QT_QPA_PLATFORM="xcb")
    cmd = ["xvfb-run", "-a", "timeout", "-s", "TERM", "8", str(hmi_bundle.executable)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert r.returncode == 124, r.stdout + r.stderr  # still running when timeout stopped it
    assert "could not load the Qt platform plugin" not in r.stderr.lower(), r.stderr


def test_bundles_leave_out_development_tools(server_bundle: Bundle, hmi_bundle: Bundle) -> None:
    for bundle, absent in ((server_bundle, ["PySide6", "hypothesis", "mypy", "pytest"]),
                           (hmi_bundle, ["sqlalchemy", "asyncua", "hypothesis", "mypy"])):  # fmt: skip
        internal = bundle.path / "_internal"
        assert not [name for name in absent if (internal / name).exists()], bundle.name
