"""`GET /nodes/search`: nodes never browsed, found by a case-insensitive piece of their name or
path, names starting with it first, limited (with `truncated`), and only in the caller's tenant."""

from __future__ import annotations

from typing import Any

from tests.support import Api, LiveServer, TenantHandle


def search(api: Api, q: str, **params: Any) -> dict[str, Any]:
    r = api.get("/api/v1/nodes/search", params={"q": q, **params})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def paths(api: Api, q: str, **params: Any) -> list[str]:
    return [n["path"] for n in search(api, q, **params)["nodes"]]


def build_other_plant(tenant: TenantHandle) -> None:
    for parent, cls, name in [(None, "folder", "BSite"), ("BSite", "device", "BPump"), ("BSite/BPump", "tag", "Level")]:
        r = tenant.engineer.post("/api/v1/nodes", json={"parent": parent, "node_class": cls, "browse_name": name})
        assert r.status_code == 201, r.text


def test_search_finds_unbrowsed_nodes_by_name_or_path(live: LiveServer, tenant: TenantHandle) -> None:
    ids = tenant.build_plant()
    viewer = tenant.users["viewer"]  # nothing browsed before: the search reads the whole tree
    body = search(viewer, "PRESS")
    assert body["query"] == "PRESS" and body["truncated"] is False
    [node] = body["nodes"]
    assert node["node_id"] == ids["Pressure"] and node["node_class"] == "tag"
    assert node["path"] == "Plant1/Area1/Pump7/Pressure" and node["parent_path"] == "Plant1/Area1/Pump7"
    # names starting with the text first, then the rest by path (here: the pump's tags match by path)
    assert paths(viewer, "pump") == ["Plant1/Area1/Pump7", "Plant1/Area1/Pump7/Flow", "Plant1/Area1/Pump7/Pressure"]
    assert search(viewer, "pump")["nodes"][0]["has_children"] is True
    assert paths(viewer, "area1/pump7/fl") == ["Plant1/Area1/Pump7/Flow"]
    assert paths(viewer, "pump", node_class="tag") == ["Plant1/Area1/Pump7/Flow", "Plant1/Area1/Pump7/Pressure"]
    assert paths(viewer, "%") == [] and paths(viewer, "_") == []  # LIKE wildcards are literal
    limited = search(viewer, "a", limit=2)
    assert len(limited["nodes"]) == 2 and limited["truncated"] is True
    assert search(viewer, "a", limit=500)["truncated"] is False
    # a renamed node is found by its new name; its node id stays
    r = tenant.engineer.patch("/api/v1/nodes/Plant1/Area1/Pump7/Flow", json={"browse_name": "Discharge"})
    assert r.status_code == 200, r.text
    found = search(viewer, "discharge")["nodes"]
    assert [(n["node_id"], n["path"]) for n in found] == [(ids["Flow"], "Plant1/Area1/Pump7/Discharge")]


def test_search_checks_its_input(live: LiveServer, tenant: TenantHandle) -> None:
    viewer = tenant.users["viewer"]
    for params in [{}, {"q": ""}, {"q": "x" * 201}, {"q": "a", "limit": 0}, {"q": "a", "limit": 501},
                   {"q": "a", "node_class": "pump"}]:  # fmt: skip
        r = viewer.get("/api/v1/nodes/search", params=params)
        assert r.status_code == 422, (params, r.text)
    assert live.client().get("/api/v1/nodes/search", params={"q": "a"}).status_code == 401


def test_search_stays_in_the_callers_tenant(live: LiveServer, tenant: TenantHandle, other_tenant: TenantHandle) -> None:
    tenant.build_plant()
    build_other_plant(other_tenant)
    mine, theirs = tenant.users["viewer"], other_tenant.admin
    assert paths(theirs, "pump") == ["BSite/BPump", "BSite/BPump/Level"]
    assert paths(theirs, "plant1") == [] and paths(theirs, "flow") == [] and paths(theirs, "ns=2") == []
    assert paths(mine, "bsite") == [] and paths(mine, "level") == []
    created = other_tenant.admin.post("/api/v1/api-keys", json={"name": "search", "roles": ["admin"]})
    machine = live.client(api_key=created.json()["key"])
    assert paths(machine, "p") == ["BSite/BPump", "BSite/BPump/Level"]
