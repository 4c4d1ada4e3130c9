"""The namespace tree: browse, create, rename, move (node ids stay), delete with history."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

import pytest

from server.domain.namespace import Node
from tests.support import LiveServer, TenantHandle


def test_browse_like_an_address_space(live: LiveServer, tenant: TenantHandle) -> None:
    ids = tenant.build_plant()
    viewer = tenant.users["viewer"]
    root = viewer.get("/api/v1/nodes").json()
    assert [(n["node_id"], n["node_class"], n["has_children"]) for n in root] == [("ns=2;s=Plant1", "folder", True)]
    kids = viewer.get("/api/v1/nodes", params={"parent": ids["Pump7"]}).json()
    assert [n["browse_name"] for n in kids] == ["Flow", "Pressure"]
    assert all(n["node_class"] == "tag" and n["data_type"] == "Double" for n in kids)
    by_path = viewer.get("/api/v1/nodes", params={"parent": "Plant1/Area1/Pump7"}).json()
    assert by_path == kids
    node = viewer.get("/api/v1/nodes/" + quote(ids["Flow"], safe="/")).json()
    assert node["path"] == "Plant1/Area1/Pump7/Flow" and node["parent_path"] == "Plant1/Area1/Pump7"
    device = viewer.get("/api/v1/devices").json()
    assert [(d["node_id"], d["status"]) for d in device] == [(ids["Pump7"], "unknown")]


def test_create_validates_structure_and_names(live: LiveServer, tenant: TenantHandle) -> None:
    tenant.build_plant()
    eng = tenant.engineer
    cases = [
        ({"node_class": "tag", "browse_name": "Loose"}, 422, "parent"),
        ({"parent": "Plant1/Area1/Pump7/Flow", "node_class": "tag", "browse_name": "X"}, 422, "parent"),
        ({"parent": "Plant1", "node_class": "folder", "browse_name": "a/b"}, 422, "browse_name"),
        ({"parent": "Plant1", "node_class": "folder", "browse_name": "Area1"}, 409, "browse_name"),
        ({"parent": "Plant1/Nope", "node_class": "folder", "browse_name": "X"}, 404, "node"),
        ({"parent": "Plant1/Area1/Pump7", "node_class": "tag", "browse_name": "T", "range_low": 5, "range_high": 1},
         422, "range_low"),
        ({"parent": "Plant1", "node_class": "gizmo", "browse_name": "X"}, 422, "node_class"),
    ]  # fmt: skip
    for body, status, field in cases:
        r = eng.post("/api/v1/nodes", json=body)
        assert (r.status_code, r.json().get("field")) == (status, field), (body, r.text)
    r = eng.post(
        "/api/v1/nodes",
        json={"parent": "Plant1/Area1/Pump7", "node_class": "tag", "browse_name": "Temp", "unit": "°C",
              "data_type": "Float", "range_low": -20, "range_high": 150, "description": "bearing temperature"},
    )  # fmt: skip
    assert r.status_code == 201
    assert (r.json()["unit"], r.json()["range_high"], r.json()["data_type"]) == ("°C", 150, "Float")


def test_rename_and_move_keep_node_ids_and_history(live: LiveServer, tenant: TenantHandle) -> None:
    ids = tenant.build_plant()
    eng = tenant.engineer
    t = time.time() - 10
    assert (
        eng.post("/api/v1/telemetry", json={"device": ids["Pump7"], "ts": t, "values": {"Flow": 4.2}}).status_code
        == 201
    )
    assert (
        eng.post("/api/v1/nodes", json={"parent": "Plant1", "node_class": "folder", "browse_name": "Area2"}).status_code
        == 201
    )
    r = eng.post(f"/api/v1/nodes/{ids['Pump7']}/move", json={"parent": "Plant1/Area2"})
    assert r.status_code == 200 and r.json()["path"] == "Plant1/Area2/Pump7" and r.json()["node_id"] == ids["Pump7"]
    flow = eng.get(f"/api/v1/nodes/{ids['Flow']}").json()
    assert flow["path"] == "Plant1/Area2/Pump7/Flow"  # the subtree moved along
    r = eng.patch(f"/api/v1/nodes/{ids['Pump7']}", json={"browse_name": "Pump7B", "display_name": "Pump 7B"})
    assert r.status_code == 200 and r.json()["path"] == "Plant1/Area2/Pump7B"
    hist = eng.get("/api/v1/history", params={"node": "Plant1/Area2/Pump7B/Flow", "start": t - 1}).json()
    assert hist["value"] == [4.2] and hist["node_id"] == ids["Flow"]
    # Telemetry by the new path and by the stable id both reach the same tag.
    assert (
        eng.post("/api/v1/telemetry", json={"device": "Plant1/Area2/Pump7B", "values": {"Flow": 1}}).status_code == 201
    )
    # A newcomer at the old path gets a fresh id, not the moved node's.
    r = eng.post("/api/v1/nodes", json={"parent": "Plant1/Area1", "node_class": "device", "browse_name": "Pump7"})
    assert r.status_code == 201 and r.json()["node_id"] != ids["Pump7"]
    bad = eng.post(f"/api/v1/nodes/{ids['Plant1']}/move", json={"parent": "Plant1/Area2"})
    assert bad.status_code == 422 and bad.json()["field"] == "parent"
    bad = eng.post(f"/api/v1/nodes/{ids['Flow']}/move", json={"parent": "Plant1"})
    assert bad.status_code == 422


def test_delete_removes_subtree_and_its_history(live: LiveServer, tenant: TenantHandle) -> None:
    ids = tenant.build_plant()
    eng = tenant.engineer
    assert (
        eng.post("/api/v1/telemetry", json={"device": ids["Pump7"], "values": {"Flow": 1, "Pressure": 2}}).status_code
        == 201
    )
    assert eng.delete(f"/api/v1/nodes/{ids['Area1']}").status_code == 204
    assert eng.get(f"/api/v1/nodes/{ids['Pump7']}").status_code == 404
    assert eng.get("/api/v1/nodes", params={"parent": ids["Plant1"]}).json() == []
    srv = live.server
    assert srv is not None
    assert live.call(srv.store.latest(0)) is None
    audit = tenant.admin.get("/api/v1/audit", params={"action": "node."}).json()
    assert [e["action"] for e in audit][:1] == ["node.delete"] and audit[0]["detail"]["tags"] == 2


def test_device_status_is_set_and_streamed(live: LiveServer, tenant: TenantHandle) -> None:
    ids = tenant.build_plant()
    with tenant.users["operator"].stream() as s:
        s.send({"type": "subscribe", "id": 1, "subtrees": [ids["Plant1"]]})
        s.next_of("subscribed")
        r = tenant.engineer.put(f"/api/v1/devices/{ids['Pump7']}/status", json={"status": "online"})
        assert r.status_code == 200 and r.json()["status"] == "online"
        event = s.next_of("event")
        assert (event["kind"], event["node_id"], event["status"]) == ("device_status", ids["Pump7"], "online")
    assert tenant.engineer.get("/api/v1/devices", params={"status": "online"}).json()[0]["node_id"] == ids["Pump7"]
    r = tenant.engineer.put(f"/api/v1/devices/{ids['Flow']}/status", json={"status": "online"})
    assert r.status_code == 422


@pytest.mark.parametrize("path", ["/health", "/ready"])
def test_health_and_ready(live: LiveServer, path: str) -> None:
    import httpx

    r = httpx.get(live.base + path)
    assert r.status_code == 200 and r.json()["status"] in {"ok", "ready"}


def test_status_counts(live: LiveServer, tenant: TenantHandle) -> None:
    tenant.build_plant()
    s = tenant.users["viewer"].get("/api/v1/status").json()
    assert (s["tenant"], s["folders"], s["devices"], s["tags"]) == (tenant.name, 2, 1, 2)
    assert s["devices_by_status"] == {"unknown": 1}


def test_openapi_is_served(live: LiveServer) -> None:
    import httpx

    spec = httpx.get(live.base + "/openapi.json").json()
    assert "/api/v1/telemetry" in spec["paths"] and "/api/v1/history" in spec["paths"]
    assert httpx.get(live.base + "/docs").status_code == 200


def test_devices_set_up_at_once_share_their_new_folders(live: LiveServer, tenant: TenantHandle) -> None:
    """Adapters create devices concurrently (one Modbus source per device): a folder both need
    is created once and neither fails on the race between the check and the insert."""
    srv = live.server
    assert srv is not None
    tenant_id = int(live.call(srv.admin.tenants.by_name(tenant.name)).id)

    async def both() -> list[Node]:
        paths = [f"Race/Line{k % 2}/Dev{k}" for k in range(8)]
        return list(await asyncio.gather(*(srv.namespace.ensure_device(tenant_id, p, [], actor="test") for p in paths)))

    devices = live.call(both())
    assert sorted(d.path for d in devices) == sorted(f"Race/Line{k % 2}/Dev{k}" for k in range(8))
    folders = tenant.users["viewer"].get("/api/v1/nodes", params={"parent": "Race"}).json()
    assert [f["browse_name"] for f in folders] == ["Line0", "Line1"]
