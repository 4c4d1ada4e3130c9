"""The plant simulator: deterministic physics and faults, the ground truth, its transports
against the real brokers, and short runs against a live server (HTTP in; Modbus and OPC UA
out, read by plain pymodbus and asyncua clients, and by the server's own Modbus adapter)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from server.ingest.modbus import ConnectionConfig
from server.sim import sparkplug
from server.sim.faults import Fault, FaultKind, GroundTruth, RandomFaults, parse_fault, read_ground_truth
from server.sim.plant import Plant, ambient_at
from server.sim.publishers import AmqpPublisher, CoapPublisher, MqttPublisher, SparkplugPublisher
from server.sim.runner import Backfill, Simulation
from server.sim.servers import ModbusPlantServer, OpcUaPlantServer, modbus_connections
from server.simulator import duration, main, parser, run
from tests.support import LiveServer, TenantHandle, free_port, make_settings, unavailable

MQTT_URL = os.environ.get("IIOT_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
AMQP_URL = os.environ.get("IIOT_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1/")
MIDNIGHT = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def run_plant(plant: Plant, seconds: float, step: float = 1.0, t0: float = MIDNIGHT) -> list[dict[str, Any]]:
    frames = []
    for k in range(int(seconds / step)):
        frame, _ = plant.step(t0 + k * step)
        frames.append(frame)
    return frames


def series(frames: list[dict[str, Any]], tag_path: str) -> list[float]:
    device, tag = tag_path.rsplit("/", 1)
    return [f[device][tag] for f in frames]


# -- physics -------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_plant() -> None:
    a, b, c = (run_plant(Plant(seed=s, pumps=2), 300) for s in (7, 7, 8))
    assert a == b
    assert a != c
    assert set(a[0]) == {"Plant1/Area1/Pump1", "Plant1/Area1/Tank1", "Plant1/Area1/Pump2", "Plant1/Area1/Tank2",
                         "Plant1/Utilities/Boiler1"}  # fmt: skip


def test_physics_over_a_day_is_plausible() -> None:
    frames = run_plant(Plant(seed=3, pumps=2), 86_400, step=10)
    level = series(frames, "Plant1/Area1/Tank1/Level")
    assert min(level) > 40 and max(level) < 80  # the level controller holds the tank near 60 %
    inflow, outflow = series(frames, "Plant1/Area1/Tank1/Inflow"), series(frames, "Plant1/Area1/Tank1/Outflow")
    assert abs(sum(inflow) - sum(outflow)) / sum(outflow) < 0.02  # mass balance over a day
    flow, speed = series(frames, "Plant1/Area1/Pump1/Flow"), series(frames, "Plant1/Area1/Pump1/Speed")
    pressure = series(frames, "Plant1/Area1/Pump1/Pressure")
    fast, slow = max(range(len(speed)), key=speed.__getitem__), min(range(len(speed)), key=speed.__getitem__)
    assert flow[fast] > flow[slow] and pressure[fast] > pressure[slow]  # affinity laws
    ambient = series(frames, "Plant1/Utilities/Boiler1/Ambient")
    firing = series(frames, "Plant1/Utilities/Boiler1/FiringRate")
    at3, at15 = 3 * 360, 15 * 360  # 03:00 and 15:00 UTC at 10 s steps
    assert ambient[at3] < ambient[at15] and firing[at3] > firing[at15]  # colder night, harder firing
    assert ambient_at(MIDNIGHT + 15 * 3600) == pytest.approx(19.0)
    bearing = series(frames, "Plant1/Area1/Pump1/BearingTemp")
    assert all(b > a + 10 for a, b in zip(ambient, bearing, strict=True))
    assert set(series(frames, "Plant1/Area1/Pump1/Running")) == {1.0}
    # Noise: transmitters never repeat exactly.
    assert len(set(flow[:100])) > 95


# -- faults --------------------------------------------------------------------------------


def with_and_without(*faults: str, seconds: float = 900, step: float = 1.0) -> tuple[list[Any], list[Any]]:
    clean = run_plant(Plant(seed=5, pumps=2), seconds, step)
    faulty = run_plant(Plant(seed=5, pumps=2, faults=[parse_fault(f) for f in faults]), seconds, step)
    return clean, faulty


def test_sensor_faults_change_only_the_reading() -> None:
    clean, faulty = with_and_without("drift:Tank1/Level@100+400:8", "stuck:Pump2/Pressure@200+100",
                                     "spike:Boiler1/SupplyTemp@300+0.5:30")  # fmt: skip
    diff = [f - c for c, f in zip(series(clean, "Plant1/Area1/Tank1/Level"), series(faulty, "Plant1/Area1/Tank1/Level"),
                                  strict=True)]  # fmt: skip
    assert all(abs(d) < 1e-3 for d in diff[:100] + diff[500:])
    assert diff[300] == pytest.approx(4.0, abs=1e-3) and diff[499] == pytest.approx(8 * 399 / 400, abs=1e-3)
    stuck = series(faulty, "Plant1/Area1/Pump2/Pressure")
    assert len(set(stuck[200:300])) == 1 and len(set(stuck[300:310])) > 1
    supply = [f - c for c, f in zip(series(clean, "Plant1/Utilities/Boiler1/SupplyTemp"),
                                    series(faulty, "Plant1/Utilities/Boiler1/SupplyTemp"), strict=True)]  # fmt: skip
    assert [i for i, d in enumerate(supply) if abs(d) > 1e-3] == [300] and supply[300] == pytest.approx(30, abs=1e-3)
    # The process itself did not change: the other tags are identical.
    assert series(clean, "Plant1/Area1/Pump1/Flow") == series(faulty, "Plant1/Area1/Pump1/Flow")


def test_bearing_wear_raises_vibration_slowly_and_a_trip_drains_the_tank() -> None:
    clean, faulty = with_and_without("bearing_wear:Pump1@600+3600", "pump_trip:Pump2@600+600", seconds=5400, step=5)
    vib = series(faulty, "Plant1/Area1/Pump1/Vibration")
    clean_vib = series(clean, "Plant1/Area1/Pump1/Vibration")
    excess = [v - c for v, c in zip(vib, clean_vib, strict=True)]
    assert max(abs(e) for e in excess[:120]) < 1e-6
    quarters = [sum(excess[120 + k * 180 : 120 + (k + 1) * 180]) / 180 for k in range(4)]
    assert quarters == sorted(quarters) and quarters[-1] > 4  # slowly rising, to several mm/s
    assert (
        series(faulty, "Plant1/Area1/Pump1/BearingTemp")[839]
        > series(clean, "Plant1/Area1/Pump1/BearingTemp")[839] + 15
    )
    assert max(abs(e) for e in excess[900:]) < 1.0  # repaired at the end
    running = series(faulty, "Plant1/Area1/Pump2/Running")
    assert set(running[125:235]) == {0.0} and running[250] == 1.0
    assert max(series(faulty, "Plant1/Area1/Pump2/Flow")[130:235]) < 2
    level, clean_level = series(faulty, "Plant1/Area1/Tank2/Level"), series(clean, "Plant1/Area1/Tank2/Level")
    assert level[235] < clean_level[235] - 10  # the tank drained while its pump was off


def test_fault_specs_are_checked() -> None:
    assert parse_fault("drift:Tank1/Level@30+600:15") == Fault(FaultKind.DRIFT, "Tank1", 30, 600, "Level", 15)
    assert parse_fault("pump_trip:Pump2@120+300").tag is None
    for bad in ("drift:Tank1@1+2", "melt:Pump1@1+2", "pump_trip:Tank1@1+2", "bearing_wear:Pump1/Flow@1+2",
                "spike:Pump1/Flow@1", "stuck:Pump1/Flow@1+0"):  # fmt: skip
        with pytest.raises(ValueError, match="fault"):
            parse_fault(bad)
    with pytest.raises(ValueError, match="unknown device"):
        Plant(pumps=1, faults=[parse_fault("stuck:Pump9/Flow@1+2")])
    with pytest.raises(ValueError, match="no numeric tag"):
        Plant(pumps=1, faults=[parse_fault("stuck:Pump1/Running@1+2")])
    assert main(["--fault", "nonsense", "--count", "1", "--publish", "none"]) == 2
    assert main(["--publish", "pigeon"]) == 2
    assert main(["--publish", "http", "--password", ""]) == 2


def test_random_faults_are_seeded() -> None:
    sensors = Plant(pumps=2).sensors()
    a = RandomFaults(1, 60, sensors, duration_scale=0.01).until(3600)
    b = RandomFaults(1, 60, sensors, duration_scale=0.01).until(3600)
    assert a == b and 30 < len(a) < 100  # about 60 an hour
    assert {f.kind for f in a} == set(FaultKind)
    assert all(f.device.startswith("Pump") for f in a if not f.kind.on_sensor)


async def test_ground_truth_records_every_fault_with_its_times(tmp_path: Path) -> None:
    plant = Plant(seed=1, pumps=1, faults=[parse_fault("spike:Pump1/Flow@2+1:50"),
                                           parse_fault("bearing_wear:Pump1@3+100")])  # fmt: skip
    plant.random_faults = RandomFaults(9, 3600, plant.sensors(), duration_scale=0.001)
    clock = iter(MIDNIGHT + k for k in range(1000))
    truth = GroundTruth(tmp_path / "truth.jsonl")
    sim = Simulation(plant, ground_truth=truth, period=0.001, count=10, clock=lambda: next(clock))
    await sim.run()
    lines = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    faults = read_ground_truth(tmp_path / "truth.jsonl")
    spike = next(f for f in faults if f["kind"] == "spike")
    assert spike["start"] == MIDNIGHT + 2 and spike["end"] == MIDNIGHT + 3 and spike["magnitude"] == 50
    assert spike["tags"] == ["Plant1/Area1/Pump1/Flow"] and spike["start_iso"] == "2026-01-01T00:00:02.000Z"
    wear = next(f for f in faults if f["kind"] == "bearing_wear")
    assert wear["truncated"] is True and wear["end"] == MIDNIGHT + 9  # the run stopped at the 10th tick
    assert wear["tags"] == ["Plant1/Area1/Pump1/Vibration", "Plant1/Area1/Pump1/BearingTemp"]
    assert len([r for r in lines if r["id"] == wear["id"]]) == 2
    assert len(faults) > 2  # the random ones too, each with an id
    assert len({f["id"] for f in faults}) == len(faults)


async def test_runs_appending_to_one_ground_truth_file_stay_apart(tmp_path: Path) -> None:
    """Ids restart in every run; a second run into the same file must not overwrite the first's faults."""
    path = tmp_path / "truth.jsonl"
    for day in (0, 1):
        plant = Plant(seed=1, pumps=1, faults=[parse_fault("spike:Pump1/Flow@2+1:50")])
        clock = iter(MIDNIGHT + day * 86_400 + k for k in range(100))
        truth = GroundTruth(path)
        truth.run += f"-{day}"  # two runs within one second of one process
        await Simulation(plant, ground_truth=truth, period=0.001, count=5, clock=lambda c=clock: next(c)).run()
    faults = read_ground_truth(path)
    assert [f["start"] for f in faults] == [MIDNIGHT + 2, MIDNIGHT + 86_400 + 2]
    assert faults[0]["id"] == faults[1]["id"] and faults[0]["run"] != faults[1]["run"]


async def test_a_backfill_sends_the_span_before_now_in_time_order_then_goes_live(tmp_path: Path) -> None:
    """The same plant as a live run of the same seed and times, sent in batches of whole ticks;
    faults count from the backfill's start; the live ticks carry on from the same state."""
    now = MIDNIGHT + 3600
    batches: list[list[dict[str, Any]]] = []

    async def send(batch: list[dict[str, Any]]) -> None:
        batches.append(batch)

    plant = Plant(seed=3, pumps=1, faults=[parse_fault("spike:Pump1/Flow@100+1:50")])
    clock = iter([now, *(now + k for k in range(1, 10))])
    truth = GroundTruth(tmp_path / "truth.jsonl")
    sim = Simulation(plant, ground_truth=truth, period=1.0, count=2, clock=lambda: next(clock),
                     backfill=Backfill(600, send, batch_values=100))  # fmt: skip
    task = asyncio.create_task(sim.run())
    await asyncio.wait_for(task, 10)
    items = [i for b in batches for i in b]
    stamps = sorted({i["ts"] for i in items})
    assert sim.backfilled == 600 and sim.ticks == 2
    assert stamps[0] == now - 600 and stamps[-1] == now - 1 and len(stamps) == 600  # 1 s apart, before now
    assert [i["ts"] for i in items] == sorted(i["ts"] for i in items)  # in time order
    tick_values = sum(len(d.tags) for d in plant.devices)
    assert all(len(b) % len(plant.devices) == 0 for b in batches)  # whole ticks
    assert all(100 <= sum(len(i["values"]) for i in b) < 100 + tick_values for b in batches[:-1])
    twin = Plant(seed=3, pumps=1, faults=[parse_fault("spike:Pump1/Flow@100+1:50")])
    expected = [twin.step(now - 600 + k)[0] for k in range(600)]
    flow = [i["values"]["Flow"] for i in items if i["device"] == "Plant1/Area1/Pump1"]
    assert flow == [f["Plant1/Area1/Pump1"]["Flow"] for f in expected]  # the same plant, step by step
    spike = read_ground_truth(tmp_path / "truth.jsonl")[0]
    assert spike["start"] == now - 600 + 100  # fault times count from the backfill's start
    assert sim.plant.t is not None and sim.plant.t > now  # and the live ticks went on from there


def test_backfill_durations() -> None:
    assert [duration(t) for t in ("3600", "90s", "45m", "1h", "0.5h")] == [3600, 90, 2700, 3600, 1800]
    for bad in ("0", "-1h", "8d", "1x", ""):
        with pytest.raises(ValueError):
            duration(bad)
    with pytest.raises(SystemExit):
        parser().parse_args(["--backfill", "soon"])


# -- Sparkplug codec -----------------------------------------------------------------------


def test_sparkplug_payloads_round_trip_and_the_server_reads_them() -> None:
    metrics = [sparkplug.Metric(name="Flow", alias=3, value=12.5, unit="m3/h", low=0, high=150),
               sparkplug.Metric(name="Running", alias=4, datatype=sparkplug.BOOLEAN, value=True),
               sparkplug.Metric(name="Idle", alias=5, value=None)]  # fmt: skip
    raw = sparkplug.encode(1_700_000_000_000, metrics, seq=7)
    ts, seq, back = sparkplug.decode(raw)
    assert (ts, seq) == (1_700_000_000_000, 7)
    assert [(m.name, m.alias, m.value, m.unit, m.high) for m in back] == [
        ("Flow", 3, 12.5, "m3/h", 150.0), ("Running", 4, True, None, None), ("Idle", 5, None, None, None)
    ]  # fmt: skip
    server_codec = pytest.importorskip("server.ingest.sparkplug")
    decoded = server_codec.decode_payload(raw)
    assert decoded.seq == 7 and decoded.metrics[0].properties["engUnit"] == "m3/h"
    assert [(m.name, m.alias, m.value) for m in decoded.metrics] == [("Flow", 3, 12.5), ("Running", 4, True),
                                                                     ("Idle", 5, None)]  # fmt: skip


# -- transports, against the real brokers --------------------------------------------------


async def test_mqtt_json_and_sparkplug_reach_the_broker() -> None:
    import aiomqtt

    from server.sim.publishers import mqtt_params

    tenant = f"sim{uuid.uuid4().hex[:8]}"
    plant = Plant(seed=2, pumps=1)
    plain = MqttPublisher(MQTT_URL, tenant, plant.devices)
    sp = SparkplugPublisher(MQTT_URL, tenant, "Edge1", plant.devices)
    received: list[aiomqtt.Message] = []
    try:
        async with aiomqtt.Client(**mqtt_params(MQTT_URL), timeout=5) as sub:
            await sub.subscribe(f"{tenant}/devices/#", qos=1)
            await sub.subscribe(f"spBv1.0/{tenant}/#", qos=1)
            sim = Simulation(plant, [plain, sp], period=0.05, count=None)
            await plain.start()
            await sp.start()
            await wait_until(lambda: plain.link.client is not None and sp.births == 1)
            for _ in range(3):
                await sim.tick()
            rebirth = sparkplug.encode(0, [sparkplug.Metric(name="Node Control/Rebirth", datatype=sparkplug.BOOLEAN,
                                                            value=True)], None)  # fmt: skip
            await sub.publish(f"spBv1.0/{tenant}/NCMD/Edge1", rebirth, qos=1)
            await wait_until(lambda: sp.births == 2)
            await sim.tick()
            await plain.stop()
            await sp.stop()
            try:
                async with asyncio.timeout(5):
                    async for message in sub.messages:
                        received.append(message)
                        if str(message.topic).endswith("NDEATH/Edge1"):
                            break
            finally:  # retained status messages would outlive the test on the shared broker
                for device in plant.devices:
                    await sub.publish(plain.topic(device.path, "status"), b"", qos=1, retain=True)
    except aiomqtt.MqttError as exc:
        unavailable(f"MQTT broker at {MQTT_URL}: {exc}")
    received = [m for m in received if "/NCMD/" not in str(m.topic)]  # the test's own command
    topics = [str(m.topic) for m in received]
    telemetry = [m for m in received if str(m.topic) == f"{tenant}/devices/Plant1/Area1/Pump1/telemetry"]
    assert len(telemetry) == 4
    body = json.loads(telemetry[0].payload)  # type: ignore[arg-type]
    assert set(body["values"]) == {"Flow", "Pressure", "Vibration", "BearingTemp", "Speed", "Running"}
    assert topics.count(f"{tenant}/devices/Plant1/Utilities/Boiler1/status") == 2  # online, then offline
    kinds = [t.split("/")[2] + ("/" + t.split("/")[4] if len(t.split("/")) > 4 else "") for t in topics
             if t.startswith("spBv1.0/")]  # fmt: skip
    assert kinds[:4] == ["NBIRTH", "DBIRTH/Pump1", "DBIRTH/Tank1", "DBIRTH/Boiler1"]
    assert kinds.count("NBIRTH") == 2 and kinds.count("DDATA/Pump1") == 4 and kinds[-1] == "NDEATH"
    sp_messages = [sparkplug.decode(m.payload) for m in received if str(m.topic).startswith("spBv1.0/")  # type: ignore[arg-type]
                   and "NDEATH" not in str(m.topic)]  # fmt: skip
    seqs = [seq for _, seq, _ in sp_messages]
    assert seqs[0] == 0 and seqs[:10] == list(range(10))  # NBIRTH 0, then one per message
    birth = sp_messages[1][2]
    flow = next(m for m in birth if m.name == "Flow")
    assert flow.alias is not None and flow.unit == "m3/h" and flow.high == 150
    data = sp_messages[4][2]
    assert {m.alias for m in data} == {m.alias for m in birth} and all(m.name is None for m in data)


async def test_amqp_publishes_with_the_platform_routing_keys() -> None:
    import aio_pika

    exchange = f"iiot-sim-test-{uuid.uuid4().hex[:8]}"
    try:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
    except (OSError, aio_pika.exceptions.AMQPError) as exc:
        unavailable(f"RabbitMQ at {AMQP_URL}: {exc}")
    async with connection:
        channel = await connection.channel()
        ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(ex, "telemetry.acme.#")
        plant = Plant(seed=2, pumps=1)
        pub = AmqpPublisher(AMQP_URL, "acme", exchange)
        await pub.start()
        await wait_until(lambda: pub._exchange is not None)
        sim = Simulation(plant, [pub], count=None)
        frame = await sim.tick()
        await pub.stop()
        got: dict[str, Any] = {}
        async with asyncio.timeout(5):
            while len(got) < 3:
                message = await queue.get(timeout=5, fail=False)
                if message is None:
                    await asyncio.sleep(0.05)
                    continue
                await message.ack()
                got[message.routing_key or ""] = (message.content_type, json.loads(message.body))
        await ex.delete()
    assert set(got) == {f"telemetry.acme.{p}" for p in frame}
    content_type, body = got["telemetry.acme.Plant1/Area1/Tank1"]
    assert content_type == "application/json" and body["values"] == frame["Plant1/Area1/Tank1"]


async def test_coap_posts_one_request_per_tick_with_the_key() -> None:
    import aiocoap
    from aiocoap import resource

    class Telemetry(resource.Resource):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.posts: list[tuple[list[str], Any, Any]] = []

        async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
            self.posts.append((request.opt.uri_query, request.opt.content_format, json.loads(request.payload)))
            return aiocoap.Message(code=aiocoap.CHANGED)

    site = resource.Site()
    telemetry = Telemetry()
    site.add_resource(["telemetry"], telemetry)
    port = free_port()
    server = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port))
    try:
        pub = CoapPublisher(f"coap://127.0.0.1:{port}", "k/ey+1")
        await pub.start()
        sim = Simulation(Plant(seed=2, pumps=1), [pub], count=None)
        frame = await sim.tick()
        await sim.tick()
        await pub.stop()
    finally:
        await server.shutdown()
    assert pub.sent == 6 and len(telemetry.posts) == 2
    query, content_format, body = telemetry.posts[0]
    assert query == ("key=k/ey+1",) and int(content_format) == 50
    assert {item["device"]: item["values"] for item in body} == frame


# -- against a live server -----------------------------------------------------------------


async def wait_until(check: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


def sim_args(live: LiveServer, tenant: TenantHandle, *extra: str) -> Any:
    return parser().parse_args(["--server", live.base, "--tenant", tenant.name, "--username", "admin",
                                "--password", "admin-password", "--devices", "2", *extra])  # fmt: skip


def test_a_short_run_feeds_the_historian_over_http(live: LiveServer, tenant: TenantHandle, tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    args = sim_args(live, tenant, "--period", "0.1", "--count", "5", "--fault", "spike:Pump1/Flow@0.15+0.05:500",
                    "--ground-truth", str(truth))  # fmt: skip
    sim = asyncio.run(run(args))
    viewer = tenant.users["viewer"]
    values = viewer.get("/api/v1/values", params={"under": "Plant1"}).json()
    assert len(values) == 2 * 6 + 2 * 3 + 5 and all(v["quality"] == "Good" for v in values)
    by_path = {v["path"]: v for v in values}
    assert by_path["Plant1/Area1/Pump1/Flow"]["unit"] == "m3/h"
    assert by_path["Plant1/Area1/Pump2/Flow"]["value"] == sim.last["Plant1/Area1/Pump2"]["Flow"]
    devices = viewer.get("/api/v1/devices", params={"under": "Plant1"}).json()
    assert {d["status"] for d in devices} == {"online"} and len(devices) == 5
    history = viewer.get("/api/v1/history", params={"node": "Plant1/Area1/Pump1/Flow"}).json()
    assert history["count"] == 5 and max(history["value"]) > 400  # the spike is in the historian
    [spike] = read_ground_truth(truth)
    spiked_at = history["t"][history["value"].index(max(history["value"]))]
    assert spike["start"] <= spiked_at + 0.001 and spike["tags"] == ["Plant1/Area1/Pump1/Flow"]
    running = viewer.get("/api/v1/nodes/Plant1/Area1/Pump1/Running").json()
    assert running["data_type"] == "Boolean"
    # A second run reuses what exists (409s are fine) and keeps going.
    asyncio.run(run(sim_args(live, tenant, "--period", "0.05", "--count", "2")))
    history = viewer.get("/api/v1/history", params={"node": "Plant1/Area1/Pump1/Flow"}).json()
    assert history["count"] == 7


async def test_modbus_and_opcua_servers_expose_the_plant_to_plain_clients() -> None:
    from asyncua import Client
    from pymodbus.client import AsyncModbusTcpClient

    plant = Plant(seed=4, pumps=2)
    modbus = ModbusPlantServer(plant.devices, "127.0.0.1", free_port())
    opcua = OpcUaPlantServer(plant.devices, "127.0.0.1", free_port())
    sim = Simulation(plant, modbus=modbus, opcua=opcua, count=None)
    await modbus.start()
    await opcua.start()
    try:
        frame = await sim.tick()
        client = AsyncModbusTcpClient("127.0.0.1", port=modbus.port, timeout=2, retries=0, reconnect_delay=0)
        assert await client.connect()
        regs = (await client.read_holding_registers(200, count=12, device_id=1)).registers  # Pump2's block
        pump2 = frame["Plant1/Area1/Pump2"]
        floats = [struct.unpack(">f", struct.pack(">HH", *regs[i : i + 2]))[0] for i in range(0, 12, 2)]
        assert floats[:5] == [pytest.approx(pump2[t], rel=1e-6) for t in ("Flow", "Pressure", "Vibration",
                                                                            "BearingTemp", "Speed")]  # fmt: skip
        coils = (await client.read_coils(32, count=1, device_id=1)).bits
        assert coils[0] is True  # Pump2 running
        level = (await client.read_input_registers(300, count=2, device_id=1)).registers  # inputs mirror holding
        assert struct.unpack(">f", struct.pack(">HH", *level))[0] == pytest.approx(frame["Plant1/Area1/Tank2"]["Level"])
        client.close()

        async with Client(opcua.endpoint, timeout=5) as ua_client:
            ns = await ua_client.get_namespace_index("urn:iiot-sim:plant")
            objects = ua_client.nodes.objects
            flow = await objects.get_child([f"{ns}:Plant1", f"{ns}:Area1", f"{ns}:Pump1", f"{ns}:Flow"])
            assert await flow.read_value() == pytest.approx(frame["Plant1/Area1/Pump1"]["Flow"])
            running = ua_client.get_node(f"ns={ns};s=Plant1/Area1/Pump1/Running")
            assert await running.read_value() is True
            eu_range = await (await flow.get_child("0:EURange")).read_value()
            assert (eu_range.Low, eu_range.High) == (0, 150)
            frame = await sim.tick()
            data_value = await flow.read_data_value()
            assert data_value.Value.Value == pytest.approx(frame["Plant1/Area1/Pump1"]["Flow"])
            assert abs(data_value.SourceTimestamp.timestamp() - (plant.t or 0)) < 0.01
    finally:
        await opcua.stop()
        await modbus.stop()


def test_the_server_polls_the_simulated_modbus_device(live: LiveServer, tenant: TenantHandle) -> None:
    """The whole loop: simulator registers → the server's Modbus adapter → the historian."""
    port = free_port()
    args = sim_args(live, tenant, "--publish", "none", "--modbus-port", str(port), "--modbus-register",
                    "--period", "0.1", "--count", "25")  # fmt: skip
    sim = asyncio.run(run(args))
    assert sim.modbus is not None and sim.modbus.requests > 10
    viewer = tenant.users["viewer"]
    history = viewer.get("/api/v1/history", params={"node": "Plant1/Area1/Tank1/Level"}).json()
    assert history["count"] >= 5 and all(30 < v < 90 for v in history["value"])
    running = viewer.get("/api/v1/values", params={"node": "Plant1/Area1/Pump1/Running"}).json()[0]
    assert running["value"] == 1.0
    connections = tenant.engineer.get("/api/v1/connections").json()
    assert len(connections) == 5 and {c["kind"] for c in connections} == {"modbus"}
    for conn in connections:  # the simulator is gone: stop polling it
        assert tenant.engineer.delete(f"/api/v1/connections/{conn['id']}").status_code == 204


def test_printed_modbus_config_is_what_the_server_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--print-modbus-config", "--modbus-port", "5021", "--devices", "1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in printed] == ["sim-Plant1-Area1-Pump1", "sim-Plant1-Area1-Tank1",
                                            "sim-Plant1-Utilities-Boiler1"]  # fmt: skip
    for conn in printed:
        ConnectionConfig.model_validate(conn["config"])
    assert modbus_connections(Plant(pumps=1).devices, "h", 1, path_root="Modbus")[0][1]["device"] == (
        "Modbus/Plant1/Area1/Pump1"
    )


def has_values(tenant: TenantHandle, under: str) -> bool:
    r = tenant.users["viewer"].get("/api/v1/values", params={"under": under})
    return r.status_code == 200 and any(v["ts"] is not None for v in r.json())


def test_the_console_script_runs_as_the_demo_starts_it_and_stops_cleanly_on_sigterm(
    live: LiveServer, tenant: TenantHandle, tmp_path: Path
) -> None:
    """`iiot-sim --server URL --tenant T --username admin` with IIOT_SIM_PASSWORD, as scripts/demo.sh."""
    truth = tmp_path / "truth.jsonl"
    exe = Path(sys.executable).with_name("iiot-sim")
    env = os.environ | {"IIOT_SIM_PASSWORD": "admin-password"}
    proc = subprocess.Popen(
        [str(exe), "--server", live.base, "--tenant", tenant.name, "--username", "admin", "--period", "0.1",
         "--fault", "bearing_wear:Pump1@0+3600", "--ground-truth", str(truth)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        viewer = tenant.users["viewer"]
        deadline = time.monotonic() + 20
        while not has_values(tenant, "Plant1"):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "no values from iiot-sim"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    [wear] = read_ground_truth(truth)
    assert wear["truncated"] is True and wear["end"] < wear["start"] + 60
    assert len(viewer.get("/api/v1/devices", params={"under": "Plant1"}).json()) == 7


def test_each_transport_reaches_the_server(tmp_path: Path) -> None:
    """--split: each device over one of MQTT, Sparkplug B, CoAP and AMQP, into one live server."""
    import aiomqtt

    from server.sim.publishers import mqtt_params

    coap = free_port()
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'iiot.db'}", mqtt_url=MQTT_URL, amqp_url=AMQP_URL, coap_port=coap,
        mqtt_client_id=f"iiot-test-{uuid.uuid4().hex[:8]}", amqp_queue=f"iiot-test-{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    live = LiveServer(settings).start()
    tenant = live.new_tenant("sim")
    mqtt_paths: list[str] = []
    try:
        args = sim_args(live, tenant, "--publish", "mqtt,sparkplug,coap,amqp", "--split", "--period", "0.2",
                        "--count", "15", "--coap-url", f"coap://127.0.0.1:{coap}", "--mqtt-url", MQTT_URL,
                        "--amqp-url", AMQP_URL)  # fmt: skip
        sim = asyncio.run(run(args))
        mqtt_paths = (sim.routes or {}).get("mqtt", [])
        if not any(p.sent for p in sim.publishers if p.name in ("mqtt", "amqp")):
            unavailable(f"the brokers at {MQTT_URL} and {AMQP_URL} took nothing")
        viewer = tenant.users["viewer"]
        deadline = time.monotonic() + 10
        while True:
            stats = viewer.get("/api/v1/ingest/stats").json()
            if all(stats.get(s, {}).get("accepted", 0) > 0 for s in ("mqtt", "sparkplug", "coap", "amqp")):
                break
            assert time.monotonic() < deadline, stats
            time.sleep(0.1)
        assert all(not s["rejected"] for s in stats.values()), stats
        routes = sim.routes or {}
        for transport, paths in routes.items():
            for path in paths:
                where = path if transport != "sparkplug" else f"Plant1-Edge/{path.rsplit('/', 1)[1]}"
                assert has_values(tenant, where), (transport, where)
    finally:
        live.stop()

        async def clear_retained() -> None:
            async with aiomqtt.Client(**mqtt_params(MQTT_URL), timeout=5) as client:
                for path in mqtt_paths:
                    await client.publish(f"{tenant.name}/devices/{path}/status", b"", qos=1, retain=True)

        with contextlib.suppress(aiomqtt.MqttError, OSError):
            asyncio.run(clear_retained())
