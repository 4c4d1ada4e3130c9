"""Notifications against real receivers: an aiosmtpd SMTP server and an HTTP server on
loopback that checks each webhook's signature. SSRF attempts must be refused with no request
sent. Both backends, like every database-backed suite."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.notify_support import SECRET, Mailbox, Receiver
from tests.support import TenantHandle, wait_for

DEVICE = "Plant1/Area1/Pump7"
FLOW = f"{DEVICE}/Flow"


def setup_channels(tenant: TenantHandle, smtp_port: int, receiver: Receiver) -> None:
    eng = tenant.engineer
    assert eng.put("/api/v1/notifications/allowlist", json={"allowlist": ["127.0.0.1"]}).status_code == 200
    mail = {"channel": {"kind": "email", "host": "127.0.0.1", "port": smtp_port, "security": "none",
                        "sender": "scada@plant.example", "recipients": ["ops@plant.example"]}}  # fmt: skip
    assert eng.put("/api/v1/notifications/channels/mail", json=mail).status_code == 200
    hook = {"channel": {"kind": "webhook", "url": receiver.url(), "secret": SECRET}}
    r = eng.put("/api/v1/notifications/channels/hook", json=hook)
    assert r.status_code == 200, r.text
    assert r.json()["channel"]["secret"] == "********"  # never shown back


def condition(tenant: TenantHandle, notify: list[str], **spec: Any) -> int:
    body = {"name": f"Flow high {time.time_ns()}", "priority": "high", "notify": notify,
            "spec": {"kind": "limit", "tag": FLOW, "hi": 90, **spec}}  # fmt: skip
    r = tenant.engineer.post("/api/v1/alarms/conditions", json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def send(tenant: TenantHandle, value: float) -> None:
    r = tenant.engineer.post("/api/v1/telemetry", json={"device": DEVICE, "ts": time.time(), "values": {"Flow": value}})
    assert r.status_code in (200, 201, 202), r.text


def test_an_alarm_is_mailed_and_posted_signed_once_per_episode(
    tenant: TenantHandle, smtp: tuple[Mailbox, int], receiver: Receiver
) -> None:
    box, port = smtp
    tenant.build_plant()
    setup_channels(tenant, port, receiver)
    before = len(box.to("ops@plant.example"))
    cid = condition(tenant, ["mail", "hook"])
    send(tenant, 95.0)
    wait_for(lambda: len(box.to("ops@plant.example")) > before and receiver.requests, what="email and webhook")
    mail = box.to("ops@plant.example")[-1]
    assert mail["Subject"].startswith("[HIGH] ") and mail["From"] == "scada@plant.example"
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in mail.walk() if not p.is_multipart()}
    assert "Flow" in parts["text/plain"] and "#d35400" in parts["text/html"]  # the severity colour
    hook = receiver.requests[0]
    assert hook["valid"] and hook["fresh"] and hook["path"] == "/hook"
    assert hook["host"] == f"127.0.0.1:{receiver.port}"
    payload = json.loads(hook["body"])
    assert payload["type"] == "alarm" and payload["alarm"]["id"] == cid and payload["alarm"]["state"] == "unack_active"

    send(tenant, 97.0)  # same episode: nothing new
    time.sleep(0.5)
    assert len(receiver.requests) == 1 and len(box.to("ops@plant.example")) == before + 1
    send(tenant, 50.0)
    send(tenant, 96.0)  # cleared and raised again: a new episode, notified again
    wait_for(lambda: len(receiver.requests) == 2, what="the second episode's webhook")
    log = tenant.users["operator"].get("/api/v1/notifications/deliveries", params={"condition": cid}).json()
    assert {(d["route"], d["episode"], d["outcome"]) for d in log} == {
        ("mail", 1, "sent"), ("hook", 1, "sent"), ("mail", 2, "sent"), ("hook", 2, "sent"),
    }  # fmt: skip


def test_escalation_on_call_and_preferences(
    tenant: TenantHandle, smtp: tuple[Mailbox, int], receiver: Receiver
) -> None:
    box, port = smtp
    tenant.build_plant()
    setup_channels(tenant, port, receiver)
    eng = tenant.engineer
    for role in ("operator", "supervisor", "admin", "viewer"):
        prefs = {"email": f"{role}-{tenant.name}@plant.example"}
        assert tenant.users[role].put("/api/v1/notifications/preferences", json=prefs).status_code == 200
    tenant.users["viewer"].put("/api/v1/notifications/preferences", json={"enabled": False})
    now = time.time()
    schedule = {
        "members": ["operator", "supervisor"],
        "start_ts": now - 7 * 86_400 - 60,
        "period_s": 7 * 86_400,
        "overrides": [],
    }  # fmt: skip  (week 1 of the rotation: the supervisor)
    assert eng.put("/api/v1/notifications/schedules/primary", json=schedule).status_code == 200
    r = eng.get("/api/v1/notifications/schedules/primary/on-call")
    assert r.json()["user"] == "supervisor"
    policy = {"email_channel": "mail", "steps": [
        {"after_s": 0, "targets": ["oncall:primary", "user:viewer"]},
        {"after_s": 1.0, "targets": ["user:admin"], "priority": "urgent"},
    ]}  # fmt: skip
    assert eng.put("/api/v1/notifications/policies/ops", json=policy).status_code == 200

    cid = condition(tenant, ["ops"])
    send(tenant, 95.0)
    sup, adm = f"supervisor-{tenant.name}@plant.example", f"admin-{tenant.name}@plant.example"
    wait_for(lambda: box.to(sup), what="the on-call supervisor's email")
    assert box.to(f"viewer-{tenant.name}@plant.example") == []  # opted out
    assert box.to(adm) == []  # step 2 only after 1 s unacknowledged
    wait_for(lambda: box.to(adm), what="the escalation to the admin")
    assert box.to(adm)[0]["Subject"].startswith("[URGENT] ")

    # acknowledged in time: the escalation stops at step 1
    schedule["overrides"] = [{"user": "operator", "from_ts": now - 60, "to_ts": now + 3600}]
    eng.put("/api/v1/notifications/schedules/primary", json=schedule)
    send(tenant, 50.0)
    tenant.users["operator"].post("/api/v1/alarms/acknowledge", json={})
    op = f"operator-{tenant.name}@plant.example"
    admin_mails = len(box.to(adm))
    send(tenant, 96.0)
    wait_for(lambda: box.to(op), what="the override's email")
    r = tenant.users["operator"].post(f"/api/v1/alarms/{cid}/acknowledge")
    assert r.status_code == 200, r.text
    time.sleep(1.5)
    assert len(box.to(adm)) == admin_mails


def test_a_failing_receiver_is_retried_with_backoff(tenant: TenantHandle, smtp: tuple[Mailbox, int],
                                                    receiver: Receiver) -> None:  # fmt: skip
    tenant.build_plant()
    setup_channels(tenant, smtp[1], receiver)
    receiver.plan = [(500, {}), (503, {})]
    started = time.monotonic()
    r = tenant.engineer.post("/api/v1/notifications/channels/hook/test")
    assert r.status_code == 200, r.text
    attempts = r.json()["attempts"]
    assert [(a["outcome"], a["status"]) for a in attempts] == [("failed", 500), ("failed", 503), ("sent", 200)]
    assert time.monotonic() - started >= 3.0  # waited 1 s, then 2 s
    assert all(req["valid"] for req in receiver.requests)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
        "http://[::1]:{port}/hook",
        "http://localhost:{port}/hook",
        "http://127.0.0.2:{port}/hook",
    ],  # fmt: skip
)
def test_ssrf_targets_are_refused_and_nothing_is_sent(tenant: TenantHandle, receiver: Receiver, url: str) -> None:
    eng = tenant.engineer
    eng.put("/api/v1/notifications/allowlist", json={"allowlist": []})
    hook = {"channel": {"kind": "webhook", "url": url.format(port=receiver.port), "secret": SECRET}}
    assert eng.put("/api/v1/notifications/channels/evil", json=hook).status_code == 200
    r = eng.post("/api/v1/notifications/channels/evil/test")
    attempts = r.json()["attempts"]
    assert len(attempts) == 1 and attempts[0]["outcome"] == "refused", attempts
    assert receiver.requests == []


def test_a_redirect_to_a_private_address_is_refused(tenant: TenantHandle, receiver: Receiver) -> None:
    eng = tenant.engineer
    eng.put("/api/v1/notifications/allowlist", json={"allowlist": ["127.0.0.1"]})
    receiver.plan = [(302, {"Location": "http://10.0.0.1/steal"})]
    hook = {"channel": {"kind": "webhook", "url": receiver.url(), "secret": SECRET}}
    eng.put("/api/v1/notifications/channels/redirected", json=hook)
    attempts = eng.post("/api/v1/notifications/channels/redirected/test").json()["attempts"]
    assert attempts[-1]["outcome"] == "refused" and "10.0.0.1" in attempts[-1]["detail"]
    assert len(receiver.requests) == 1  # only the allowed first hop


def test_set_up_needs_the_right_role_and_stays_in_its_tenant(
    tenant: TenantHandle, other_tenant: TenantHandle, smtp: tuple[Mailbox, int], receiver: Receiver
) -> None:
    setup_channels(tenant, smtp[1], receiver)
    hook = {"channel": {"kind": "webhook", "url": receiver.url(), "secret": SECRET}}
    assert tenant.users["operator"].put("/api/v1/notifications/channels/x", json=hook).status_code == 403
    assert tenant.users["supervisor"].get("/api/v1/notifications/channels").status_code == 403
    bad = {"channel": {"kind": "webhook", "url": receiver.url(), "secret": "short"}}
    r = tenant.engineer.put("/api/v1/notifications/channels/x", json=bad)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    spy = other_tenant.admin
    assert spy.get("/api/v1/notifications/channels").json() == []
    assert spy.get("/api/v1/notifications/channels/hook").status_code == 404
    assert spy.post("/api/v1/notifications/channels/hook/test").json()["attempts"][0]["outcome"] == "failed"
    assert spy.get("/api/v1/notifications/allowlist").json() == {"allowlist": []}
    assert spy.get("/api/v1/notifications/deliveries").json() == []
    assert receiver.requests == []
    # a masked secret sent back keeps the stored one
    current = tenant.engineer.get("/api/v1/notifications/channels/hook").json()
    assert tenant.engineer.put("/api/v1/notifications/channels/hook", json=current).status_code == 200
    tenant.engineer.post("/api/v1/notifications/channels/hook/test")
    assert receiver.requests and receiver.requests[-1]["valid"]
