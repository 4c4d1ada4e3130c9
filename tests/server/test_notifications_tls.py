"""Email over TLS against real aiosmtpd relays that insist on it: STARTTLS on the submission
port and implicit TLS (SMTPS), both with a login, both presenting a throwaway self-signed
certificate. The certificate must be refused unless the channel trusts it (`tls_ca_pem`) or
is told not to verify (`verify_tls: false`); a wrong password is a failed delivery with its
reason in the log, tried once, never a crash."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.notify_support import SMTP_PASSWORD, SMTP_USER, Certificate, TlsSmtp, self_signed
from tests.support import TenantHandle, free_port, wait_for

FLOW = "Plant1/Area1/Pump7/Flow"


@pytest.fixture(scope="module")
def cert() -> Certificate:
    return self_signed(("127.0.0.1", "localhost"))


@pytest.fixture(scope="module")
def starttls(cert: Certificate) -> Iterator[TlsSmtp]:
    server = TlsSmtp("starttls", cert, free_port()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def smtps(cert: Certificate) -> Iterator[TlsSmtp]:
    server = TlsSmtp("tls", cert, free_port()).start()
    try:
        yield server
    finally:
        server.stop()


def channel(tenant: TenantHandle, name: str, server: TlsSmtp, **overrides: Any) -> dict[str, Any]:
    body = {"kind": "email", "host": "127.0.0.1", "port": server.port, "security": server.mode,
            "username": SMTP_USER, "password": SMTP_PASSWORD, "sender": "scada@plant.example",
            "recipients": [f"{name}-{tenant.name}@plant.example"], "tls_ca_pem": server.cert.cert_pem,
            **overrides}  # fmt: skip
    r = tenant.engineer.put(f"/api/v1/notifications/channels/{name}", json={"channel": body})
    assert r.status_code == 200, r.text
    return dict(r.json()["channel"])


def send_test(tenant: TenantHandle, name: str) -> list[dict[str, Any]]:
    r = tenant.engineer.post(f"/api/v1/notifications/channels/{name}/test")
    assert r.status_code == 200, r.text
    return list(r.json()["attempts"])


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_tls_with_login_delivers_when_the_certificate_is_trusted(
    tenant: TenantHandle, starttls: TlsSmtp, smtps: TlsSmtp, mode: str
) -> None:
    server = starttls if mode == "starttls" else smtps
    shown = channel(tenant, "relay", server)
    assert shown["password"] == "********" and shown["tls_ca_pem"] == server.cert.cert_pem
    attempts = send_test(tenant, "relay")
    assert [a["outcome"] for a in attempts] == ["sent"], attempts
    mails = server.box.to(f"relay-{tenant.name}@plant.example")
    assert len(mails) == 1 and mails[0]["Subject"].startswith("[LOW] Test from engineer")
    assert server.logins[-1].endswith(":ok")


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_the_self_signed_certificate_is_refused_unless_trusted_or_unverified(
    tenant: TenantHandle, starttls: TlsSmtp, smtps: TlsSmtp, mode: str
) -> None:
    server = starttls if mode == "starttls" else smtps
    to = f"relay-{tenant.name}@plant.example"
    channel(tenant, "relay", server, tls_ca_pem=None)  # the system's CAs: they don't know this one
    logins = len(server.logins)
    attempts = send_test(tenant, "relay")
    assert len(attempts) == 1 and attempts[0]["outcome"] == "failed", attempts  # final: not retried
    assert "TLS certificate not trusted" in attempts[0]["detail"] and "self-signed" in attempts[0]["detail"]
    assert server.box.to(to) == [] and len(server.logins) == logins  # the password never went out

    channel(tenant, "relay", server, tls_ca_pem=self_signed(("127.0.0.1",)).cert_pem)  # some other CA
    attempts = send_test(tenant, "relay")
    assert len(attempts) == 1 and "TLS certificate not trusted" in attempts[0]["detail"], attempts

    channel(tenant, "relay", server, tls_ca_pem=None, verify_tls=False)  # a lab relay, knowingly
    assert [a["outcome"] for a in send_test(tenant, "relay")] == ["sent"]
    assert len(server.box.to(to)) == 1


def test_a_trusted_certificate_for_another_name_is_still_refused(tenant: TenantHandle) -> None:
    """Trusting a CA does not switch the host name check off."""
    cert = self_signed(("mail.plant.example",))
    server = TlsSmtp("starttls", cert, free_port()).start()
    try:
        channel(tenant, "relay", server)
        attempts = send_test(tenant, "relay")
    finally:
        server.stop()
    assert len(attempts) == 1 and "TLS certificate not trusted" in attempts[0]["detail"], attempts
    assert "mismatch" in attempts[0]["detail"]


def test_a_wrong_password_is_a_logged_failure_with_its_reason(tenant: TenantHandle, starttls: TlsSmtp) -> None:
    tenant.build_plant()
    channel(tenant, "relay", starttls, password="not-the-password")
    attempts = send_test(tenant, "relay")
    assert len(attempts) == 1 and attempts[0]["outcome"] == "failed", attempts  # one try: no account lock-out
    assert attempts[0]["detail"].startswith("login refused by the server: 535"), attempts

    # the same through an alarm: the delivery log says why, the server carries on
    r = tenant.engineer.post("/api/v1/alarms/conditions", json={
        "name": "Flow high", "priority": "high", "notify": ["relay"],
        "spec": {"kind": "limit", "tag": FLOW, "hi": 90}})  # fmt: skip
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    r = tenant.engineer.post("/api/v1/telemetry", json={"device": "Plant1/Area1/Pump7", "ts": time.time(),
                                                         "values": {"Flow": 95.0}})  # fmt: skip
    assert r.status_code == 201, r.text
    operator = tenant.users["operator"]
    log = wait_for(lambda: operator.get("/api/v1/notifications/deliveries", params={"condition": cid}).json(),
                   what="the delivery log")  # fmt: skip
    assert [(d["route"], d["outcome"]) for d in log] == [("relay", "failed")]
    assert "login refused by the server: 535" in log[0]["detail"]
    assert starttls.box.to(f"relay-{tenant.name}@plant.example") == []
    assert operator.get(f"/api/v1/alarms/{cid}").json()["state"] == "unack_active"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tls_ca_pem": "-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n"}, "not a PEM"),
        ({"tls_ca_pem": "just text"}, "not a PEM"),
        ({"verify_tls": False}, "verify_tls"),
        ({"security": "none", "tls_ca_pem": None}, "never sent in clear"),
    ],
)
def test_tls_settings_are_checked_on_write(
    tenant: TenantHandle, cert: Certificate, overrides: dict[str, Any], message: str
) -> None:
    body = {"kind": "email", "host": "mail.plant.example", "sender": "scada@plant.example",
            "username": SMTP_USER, "password": SMTP_PASSWORD, "tls_ca_pem": cert.cert_pem, **overrides}  # fmt: skip
    r = tenant.engineer.put("/api/v1/notifications/channels/relay", json={"channel": body})
    assert r.status_code == 422 and message in r.text, r.text
