"""MQTT ingestion against the real Mosquitto, with `mosquitto_pub`/`mosquitto_sub` as the devices.

Every test uses fresh tenants (unique topic prefixes) and the server a unique client id, so
parallel runs on the shared broker don't collide; the persistent session and retained
messages a run leaves are removed at the end. The broker-restart test runs its own
mosquitto on a free port and never touches the shared one.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import pytest

from server.domain.errors import Unavailable
from tests.support import (
    BACKENDS,
    LiveServer,
    database_url,
    forget_session,
    free_port,
    make_settings,
    unavailable,
    wait_for,
)

MQTT_URL = os.environ.get("IIOT_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
DEVICE = "Plant1/Area1/Pump7"
LINE_BUFFERED = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []
"""mosquitto_sub's debug lines (SUBACK) must reach the pipe as they happen."""


# -- helpers shared with test_ingest_sparkplug.py -----------------------------------------------


def broker() -> tuple[str, int]:
    parts = urlsplit(MQTT_URL)
    host, port = parts.hostname or "127.0.0.1", parts.port or 1883
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        unavailable(f"Mosquitto at {MQTT_URL} is unreachable ({exc}); set IIOT_TEST_MQTT_URL")
    if shutil.which("mosquitto_pub") is None:
        unavailable("mosquitto_pub is not installed (Debian: mosquitto-clients)")
    return host, port


def start_mqtt_server(tmp: Path, db_url: str, **overrides: Any) -> LiveServer:
    settings = make_settings(
        tmp, db_url, mqtt_url=MQTT_URL, mqtt_client_id=f"iiot-test-{uuid.uuid4().hex[:12]}",
        max_payload_bytes=4096, **overrides,
    )  # fmt: skip
    live = LiveServer(settings).start()
    wait_connected(live)
    return live


def wait_connected(live: LiveServer, timeout: float = 15) -> None:
    assert live.server is not None
    adapter = next(a for a in live.server.adapters if a.name == "mqtt")
    wait_for(lambda: adapter.connected.is_set(), timeout, "the MQTT adapter to subscribe")  # type: ignore[attr-defined]


def mqtt_live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, **overrides: Any
) -> Iterator[LiveServer]:
    broker()
    backend = str(request.param)
    tmp = tmp_path_factory.mktemp(f"mqtt-{backend}")
    with database_url(backend, tmp) as url:
        live = start_mqtt_server(tmp, url, **overrides)
        try:
            yield live
        finally:
            live.stop()
            forget_session(MQTT_URL, live.settings.mqtt_client_id)


# -- this module's server ----------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from mqtt_live(request, tmp_path_factory, mqtt_sparkplug=False)


def pub(topic: str, payload: bytes | None, *, retain: bool = False, qos: int = 1) -> None:
    host, port = broker()
    cmd = ["mosquitto_pub", "-h", host, "-p", str(port), "-q", str(qos), "-t", topic]
    cmd += ["-r"] if retain else []
    cmd += ["-n"] if payload is None else ["-s"]
    subprocess.run(cmd, input=payload, check=True, timeout=10)


def stats(api: Any) -> dict[str, Any]:
    r = api.get("/api/v1/ingest/stats")
    assert r.status_code == 200, r.text
    return dict(r.json().get("mqtt", {}))


def history(api: Any, tag: str) -> list[tuple[float, float, int]]:
    r = api.get("/api/v1/history", params={"node": tag, "start": time.time() - 86_400, "max_points": 10_000})
    assert r.status_code == 200, r.text
    h = r.json()
    return list(zip(h["t"], h["value"], h["quality"], strict=True))


def node(api: Any, ref: str) -> dict[str, Any]:
    r = api.get(f"/api/v1/nodes/{ref}")
    assert r.status_code == 200, r.text
    return dict(r.json())


# -- telemetry and status ------------------------------------------------------------------------


def test_telemetry_single_batch_and_node_id_topic(live: LiveServer) -> None:
    t = live.new_tenant("mq")
    t.build_plant()
    base = time.time() - 60
    pub(f"{t.name}/devices/{DEVICE}/telemetry", json.dumps({"ts": base, "values": {"Flow": 1.5}}).encode())
    batch = [{"ts": base + i, "values": {"Flow": 10.0 + i, "Pressure": 20.0 + i}} for i in range(1, 4)]
    pub(f"{t.name}/devices/{DEVICE}/telemetry", json.dumps(batch).encode())
    # the device addressed by its node id; a tag the device doesn't have yet is created (tenant policy)
    pub(f"{t.name}/devices/ns=2;s={DEVICE}/telemetry", json.dumps({"ts": base + 5, "values": {"Speed": 1450}}).encode())
    flow = wait_for(lambda: len(history(t.engineer, f"{DEVICE}/Flow")) == 4 and history(t.engineer, f"{DEVICE}/Flow"))
    assert [v for _, v, _ in flow] == [1.5, 11.0, 12.0, 13.0]
    assert [round(ts - base, 3) for ts, _, _ in flow] == [0, 1, 2, 3]
    assert [v for _, v, _ in history(t.engineer, f"{DEVICE}/Pressure")] == [21.0, 22.0, 23.0]
    # the last message may still be on its way: its tag exists only once it was ingested
    wait_for(lambda: t.engineer.get(f"/api/v1/nodes/{DEVICE}/Speed").status_code == 200, what="the created tag")
    wait_for(lambda: history(t.engineer, f"{DEVICE}/Speed"), what="the created tag's value")
    s = wait_for(lambda: stats(t.engineer).get("accepted") == 8 and stats(t.engineer))
    assert s["received"] == 8 and s["rejected"] == {} and s["dead_lettered"] == 0


def test_status_and_last_will(live: LiveServer) -> None:
    t = live.new_tenant("mq")
    t.build_plant()
    topic = f"{t.name}/devices/{DEVICE}/status"
    try:
        pub(topic, b"online", retain=True)
        wait_for(lambda: node(t.engineer, DEVICE)["status"] == "online", what="online")
        # a device whose last will is its retained 'offline' status, killed without a clean disconnect
        host, port = broker()
        device = subprocess.Popen(
            [*LINE_BUFFERED, "mosquitto_sub", "-h", host, "-p", str(port), "-d",
             "-t", f"{t.name}/devices/{DEVICE}/commands", "-k", "5",
             "--will-topic", topic, "--will-payload", "offline", "--will-retain", "--will-qos", "1"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert device.stdout is not None
            while "SUBACK" not in device.stdout.readline():
                pass
        finally:
            device.send_signal(signal.SIGKILL)
            device.wait(5)
        wait_for(lambda: node(t.engineer, DEVICE)["status"] == "offline", what="the last will")
    finally:
        pub(topic, None, retain=True)  # leave no retained message on the shared broker


# -- bad input ----------------------------------------------------------------------------------


def test_bad_input_is_counted_dead_lettered_and_the_next_message_still_ingested(live: LiveServer) -> None:
    t = live.new_tenant("mq")
    t.build_plant()
    telemetry = f"{t.name}/devices/{DEVICE}/telemetry"
    stranger = f"nosuch{uuid.uuid4().hex[:10]}"
    bad: list[tuple[str, bytes]] = [
        (telemetry, b"\xff\xfe\x00\x13garbage\x80"),  # garbage bytes
        (telemetry, b'{"values": {"Flow": '),  # invalid JSON
        (telemetry, b'{"values": {"Flow": "high"}}'),  # wrong type
        (telemetry, b'{"values": {"Flow": 1}, "extra": true}'),  # unknown field
        (telemetry, b'{"ts": "yesterday", "values": {"Flow": 1}}'),  # bad timestamp
        (telemetry, json.dumps({"values": {f"T{i}": i for i in range(600)}}).encode()),  # oversized (> 4096 bytes)
        (f"{t.name}/devices/Plant1/Area1/Nope/telemetry", b'{"values": {"Flow": 1}}'),  # unknown device
        (f"{t.name}/devices/{DEVICE}/status", b"sideways"),  # bad status
        (f"{t.name}/devices/Plant1/Area1/Nope/status", b"online"),  # status of an unknown device
        (f"{t.name}/devices/{DEVICE}/bogus", b"{}"),  # unknown message kind
        (f"{stranger}/devices/{DEVICE}/telemetry", b'{"values": {"Flow": 1}}'),  # unknown tenant
    ]
    for topic, payload in bad:
        pub(topic, payload)
    pub(telemetry, json.dumps({"values": {"Flow": 42.0}}).encode())  # and the adapter still works
    wait_for(lambda: [v for _, v, _ in history(t.engineer, f"{DEVICE}/Flow")] == [42.0], what="the good message")
    expected = {
        "invalid_json": 2, "invalid_value": 1, "invalid_shape": 1, "invalid_timestamp": 1, "too_large": 1,
        "unknown_device": 2, "invalid_status": 1, "invalid_topic": 1,
    }  # fmt: skip
    s = wait_for(lambda: stats(t.engineer).get("rejected") == expected and stats(t.engineer), what="counters")
    assert s["dead_lettered"] == 10 and s["accepted"] == 1
    letters = t.engineer.get("/api/v1/ingest/dead-letters", params={"source": "mqtt"}).json()
    assert sorted(d["reason"] for d in letters) == sorted(r for r, n in expected.items() for _ in range(n))
    assert {d["origin"] for d in letters} >= {telemetry, f"{t.name}/devices/Plant1/Area1/Nope/telemetry"}
    garbage = next(d for d in letters if d["payload_size"] == len(bad[0][1]))
    assert garbage["reason"] == "invalid_json"
    # the unknown tenant can't be attributed: counted and kept for the system administrator only
    root = live.system()
    unattributed = root.get("/api/v1/ingest/dead-letters", params={"unattributed": True, "limit": 1000}).json()
    assert any(d["origin"].startswith(stranger + "/") and d["reason"] == "unknown_tenant" for d in unattributed)
    assert stats(root)["rejected"].get("unknown_tenant", 0) >= 1


def test_a_tenants_topic_writes_only_that_tenant(live: LiveServer) -> None:
    a, b = live.new_tenant("mqa"), live.new_tenant("mqb")
    a.build_plant()
    b.build_plant()  # the same paths in both tenants
    r = a.engineer.post(
        "/api/v1/nodes", json={"parent": "Plant1/Area1", "node_class": "device", "browse_name": "OnlyA"}
    )
    assert r.status_code == 201, r.text
    pub(f"{a.name}/devices/{DEVICE}/telemetry", b'{"values": {"Flow": 1.0}}')
    pub(f"{b.name}/devices/{DEVICE}/telemetry", b'{"values": {"Flow": 2.0}}')
    # A's device named on B's topic: B has no such device, and A's stays untouched
    pub(f"{b.name}/devices/Plant1/Area1/OnlyA/telemetry", b'{"values": {"X": 3.0}}')
    pub(f"{b.name}/devices/ns=2;s=Plant1/Area1/OnlyA/telemetry", b'{"values": {"X": 4.0}}')
    wait_for(lambda: stats(b.engineer).get("rejected", {}).get("unknown_device") == 2, what="B's refusals")
    assert [v for _, v, _ in history(a.engineer, f"{DEVICE}/Flow")] == [1.0]
    assert [v for _, v, _ in history(b.engineer, f"{DEVICE}/Flow")] == [2.0]
    assert a.engineer.get("/api/v1/nodes", params={"parent": "Plant1/Area1/OnlyA"}).json() == []
    assert stats(a.engineer)["accepted"] == 1 and stats(b.engineer)["accepted"] == 1


# -- commands -----------------------------------------------------------------------------------


def test_commands_reach_the_device_topic_with_permission_and_tenant_checks(live: LiveServer) -> None:
    t, other = live.new_tenant("mq"), live.new_tenant("mqo")
    ids = t.build_plant()
    host, port = broker()
    device = subprocess.Popen(
        [*LINE_BUFFERED, "mosquitto_sub", "-h", host, "-p", str(port), "-q", "1", "-d", "-C", "1", "-W", "20",
         "-t", f"{t.name}/devices/{DEVICE}/commands"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert device.stdout is not None
        while "SUBACK" not in device.stdout.readline():
            pass
        operator = t.users["operator"]
        r = operator.post(f"/api/v1/devices/{DEVICE}/commands", json={"command": "start", "args": {"speed": 1450}})
        assert r.status_code == 202, r.text
        sent = r.json()
        lines = [line for line in device.stdout.read().splitlines() if line.startswith("{")]
        device.wait(20)
    finally:
        device.kill()
    got = json.loads(lines[0])
    assert got["id"] == sent["id"] and got["command"] == "start" and got["args"] == {"speed": 1450}
    assert got["node_id"] == ids["Pump7"] and got["user"] == "operator"
    # by node id too
    assert operator.post(f"/api/v1/devices/{ids['Pump7']}/commands", json={"command": "stop"}).status_code == 202
    # viewers can't command; another tenant doesn't see the device; tags and folders aren't devices
    assert t.users["viewer"].post(f"/api/v1/devices/{DEVICE}/commands", json={"command": "x"}).status_code == 403
    for ref in (DEVICE, ids["Pump7"]):
        r = other.users["operator"].post(f"/api/v1/devices/{ref}/commands", json={"command": "x"})
        assert r.status_code == 404, r.text
    assert operator.post(f"/api/v1/devices/{DEVICE}/Flow/commands", json={"command": "x"}).status_code == 422
    assert operator.post(f"/api/v1/devices/{DEVICE}/commands", json={"command": ""}).status_code == 422
    audit = t.admin.get("/api/v1/audit", params={"action": "device.command"}).json()
    assert sorted(e["detail"]["command"] for e in audit) == ["start", "stop"]
    assert all(e["actor"] == "operator" and e["target"] == ids["Pump7"] for e in audit)


# -- storage failures and a broker that restarts mid-stream --------------------------------------------------------


def test_a_message_whose_storage_failed_is_not_acknowledged_and_comes_again(live: LiveServer) -> None:
    t = live.new_tenant("mq")
    t.build_plant()
    srv = live.server
    assert srv is not None
    tenant_id = live.call(srv.admin.tenants.by_name(t.name)).id
    real = srv.pipeline.ingest
    failures: list[int] = []

    async def failing_once(tid: int, items: Any, **kw: Any) -> Any:
        if tid == tenant_id and not failures:
            failures.append(tid)
            raise Unavailable("historian write failed: disk full (simulated)")
        return await real(tid, items, **kw)

    before = stats(live.system()).get("reconnects", 0)
    srv.pipeline.ingest = failing_once  # type: ignore[method-assign]
    try:
        pub(f"{t.name}/devices/{DEVICE}/telemetry", b'{"values": {"Flow": 7.0}}')
        wait_for(lambda: [v for _, v, _ in history(t.engineer, f"{DEVICE}/Flow")] == [7.0], what="the redelivery")
    finally:
        srv.pipeline.ingest = real  # type: ignore[method-assign]
    assert failures == [tenant_id]
    assert stats(live.system())["reconnects"] == before + 1
    assert stats(t.engineer)["dead_lettered"] == 0


class OwnBroker:
    """A mosquitto of this test's own, with persistence, on a free port (the shared one stays up)."""

    def __init__(self, tmp: Path) -> None:
        if shutil.which("mosquitto") is None:
            unavailable("mosquitto (the broker) is not installed")
        self.port = free_port()
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {tmp}/\nmax_queued_messages 100000\nlog_dest stderr\n"
            # run as root, mosquitto would switch to user 'mosquitto' and fail to save into tmp
            f"user {getpass.getuser()}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stderr=subprocess.DEVNULL)
        wait_for(self._listening, 10, "mosquitto to listen")

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # a clean stop writes the persistence file
            self.proc.wait(10)


class Publisher(threading.Thread):
    """A QoS 1 device: counts as acknowledged only what the broker answered with PUBACK."""

    def __init__(self, port: int, topic: str, base: float) -> None:
        super().__init__(daemon=True)
        self.port, self.topic, self.base = port, topic, base
        self.acked: list[int] = []
        self.failed: list[int] = []
        self.stop_at: int | None = None
        self.done = threading.Event()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        i = 0
        while self.stop_at is None or i < self.stop_at:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, timeout=2) as client:
                    while self.stop_at is None or i < self.stop_at:
                        payload = json.dumps({"ts": self.base + i * 0.01, "values": {"Flow": float(i)}})
                        try:
                            await client.publish(self.topic, payload, qos=1)
                            self.acked.append(i)
                        finally:
                            i += 1
                        await asyncio.sleep(0.005)
            except aiomqtt.MqttError:
                self.failed.append(i - 1)
                await asyncio.sleep(0.2)
        self.done.set()


def test_nothing_acknowledged_is_lost_when_the_broker_restarts(tmp_path: Path) -> None:
    own = OwnBroker(tmp_path)
    own.start()
    url = f"mqtt://127.0.0.1:{own.port}"
    live = None
    try:
        with database_url("sqlite", tmp_path) as db:
            settings = make_settings(tmp_path, db, mqtt_url=url, mqtt_client_id="iiot-restart", mqtt_sparkplug=False)
            live = LiveServer(settings).start()
            wait_connected(live)
            t = live.new_tenant("mqr")
            t.build_plant()
            publisher = Publisher(own.port, f"{t.name}/devices/{DEVICE}/telemetry", time.time() - 600)
            publisher.start()
            wait_for(lambda: len(publisher.acked) >= 100, 20, "the first acknowledged messages")
            own.stop()
            time.sleep(0.5)
            own.start()
            wait_for(lambda: len(publisher.acked) >= 200, 30, "messages after the restart")
            publisher.stop_at = publisher.acked[-1] + 50
            assert publisher.done.wait(30)
            acked = set(publisher.acked)
            wait_for(
                lambda: acked <= {v for _, v, _ in history(t.engineer, f"{DEVICE}/Flow")} or None,
                15, "every acknowledged message in the historian",
            )  # fmt: skip
            assert stats(live.system()).get("reconnects", 0) >= 1
            assert publisher.failed, "the broker restart did not interrupt the publisher"
            live.stop()
            live = None
    finally:
        if live is not None:
            live.stop()
        own.stop()


# -- TLS, credentials and the broker's ACL (what really keeps tenants apart) ----------------------


def make_certs(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1, written as PEM files."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "iiot test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def test_tls_credentials_shared_subscription_and_the_brokers_acl_keep_tenants_apart(tmp_path: Path) -> None:
    if shutil.which("mosquitto_passwd") is None:
        unavailable("mosquitto_passwd is not installed")
    ca, cert, key = make_certs(tmp_path)
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "iiot-server", "server-secret"], check=True)
    # the server reads and writes every tenant's device topics; a device user (named after its
    # tenant) only its own tenant's prefix
    acl.write_text("user iiot-server\ntopic readwrite +/devices/#\n\npattern readwrite %u/devices/#\n")
    own = OwnBroker(tmp_path)
    own.conf.write_text(
        f"listener {own.port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
        f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\nuser {getpass.getuser()}\n"
    )
    own.start()
    live = None
    try:
        with database_url("sqlite", tmp_path) as db:
            settings = make_settings(
                tmp_path, db, mqtt_url=f"mqtts://127.0.0.1:{own.port}", mqtt_username="iiot-server",
                mqtt_password="server-secret", mqtt_ca_file=str(ca), mqtt_client_id="iiot-tls", mqtt_sparkplug=False,
                mqtt_shared_group="iiot",  # several servers would split the load
            )  # fmt: skip
            live = LiveServer(settings).start()
            wait_connected(live)
            a, b = live.new_tenant("tla"), live.new_tenant("tlb")
            a.build_plant()
            b.build_plant()
            for t in (a, b):
                subprocess.run(["mosquitto_passwd", "-b", str(passwd), t.name, f"{t.name}-pw"], check=True)
            assert own.proc is not None
            own.proc.send_signal(signal.SIGHUP)  # mosquitto reloads its password and ACL files
            time.sleep(0.5)

            def device_pub(user: str, topic: str, payload: bytes, password: str | None = None) -> int:
                cmd = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(own.port), "--cafile", str(ca), "-q", "1",
                       "-u", user, "-P", password or f"{user}-pw", "-t", topic, "-s"]  # fmt: skip
                return subprocess.run(cmd, input=payload, timeout=10, capture_output=True).returncode

            assert device_pub(a.name, f"{a.name}/devices/{DEVICE}/telemetry", b'{"values": {"Flow": 1.0}}') == 0
            # A's credentials on B's prefix: the broker drops it; nothing reaches B
            device_pub(a.name, f"{b.name}/devices/{DEVICE}/telemetry", b'{"values": {"Flow": 666.0}}')
            # a wrong password is refused at the door
            assert device_pub(a.name, f"{a.name}/devices/{DEVICE}/telemetry", b"{}", password="wrong") != 0
            assert device_pub(a.name, f"{a.name}/devices/{DEVICE}/telemetry", b'{"values": {"Flow": 2.0}}') == 0
            wait_for(lambda: [v for _, v, _ in history(a.engineer, f"{DEVICE}/Flow")] == [1.0, 2.0], what="A's data")
            assert history(b.engineer, f"{DEVICE}/Flow") == []
            assert stats(b.engineer) == {}
            live.stop()
            live = None
    finally:
        if live is not None:
            live.stop()
        own.stop()
