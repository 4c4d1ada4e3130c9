"""Actions on conditions: "publish a command when X" riding on an alarm's transitions. A device
listens on its commands topic on the real Mosquitto; the command must come once per transition
(not per sample), as `system` on the condition's behalf, audited, with its outcome journaled;
a target outside the tenant is refused, and only engineers configure actions."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest

from tests.server.test_ingest_mqtt import broker, mqtt_live
from tests.support import BACKENDS, LiveServer, TenantHandle, wait_for

DEVICE = "Plant1/Area1/Pump7"
FLOW = f"{DEVICE}/Flow"


@pytest.fixture(scope="module", params=BACKENDS)
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from mqtt_live(request, tmp_path_factory, mqtt_sparkplug=False)


class Device:
    """A device on its own MQTT connection, subscribed to its commands topic (SUBACK awaited)."""

    def __init__(self, topic: str) -> None:
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        subscribed = threading.Event()
        host, port = broker()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:10]}")
        self.client.on_message = lambda _c, _u, msg: self.commands.put(json.loads(msg.payload))
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.connect(host, port)
        self.client.loop_start()
        assert subscribed.wait(10), "no SUBACK from the broker"

    def next(self, timeout: float = 10) -> dict[str, Any]:
        return self.commands.get(timeout=timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def send(tenant: TenantHandle, value: float) -> None:
    r = tenant.engineer.post("/api/v1/telemetry", json={"device": DEVICE, "ts": time.time(), "values": {"Flow": value}})
    assert r.status_code == 201, r.text


def condition(actions: list[dict[str, Any]], name: str = "Flow high") -> dict[str, Any]:
    return {"name": name, "priority": "high", "spec": {"kind": "limit", "tag": FLOW, "hi": 90}, "actions": actions}


def test_transitions_send_their_commands_once_as_system_audited_and_journaled(live: LiveServer) -> None:
    t = live.new_tenant("act")
    ids = t.build_plant()
    device = Device(f"{t.name}/devices/{DEVICE}/commands")
    try:
        r = t.engineer.post("/api/v1/alarms/conditions", json=condition([
            {"on": "activated", "kind": "command", "device": DEVICE, "command": "stop", "args": {"why": "flow high"}},
            {"on": "acknowledged", "kind": "command", "device": DEVICE, "command": "silence_horn"},
            {"on": "cleared", "kind": "command", "device": ids["Pump7"], "command": "start", "expires_in_s": 30},
        ]))  # fmt: skip
        assert r.status_code == 201, r.text
        cid = r.json()["id"]

        send(t, 95.0)
        stop = device.next()
        assert stop["command"] == "stop" and stop["args"] == {"why": "flow high"} and stop["user"] == "system"
        assert stop["node_id"] == ids["Pump7"] and stop["expires_at"] - stop["ts"] == pytest.approx(60)
        for value in (96.0, 97.0, 98.0):  # the same activation: samples send nothing more
            send(t, value)
        r = t.users["operator"].post(f"/api/v1/alarms/{cid}/acknowledge", json={"comment": "on my way"})
        assert r.status_code == 200, r.text
        assert device.next()["command"] == "silence_horn"
        send(t, 50.0)
        start = device.next()
        assert start["command"] == "start" and start["expires_at"] - start["ts"] == pytest.approx(30)
        time.sleep(0.5)
        assert device.commands.empty()  # one command per transition, nothing per sample
    finally:
        device.close()

    audit = t.admin.get("/api/v1/audit", params={"action": "device.command"}).json()
    assert sorted(e["detail"]["command"] for e in audit) == ["silence_horn", "start", "stop"]
    assert all(e["actor"] == "system" and e["target"] == ids["Pump7"] for e in audit)
    behalf = {e["detail"]["command"]: e["detail"]["on_behalf_of"] for e in audit}
    assert behalf["stop"]["condition"] == cid and behalf["stop"]["event"] == "activated"
    assert behalf["silence_horn"]["event"] == "acknowledged" and behalf["start"]["event"] == "cleared"

    def actions() -> list[dict[str, Any]]:
        params = {"condition": cid, "start": time.time() - 600}
        entries = t.users["operator"].get("/api/v1/alarms/journal", params=params).json()["entries"]
        found = [e for e in entries if e["event"] == "action"]
        return found if len(found) == 3 else []

    journal = wait_for(actions, what="three journaled actions")
    assert [e["user"] for e in journal] == ["system"] * 3
    assert [e["comment"].split(":")[0] for e in journal] == [
        f"command 'stop' to {DEVICE}", f"command 'silence_horn' to {DEVICE}", f"command 'start' to {DEVICE}",
    ]  # fmt: skip
    assert f"issued (id {stop['id']}, on activated)" in journal[0]["comment"]  # the id the device got
    assert next(e for e in audit if e["detail"]["command"] == "stop")["detail"]["id"] == stop["id"]
    assert [(e["from_state"], e["to_state"]) for e in journal] == [  # an action changes no state
        ("unack_active", "unack_active"), ("ack_active", "ack_active"), ("normal", "normal")]  # fmt: skip


def test_a_target_gone_since_is_a_journaled_failure(live: LiveServer) -> None:
    t = live.new_tenant("act")
    t.build_plant()
    eng = t.engineer
    r = eng.post("/api/v1/nodes", json={"parent": "Plant1/Area1", "node_class": "device", "browse_name": "Valve3"})
    assert r.status_code == 201, r.text
    valve = r.json()["node_id"]
    r = eng.post("/api/v1/alarms/conditions", json=condition([
        {"on": "activated", "kind": "command", "device": valve, "command": "close"}]))  # fmt: skip
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert eng.delete(f"/api/v1/nodes/{valve}").status_code == 204
    send(t, 95.0)

    def failed() -> list[dict[str, Any]]:
        entries = eng.get("/api/v1/alarms/journal", params={"condition": cid, "start": time.time() - 600}).json()
        return [e for e in entries["entries"] if e["event"] == "action"]

    entry = wait_for(failed, what="the failed action in the journal")[0]
    assert entry["comment"].startswith(f"command 'close' to {valve}: failed, ") and "not found" in entry["comment"]
    assert t.admin.get("/api/v1/audit", params={"action": "device.command"}).json() == []
    assert eng.get(f"/api/v1/alarms/{cid}").json()["state"] == "unack_active"  # the alarm itself is unharmed


def test_targets_stay_in_the_tenant_and_only_engineers_configure_actions(live: LiveServer) -> None:
    t, other = live.new_tenant("act"), live.new_tenant("acto")
    t.build_plant()
    other.build_plant()
    r = other.engineer.post("/api/v1/nodes", json={"parent": None, "node_class": "device", "browse_name": "Gate"})
    assert r.status_code == 201, r.text
    gate = r.json()["node_id"]  # node ids are per tenant: the same path has the same id in every tenant

    def create(who: str, target: str, name: str = "Flow high") -> Any:
        action = {"on": "activated", "kind": "command", "device": target, "command": "open"}
        return t.users[who].post("/api/v1/alarms/conditions", json=condition([action], name))

    for target in (gate, "Gate"):  # a device only another tenant has, by node id and by path
        r = create("engineer", target)
        assert r.status_code == 422, r.text
        problem = r.json()
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "not a device of this tenant" in problem["detail"] and "actions.0.device" in json.dumps(problem)
    r = create("engineer", FLOW)  # a tag is not a device
    assert r.status_code == 422 and "not a device" in r.text, r.text
    bad = condition([{"on": "shelved", "kind": "command", "device": DEVICE, "command": "x"}])
    assert t.engineer.post("/api/v1/alarms/conditions", json=bad).status_code == 422
    for who in ("operator", "supervisor", "viewer"):  # operators may command by hand, not configure rules
        assert create(who, DEVICE).status_code == 403
    r = create("engineer", DEVICE)
    assert r.status_code == 201, r.text
    cid, version = r.json()["id"], r.json()["version"]
    changed = condition([{"on": "cleared", "kind": "command", "device": gate, "command": "open"}])
    assert t.engineer.put(f"/api/v1/alarms/conditions/{cid}", json=changed,
                          params={"version": version}).status_code == 422  # fmt: skip
    assert t.users["operator"].put(f"/api/v1/alarms/conditions/{cid}", json=changed).status_code == 403
    history = t.admin.get("/api/v1/audit", params={"action": "alarm.condition.create"}).json()
    assert history[0]["detail"]["config"]["actions"][0]["device"] == DEVICE  # versioned with the condition
