"""Modbus TCP ingest against real pymodbus servers on loopback (SQLite and PostgreSQL).

The field devices here are pymodbus's own server, filled with registers encoded by
pymodbus's own converter, so the adapter's decoding is checked against the library, not
against itself. Also: a device that stops, one that never answers, one that answers
garbage, and two tenants polling lookalike devices.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simutils import SimUtils

from server.ingest.adapter import IngestContext
from server.ingest.modbus import ConnectionConfig, ModbusAdapter, Register, plan_reads
from server.ingest.pipeline import AdapterStats
from server.ingest.polling import Poller, Reading
from tests.support import LiveServer, LoopThread, TenantHandle, free_port, wait_for

CONVERT = AsyncModbusTcpClient.convert_to_registers
DT = AsyncModbusTcpClient.DATATYPE
_FC_TABLE = {1: "c", 5: "c", 15: "c", 2: "d", 3: "h", 6: "h", 16: "h", 4: "i"}


class FieldDevice:
    """A pymodbus TCP server whose registers the test sets while it runs."""

    def __init__(self, runner: LoopThread, unit: int = 1) -> None:
        self.runner, self.unit = runner, unit
        self.port = free_port()
        self.image: dict[str, list[int] | list[bool]] = {
            "h": [0] * 64, "i": [0] * 64, "c": [False] * 64, "d": [False] * 64,
        }  # fmt: skip
        self.server: ModbusTcpServer | None = None
        self.reads = 0

    async def _action(
        self, fc: int, start: int, address: int, count: int, regs: list[int], values: Any
    ) -> None:  # pymodbus calls this on every request: serve the current image
        self.reads += 1
        table = _FC_TABLE[fc]
        image = self.image[table]
        regs[: len(image) // (16 if table in "cd" else 1)] = (
            SimUtils.bitsToRegisters([bool(b) for b in image]) if table in "cd" else [int(v) for v in image]
        )

    def set(self, table: str, address: int, words: list[int] | list[bool]) -> None:
        self.image[table][address : address + len(words)] = words  # type: ignore[assignment]

    async def _start(self) -> None:
        bits = [SimData(0, count=64, values=False, datatype=DataType.BITS)]
        regs = [SimData(0, count=64, values=0, datatype=DataType.REGISTERS)]
        device = SimDevice(self.unit, simdata=(bits, list(bits), regs, list(regs)), action=self._action)
        self.server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
        await self.server.serve_forever(background=True)

    async def _stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None

    def start(self) -> FieldDevice:
        self.runner.call(self._start())
        return self

    def stop(self) -> None:
        self.runner.call(self._stop())


class MuteDevice:
    """Accepts TCP connections and never answers, or answers garbage: a broken field device."""

    def __init__(self, runner: LoopThread, garbage: bool = False) -> None:
        self.runner, self.garbage = runner, garbage
        self.port = free_port()
        self.connections = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while data := await reader.read(1024):
                if self.garbage:
                    writer.write(b"\xff\x00\x13garbage" + bytes(reversed(data)))
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def start(self) -> MuteDevice:
        async def listen() -> asyncio.Server:
            return await asyncio.start_server(self._handle, "127.0.0.1", self.port)

        self.server = self.runner.call(listen())
        return self

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()

        self.runner.call(close())


@pytest.fixture(scope="module")
def runner() -> Iterator[LoopThread]:
    r = LoopThread()
    yield r
    r.close()


@pytest.fixture
def device(runner: LoopThread) -> Iterator[FieldDevice]:
    d = FieldDevice(runner).start()
    yield d
    d.stop()


def adapter(live: LiveServer) -> ModbusAdapter:
    assert live.server is not None
    return next(a for a in live.server.adapters if isinstance(a, ModbusAdapter))


class Connections:
    """Creates Modbus connections through the API and deletes them after the test: the live
    server is shared by the session, and must not keep polling devices that are gone."""

    def __init__(self) -> None:
        self.created: list[tuple[TenantHandle, int]] = []

    def add(self, tenant: TenantHandle, name: str, port: int, registers: list[dict[str, Any]], **extra: Any) -> int:
        config = {
            "host": "127.0.0.1", "port": port, "device": extra.pop("device", "Plant1/PLC1"), "poll_interval_s": 0.1,
            "timeout_s": 0.3, "offline_after": 2, "registers": registers,
        } | extra  # fmt: skip
        r = tenant.engineer.post("/api/v1/connections", json={"kind": "modbus", "name": name, "config": config})
        assert r.status_code == 201, r.text
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


def latest(tenant: TenantHandle, path: str) -> dict[str, Any] | None:
    r = tenant.users["viewer"].get("/api/v1/values", params={"node": path})
    if r.status_code != 200 or not r.json() or r.json()[0]["ts"] is None:
        return None
    return dict(r.json()[0])


def status(tenant: TenantHandle, path: str) -> str:
    return str(tenant.users["viewer"].get(f"/api/v1/nodes/{path}").json()["status"])


def stats(tenant: TenantHandle) -> dict[str, Any]:
    return dict(tenant.users["viewer"].get("/api/v1/ingest/stats").json().get("modbus", {}))


# -- the register map, without a network --------------------------------------------------


def test_reads_are_grouped_by_table_and_contiguity() -> None:
    regs = [Register.model_validate(r) for r in [
        {"tag": "a", "address": 0, "type": "int16"}, {"tag": "b", "address": 1, "type": "float32"},
        {"tag": "c", "address": 3}, {"tag": "d", "address": 6}, {"tag": "e", "table": "input", "address": 3},
        {"tag": "f", "table": "coil", "address": 0}, {"tag": "g", "table": "coil", "address": 1},
        {"tag": "h", "address": 200, "type": "uint32"},
    ]]  # fmt: skip
    blocks = [(b.table, b.start, b.count) for b in plan_reads(regs)]
    assert blocks == [("holding", 0, 4), ("holding", 6, 1), ("holding", 200, 2), ("input", 3, 1), ("coil", 0, 2)]
    assert [(b.start, b.count) for b in plan_reads(regs, max_gap=2) if b.table == "holding"] == [(0, 7), (200, 2)]
    many = [Register(tag=f"t{i}", address=i) for i in range(300)]
    assert [b.count for b in plan_reads(many)] == [125, 125, 50]  # the protocol's limit per request


@pytest.mark.parametrize(
    ("kind", "value", "order"),
    [("int16", -1234, "big"), ("uint16", 65000, "big"), ("int32", -100_000, "big"), ("int32", -100_000, "little"),
     ("uint32", 3_000_000_000, "little"), ("float32", 3.25, "big"), ("float32", -0.5, "little")],
)  # fmt: skip
def test_decoding_matches_pymodbus_encoding(kind: str, value: float, order: str) -> None:
    words = CONVERT(value, getattr(DT, kind.upper()), word_order=order)  # type: ignore[arg-type]
    reg = Register.model_validate({"tag": "x", "address": 5, "type": kind, "word_order": order})
    assert reg.decode([9, *words], 1) == value
    scaled = Register.model_validate({"tag": "x", "address": 5, "type": kind, "word_order": order, "scale": 0.1,
                                      "offset": -3})  # fmt: skip
    assert scaled.decode(words, 0) == pytest.approx(value * 0.1 - 3)


@pytest.mark.parametrize(
    ("change", "where"),
    [({"registers": [{"tag": "x", "address": 0, "type": "bool"}]}, "registers.0"),
     ({"registers": [{"tag": "x", "table": "coil", "address": 0, "type": "float32"}]}, "registers.0"),
     ({"registers": [{"tag": "x", "address": 65535, "type": "int32"}]}, "registers.0"),
     ({"registers": [{"tag": "x", "address": 0}, {"tag": "x", "address": 1}]}, ""),
     ({"registers": [{"tag": "a/b", "address": 0}]}, "registers.0.tag"),
     ({"registers": [{"tag": "x", "address": 0, "scale": 0}]}, "registers.0"),
     ({"registers": []}, "registers"), ({"device": "ns=2;s=Plant1/PLC1"}, "device"), ({"unit_id": 300}, "unit_id"),
     ({"password": "x"}, "password"), ({"poll_interval_s": 0}, "poll_interval_s")],
)  # fmt: skip
def test_config_refuses_what_cannot_be_polled(change: dict[str, Any], where: str) -> None:
    base = {"host": "plc", "device": "Plant1/PLC1", "registers": [{"tag": "x", "address": 0}]}
    with pytest.raises(ValidationError) as err:
        ConnectionConfig.model_validate(base | change)
    assert ".".join(str(p) for p in err.value.errors()[0]["loc"]).startswith(where)


# -- against a live server ------------------------------------------------------------------

MAP = [
    {"tag": "I16", "address": 0, "type": "int16"},
    {"tag": "U16", "address": 1, "type": "uint16", "unit": "rpm"},
    {"tag": "I32", "address": 2, "type": "int32"},
    {"tag": "U32le", "address": 4, "type": "uint32", "word_order": "little"},
    {"tag": "F32", "address": 10, "type": "float32"},
    {"tag": "F32le", "address": 12, "type": "float32", "word_order": "little", "scale": 0.5, "offset": 10},
    {"tag": "Level", "table": "input", "address": 0, "scale": 0.1, "unit": "%"},
    {"tag": "Running", "table": "coil", "address": 3},
    {"tag": "Alarm", "table": "discrete", "address": 5},
]
EXPECTED = {"I16": -1234, "U16": 65000, "I32": -100_000, "U32le": 3_000_000_000, "F32": 3.25,
            "F32le": 0.5 * -7.5 + 10, "Level": 12.3, "Running": 1.0, "Alarm": 1.0}  # fmt: skip


def fill(device: FieldDevice) -> None:
    device.set("h", 0, CONVERT(-1234, DT.INT16))
    device.set("h", 1, CONVERT(65000, DT.UINT16))
    device.set("h", 2, CONVERT(-100_000, DT.INT32))
    device.set("h", 4, CONVERT(3_000_000_000, DT.UINT32, word_order="little"))
    device.set("h", 10, CONVERT(3.25, DT.FLOAT32))
    device.set("h", 12, CONVERT(-7.5, DT.FLOAT32, word_order="little"))
    device.set("i", 0, [123])
    device.set("c", 3, [True])
    device.set("d", 5, [True])


def test_register_map_reaches_the_historian_with_types_order_and_scale(
    live: LiveServer, conns: Connections, tenant: TenantHandle, device: FieldDevice
) -> None:
    fill(device)
    t0 = time.time()
    conns.add(tenant, "plc1", device.port, MAP)
    for tag, expected in EXPECTED.items():
        value = wait_for(lambda tag=tag: latest(tenant, f"Plant1/PLC1/{tag}"), what=tag)
        assert value["value"] == pytest.approx(expected, rel=1e-6), tag
        assert value["quality"] == "Good"
    viewer = tenant.users["viewer"]
    nodes = {n["browse_name"]: n for n in viewer.get("/api/v1/nodes", params={"parent": "Plant1/PLC1"}).json()}
    assert {k: nodes[k]["data_type"] for k in ("I16", "U16", "U32le", "F32", "F32le", "Running")} == {
        "I16": "Int32", "U16": "UInt16", "U32le": "Int64", "F32": "Float", "F32le": "Double", "Running": "Boolean"
    }  # fmt: skip
    assert nodes["Level"]["unit"] == "%" and nodes["U16"]["unit"] == "rpm"
    assert status(tenant, "Plant1/PLC1") == "online"
    reads_before = device.reads
    wait_for(lambda: device.reads >= reads_before + 10, what="more polls")
    history = viewer.get("/api/v1/history", params={"node": "Plant1/PLC1/F32", "start": t0 - 1}).json()
    assert history["count"] >= 3 and set(history["value"]) == {3.25} and set(history["quality"]) == {0}
    stamps = history["t"]
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert all(0.05 < g < 0.3 for g in gaps[1:]), gaps  # on the 0.1 s grid
    # Two holding blocks (0-5, 10-13), one each of input, coil and discrete: 5 requests a poll.
    polls = len(stamps)
    assert stats(tenant)["accepted"] >= polls * len(MAP) - len(MAP)
    device.set("h", 10, CONVERT(-2.0, DT.FLOAT32))
    wait_for(lambda: (latest(tenant, "Plant1/PLC1/F32") or {}).get("value") == -2.0, what="the new value")


def test_a_stopped_device_goes_bad_and_offline_then_recovers(
    live: LiveServer, conns: Connections, tenant: TenantHandle, device: FieldDevice
) -> None:
    device.set("h", 0, [42])
    conns.add(tenant, "plc", device.port, [{"tag": "Speed", "address": 0}, {"tag": "Temp", "address": 1}])
    wait_for(lambda: (latest(tenant, "Plant1/PLC1/Speed") or {}).get("value") == 42, what="first value")
    assert status(tenant, "Plant1/PLC1") == "online"
    device.stop()
    bad = wait_for(
        lambda: (v := latest(tenant, "Plant1/PLC1/Speed")) and v["quality"] == "Bad" and v, what="Bad quality"
    )
    assert bad["value"] == 42  # a Bad sample carries the last good value
    wait_for(lambda: status(tenant, "Plant1/PLC1") == "offline", what="offline")
    counters = stats(tenant)
    assert counters["rejected"].get("poll_timeout", 0) + counters["rejected"].get("poll_connection", 0) >= 2
    # Bad is written once when the failure starts, not once per failed poll.
    history = tenant.users["viewer"].get("/api/v1/history", params={"node": "Plant1/PLC1/Temp"}).json()
    assert history["quality"].count(2) == 1
    device.set("h", 0, [43])
    device.start()
    wait_for(lambda: (latest(tenant, "Plant1/PLC1/Speed") or {}).get("quality") == "Good", what="recovery")
    assert latest(tenant, "Plant1/PLC1/Speed")["value"] == 43  # type: ignore[index]
    wait_for(lambda: status(tenant, "Plant1/PLC1") == "online", what="online again")
    assert stats(tenant)["reconnects"] >= 1


def test_silence_garbage_and_exceptions_never_stop_the_adapter(
    live: LiveServer, conns: Connections, tenant: TenantHandle, device: FieldDevice, runner: LoopThread
) -> None:
    mute = MuteDevice(runner).start()
    noisy = MuteDevice(runner, garbage=True).start()
    try:
        check_broken_devices(live, conns, tenant, device, mute, noisy)
    finally:
        mute.stop()
        noisy.stop()


def check_broken_devices(
    live: LiveServer, conns: Connections, tenant: TenantHandle, device: FieldDevice, mute: MuteDevice, noisy: MuteDevice
) -> None:
    device.set("h", 0, [7])
    conns.add(tenant, "mute", mute.port, [{"tag": "X", "address": 0}], device="Plant1/Mute")
    conns.add(tenant, "noisy", noisy.port, [{"tag": "X", "address": 0}], device="Plant1/Noisy")
    conns.add(tenant, "nowhere", free_port(), [{"tag": "X", "address": 0}], device="Plant1/Nowhere")
    # The device has 64 registers: for address 70 it answers with an exception, for that block only.
    conns.add(tenant, "partly", device.port, [{"tag": "Good", "address": 0}, {"tag": "Missing", "address": 70}],
            device="Plant1/Partly")  # fmt: skip
    conns.add(tenant, "wrong-unit", device.port, [{"tag": "X", "address": 0}], device="Plant1/WrongUnit", unit_id=9)
    for path in ("Plant1/Mute", "Plant1/Noisy", "Plant1/Nowhere"):
        wait_for(lambda path=path: status(tenant, path) == "offline", what=f"{path} offline")
        assert latest(tenant, f"{path}/X")["quality"] == "Bad"  # type: ignore[index]
    wait_for(lambda: (latest(tenant, "Plant1/Partly/Missing") or {}).get("quality") == "Bad", what="exception")
    assert latest(tenant, "Plant1/Partly/Good")["value"] == 7  # type: ignore[index]
    assert status(tenant, "Plant1/Partly") == "online"  # it answered: a bad address is not a dead device
    wait_for(lambda: (latest(tenant, "Plant1/WrongUnit/X") or {}).get("quality") == "Bad", what="wrong unit")
    assert mute.connections >= 1 and noisy.connections >= 1
    rejected = stats(tenant)["rejected"]
    assert rejected.get("poll_timeout", 0) >= 2 and rejected.get("poll_connection", 0) >= 2
    assert rejected.get("read_error", 0) >= 2
    # All the while, the adapter kept polling: a value change still arrives.
    device.set("h", 0, [8])
    wait_for(lambda: (latest(tenant, "Plant1/Partly/Good") or {}).get("value") == 8, what="still polling")
    assert all(not s.task.done() for s in map(adapter(live).poller.state, adapter(live).poller.running()))  # type: ignore[union-attr]


def test_connections_are_followed_as_engineers_change_them(
    live: LiveServer, conns: Connections, tenant: TenantHandle, device: FieldDevice, runner: LoopThread
) -> None:
    other = FieldDevice(runner).start()
    try:
        device.set("h", 0, [1])
        other.set("h", 0, [2])
        conn = conns.add(tenant, "plc", device.port, [{"tag": "V", "address": 0}])
        wait_for(lambda: (latest(tenant, "Plant1/PLC1/V") or {}).get("value") == 1, what="first device")
        eng = tenant.engineer
        config = eng.get(f"/api/v1/connections/{conn}").json()["config"]
        r = eng.patch(f"/api/v1/connections/{conn}", json={"config": config | {"port": other.port}})
        assert r.status_code == 200, r.text
        wait_for(lambda: (latest(tenant, "Plant1/PLC1/V") or {}).get("value") == 2, what="the updated config")
        assert eng.patch(f"/api/v1/connections/{conn}", json={"enabled": False}).status_code == 200
        wait_for(lambda: conn not in adapter(live).poller, what="disabled")
        reads = other.reads
        time.sleep(0.4)
        assert other.reads == reads  # no longer polled
        assert eng.patch(f"/api/v1/connections/{conn}", json={"enabled": True}).status_code == 200
        wait_for(lambda: conn in adapter(live).poller, what="enabled again")
        assert eng.delete(f"/api/v1/connections/{conn}").status_code == 204
        wait_for(lambda: conn not in adapter(live).poller, what="deleted")
    finally:
        other.stop()


def test_each_tenant_polls_into_its_own_namespace_only(
    live: LiveServer,
    conns: Connections,
    tenant: TenantHandle,
    other_tenant: TenantHandle,
    device: FieldDevice,
    runner: LoopThread,
) -> None:
    theirs = FieldDevice(runner).start()
    try:
        device.set("h", 0, [111])
        theirs.set("h", 0, [222])
        conns.add(tenant, "plc", device.port, [{"tag": "V", "address": 0}])
        conns.add(other_tenant, "plc", theirs.port, [{"tag": "V", "address": 0}])
        wait_for(lambda: (latest(tenant, "Plant1/PLC1/V") or {}).get("value") == 111, what="tenant A")
        wait_for(lambda: (latest(other_tenant, "Plant1/PLC1/V") or {}).get("value") == 222, what="tenant B")
        time.sleep(0.3)
        for handle, value in ((tenant, 111), (other_tenant, 222)):
            history = handle.users["viewer"].get("/api/v1/history", params={"node": "Plant1/PLC1/V"}).json()
            assert set(history["value"]) == {value}
        mine = tenant.users["viewer"].get("/api/v1/nodes/Plant1/PLC1/V").json()["node_id"]
        # The same node id names each tenant's own tag: B reads its own value through it.
        assert other_tenant.users["viewer"].get("/api/v1/values", params={"node": mine}).json()[0]["value"] == 222
        assert set(stats(other_tenant)) and stats(other_tenant)["accepted"] > 0
        # A device path can't name another tenant's node: node ids are not paths.
        r = other_tenant.engineer.post(
            "/api/v1/connections",
            json={"kind": "modbus", "name": "x", "config": {"host": "127.0.0.1", "port": device.port,
                  "device": mine, "registers": [{"tag": "V", "address": 0}]}},
        )  # fmt: skip
        assert r.status_code == 422 and r.json()["field"] == "config.device"
    finally:
        theirs.stop()


def test_a_deleted_device_is_recreated_while_its_connection_is_enabled(
    live: LiveServer, conns: Connections, tenant: TenantHandle, device: FieldDevice
) -> None:
    device.set("h", 0, [5])
    conns.add(tenant, "plc", device.port, [{"tag": "V", "address": 0}])
    wait_for(lambda: latest(tenant, "Plant1/PLC1/V"), what="first value")
    assert tenant.engineer.delete("/api/v1/nodes/Plant1/PLC1").status_code == 204
    wait_for(lambda: latest(tenant, "Plant1/PLC1/V"), what="recreated device")


# -- the polling mechanism itself, on the live server's pipeline ---------------------------


class ScriptedSource:
    """A field device that answers as the test scripts it: values, slowness, or errors."""

    kind = "modbus"
    offline_after = 3

    def __init__(
        self, ctx: IngestContext, tenant_id: int, script: list[Any], interval_s: float = 0.1, timeout_s: float = 0.5
    ) -> None:
        self.ctx, self.label = ctx, "scripted"
        self.tenant_id, self.script = tenant_id, list(script)
        self.device, self.tags = "Plant1/Scripted", ["A", "B"]
        self.interval_s, self.timeout_s = interval_s, timeout_s
        self.starts: list[float] = []
        self.in_flight = self.max_in_flight = 0
        self.closed = False

    async def prepare(self) -> None:
        from server.domain.namespace import NodeClass
        from server.storage.repositories.nodes import NodeSpec

        specs = [NodeSpec(NodeClass.TAG, t) for t in self.tags]
        await self.ctx.namespace.ensure_device(self.tenant_id, self.device, specs, actor="test")

    async def poll(self) -> Reading:
        self.starts.append(asyncio.get_running_loop().time())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            step = self.script.pop(0) if self.script else 1.0
            if isinstance(step, BaseException):
                raise step
            if isinstance(step, tuple):  # (delay, value): slow but answers
                await asyncio.sleep(step[0])
                step = step[1]
            return Reading({"A": float(step), "B": -float(step)})
        finally:
            self.in_flight -= 1

    async def close(self) -> None:
        self.closed = True


def tenant_id(live: LiveServer, tenant: TenantHandle) -> int:
    assert live.server is not None
    found = live.call(live.server.admin.tenants.by_name(tenant.name))
    return int(found.id)


def test_the_poller_keeps_its_grid_never_overlaps_and_survives_anything(
    live: LiveServer, tenant: TenantHandle, caplog: pytest.LogCaptureFixture
) -> None:
    assert live.server is not None
    ctx = live.server.ingest
    script: list[Any] = [1, 2, (0.25, 3), 4, (1.0, 5)] + [RuntimeError("boom")] * 6 + [ValueError("odd")] + [7] * 30
    source = ScriptedSource(ctx, tenant_id(live, tenant), script)

    async def scenario() -> Poller:
        poller = Poller(ctx, log_every_s=600)
        poller.add("scripted", source)
        await asyncio.sleep(2.6)
        return poller

    with caplog.at_level(logging.WARNING, logger="server.ingest.polling"):
        poller = live.call(scenario())
    state = poller.state("scripted")
    assert source.max_in_flight == 1  # a slow poll never overlaps the next
    # The first poll also set the device up; from the second on, every poll starts on the 0.1 s grid.
    grid = [round((t - source.starts[1]) / 0.1, 2) for t in source.starts[1:]]
    assert all(abs(g - round(g)) < 0.3 for g in grid), grid
    assert round(grid[2] - grid[1]) == 3 and state.overruns >= 2 + 5  # slow polls' slots were skipped
    viewer = tenant.users["viewer"]
    history = viewer.get("/api/v1/history", params={"node": "Plant1/Scripted/A"}).json()
    assert history["value"][:4] == [1, 2, 3, 4]
    qualities = history["quality"]
    assert qualities.count(2) == 1  # the timeout and the errors after it: one failure, Bad written once
    assert history["value"][-1] == 7 and qualities[-1] == 0
    counters = stats(tenant)["rejected"]
    assert counters["poll_timeout"] == 1 and counters["poll_error"] == 7
    warnings = [r.getMessage() for r in caplog.records if r.name == "server.ingest.polling"]
    failures = [w for w in warnings if "poll failed" in w]
    assert len(failures) == 1, warnings  # logged when it started, not once per failed poll
    assert any("marked offline" in w for w in warnings)
    assert status(tenant, "Plant1/Scripted") == "online"  # recovered
    live.call(poller.stop())
    assert source.closed


async def test_removing_a_source_as_its_device_answers_stops_it() -> None:
    """A cancel that lands in the loop turn the answer arrives in was absorbed by wait_for on
    Python 3.11: remove() then waited for ever while the source went on polling."""

    class Answering:
        kind, label, tenant_id, device, tags = "modbus", "race", 1, "Plant1/D", ["a"]
        interval_s, timeout_s, offline_after = 0.05, 1.0, 3

        def __init__(self) -> None:
            self.answer: asyncio.Future[Reading] | None = None
            self.polls = 0
            self.closed = False

        async def prepare(self) -> None:
            return None

        async def poll(self) -> Reading:
            self.polls += 1
            self.answer = asyncio.get_running_loop().create_future()
            return await self.answer

        async def close(self) -> None:
            self.closed = True

    class Quiet:  # stands in for the pipeline and the namespace: nothing is stored here
        async def ingest(self, *args: Any, **kwargs: Any) -> None:
            return None

        async def set_device_status(self, *args: Any) -> None:
            return None

    counters = AdapterStats()
    fake = type("Ctx", (), {"stats": lambda *_: counters, "pipeline": Quiet(), "namespace": Quiet()})()
    poller = Poller(fake)  # type: ignore[arg-type]
    source = Answering()
    poller.add("race", source)  # type: ignore[arg-type]
    while source.answer is None:
        await asyncio.sleep(0.01)
    source.answer.set_result(Reading({"a": 1.0}))  # the device answers ...
    remove = asyncio.create_task(poller.remove("race"))  # ... as the connection is disabled
    done, _ = await asyncio.wait({remove}, timeout=3.0)
    assert done, "remove() hung"
    polls = source.polls
    await asyncio.sleep(0.3)
    assert source.polls == polls and source.closed
