"""Login, refresh rotation and reuse detection, logout, API keys, brute-force limit, audit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import LiveServer, TenantHandle, database_url, make_settings

LOGIN = "/api/v1/auth/login"


def test_login_returns_the_documented_tokens(live: LiveServer, tenant: TenantHandle) -> None:
    r = httpx.post(live.base + LOGIN, json={"tenant": tenant.name, "username": "operator", "password": "operator" * 3})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    me = live.client(body["access_token"]).get("/api/v1/auth/me").json()
    assert me["tenant"] == tenant.name and me["username"] == "operator" and me["roles"] == ["operator"]
    assert "alarms.ack" in me["permissions"] and "users.manage" not in me["permissions"]


@pytest.mark.parametrize(
    ("tenant_name", "username", "password"),
    [("right", "operator", "wrong-password"), ("right", "nobody", "whatever1"), ("no-such-tenant", "operator", "x")],
)
def test_failed_login_is_401_and_audited(
    live: LiveServer, tenant: TenantHandle, tenant_name: str, username: str, password: str
) -> None:
    name = tenant.name if tenant_name == "right" else tenant_name
    r = httpx.post(live.base + LOGIN, json={"tenant": name, "username": username, "password": password})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "invalid tenant, username or password"  # no hint which part was wrong
    if tenant_name == "right":
        entries = tenant.admin.get("/api/v1/audit", params={"action": "auth.login"}).json()
        assert any(not e["success"] and e["actor"] == username for e in entries)


def test_refresh_rotates_and_reuse_revokes_the_session(live: LiveServer, tenant: TenantHandle) -> None:
    first = httpx.post(
        live.base + LOGIN, json={"tenant": tenant.name, "username": "viewer", "password": "viewer" * 3}
    ).json()
    r = httpx.post(live.base + "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert live.client(second["access_token"]).get("/api/v1/auth/me").status_code == 200
    # The old token comes back (stolen copy): refused, and the whole family is revoked.
    r = httpx.post(live.base + "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 401 and "already used" in r.json()["detail"]
    r = httpx.post(live.base + "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert r.status_code == 401
    assert httpx.post(live.base + "/api/v1/auth/refresh", json={"refresh_token": "made-up"}).status_code == 401


def test_logout_revokes_the_refresh_token(live: LiveServer, tenant: TenantHandle) -> None:
    pair = httpx.post(
        live.base + LOGIN, json={"tenant": tenant.name, "username": "viewer", "password": "viewer" * 3}
    ).json()
    api = live.client(pair["access_token"])
    assert api.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]}).status_code == 204
    r = httpx.post(live.base + "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert r.status_code == 401


@pytest.mark.parametrize("header", [{}, {"Authorization": "Bearer nonsense"}, {"X-API-Key": "iiot_0123456789ab_x"}])
def test_unauthenticated_requests_are_401(live: LiveServer, header: dict[str, str]) -> None:
    r = httpx.get(live.base + "/api/v1/nodes", headers=header)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


def test_token_of_a_disabled_user_stops_working(live: LiveServer, tenant: TenantHandle) -> None:
    users = {u["username"]: u for u in tenant.admin.get("/api/v1/users").json()}
    r = tenant.admin.patch(f"/api/v1/users/{users['viewer']['id']}", json={"is_active": False})
    assert r.status_code == 200
    import time

    time.sleep(5.1)  # principals are cached for 5 s
    assert tenant.users["viewer"].get("/api/v1/nodes").status_code == 401


def test_api_keys_work_are_shown_once_and_can_be_revoked(live: LiveServer, tenant: TenantHandle) -> None:
    tenant.build_plant()
    r = tenant.admin.post("/api/v1/api-keys", json={"name": "gateway-1", "roles": ["engineer"]})
    assert r.status_code == 201
    created = r.json()
    key = created["key"]
    assert key.startswith("iiot_") and created["prefix"] in key
    listed = tenant.admin.get("/api/v1/api-keys").json()
    assert [k["name"] for k in listed] == ["gateway-1"] and "key" not in listed[0]
    machine = live.client(api_key=key)
    r = machine.post("/api/v1/telemetry", json={"device": "Plant1/Area1/Pump7", "values": {"Flow": 2.0}})
    assert r.status_code == 201, r.text
    assert machine.get("/api/v1/auth/me").json()["username"] == "apikey:gateway-1"
    assert tenant.admin.delete(f"/api/v1/api-keys/{created['id']}").status_code == 204
    assert machine.get("/api/v1/nodes").status_code == 401
    audit = [e["action"] for e in tenant.admin.get("/api/v1/audit").json()]
    assert "apikey.create" in audit and "apikey.revoke" in audit


def test_api_key_cannot_exceed_its_creator(live: LiveServer, tenant: TenantHandle) -> None:
    r = tenant.admin.post(
        "/api/v1/roles", json={"name": "keymaster", "permissions": ["apikeys.manage", "namespace.read"]}
    )
    assert r.status_code == 201
    r = tenant.admin.post("/api/v1/users", json={"username": "km", "password": "keymaster1", "roles": ["keymaster"]})
    assert r.status_code == 201
    km = live.login(tenant.name, "km", "keymaster1")
    r = km.post("/api/v1/api-keys", json={"name": "too-strong", "roles": ["admin"]})
    assert r.status_code == 403
    assert km.post("/api/v1/api-keys", json={"name": "ok", "roles": ["keymaster"]}).status_code == 201


def test_user_and_role_changes_are_audited(live: LiveServer, tenant: TenantHandle) -> None:
    tenant.admin.post("/api/v1/roles", json={"name": "shift-lead", "permissions": ["alarms.ack", "namespace.read"]})
    r = tenant.admin.post(
        "/api/v1/users", json={"username": "sam", "password": "sam-password", "roles": ["viewer", "shift-lead"]}
    )
    assert r.status_code == 201
    assert set(r.json()["roles"]) == {"viewer", "shift-lead"}
    tenant.admin.patch(f"/api/v1/users/{r.json()['id']}", json={"password": "new-password"})
    entries = tenant.admin.get("/api/v1/audit").json()
    actions = {(e["action"], e["target"]) for e in entries}
    assert {("role.create", "shift-lead"), ("user.create", "sam"), ("user.update", "sam")} <= actions
    assert all("new-password" not in str(e["detail"]) for e in entries)


@pytest.fixture(scope="module")
def strict_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp: Path = tmp_path_factory.mktemp("strict")
    with database_url("sqlite", tmp) as url:
        server = LiveServer(make_settings(tmp, url, login_max_failures=5, login_failure_window_s=60)).start()
        yield server
        server.stop()


def test_brute_force_limit_answers_429_with_retry_after(strict_live: LiveServer) -> None:
    tenant = strict_live.new_tenant()
    body = {"tenant": tenant.name, "username": "operator", "password": "wrong-password"}
    statuses = [httpx.post(strict_live.base + LOGIN, json=body).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    r = httpx.post(strict_live.base + LOGIN, json=body | {"password": "operator" * 3})
    assert r.status_code == 429  # even the right password waits: the account is under attack
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.json()["status"] == 429
