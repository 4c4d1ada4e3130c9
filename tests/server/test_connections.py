"""Field connections API: tenant-scoped, validated per kind, secrets write-only."""

from __future__ import annotations

from tests.support import LiveServer, TenantHandle


def test_connections_crud_masks_secrets_and_is_tenant_scoped(
    live: LiveServer, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    eng = tenant.engineer
    dead = "opc.tcp://127.0.0.1:9"  # nothing listens: the adapter just reports it offline
    config = {"endpoint": dead, "username": "plc", "password": "s3cret", "items": []}
    r = eng.post("/api/v1/connections", json={"kind": "opcua", "name": "plc1", "config": config})
    assert r.status_code == 201, r.text
    conn = r.json()
    assert conn["config"]["password"] == "********"
    assert (
        eng.post("/api/v1/connections", json={"kind": "teleport", "name": "x", "config": {}}).json()["field"] == "kind"
    )
    duplicate = {"kind": "opcua", "name": "plc1", "config": {"endpoint": dead}}
    assert eng.post("/api/v1/connections", json=duplicate).status_code == 409
    r = eng.post("/api/v1/connections", json={"kind": "modbus", "name": "m", "config": {"host": "127.0.0.1"}})
    assert r.status_code == 422 and r.json()["field"] == "config.device"
    r = eng.patch(
        f"/api/v1/connections/{conn['id']}",
        json={"enabled": False, "config": config | {"endpoint": "opc.tcp://10.0.0.1:4840", "password": "********"}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["enabled"] is False and r.json()["config"]["endpoint"] == "opc.tcp://10.0.0.1:4840"
    srv = live.server
    assert srv is not None
    stored = live.call(srv.connection_repo.get(conn_tenant(live, tenant), conn["id"]))
    assert stored.config["password"] == "s3cret"  # kept when sent back masked
    assert (
        tenant.users["viewer"]
        .post("/api/v1/connections", json={"kind": "opcua", "name": "v", "config": {"endpoint": dead}})
        .status_code
        == 403
    )
    assert [c["name"] for c in tenant.users["viewer"].get("/api/v1/connections").json()] == ["plc1"]
    other = other_tenant.admin
    assert other.get("/api/v1/connections").json() == []
    for method in ("GET", "PATCH", "DELETE"):
        kw = {"json": {"enabled": True}} if method == "PATCH" else {}
        assert other.request(method, f"/api/v1/connections/{conn['id']}", **kw).status_code == 404
    assert eng.delete(f"/api/v1/connections/{conn['id']}").status_code == 204
    actions = [e["action"] for e in tenant.admin.get("/api/v1/audit", params={"action": "connection."}).json()]
    assert actions == ["connection.delete", "connection.update", "connection.create"]
    assert all("s3cret" not in str(e["detail"]) for e in tenant.admin.get("/api/v1/audit").json())


def conn_tenant(live: LiveServer, tenant: TenantHandle) -> int:
    srv = live.server
    assert srv is not None
    found = live.call(srv.admin.tenants.by_name(tenant.name))
    return int(found.id)
