"""Sparkplug B over the real Mosquitto: an edge node written here with the server's own codec
(births, data by alias, deaths, a seq gap), against a server with mqtt_sparkplug on."""

from __future__ import annotations

import queue
import time
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest

from server.ingest.sparkplug import (
    NODE_DEVICE,
    REBIRTH_METRIC,
    Metric,
    Payload,
    SpType,
    decode_payload,
    encode_payload,
)
from tests.server.test_ingest_mqtt import broker, history, mqtt_live, node
from tests.support import BACKENDS, LiveServer, TenantHandle, wait_for


@pytest.fixture(scope="module", params=BACKENDS)
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from mqtt_live(request, tmp_path_factory, mqtt_sparkplug=True)


class EdgeNode:
    """A Sparkplug edge node on its own MQTT connection; it also listens to its NCMD topic."""

    def __init__(self, group: str, edge: str) -> None:
        self.group, self.edge = group, edge
        self.seq = 0
        self.commands: queue.Queue[Payload] = queue.Queue()
        host, port = broker()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"edge-{uuid.uuid4().hex[:10]}")
        self.client.on_message = lambda _c, _u, msg: self.commands.put(decode_payload(msg.payload))
        self.client.connect(host, port)
        self.client.loop_start()
        info = self.client.subscribe(f"spBv1.0/{group}/NCMD/{edge}", qos=1)
        assert info[0] == paho.MQTT_ERR_SUCCESS
        time.sleep(0.2)  # let the SUBACK arrive before a rebirth request could be sent

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def send(self, kind: str, metrics: list[Metric], *, device: str | None = None, seq: int | None = -1,
             raw: bytes | None = None, group: str | None = None) -> None:  # fmt: skip
        """Publish at QoS 1 (so the test is deterministic); seq -1: the next in sequence."""
        if seq == -1:
            seq = self.seq
            self.seq = (self.seq + 1) % 256
        payload = raw if raw is not None else encode_payload(Payload(int(time.time() * 1000), seq, metrics))
        topic = f"spBv1.0/{group or self.group}/{kind}/{self.edge}" + (f"/{device}" if device else "")
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def birth(self, bd_seq: int = 0) -> None:
        self.seq = 0
        self.send("NBIRTH", [
            Metric("bdSeq", None, SpType.INT64, bd_seq),
            Metric(REBIRTH_METRIC, 1, SpType.BOOLEAN, False),
            Metric("Temperature", 2, SpType.DOUBLE, 20.0, properties={"engUnit": "degC"}),
            Metric("Firmware", 3, SpType.STRING, "1.2.3"),
        ])  # fmt: skip

    def device_birth(self, device: str) -> None:
        self.send("DBIRTH", [
            Metric("Motor/Speed", 10, SpType.INT32, -5),
            Metric("Running", 11, SpType.BOOLEAN, True),
            Metric("Pressure", 12, SpType.FLOAT, 1.5, properties={"engUnit": "bar", "engLow": 0.0, "engHigh": 10.0}),
        ], device=device)  # fmt: skip

    def rebirth_requested(self, timeout: float = 10) -> bool:
        cmd = self.commands.get(timeout=timeout)
        return any(m.name == REBIRTH_METRIC and m.value is True for m in cmd.metrics)


@pytest.fixture
def edge(live: LiveServer) -> Iterator[tuple[TenantHandle, EdgeNode]]:
    t = live.new_tenant("sp")
    e = EdgeNode(t.name, f"Edge{uuid.uuid4().hex[:6]}")
    try:
        yield t, e
    finally:
        e.close()


def stats(api: Any) -> dict[str, Any]:
    return dict(api.get("/api/v1/ingest/stats").json().get("sparkplug", {}))


def values(api: Any, under: str) -> dict[str, tuple[float, str]]:
    r = api.get("/api/v1/values", params={"under": under})
    if r.status_code == 404:  # not born yet
        return {}
    assert r.status_code == 200, r.text
    return {v["path"].rsplit("/", 1)[1]: (v["value"], v["quality"]) for v in r.json() if v["value"] is not None}


def test_birth_data_by_alias_and_death(live: LiveServer, edge: tuple[TenantHandle, EdgeNode]) -> None:
    t, e = edge
    api = t.engineer
    e.birth(bd_seq=3)
    e.device_birth("PLC1")
    plc, own = f"{e.edge}/PLC1", f"{e.edge}/{NODE_DEVICE}"
    wait_for(lambda: values(api, plc).get("Pressure"), what="the device birth's values")
    # the namespace built from the births: types, units, ranges; strings and control metrics are no tags
    assert node(api, plc)["status"] == "online" and node(api, own)["status"] == "online"
    speed, pressure = node(api, f"{plc}/Motor.Speed"), node(api, f"{plc}/Pressure")
    assert speed["data_type"] == "Int32" and node(api, f"{plc}/Running")["data_type"] == "Boolean"
    assert (pressure["data_type"], pressure["unit"], pressure["range_low"], pressure["range_high"]) == (
        "Float", "bar", 0.0, 10.0,
    )  # fmt: skip
    assert node(api, f"{own}/Temperature")["unit"] == "degC"
    assert sorted(n["browse_name"] for n in api.get("/api/v1/nodes", params={"parent": own}).json()) == ["Temperature"]
    assert values(api, plc) == {"Motor.Speed": (-5.0, "Good"), "Running": (1.0, "Good"), "Pressure": (1.5, "Good")}

    # data by alias only (no names), then by name
    e.send("NDATA", [Metric(None, 2, None, 21.5)])
    e.send("DDATA", [Metric(None, 10, None, -1500), Metric(None, 12, None, 2.5)], device="PLC1")
    e.send("DDATA", [Metric("Running", None, SpType.BOOLEAN, False)], device="PLC1")
    wait_for(lambda: values(api, plc).get("Running") == (0.0, "Good"), what="data by name")
    assert values(api, plc) == {"Motor.Speed": (-1500.0, "Good"), "Running": (0.0, "Good"), "Pressure": (2.5, "Good")}
    assert values(api, own) == {"Temperature": (21.5, "Good")}
    assert [v for _, v, _ in history(api, f"{plc}/Motor.Speed")] == [-5.0, -1500.0]

    # the device dies right after a last value: offline, its last values again with Bad quality
    e.send("DDATA", [Metric(None, 12, None, 3.5)], device="PLC1")
    e.send("DDEATH", [], device="PLC1")
    wait_for(lambda: node(api, plc)["status"] == "offline", what="DDEATH")
    wait_for(lambda: all(q == "Bad" for _, q in values(api, plc).values()), what="Bad quality")
    assert values(api, plc) == {"Motor.Speed": (-1500.0, "Bad"), "Running": (0.0, "Bad"), "Pressure": (3.5, "Bad")}
    assert [(v, q) for _, v, q in history(api, f"{plc}/Pressure")] == [(1.5, 0), (2.5, 0), (3.5, 0), (3.5, 2)]
    assert values(api, own)["Temperature"][1] == "Good"

    # an NDEATH of an older session (another bdSeq) is ignored; the current one takes the node down
    e.send("NDEATH", [Metric("bdSeq", None, SpType.INT64, 2)], seq=None)
    e.send("NDATA", [Metric(None, 2, None, 22.0)])
    wait_for(lambda: values(api, own)["Temperature"] == (22.0, "Good"), what="data after a stale NDEATH")
    e.send("NDEATH", [Metric("bdSeq", None, SpType.INT64, 3)], seq=None)
    wait_for(lambda: node(api, own)["status"] == "offline", what="NDEATH")
    wait_for(lambda: values(api, own)["Temperature"] == (22.0, "Bad"), what="the node's Bad quality")
    s = stats(api)
    assert s["rejected"] == {} and s["dead_lettered"] == 0


def test_seq_gap_and_data_before_birth_request_a_rebirth(live: LiveServer, edge: tuple[TenantHandle, EdgeNode]) -> None:
    t, e = edge
    api = t.engineer
    # data from a node this server has not seen born: dead-lettered, and NCMD Rebirth
    e.send("NDATA", [Metric(None, 2, None, 1.0)], seq=17)
    assert e.rebirth_requested()
    # another node (rebirth requests are held off 5 s per edge node) loses messages
    g = EdgeNode(t.name, f"Edge{uuid.uuid4().hex[:6]}")
    try:
        g.birth()
        g.send("NDATA", [Metric(None, 2, None, 30.0)])
        own = f"{g.edge}/{NODE_DEVICE}"
        wait_for(lambda: values(api, own).get("Temperature") == (30.0, "Good"), what="data after the birth")
        for i in range(256):  # seq wraps from 255 to 0: not a gap
            g.send("NDATA", [Metric(None, 2, None, 100.0 + i)])
        wait_for(lambda: values(api, own).get("Temperature") == (355.0, "Good"), what="a wrapped sequence")
        assert g.commands.empty() and g.seq == 2
        g.seq += 3  # three messages lost
        g.send("NDATA", [Metric(None, 2, None, 31.0)])
        assert g.rebirth_requested()
        # the data itself was good: kept
        wait_for(lambda: values(api, own).get("Temperature") == (31.0, "Good"), what="data after the gap")
        g.birth()  # the rebirth: the sequence starts again, no more requests
        g.send("NDATA", [Metric(None, 2, None, 32.0)])
        wait_for(lambda: values(api, own).get("Temperature") == (32.0, "Good"), what="data after the rebirth")
        assert g.commands.empty()
    finally:
        g.close()
    s = stats(api)
    assert s["rejected"] == {"before_birth": 1} and s["dead_lettered"] == 1
    letters = api.get("/api/v1/ingest/dead-letters", params={"source": "sparkplug"}).json()
    assert [d["reason"] for d in letters] == ["before_birth"]
    assert letters[0]["origin"] == f"spBv1.0/{t.name}/NDATA/{e.edge}"


def test_bad_payloads_and_unknown_group_are_counted_and_the_next_message_ingested(
    live: LiveServer, edge: tuple[TenantHandle, EdgeNode]
) -> None:
    t, e = edge
    api = t.engineer
    e.birth()
    e.device_birth("PLC1")
    e.send("DDATA", [], device="PLC1", raw=b"\xff\xff\xff\xffgarbage", seq=None)  # not protobuf
    e.send("DDATA", [], device="PLC1", raw=b"\x00" * 5000, seq=None)  # oversized (> 4096 bytes)
    e.send("DDATA", [Metric(None, 99, None, 1.0)], device="PLC1")  # an alias nobody declared
    e.send("DDATA", [Metric(None, 12, None, 9.5)], device="PLC1", group=f"nosuch{uuid.uuid4().hex[:8]}")
    e.send("DBIRTH", [Metric("X", 1, SpType.DOUBLE, 1.0)], device=NODE_DEVICE, seq=None)  # reserved device id
    e.seq -= 1  # the unknown-group message did not count in this node's sequence
    e.send("DDATA", [Metric(None, 12, None, 7.5)], device="PLC1")
    plc = f"{e.edge}/PLC1"
    wait_for(lambda: values(api, plc).get("Pressure") == (7.5, "Good"), what="the good message")
    s = wait_for(lambda: stats(api).get("dead_lettered") == 2 and stats(api), what="counters")
    assert s["rejected"] == {"invalid_protobuf": 1, "too_large": 1, "unknown_metric": 1}
    reasons = sorted(d["reason"] for d in api.get("/api/v1/ingest/dead-letters", params={"source": "sparkplug"}).json())
    assert reasons == ["invalid_protobuf", "too_large"]
    root = live.system()
    assert root.get("/api/v1/ingest/stats").json()["sparkplug"]["rejected"].get("unknown_tenant", 0) >= 1
    assert root.get("/api/v1/ingest/stats").json()["sparkplug"]["rejected"].get("invalid_topic", 0) >= 1


def test_a_group_writes_only_its_tenant(live: LiveServer) -> None:
    a, b = live.new_tenant("spa"), live.new_tenant("spb")
    edge = f"Edge{uuid.uuid4().hex[:6]}"
    ea, eb = EdgeNode(a.name, edge), EdgeNode(b.name, edge)
    try:
        ea.birth()
        ea.send("NDATA", [Metric(None, 2, None, 1.0)])
        eb.send("NDATA", [Metric(None, 2, None, 2.0)], seq=1)  # B never saw this node born
        own = f"{edge}/{NODE_DEVICE}"
        wait_for(lambda: values(a.engineer, own).get("Temperature") == (1.0, "Good"), what="A's data")
        wait_for(lambda: stats(b.engineer).get("rejected") == {"before_birth": 1}, what="B's refusal")
        assert b.engineer.get("/api/v1/nodes").json() == []
        assert [v for _, v, _ in history(a.engineer, f"{own}/Temperature")] == [20.0, 1.0]
    finally:
        ea.close()
        eb.close()
