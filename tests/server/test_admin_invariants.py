"""Administration invariants: no privilege escalation, no half-made tenants, no lock-out,
no data resurfacing after deletion, and revocations that reach open streams."""

from __future__ import annotations

import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.support import SYSTEM_PASSWORD, LiveServer, TenantHandle


def test_roles_manage_is_not_a_master_key(live: LiveServer, tenant: TenantHandle) -> None:
    admin = tenant.admin
    assert (
        admin.post(
            "/api/v1/roles", json={"name": "role-admin", "permissions": ["roles.manage", "namespace.read"]}
        ).status_code
        == 201
    )
    assert (
        admin.post(
            "/api/v1/users", json={"username": "ra", "password": "role-admin-pw", "roles": ["role-admin"]}
        ).status_code
        == 201
    )
    ra = live.login(tenant.name, "ra", "role-admin-pw")
    r = ra.post("/api/v1/roles", json={"name": "mine", "permissions": ["users.manage"]})
    assert r.status_code == 403 and "users.manage" in r.json()["detail"]
    r = ra.patch("/api/v1/roles/role-admin", json={"permissions": ["roles.manage", "namespace.read", "users.manage"]})
    assert r.status_code == 403
    assert ra.get("/api/v1/users").status_code == 403
    assert ra.post("/api/v1/roles", json={"name": "reader", "permissions": ["namespace.read"]}).status_code == 201


def test_a_tenant_admin_cannot_take_over_a_system_admin(live: LiveServer) -> None:
    system = live.system()
    me = system.get("/api/v1/auth/me").json()
    name = f"deputy{time.time_ns()}"
    assert (
        system.post("/api/v1/users", json={"username": name, "password": "deputy-pass", "roles": ["admin"]}).status_code
        == 201
    )
    deputy = live.login("system", name, "deputy-pass")
    r = deputy.patch(f"/api/v1/users/{me['user_id']}", json={"password": "taken-over"})
    assert r.status_code == 403
    assert deputy.delete(f"/api/v1/users/{me['user_id']}").status_code == 403
    assert live.login("system", "root", SYSTEM_PASSWORD)  # still the old password


def test_a_failed_tenant_creation_leaves_nothing_behind(live: LiveServer) -> None:
    system = live.system()
    name = f"half{time.time_ns()}"
    r = system.post(
        "/api/v1/tenants", json={"name": name, "admin_username": " padded", "admin_password": "long-enough"}
    )
    assert r.status_code == 422 and r.json()["field"] == "admin_username"
    r = system.post("/api/v1/tenants", json={"name": name, "admin_username": "admin", "admin_password": "short"})
    assert r.status_code == 422 and r.json()["field"] == "admin_password"
    assert name not in [t["name"] for t in system.get("/api/v1/tenants").json()]
    r = system.post("/api/v1/tenants", json={"name": name, "admin_username": "admin", "admin_password": "long-enough"})
    assert r.status_code == 201
    r = system.post("/api/v1/tenants", json={"name": name, "admin_username": "admin", "admin_password": "long-enough"})
    assert r.status_code == 409 and r.json()["title"] == "Conflict"


def test_last_user_administrator_is_protected(live: LiveServer, tenant: TenantHandle) -> None:
    admin = tenant.admin
    me = admin.get("/api/v1/auth/me").json()
    r = admin.patch(f"/api/v1/users/{me['user_id']}", json={"roles": ["viewer"]})
    assert r.status_code == 409
    r = admin.patch(f"/api/v1/users/{me['user_id']}", json={"is_active": False})
    assert r.status_code == 409
    # A custom role carrying users.manage can't be emptied when it is the last one that does.
    admin.post("/api/v1/roles", json={"name": "useradmin", "permissions": ["users.manage", "namespace.read"]})
    admin.post("/api/v1/users", json={"username": "ua", "password": "useradmin-pw", "roles": ["useradmin"]})
    users = {u["username"]: u["id"] for u in admin.get("/api/v1/users").json()}
    ua = live.login(tenant.name, "ua", "useradmin-pw")
    assert (
        ua.patch(f"/api/v1/users/{users['admin']}", json={"is_active": False}).status_code == 403
    )  # a lesser administrator cannot act on a stronger one
    assert admin.patch(f"/api/v1/users/{users['ua']}", json={"roles": ["useradmin"]}).status_code == 200
    assert admin.delete(f"/api/v1/users/{users['ua']}").status_code == 204


def test_roles_held_by_api_keys_cannot_be_deleted(live: LiveServer, tenant: TenantHandle) -> None:
    admin = tenant.admin
    assert admin.post("/api/v1/roles", json={"name": "gateway", "permissions": ["telemetry.write"]}).status_code == 201
    key = admin.post("/api/v1/api-keys", json={"name": "gw", "roles": ["gateway"]}).json()
    r = admin.delete("/api/v1/roles/gateway")
    assert r.status_code == 409 and "gw" in r.json()["detail"]
    admin.delete(f"/api/v1/api-keys/{key['id']}")
    assert admin.delete("/api/v1/roles/gateway").status_code == 204


def test_api_key_expiry_without_zone_is_utc_and_use_is_recorded(live: LiveServer, tenant: TenantHandle) -> None:
    r = tenant.admin.post(
        "/api/v1/api-keys", json={"name": "naive", "roles": ["viewer"], "expires_at": "2099-01-01T00:00:00"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["expires_at"].startswith("2099-01-01T00:00:00")
    r2 = tenant.admin.post(
        "/api/v1/api-keys", json={"name": "past", "roles": ["viewer"], "expires_at": "2001-01-01T00:00:00"}
    )
    assert r2.status_code == 422 and r2.json()["field"] == "expires_at"
    assert live.client(api_key=r.json()["key"]).get("/api/v1/nodes").status_code == 200
    listed = tenant.admin.get("/api/v1/api-keys").json()
    assert listed[0]["last_used_at"] is not None


def test_disabling_a_user_ends_their_open_stream(live: LiveServer, tenant: TenantHandle) -> None:
    users = {u["username"]: u["id"] for u in tenant.admin.get("/api/v1/users").json()}
    with tenant.users["viewer"].stream() as s:
        assert tenant.admin.patch(f"/api/v1/users/{users['viewer']}", json={"is_active": False}).status_code == 200
        with pytest.raises(ConnectionClosed) as closed:  # noqa: PT012 - heartbeats until the cache (5 s) lets it through
            for _ in range(20):
                s.next(timeout=8)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


def test_revoking_an_api_key_ends_its_open_stream(live: LiveServer, tenant: TenantHandle) -> None:
    from websockets.sync.client import connect

    key = tenant.admin.post("/api/v1/api-keys", json={"name": "screen", "roles": ["viewer"]}).json()
    with connect(live.ws_url, additional_headers={"X-API-Key": key["key"]}) as ws:
        assert "hello" in ws.recv(5)
        tenant.admin.delete(f"/api/v1/api-keys/{key['id']}")
        with pytest.raises(ConnectionClosed) as closed:  # noqa: PT012 - read until the stream is closed
            for _ in range(10):
                ws.recv(5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


def test_history_of_a_deleted_tag_never_reappears(
    live: LiveServer, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    ids = tenant.build_plant()
    t0 = time.time() - 100
    batch = [{"device": ids["Pump7"], "ts": t0 + i, "values": {"Flow": 1.0}} for i in range(50)]
    assert tenant.engineer.post("/api/v1/telemetry", json=batch).status_code == 201
    assert tenant.engineer.delete(f"/api/v1/nodes/{ids['Plant1']}").status_code == 204
    fresh = other_tenant.build_plant()  # new ids, possibly right after the deleted ones
    for tag in ("Flow", "Pressure"):
        h = other_tenant.users["viewer"].get("/api/v1/history", params={"node": fresh[tag], "start": t0 - 10}).json()
        assert h["count"] == 0, h
        assert (
            other_tenant.users["viewer"].get("/api/v1/values", params={"node": fresh[tag]}).json()[0]["value"] is None
        )


def test_unauthenticated_login_attempt_on_missing_tenant_is_audited_nowhere_else(live: LiveServer) -> None:
    r = httpx.post(live.base + "/api/v1/auth/login", json={"tenant": "ghost", "username": "a", "password": "b"})
    assert r.status_code == 401
