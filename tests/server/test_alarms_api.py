"""Alarms end to end on the real server (SQLite and PostgreSQL): telemetry raises them, people
acknowledge, shelve and suppress them through the API, the stream tells, the journal keeps
every transition, roles are enforced and one tenant never sees another's."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import pytest

from tests.support import Api, LiveServer, TenantHandle, database_url, make_settings, wait_for

DEVICE = "Plant1/Area1/Pump7"
FLOW = f"{DEVICE}/Flow"
PRESSURE = f"{DEVICE}/Pressure"


def send(tenant: TenantHandle, **values: float) -> None:
    r = tenant.engineer.post("/api/v1/telemetry", json={"device": DEVICE, "ts": time.time(), "values": values})
    assert r.status_code in (200, 201, 202), r.text


def limit_condition(tenant: TenantHandle, name: str = "Flow high", **extra: Any) -> dict[str, Any]:
    body = {"name": name, "priority": "high", "spec": {"kind": "limit", "tag": FLOW, "hi": 90, "hihi": 110,
                                                       "deadband": 2}, **extra}  # fmt: skip
    r = tenant.engineer.post("/api/v1/alarms/conditions", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def alarm(api: Api, condition_id: int) -> dict[str, Any]:
    r = api.get(f"/api/v1/alarms/{condition_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def state_becomes(api: Api, condition_id: int, state: str) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def check() -> dict[str, Any] | None:
        last.update(alarm(api, condition_id))
        return dict(last) if last["state"] == state else None

    try:
        return dict(wait_for(check, what=f"state {state}"))
    except AssertionError:
        raise AssertionError(f"alarm {condition_id} never became {state}: {last}") from None


def journal(api: Api, condition_id: int) -> list[dict[str, Any]]:
    r = api.get("/api/v1/alarms/journal", params={"condition": condition_id, "start": time.time() - 3600})
    assert r.status_code == 200, r.text
    return list(r.json()["entries"])


def test_limit_alarm_raised_acknowledged_shelved_and_journaled(tenant: TenantHandle) -> None:
    tenant.build_plant()
    cond = limit_condition(tenant)
    operator, supervisor = tenant.users["operator"], tenant.users["supervisor"]
    with operator.stream() as stream:
        send(tenant, Flow=95.0)
        event = stream.next_of("event")
        while event.get("kind") != "alarm":
            event = stream.next_of("event")
        assert event["id"] == cond["id"] and event["state"] == "unack_active" and event["event"] == "activated"
        assert event["priority"] == "high" and event["severity"] == 700 and event["level"] == "hi"
        assert event["message"] == "Flow high: 95 (hi limit 90)"
    summary = operator.get("/api/v1/alarms").json()
    assert [a["id"] for a in summary] == [cond["id"]]

    r = operator.post(f"/api/v1/alarms/{cond['id']}/acknowledge", json={"comment": "operator on the way"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "ack_active" and r.json()["acked_by"] == "operator"
    assert operator.post(f"/api/v1/alarms/{cond['id']}/acknowledge").status_code == 409  # nothing left to ack

    send(tenant, Flow=120.0)  # worse: HiHi needs acknowledging again, with the higher priority
    a = state_becomes(operator, cond["id"], "unack_active")
    assert a["level"] == "hihi" and a["priority"] == "urgent"

    too_long = supervisor.post(f"/api/v1/alarms/{cond['id']}/shelve", json={"reason": "x", "duration_s": 9 * 3600})
    assert too_long.status_code == 422 and "maximum" in too_long.json()["detail"]
    r = supervisor.post(f"/api/v1/alarms/{cond['id']}/shelve", json={"reason": "sensor recalibration",
                                                                     "duration_s": 600})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "shelved" and r.json()["shelved_by"] == "supervisor"
    assert operator.get("/api/v1/alarms").json() == []  # shelved alarms leave the summary
    assert [a["id"] for a in operator.get("/api/v1/alarms", params={"state": "shelved"}).json()] == [cond["id"]]
    r = supervisor.post(f"/api/v1/alarms/{cond['id']}/unshelve", json={"comment": "done"})
    assert r.json()["state"] == "unack_active"  # still high: evaluated afresh, alarms anew
    send(tenant, Flow=50.0)
    state_becomes(operator, cond["id"], "unack_rtn")
    operator.post("/api/v1/alarms/acknowledge", json={"comment": "all clear"})  # all visible
    state_becomes(operator, cond["id"], "normal")

    entries = journal(operator, cond["id"])
    assert [e["event"] for e in entries] == [
        "activated", "acknowledged", "escalated", "shelved", "unshelved", "cleared", "acknowledged",
    ]  # fmt: skip
    assert entries[1]["user"] == "operator" and entries[1]["comment"] == "operator on the way"
    assert entries[3]["user"] == "supervisor" and entries[3]["comment"] == "sensor recalibration"
    assert entries[0]["value"] == 95.0 and entries[0]["from_state"] == "normal"
    assert entries[0]["to_state"] == "unack_active" and entries[0]["source"] == FLOW
    r = operator.get("/api/v1/alarms/journal", params={"condition": cond["id"], "format": "csv",
                                                       "start": time.time() - 3600})  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["event"] for row in rows] == [e["event"] for e in entries] and rows[1]["user"] == "operator"
    audit = tenant.admin.get("/api/v1/audit", params={"action": "alarm.shelve"})
    assert audit.status_code == 200, audit.text
    assert any(e["target"] == str(cond["id"]) and e["actor"] == "supervisor" for e in audit.json())


def test_kpis_count_what_the_journal_holds(tenant: TenantHandle) -> None:
    tenant.build_plant()
    cond = limit_condition(tenant, spec={"kind": "discrete", "tag": FLOW, "alarm_value": 1})
    operator = tenant.users["operator"]
    for _ in range(4):  # four activations within seconds: chattering
        send(tenant, Flow=1.0)
        state_becomes(operator, cond["id"], "unack_active")
        send(tenant, Flow=0.0)
        state_becomes(operator, cond["id"], "unack_rtn")
    end = time.time() + 1
    r = tenant.users["viewer"].get("/api/v1/alarms/kpis", params={"start": end - 600, "end": end})
    assert r.status_code == 200, r.text
    k = r.json()
    assert k["alarms"] == 4 and k["periods"] == 1 and k["flood_periods"] == 0
    assert k["most_frequent"] == [{"condition": cond["id"], "name": "Flow high", "count": 4}]
    assert [c["condition"] for c in k["chattering"]] == [cond["id"]]
    assert operator.get("/api/v1/alarms/kpis", params={"start": time.time(), "end": time.time() - 1}).status_code == 422


def test_roles_decide_who_may_handle_alarms(tenant: TenantHandle) -> None:
    tenant.build_plant()
    cond = limit_condition(tenant)
    send(tenant, Flow=95.0)
    viewer, operator = tenant.users["viewer"], tenant.users["operator"]
    state_becomes(viewer, cond["id"], "unack_active")
    assert viewer.post(f"/api/v1/alarms/{cond['id']}/acknowledge").status_code == 403
    shelve = {"reason": "r", "duration_s": 60}
    assert operator.post(f"/api/v1/alarms/{cond['id']}/shelve", json=shelve).status_code == 403
    assert operator.post(f"/api/v1/alarms/{cond['id']}/suppress", json={"reason": "r"}).status_code == 403
    body = {"name": "x", "spec": {"kind": "discrete", "tag": FLOW}}
    assert operator.post("/api/v1/alarms/conditions", json=body).status_code == 403
    assert tenant.users["supervisor"].post("/api/v1/alarms/conditions", json=body).status_code == 403
    r = operator.post("/api/v1/alarms/acknowledge", json={"ids": [cond["id"]], "comment": "seen"})
    assert r.status_code == 200 and r.json()["acknowledged"] == 1
    assert viewer.get("/api/v1/alarms").status_code == 200  # viewers may look


def test_one_tenant_never_sees_or_touches_anothers_alarms(tenant: TenantHandle, other_tenant: TenantHandle) -> None:
    tenant.build_plant()
    other_tenant.build_plant()
    cond = limit_condition(tenant)
    send(tenant, Flow=95.0)
    state_becomes(tenant.users["operator"], cond["id"], "unack_active")
    spy = other_tenant.admin
    assert spy.get("/api/v1/alarms").json() == []
    assert spy.get(f"/api/v1/alarms/{cond['id']}").status_code == 404
    assert spy.post(f"/api/v1/alarms/{cond['id']}/acknowledge").status_code == 404
    assert spy.post("/api/v1/alarms/acknowledge", json={"ids": [cond["id"]]}).status_code == 404
    assert spy.post(f"/api/v1/alarms/{cond['id']}/shelve", json={"reason": "r", "duration_s": 60}).status_code == 404
    assert spy.get(f"/api/v1/alarms/conditions/{cond['id']}").status_code == 404
    assert spy.put(f"/api/v1/alarms/conditions/{cond['id']}", json={"name": "x", "spec": {"kind": "discrete",
                   "tag": FLOW}}).status_code == 404  # fmt: skip
    assert spy.delete(f"/api/v1/alarms/conditions/{cond['id']}").status_code == 404
    assert spy.get("/api/v1/alarms/conditions").json() == []
    assert spy.get("/api/v1/alarms/journal", params={"condition": cond["id"]}).json()["entries"] == []
    assert spy.post("/api/v1/alarms/acknowledge", json={}).json()["acknowledged"] == 0  # "all" is its own only
    assert spy.get("/api/v1/alarms/kpis").json()["alarms"] == 0
    with spy.stream() as stream:  # its stream carries none of the other tenant's alarm events
        send(tenant, Flow=130.0)
        seen: list[dict[str, Any]] = []

        def read_all() -> None:
            while True:
                seen.append(stream.next(timeout=1.0))

        with pytest.raises(TimeoutError):
            read_all()
        assert [m for m in seen if m.get("kind") == "alarm"] == []
    # a condition can't point at another tenant's tag, by path or by node id
    r = tenant.engineer.post("/api/v1/nodes", json={"parent": DEVICE, "node_class": "tag", "browse_name": "Secret"})
    assert r.status_code == 201, r.text
    for ref in (f"{DEVICE}/Secret", r.json()["node_id"]):
        body = {"name": "steal", "spec": {"kind": "limit", "tag": ref, "hi": 1}}
        refused = other_tenant.engineer.post("/api/v1/alarms/conditions", json=body)
        assert refused.status_code == 422 and "not a node of this tenant" in refused.json()["detail"], refused.text
    assert alarm(tenant.admin, cond["id"])["acked"] is False  # untouched


def test_conditions_are_versioned_validated_and_audited(tenant: TenantHandle) -> None:
    tenant.build_plant()
    eng = tenant.engineer
    cond = limit_condition(tenant)
    assert cond["version"] == 1 and cond["problem"] is None
    bad = eng.post("/api/v1/alarms/conditions", json={"name": "y", "spec": {"kind": "limit", "tag": FLOW}})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    assert eng.post("/api/v1/alarms/conditions", json={**cond["config"]}).status_code == 409  # same name
    missing = {"name": "ghost", "spec": {"kind": "limit", "tag": f"{DEVICE}/Nope", "hi": 1}}
    assert eng.post("/api/v1/alarms/conditions", json=missing).status_code == 422
    # a command action needs something to carry it: this server has no MQTT (test_alarm_actions.py has)
    action = {"on": "activated", "kind": "command", "device": DEVICE, "command": "stop"}
    r = eng.post("/api/v1/alarms/conditions", json={**cond["config"], "name": "z", "actions": [action]})
    assert r.status_code == 422 and "no mqtt_url" in r.text, r.text
    changed = {**cond["config"], "spec": {**cond["config"]["spec"], "hi": 80}}
    r = eng.put(f"/api/v1/alarms/conditions/{cond['id']}", json=changed, params={"version": 1})
    assert r.status_code == 200 and r.json()["version"] == 2
    stale = eng.put(f"/api/v1/alarms/conditions/{cond['id']}", json=changed, params={"version": 1})
    assert stale.status_code == 409
    send(tenant, Flow=85.0)  # above the new limit of 80
    state_becomes(eng, cond["id"], "unack_active")
    audit = tenant.admin.get("/api/v1/audit")
    assert audit.status_code == 200, audit.text
    versions = {e["detail"].get("version") for e in audit.json()
                if e["action"].startswith("alarm.condition") and e["target"] == str(cond["id"])}  # fmt: skip
    assert versions == {1, 2}  # each version, with its configuration, is in the audit log
    assert eng.delete(f"/api/v1/alarms/conditions/{cond['id']}").status_code == 204
    assert eng.get(f"/api/v1/alarms/{cond['id']}").status_code == 404
    assert journal(eng, cond["id"])  # the journal outlives the condition


def test_delays_latch_reset_and_first_out(tenant: TenantHandle) -> None:
    tenant.build_plant()
    operator = tenant.users["operator"]
    delayed = limit_condition(tenant, "Delayed", spec={"kind": "limit", "tag": PRESSURE, "hi": 10, "on_delay_s": 0.6})
    tripped = limit_condition(tenant, "Trip", latch=True, group="pump7",
                              spec={"kind": "discrete", "tag": FLOW, "alarm_value": 1})  # fmt: skip
    second = limit_condition(tenant, "Trip 2", group="pump7", spec={"kind": "limit", "tag": PRESSURE, "hihi": 50})
    send(tenant, Pressure=12.0)
    time.sleep(0.2)
    assert alarm(operator, delayed["id"])["state"] == "normal"  # not yet: the on-delay runs
    send(tenant, Pressure=5.0)  # back before the delay ended: nothing happened
    time.sleep(0.7)
    assert alarm(operator, delayed["id"])["state"] == "normal"
    send(tenant, Pressure=12.0)
    state_becomes(operator, delayed["id"], "unack_active")

    send(tenant, Flow=1.0)
    first = state_becomes(operator, tripped["id"], "unack_active")
    assert first["first_out"] is True
    send(tenant, Pressure=60.0)
    assert state_becomes(operator, second["id"], "unack_active")["first_out"] is False
    send(tenant, Flow=0.0)  # the trip clears, but the latch holds it
    time.sleep(0.3)
    a = alarm(operator, tripped["id"])
    assert a["state"] == "unack_active" and a["latched"] is True
    r = operator.post(f"/api/v1/alarms/{tripped['id']}/reset", json={"comment": "pump inspected"})
    assert r.status_code == 200 and r.json()["state"] == "unack_rtn"
    assert operator.post(f"/api/v1/alarms/{tripped['id']}/reset").status_code == 409


def test_stale_data_and_device_offline(tenant: TenantHandle) -> None:
    tenant.build_plant()
    eng, operator = tenant.engineer, tenant.users["operator"]
    stale = limit_condition(tenant, "Flow silent", spec={"kind": "stale", "tag": FLOW, "timeout_s": 0.5})
    high = limit_condition(tenant)
    send(tenant, Flow=95.0)
    state_becomes(operator, high["id"], "unack_active")
    a = state_becomes(operator, stale["id"], "unack_active")  # nothing came for 0.5 s
    assert a["kind"] == "stale"
    send(tenant, Flow=96.0)
    state_becomes(operator, stale["id"], "unack_rtn")
    r = eng.put(f"/api/v1/devices/{DEVICE}/status", json={"status": "offline"})
    assert r.status_code == 200, r.text
    a = state_becomes(operator, high["id"], "suppressed")
    assert a["suppressed_reason"] == "device offline"
    eng.put(f"/api/v1/devices/{DEVICE}/status", json={"status": "online"})
    state_becomes(operator, high["id"], "unack_active")  # still high: alarms anew


def test_bad_requests_get_problem_documents(tenant: TenantHandle) -> None:
    tenant.build_plant()
    cond = limit_condition(tenant)
    sup = tenant.users["supervisor"]
    for path, body in [
        (f"/api/v1/alarms/{cond['id']}/shelve", {"reason": ""}),
        (f"/api/v1/alarms/{cond['id']}/shelve", {"reason": "r", "duration_s": -1}),
        (f"/api/v1/alarms/{cond['id']}/shelve", {"reason": "r", "extra": 1}),
        (f"/api/v1/alarms/{cond['id']}/suppress", {}),
        (f"/api/v1/alarms/{cond['id']}/out-of-service", {}),
    ]:
        r = sup.post(path, json=body)
        assert 400 <= r.status_code < 500, (path, body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json"), r.text
    one_shot = sup.post(f"/api/v1/alarms/{cond['id']}/shelve", json={"reason": "r"})
    assert one_shot.status_code == 409  # one-shot needs an active alarm
    assert sup.get("/api/v1/alarms", params={"state": "bogus"}).status_code == 422
    assert sup.get("/api/v1/alarms/999999").status_code == 404


def test_active_alarms_survive_a_restart(backend: str, tmp_path: Any) -> None:
    with database_url(backend, tmp_path) as url:
        settings = make_settings(tmp_path, url)
        first = LiveServer(settings).start()
        try:
            t = first.new_tenant()
            t.build_plant()
            cond = limit_condition(t)
            send(t, Flow=95.0)
            state_becomes(t.users["operator"], cond["id"], "unack_active")
            t.users["operator"].post(f"/api/v1/alarms/{cond['id']}/acknowledge", json={"comment": "seen"})
            t.users["supervisor"].post(f"/api/v1/alarms/{cond['id']}/shelve", json={"reason": "r", "duration_s": 1})
        finally:
            first.stop()
        second = LiveServer(settings, fresh=False).start()
        try:
            api = second.login(t.name, "operator", "operatoroperatoroperator")
            a = alarm(api, cond["id"])
            assert a["state"] == "shelved" and a["activations"] == 1 and a["acked_by"] == "operator"
            a = state_becomes(api, cond["id"], "unack_active")  # the shelve expired after the restart
            assert a["activations"] == 2 and a["condition"] is True
            events = [e["event"] for e in journal(api, cond["id"])]
            assert events == ["activated", "acknowledged", "shelved", "unshelved"]
        finally:
            second.stop()
