"""The alarm walk-through of issue #4, end to end with the plant simulator: a limit alarm
raised by a vibration spike, acknowledged with a comment by an operator, shelved by a
supervisor, journaled, and notified by email and by a signed webhook."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from server.simulator import parser, run
from tests.notify_support import SECRET, Mailbox, Receiver
from tests.support import LiveServer, TenantHandle, wait_for

VIBRATION = "Plant1/Area1/Pump1/Vibration"


def simulate(live: LiveServer, tenant: TenantHandle, truth: Path, *extra: str) -> None:
    args = parser().parse_args(["--server", live.base, "--tenant", tenant.name, "--username", "admin",
                                "--password", "admin-password", "--devices", "1", "--ground-truth", str(truth),
                                *extra])  # fmt: skip
    asyncio.run(run(args))


def test_simulated_spike_to_acknowledged_shelved_journaled_and_notified(
    live: LiveServer, tenant: TenantHandle, smtp: tuple[Mailbox, int], receiver: Receiver, tmp_path: Path
) -> None:
    box, port = smtp
    truth = tmp_path / "ground-truth.jsonl"  # not the default in the working directory
    simulate(live, tenant, truth, "--period", "0.05", "--count", "2")  # the plant exists, vibration ~2 mm/s
    eng = tenant.engineer
    eng.put("/api/v1/notifications/allowlist", json={"allowlist": ["127.0.0.1"]})
    eng.put("/api/v1/notifications/channels/shift-mail", json={"channel": {
        "kind": "email", "host": "127.0.0.1", "port": port, "security": "none", "sender": "scada@plant.example",
        "recipients": [f"shift-{tenant.name}@plant.example"]}})  # fmt: skip
    eng.put("/api/v1/notifications/channels/ops-hook", json={"channel": {
        "kind": "webhook", "url": receiver.url("/alarms"), "secret": SECRET}})  # fmt: skip
    r = eng.post("/api/v1/alarms/conditions", json={
        "name": "Pump1 vibration high", "priority": "high", "notify": ["shift-mail", "ops-hook"],
        "message": "{name}: {value} {unit} (limit {limit} {unit})",
        "spec": {"kind": "limit", "tag": VIBRATION, "hi": 8.0, "hihi": 12.0, "deadband": 0.5}})  # fmt: skip
    assert r.status_code == 201, r.text
    cid = r.json()["id"]

    simulate(live, tenant, truth, "--period", "0.05", "--count", "10", "--fault", "spike:Pump1/Vibration@0.1+0.1:7.5")
    operator, supervisor = tenant.users["operator"], tenant.users["supervisor"]
    alarm = wait_for(lambda: (a := operator.get(f"/api/v1/alarms/{cid}").json())["activations"] >= 1 and a,
                     what="the vibration alarm")  # fmt: skip
    assert alarm["unit"] == "mm/s" and alarm["state"] in ("unack_active", "unack_rtn")  # a short spike: may be back
    journal = operator.get("/api/v1/alarms/journal", params={"condition": cid, "start": time.time() - 600}).json()
    raised = journal["entries"][0]
    assert raised["event"] == "activated" and raised["value"] > 8.0 and raised["level"] == "hi"

    r = operator.post(f"/api/v1/alarms/{cid}/acknowledge", json={"comment": "walking to pump 1"})
    assert r.status_code == 200 and r.json()["acked_by"] == "operator", r.text
    simulate(  # vibration high again, for a while: the supervisor shelves it until the bearing is changed
        live, tenant, truth, "--period", "0.05", "--count", "3", "--fault", "spike:Pump1/Vibration@0+1:7.5"
    )
    r = supervisor.post(f"/api/v1/alarms/{cid}/shelve", json={"reason": "bearing change tomorrow",
                                                                "duration_s": 3600})  # fmt: skip
    assert r.status_code == 200 and r.json()["state"] == "shelved", r.text

    mail_to = f"shift-{tenant.name}@plant.example"
    wait_for(lambda: box.to(mail_to) and receiver.requests, what="the email and the webhook")
    mail = box.to(mail_to)[0]
    assert mail["Subject"].startswith("[HIGH] Pump1 vibration high")
    hook = receiver.requests[0]
    assert hook["valid"] and hook["path"] == "/alarms"
    assert json.loads(hook["body"])["alarm"]["path"] == VIBRATION

    entries = operator.get("/api/v1/alarms/journal", params={"condition": cid, "start": time.time() - 600}).json()
    events = [(e["event"], e["user"]) for e in entries["entries"]]
    assert events[0] == ("activated", "system")
    assert ("acknowledged", "operator") in events and ("shelved", "supervisor") in events
    shelved = next(e for e in entries["entries"] if e["event"] == "shelved")
    assert shelved["comment"] == "bearing change tomorrow"
    deliveries = operator.get("/api/v1/notifications/deliveries", params={"condition": cid}).json()
    assert {(d["route"], d["outcome"]) for d in deliveries} >= {("shift-mail", "sent"), ("ops-hook", "sent")}
