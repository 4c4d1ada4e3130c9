"""OPC UA client adapter against real asyncua servers on loopback (SQLite and PostgreSQL).

The field servers are asyncua's own server, started by the test on a free port: values written
there must reach the historian with their source timestamps and qualities, a server restart
must be survived (reconnect, re-subscribe, devices offline meanwhile), and bad input — text
where a number is expected, unknown nodes, a port that speaks garbage — must be counted
without stopping the adapter.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager

from server.ingest.opcua_client import ConnectionConfig, OpcUaClientAdapter, browse
from server.opcua.common import ensure_certificate
from tests.support import LiveServer, LoopThread, TenantHandle, free_port, wait_for

NS_URI = "urn:test:plc"


class PlcUsers(UserManager):
    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        return User(role=UserRole.User) if (username, password) == ("plc", "plc-pass") else None


class FieldServer:
    """An asyncua server with PLC1/{Flow, Pressure, Text}; string node ids survive restarts."""

    def __init__(self, runner: LoopThread, *, secure_dir: Path | None = None) -> None:
        self.runner, self.secure_dir = runner, secure_dir
        self.port = free_port()
        self.url = f"opc.tcp://127.0.0.1:{self.port}"
        self.server: Server | None = None
        self.vars: dict[str, Any] = {}

    def node(self, name: str) -> str:
        return f"ns=2;s=PLC1.{name}"

    async def _start(self) -> None:
        server = Server(user_manager=PlcUsers()) if self.secure_dir else Server()
        await server.init()
        server.set_endpoint(self.url)
        if self.secure_dir:
            creds = ensure_certificate(self.secure_dir, "plc", "urn:test:plc:server", server=True)
            await server.set_application_uri("urn:test:plc:server")
            await server.load_certificate(creds.cert_der)
            await server.load_private_key(creds.key_der)
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
            server.set_identity_tokens([ua.UserNameIdentityToken])
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace(NS_URI)
        assert idx == 2
        plc = await server.nodes.objects.add_object(ua.NodeId("PLC1", idx), ua.QualifiedName("PLC1", idx))
        for name, value, vtype in [("Flow", 0.0, ua.VariantType.Double), ("Pressure", 0.0, ua.VariantType.Double),
                                   ("Text", "idle", ua.VariantType.String)]:  # fmt: skip
            var = await plc.add_variable(ua.NodeId(f"PLC1.{name}", idx), ua.QualifiedName(name, idx), value, vtype)
            self.vars[name] = var
        eu = ua.EUInformation(
            NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact", UnitId=4534832,
            DisplayName=ua.LocalizedText("m3/h"), Description=ua.LocalizedText("cubic metre per hour"),
        )  # fmt: skip
        await self.vars["Flow"].add_property(
            ua.NodeId("PLC1.Flow.EU", idx), ua.QualifiedName("EngineeringUnits", 0), eu,
            datatype=ua.NodeId(ua.ObjectIds.EUInformation),
        )  # fmt: skip
        await self.vars["Flow"].add_property(
            ua.NodeId("PLC1.Flow.Range", idx), ua.QualifiedName("EURange", 0), ua.Range(Low=0.0, High=250.0),
            datatype=ua.NodeId(ua.ObjectIds.Range),
        )  # fmt: skip
        await server.start()
        self.server = server

    def start(self) -> FieldServer:
        self.runner.call(self._start())
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.runner.call(self.server.stop())
            self.server = None

    def set(self, name: str, value: Any, ts: float | None = None, status: int | None = None) -> None:
        stamp = datetime.fromtimestamp(ts if ts is not None else time.time(), UTC)
        vtype = ua.VariantType.String if isinstance(value, str) else ua.VariantType.Double
        dv = ua.DataValue(
            ua.Variant(value, vtype),
            StatusCode=ua.StatusCode(status) if status is not None else ua.StatusCode(),
            SourceTimestamp=stamp, ServerTimestamp=stamp,
        )  # fmt: skip
        self.runner.call(self.vars[name].write_value(dv))


@pytest.fixture(scope="module")
def runner() -> Iterator[LoopThread]:
    r = LoopThread()
    yield r
    r.close()


@pytest.fixture(scope="module")
def plc(runner: LoopThread) -> Iterator[FieldServer]:
    s = FieldServer(runner).start()
    yield s
    s.stop()


class Connections:
    """Connections made through the API, deleted after the test (the live server is shared)."""

    def __init__(self) -> None:
        self.created: list[tuple[TenantHandle, int]] = []

    def add(self, tenant: TenantHandle, name: str, config: dict[str, Any], expect: int = 201) -> int:
        base = {"publishing_interval_ms": 50, "sampling_interval_ms": 0, "reconnect_min_s": 0.2,
                "reconnect_max_s": 0.5, "timeout_s": 2}  # fmt: skip
        r = tenant.engineer.post("/api/v1/connections", json={"kind": "opcua", "name": name, "config": base | config})
        assert r.status_code == expect, r.text
        if expect != 201:
            return 0
        self.created.append((tenant, int(r.json()["id"])))
        return int(r.json()["id"])

    def delete_all(self) -> None:
        for handle, conn in self.created:
            handle.engineer.delete(f"/api/v1/connections/{conn}")


@pytest.fixture
def conns() -> Iterator[Connections]:
    c = Connections()
    yield c
    c.delete_all()


def items(plc: FieldServer, *names: str, device: str = "Plant1/PLC1") -> list[dict[str, Any]]:
    return [{"node_id": plc.node(n), "device": device, "tag": n} for n in names]


def latest(tenant: TenantHandle, path: str) -> dict[str, Any] | None:
    r = tenant.users["viewer"].get("/api/v1/values", params={"node": path})
    if r.status_code != 200 or not r.json() or r.json()[0]["ts"] is None:
        return None
    return dict(r.json()[0])


def history(tenant: TenantHandle, path: str) -> list[tuple[float, float, int]]:
    r = tenant.users["viewer"].get(
        "/api/v1/history", params={"node": path, "start": time.time() - 3600, "end": time.time() + 60}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    return list(zip(body["t"], body["value"], body["quality"], strict=True))


def status(tenant: TenantHandle, path: str) -> str:
    return str(tenant.users["viewer"].get(f"/api/v1/nodes/{path}").json()["status"])


def stats(tenant: TenantHandle) -> dict[str, Any]:
    return dict(tenant.users["viewer"].get("/api/v1/ingest/stats").json().get("opcua", {}))


def adapter(live: LiveServer) -> OpcUaClientAdapter:
    assert live.server is not None
    return next(a for a in live.server.adapters if isinstance(a, OpcUaClientAdapter))


# -- configuration ----------------------------------------------------------------------------


def test_config_validation() -> None:
    good = {"endpoint": "opc.tcp://127.0.0.1:4840", "items": [{"node_id": "ns=2;s=A", "device": "/P/D/", "tag": "T"}]}
    cfg = ConnectionConfig.model_validate(good)
    assert cfg.items[0].device == "P/D"
    bad = [
        {"endpoint": "http://x"},
        {"endpoint": "opc.tcp://h:1", "security_policy": "Basic256Sha256"},
        {"endpoint": "opc.tcp://h:1", "security_mode": "Sign"},
        {"endpoint": "opc.tcp://h:1", "password": "x"},
        {"endpoint": "opc.tcp://h:1", "deadband": "percent", "deadband_value": 150},
        {"endpoint": "opc.tcp://h:1", "items": [{"node_id": "nonsense;;", "device": "D", "tag": "T"}]},
        {"endpoint": "opc.tcp://h:1", "items": [{"node_id": "i=1", "device": "D", "tag": "a/b"}]},
        {"endpoint": "opc.tcp://h:1", "items": [{"node_id": "i=1", "device": "D", "tag": "T"}] * 2},
        {"endpoint": "opc.tcp://h:1", "surprise": 1},
    ]
    for config in bad:
        with pytest.raises(ValueError):  # noqa: PT011 - pydantic's ValidationError is a ValueError
            ConnectionConfig.model_validate(config)


def test_api_validates_and_masks(tenant: TenantHandle, conns: Connections, plc: FieldServer) -> None:
    conns.add(tenant, "bad", {"endpoint": "opc.tcp://h:1", "security_mode": "Sign"}, expect=422)
    cid = conns.add(tenant, "masked", {"endpoint": plc.url, "username": "u", "password": "secret", "items": []})
    body = tenant.engineer.get(f"/api/v1/connections/{cid}").json()
    assert body["config"]["password"] == "********"


# -- values, quality, reconnect -------------------------------------------------------------


def test_values_reach_the_historian_with_quality(
    live: LiveServer, tenant: TenantHandle, conns: Connections, plc: FieldServer
) -> None:
    conns.add(tenant, "plc1", {"endpoint": plc.url, "items": items(plc, "Flow", "Pressure")})
    wait_for(lambda: status(tenant, "Plant1/PLC1") == "online", what="device online")
    t0 = time.time()
    plc.set("Flow", 12.5, ts=t0)
    plc.set("Pressure", 3.25, ts=t0)
    wait_for(lambda: (latest(tenant, "Plant1/PLC1/Flow") or {}).get("value") == 12.5, what="Flow 12.5")
    # the two changes may come in separate publish responses: wait for the second as well
    wait_for(lambda: (latest(tenant, "Plant1/PLC1/Pressure") or {}).get("value") == 3.25, what="Pressure 3.25")
    value = latest(tenant, "Plant1/PLC1/Pressure")
    assert value is not None and value["value"] == 3.25 and value["quality"] == "Good"
    assert abs(value["ts"] - t0) < 0.001, "the source timestamp is kept"

    plc.set("Flow", 0.0, ts=t0 + 1, status=ua.StatusCodes.BadSensorFailure)
    wait_for(lambda: (latest(tenant, "Plant1/PLC1/Flow") or {}).get("quality") == "Bad", what="Flow Bad")
    assert latest(tenant, "Plant1/PLC1/Flow")["value"] == 12.5, "a Bad sample carries the last good value"
    plc.set("Flow", 13.0, ts=t0 + 2, status=ua.StatusCodes.UncertainLastUsableValue)
    wait_for(lambda: (latest(tenant, "Plant1/PLC1/Flow") or {}).get("quality") == "Uncertain", what="Uncertain")
    rows = history(tenant, "Plant1/PLC1/Flow")
    assert [(round(t - t0, 3), v, q) for t, v, q in rows if t >= t0 - 0.001] == [
        (0.0, 12.5, 0),
        (1.0, 12.5, 2),
        (2.0, 13.0, 1),
    ]
    s = stats(tenant)
    assert s["accepted"] >= 5 and s["reconnects"] == 0


def test_server_restart_reconnects_and_resubscribes(
    live: LiveServer, tenant: TenantHandle, conns: Connections, runner: LoopThread
) -> None:
    plc = FieldServer(runner).start()
    try:
        conns.add(tenant, "plc1", {"endpoint": plc.url, "items": items(plc, "Flow")})
        plc.set("Flow", 1.0)
        wait_for(lambda: (latest(tenant, "Plant1/PLC1/Flow") or {}).get("value") == 1.0, what="first value")
        plc.stop()
        wait_for(lambda: status(tenant, "Plant1/PLC1") == "offline", what="device offline")
        assert latest(tenant, "Plant1/PLC1/Flow")["quality"] == "Bad"
        time.sleep(0.5)  # a few failed attempts while the server is away
        plc.start()
        wait_for(lambda: status(tenant, "Plant1/PLC1") == "online", timeout=20, what="device online again")
        plc.set("Flow", 2.0)
        wait_for(lambda: (latest(tenant, "Plant1/PLC1/Flow") or {}).get("value") == 2.0, what="value after restart")
        assert latest(tenant, "Plant1/PLC1/Flow")["quality"] == "Good"
        s = stats(tenant)
        assert s["reconnects"] >= 1 and s["rejected"].get("connect_failed", 0) >= 1
    finally:
        plc.stop()


def test_deadband_filters_small_changes(tenant: TenantHandle, conns: Connections, plc: FieldServer) -> None:
    conns.add(tenant, "plc1", {"endpoint": plc.url, "deadband": "absolute", "deadband_value": 1.0,
                               "items": items(plc, "Pressure")})  # fmt: skip
    wait_for(lambda: status(tenant, "Plant1/PLC1") == "online", what="online")
    t0 = time.time()
    for i, v in enumerate([10.0, 10.5, 10.9, 12.0]):
        plc.set("Pressure", v, ts=t0 + i)
        time.sleep(0.1)
    wait_for(lambda: (latest(tenant, "Plant1/PLC1/Pressure") or {}).get("value") == 12.0, what="12.0")
    assert [v for t, v, _ in history(tenant, "Plant1/PLC1/Pressure") if t >= t0 - 0.001] == [10.0, 12.0]


def test_bad_input_is_counted_and_the_adapter_keeps_running(
    live: LiveServer, tenant: TenantHandle, conns: Connections, plc: FieldServer
) -> None:
    # A port that answers OPC UA Hello with garbage bytes.
    garbage = socket.socket()
    garbage.bind(("127.0.0.1", 0))
    garbage.listen()
    stop = threading.Event()

    def serve() -> None:
        garbage.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = garbage.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(1024)
                conn.sendall(b"\x00\xffgarbage" * 64)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        port = garbage.getsockname()[1]
        conns.add(
            tenant, "garbage", {"endpoint": f"opc.tcp://127.0.0.1:{port}", "items": items(plc, "Flow", device="X/Dead")}
        )
        conns.add(tenant, "mixed", {"endpoint": plc.url, "items": items(plc, "Flow", "Text") + [
            {"node_id": "ns=2;s=PLC1.Missing", "device": "Plant1/PLC1", "tag": "Missing"}]})  # fmt: skip
        plc.set("Text", "running")
        plc.set("Flow", 4.0)
        wait_for(lambda: (latest(tenant, "Plant1/PLC1/Flow") or {}).get("value") == 4.0, what="good values still flow")
        s = wait_for(lambda: (x := stats(tenant))["rejected"].get("not_a_number") and x, what="not_a_number")
        assert s["rejected"].get("bad_node") == 1
        wait_for(lambda: stats(tenant)["rejected"].get("connect_failed", 0) >= 2, what="garbage endpoint counted")
        assert latest(tenant, "Plant1/PLC1/Missing")["quality"] == "Bad"
        assert status(tenant, "X/Dead") == "offline"
        plc.set("Flow", 5.0)
        wait_for(lambda: (latest(tenant, "Plant1/PLC1/Flow") or {}).get("value") == 5.0, what="still running")
    finally:
        stop.set()
        thread.join(2)
        garbage.close()


def test_tenants_get_only_their_own_values(
    tenant: TenantHandle, other_tenant: TenantHandle, conns: Connections, plc: FieldServer
) -> None:
    conns.add(tenant, "plc1", {"endpoint": plc.url, "items": items(plc, "Flow")})
    other_tenant.build_plant()
    plc.set("Flow", 7.0)
    wait_for(lambda: (latest(tenant, "Plant1/PLC1/Flow") or {}).get("value") == 7.0, what="own value")
    assert other_tenant.users["viewer"].get("/api/v1/nodes/Plant1/PLC1").status_code == 404
    cid = tenant.engineer.get("/api/v1/connections").json()[0]["id"]
    assert other_tenant.engineer.get(f"/api/v1/connections/{cid}").status_code == 404


# -- browse and import ------------------------------------------------------------------------


def test_browse_function(plc: FieldServer) -> None:
    config = ConnectionConfig(endpoint=plc.url, timeout_s=2)
    top = asyncio.run(browse(config, None))
    assert any(e["node_id"] == "ns=2;s=PLC1" and e["node_class"] == "Object" for e in top)
    children = {e["browse_name"]: e for e in asyncio.run(browse(config, "ns=2;s=PLC1"))}
    assert children["2:Flow"]["data_type"] == "Double" and children["2:Text"]["data_type"] == "String"


def test_browse_and_import_over_http(
    live: LiveServer, tenant: TenantHandle, other_tenant: TenantHandle, conns: Connections, plc: FieldServer
) -> None:
    cid = conns.add(tenant, "plc1", {"endpoint": plc.url, "items": []})
    eng = tenant.engineer
    r = eng.get(f"/api/v1/connections/{cid}/browse")
    assert r.status_code == 200, r.text
    assert "ns=2;s=PLC1" in [e["node_id"] for e in r.json()]
    r = eng.get(f"/api/v1/connections/{cid}/browse", params={"node": "ns=2;s=PLC1"})
    assert {e["browse_name"]: e["data_type"] for e in r.json()}["2:Flow"] == "Double"
    assert eng.get(f"/api/v1/connections/{cid}/browse", params={"node": "garbage;;"}).status_code == 422
    assert tenant.users["viewer"].get(f"/api/v1/connections/{cid}/browse").status_code == 403
    assert other_tenant.engineer.get(f"/api/v1/connections/{cid}/browse").status_code == 404

    item = {"node_id": plc.node("Flow"), "device": "Site/PLC1", "tag": "Flow"}
    r = eng.post(f"/api/v1/connections/{cid}/import", json={"items": [item]})
    assert r.status_code == 200, r.text
    assert [i["tag"] for i in r.json()["config"]["items"]] == ["Flow"]
    node = tenant.users["viewer"].get("/api/v1/nodes/Site/PLC1/Flow").json()
    assert (node["unit"], node["range_low"], node["range_high"], node["data_type"]) == ("m3/h", 0.0, 250.0, "Double")
    plc.set("Flow", 42.0)
    wait_for(lambda: (latest(tenant, "Site/PLC1/Flow") or {}).get("value") == 42.0, what="imported tag fed")

    missing = {"node_id": "ns=2;s=PLC1.Nope", "device": "Site/PLC1", "tag": "Nope"}
    r = eng.post(f"/api/v1/connections/{cid}/import", json={"items": [missing]})
    assert r.status_code == 422 and "BadNodeIdUnknown" in r.text
    assert tenant.users["viewer"].post(f"/api/v1/connections/{cid}/import", json={"items": [item]}).status_code == 403
    assert other_tenant.engineer.post(f"/api/v1/connections/{cid}/import", json={"items": [item]}).status_code == 404
    dead = conns.add(tenant, "dead", {"endpoint": f"opc.tcp://127.0.0.1:{free_port()}", "items": []})
    assert eng.get(f"/api/v1/connections/{dead}/browse").status_code == 503


# -- security -------------------------------------------------------------------------------


def test_signed_and_encrypted_with_a_user(
    live: LiveServer, tenant: TenantHandle, conns: Connections, runner: LoopThread, tmp_path: Path
) -> None:
    plc = FieldServer(runner, secure_dir=tmp_path).start()
    try:
        secure = {"endpoint": plc.url, "security_policy": "Basic256Sha256", "security_mode": "SignAndEncrypt"}
        conns.add(
            tenant,
            "wrong",
            secure | {"username": "plc", "password": "nope", "items": items(plc, "Flow", device="W/PLC")},
        )
        conns.add(tenant, "plc1", secure | {"username": "plc", "password": "plc-pass", "items": items(plc, "Flow")})
        plc.set("Flow", 9.5)
        wait_for(lambda: (latest(tenant, "Plant1/PLC1/Flow") or {}).get("value") == 9.5, what="secured value")
        assert (live.settings.data_dir / "opcua" / "client.pem").is_file()
        wait_for(lambda: status(tenant, "W/PLC") == "offline", what="wrong password: offline")
    finally:
        plc.stop()
