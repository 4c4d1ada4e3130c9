"""Tenant isolation: a user or API key of tenant B gets 404 for every reference to tenant A's
nodes, history, values, users, roles, API keys and stream subscriptions, and sees nothing of A
in any list. Every route that takes a node reference is in ROUTES below, tried with node ids
and with paths, by B's strongest user (admin) and by an API key of B holding the admin role.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from websockets.sync.client import connect

from tests.support import Api, LiveServer, Stream, TenantHandle

PROBLEM = "application/problem+json"

# Tenant A's plant (TenantHandle.build_plant) and tenant B's own, differently named one: node ids
# are derived from the path at creation, so B must not hold A's paths or every "A" reference would
# legitimately resolve to B's own node.
A_PATHS = {
    "folder": "Plant1",
    "area": "Plant1/Area1",
    "device": "Plant1/Area1/Pump7",
    "tag": "Plant1/Area1/Pump7/Flow",
    "tag2": "Plant1/Area1/Pump7/Pressure",
}
B_PATHS = {
    "folder": "BSite",
    "area": "BSite/BArea",
    "device": "BSite/BArea/BPump",
    "tag": "BSite/BArea/BPump/Level",
}
FORMS = ["node_id", "path"]
CALLERS = ["admin", "api_key"]


def node_id(path: str) -> str:
    return f"ns=2;s={path}"


def refs(paths: dict[str, str], form: str) -> dict[str, str]:
    return {k: node_id(p) if form == "node_id" else p for k, p in paths.items()}


def assert_problem(r: httpx.Response, status: int, what: str = "") -> dict[str, Any]:
    assert r.status_code == status, f"{what}: expected {status}, got {r.status_code} {r.text[:300]}"
    assert r.headers.get("content-type", "").startswith(PROBLEM), (
        f"{what}: content-type {r.headers.get('content-type')}"
    )
    body: dict[str, Any] = r.json()
    assert body.get("status") == status, f"{what}: {body}"
    assert isinstance(body.get("title"), str) and body["title"], f"{what}: {body}"
    assert isinstance(body.get("detail"), str) and body["detail"], f"{what}: {body}"
    return body


@dataclass
class World:
    live: LiveServer
    a: TenantHandle
    b: TenantHandle
    a_key: str
    a_key_id: int
    b_key: str

    def caller(self, kind: str) -> Api:
        return self.b.admin if kind == "admin" else self.live.client(api_key=self.b_key)


def _build_b(b: TenantHandle) -> None:
    for parent, cls, name in [
        (None, "folder", "BSite"), ("BSite", "folder", "BArea"), ("BSite/BArea", "device", "BPump"),
        ("BSite/BArea/BPump", "tag", "Level"),
    ]:  # fmt: skip
        r = b.engineer.post("/api/v1/nodes", json={"parent": parent, "node_class": cls, "browse_name": name})
        assert r.status_code == 201, r.text


def both(*calls: Callable[[], Any]) -> list[Any]:
    """Run requests side by side: a telemetry answer waits for the historian's commit."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda f: f(), calls))


def make_world(live: LiveServer) -> World:
    a, b = both(lambda: live.new_tenant("a"), lambda: live.new_tenant("b"))
    ids = a.build_plant()
    assert ids["Flow"] == node_id(A_PATHS["tag"]), ids
    _build_b(b)
    now = time.time()
    a_samples = [
        {"device": A_PATHS["device"], "ts": now - 20, "values": {"Flow": 1.5, "Pressure": 7.25}},
        {"device": A_PATHS["device"], "ts": now - 10, "values": {"Flow": 2.5, "Pressure": 7.25}},
    ]
    b_sample = {"device": B_PATHS["device"], "ts": now - 5, "values": {"Level": 3.0}}
    ra, rb = both(
        lambda: a.engineer.post("/api/v1/telemetry", json=a_samples),
        lambda: b.engineer.post("/api/v1/telemetry", json=b_sample),
    )
    assert ra.status_code == rb.status_code == 201, (ra.text, rb.text)
    r = a.admin.post("/api/v1/api-keys", json={"name": "a-key", "roles": ["admin"]})
    assert r.status_code == 201, r.text
    a_key, a_key_id = r.json()["key"], r.json()["id"]
    r = b.admin.post("/api/v1/api-keys", json={"name": "b-key", "roles": ["admin"]})
    assert r.status_code == 201, r.text
    return World(live, a, b, a_key, a_key_id, r.json()["key"])


@pytest.fixture(scope="module")
def world(live: LiveServer) -> World:
    """A and B for the read-only route table (each row checks that A is unchanged afterwards)."""
    return make_world(live)


@pytest.fixture
def fresh(live: LiveServer) -> World:
    return make_world(live)


def snapshot_a(w: World) -> dict[str, Any]:
    """Everything of A that B's attempts could have changed, as A's engineer reads it."""
    api = w.a.engineer
    out: dict[str, Any] = {}
    for key, path in A_PATHS.items():
        r = api.get("/api/v1/nodes/" + quote(node_id(path), safe="/"))
        assert r.status_code == 200, f"A lost its node {path}: {r.status_code} {r.text}"
        out[key] = r.json()
    out["children"] = api.get("/api/v1/nodes", params={"parent": A_PATHS["device"]}).json()
    out["root"] = api.get("/api/v1/nodes").json()
    r = api.get("/api/v1/values", params={"under": A_PATHS["folder"]})
    assert r.status_code == 200, r.text
    out["values"] = r.json()
    r = api.get("/api/v1/history", params={"node": A_PATHS["tag"]})
    assert r.status_code == 200, r.text
    out["history"] = {k: r.json()[k] for k in ("node_id", "t", "value", "quality")}
    out["status"] = {
        k: v
        for k, v in api.get("/api/v1/status").json().items()
        if k in ("folders", "devices", "tags", "devices_by_status")
    }
    return out


def assert_a_intact(w: World, before: dict[str, Any]) -> None:
    after = snapshot_a(w)
    assert after == before, "tenant B changed tenant A's data"
    assert after["history"]["value"][:2] == [1.5, 2.5]


def snapshot_b(w: World) -> Any:
    api = w.b.engineer
    return [api.get("/api/v1/values", params={"under": "BSite"}).json(), api.get("/api/v1/devices").json()]


# ------------------------------------------------------------------------------------------------
# Every route that takes a node reference. {folder} {area} {device} {tag} {tag2} are A's nodes,
# {own_*} are B's own; each row runs with node ids and with paths, by B's admin and B's API key.
# (method, path template, query params, JSON body)
Row = tuple[str, str, dict[str, Any] | None, Any]
ROUTES: list[Row] = [
    ("GET", "/api/v1/nodes/{folder}", None, None),
    ("GET", "/api/v1/nodes/{device}", None, None),
    ("GET", "/api/v1/nodes/{tag}", None, None),
    ("PATCH", "/api/v1/nodes/{device}", None, {"display_name": "hijacked"}),
    ("PATCH", "/api/v1/nodes/{tag}", None, {"browse_name": "Renamed", "unit": "bar"}),
    ("DELETE", "/api/v1/nodes/{tag}", None, None),
    ("DELETE", "/api/v1/nodes/{folder}", None, None),
    ("POST", "/api/v1/nodes/{device}/move", None, {"parent": None}),
    ("POST", "/api/v1/nodes/{area}/move", None, {"parent": "{own_folder}"}),
    ("POST", "/api/v1/nodes/{own_device}/move", None, {"parent": "{area}"}),
    ("GET", "/api/v1/nodes", {"parent": "{folder}"}, None),
    ("GET", "/api/v1/nodes", {"parent": "{device}"}, None),
    ("POST", "/api/v1/nodes", None, {"parent": "{device}", "node_class": "tag", "browse_name": "Injected"}),
    ("POST", "/api/v1/nodes", None, {"parent": "{area}", "node_class": "device", "browse_name": "Injected"}),
    ("GET", "/api/v1/devices", {"under": "{folder}"}, None),
    ("GET", "/api/v1/devices", {"under": "{area}", "status": "unknown"}, None),
    ("PUT", "/api/v1/devices/{device}/status", None, {"status": "offline"}),
    ("POST", "/api/v1/telemetry", None, {"device": "{device}", "values": {"Flow": 99.0}}),
    ("POST", "/api/v1/telemetry", None, {"device": "{device}", "values": {"NewTag": 99.0}}),
    (
        "POST",
        "/api/v1/telemetry",
        None,
        [{"device": "{own_device}", "values": {"Level": 1.0}}, {"device": "{device}", "values": {"Flow": 99.0}}],
    ),  # noqa: E501
    ("GET", "/api/v1/history", {"node": "{tag}"}, None),
    ("GET", "/api/v1/history", {"node": "{tag}", "format": "csv"}, None),
    ("GET", "/api/v1/history", {"node": "{tag}", "start": "2020-01-01T00:00:00Z", "max_points": 10}, None),
    ("GET", "/api/v1/values", {"node": "{tag}"}, None),
    ("GET", "/api/v1/values", {"node": ["{own_tag}", "{tag2}"]}, None),
    ("GET", "/api/v1/values", {"under": "{folder}"}, None),
    ("GET", "/api/v1/values", {"under": "{device}"}, None),
    ("GET", "/api/v1/analytics/series", {"node": "{tag}"}, None),
    ("GET", "/api/v1/analytics/statistics", {"node": "{tag}"}, None),
    ("GET", "/api/v1/analytics/trend", {"node": "{tag}", "source": "raw"}, None),
    ("GET", "/api/v1/analytics/correlation", {"node": "{tag}", "other": "{tag2}"}, None),
    ("GET", "/api/v1/analytics/correlation", {"node": "{own_tag}", "other": "{tag}"}, None),
    ("GET", "/api/v1/analytics/forecast", {"node": "{tag}", "method": "linear"}, None),
]


def _fill(value: Any, names: dict[str, str], encode: bool = False) -> Any:
    if isinstance(value, str):
        for k, v in names.items():
            value = value.replace("{" + k + "}", quote(v, safe="/") if encode else v)
        return value
    if isinstance(value, list):
        return [_fill(v, names, encode) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, names, encode) for k, v in value.items()}
    return value


def _row_id(row: Row) -> str:
    method, path, params, _ = row
    query = "&".join(f"{k}={v}" for k, v in (params or {}).items())
    return f"{method} {path}" + (f"?{query}" if query else "")


@pytest.mark.parametrize("row", ROUTES, ids=[_row_id(r) for r in ROUTES])
def test_every_node_route_answers_404_for_another_tenants_node(world: World, row: Row) -> None:
    method, path, params, body = row
    before, before_b = snapshot_a(world), snapshot_b(world)
    failures = []
    for caller in CALLERS:
        api = world.caller(caller)
        for form in FORMS:
            names = refs(A_PATHS, form) | {f"own_{k}": v for k, v in refs(B_PATHS, form).items()}
            url = _fill(path, names, encode=True)
            kw: dict[str, Any] = {"params": _fill(params, names)} if params else {}
            if body is not None:
                kw["json"] = _fill(body, names)
            r = api.request(method, url, **kw)
            try:
                assert_problem(r, 404, f"{caller}/{form}")
                leaked = [p for p in ("7.25", "2.5", world.a.name) if p in r.text]
                assert not leaked, f"{caller}/{form}: 404 body mentions {leaked}: {r.text}"
            except AssertionError as exc:
                failures.append(str(exc).splitlines()[0])
    assert not failures, "\n".join(failures)
    assert_a_intact(world, before)
    # B's own namespace is untouched by the failed requests (all-or-nothing, no half moves).
    assert snapshot_b(world) == before_b


@pytest.mark.parametrize("form", FORMS)
def test_control_b_reaches_its_own_nodes_on_the_same_routes(world: World, form: str) -> None:
    """The 404s above come from the tenant boundary, not from malformed references."""
    own = refs(B_PATHS, form)
    for caller in CALLERS:
        api = world.caller(caller)
        assert api.get("/api/v1/nodes/" + quote(own["device"], safe="/")).status_code == 200
        assert api.get("/api/v1/nodes", params={"parent": own["device"]}).status_code == 200
        assert api.get("/api/v1/devices", params={"under": own["folder"]}).json()[0]["path"] == B_PATHS["device"]
        assert api.get("/api/v1/history", params={"node": own["tag"]}).json()["value"][0] == 3.0
        by_node = api.get("/api/v1/values", params={"node": own["tag"]}).json()
        assert [v["path"] for v in by_node] == [B_PATHS["tag"]]
        assert api.get("/api/v1/values", params={"under": own["area"]}).json() == by_node


@contextmanager
def _open(w: World, caller: str) -> Iterator[Stream]:
    """B's stream, authenticated by B's admin token or by B's API key (X-API-Key header)."""
    if caller == "admin":
        with w.b.admin.stream() as s:
            yield s
        return
    with connect(w.live.ws_url, open_timeout=10, additional_headers={"X-API-Key": w.b_key}) as ws:
        s = Stream(ws)
        hello = s.next()
        assert hello["type"] == "hello" and hello["user"] == "apikey:b-key", hello
        yield s


def _collect_until(s: Stream, done: Callable[[dict[str, Any]], bool], linger: float = 0.5) -> list[dict[str, Any]]:
    """Frames until one satisfies `done`, then `linger` s more (anything of A would have come by then)."""
    frames: list[dict[str, Any]] = []
    deadline, quiet_until = time.monotonic() + 5, None
    while time.monotonic() < deadline and (quiet_until is None or time.monotonic() < quiet_until):
        try:
            f = s.next(timeout=0.1)
        except TimeoutError:
            continue
        frames.append(f)
        if quiet_until is None and done(f):
            quiet_until = time.monotonic() + linger
    assert quiet_until is not None, f"the expected frame never came: {frames}"
    return frames


def _writes(w: World, a_value: float, b_value: float) -> None:
    """A adds a node and writes values while B writes its own, at the same moment."""
    r = w.a.engineer.post(
        "/api/v1/nodes",
        json={"parent": A_PATHS["device"], "node_class": "tag", "browse_name": f"T{uuid.uuid4().hex[:8]}"},
    )
    assert r.status_code == 201, r.text
    t = time.time()
    a_body = {"device": A_PATHS["device"], "ts": t, "values": {"Flow": a_value, "Pressure": a_value}}
    b_body = {"device": B_PATHS["device"], "ts": t, "values": {"Level": b_value}}
    ra, rb = both(
        lambda: w.a.engineer.post("/api/v1/telemetry", json=a_body),
        lambda: w.b.engineer.post("/api/v1/telemetry", json=b_body),
    )
    assert ra.status_code == rb.status_code == 201, (ra.text, rb.text)


def _unique() -> float:
    return 1000 + uuid.uuid4().int % 10**6 / 7


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("form", FORMS)
def test_stream_subscriptions_to_another_tenants_nodes_are_404_and_deliver_nothing(
    world: World, caller: str, form: str
) -> None:
    w = world
    a, own = refs(A_PATHS, form), refs(B_PATHS, form)
    attempts = [
        {"nodes": [a["tag"]]},
        {"nodes": [a["tag"], a["tag2"]]},
        {"nodes": [own["tag"], a["tag"]]},  # one foreign node fails the whole message
        {"subtrees": [a["folder"]]},
        {"subtrees": [a["device"]]},
        {"subtrees": [a["tag"]]},
        {"nodes": [own["tag"]], "subtrees": [a["area"]]},
    ]
    a_value, b_value = _unique(), _unique()
    with _open(w, caller) as s:
        for i, attempt in enumerate(attempts, 1):
            s.send({"type": "subscribe", "id": i, **attempt})
            frame = s.next_of("error")  # heartbeats may come in between
            assert frame["id"] == i and frame["status"] == 404, (attempt, frame)
            assert isinstance(frame.get("detail"), str) and frame["detail"], frame
        # A legitimate subscription to B's own nodes: the stream works, so silence about A means something.
        s.send({"type": "subscribe", "id": 99, "nodes": [own["tag"]], "subtrees": [own["folder"]]})
        ok = s.next_of("subscribed")
        assert ok["id"] == 99 and ok["nodes"] == [node_id(B_PATHS["tag"])], ok
        assert ok["subtrees"] == [node_id(B_PATHS["folder"])], ok
        _writes(w, a_value, b_value)
        frames = _collect_until(s, lambda f: f["type"] == "values" and any(u["v"] == b_value for u in f["updates"]))
    leaked = [
        f
        for f in frames
        if "Plant1" in json.dumps(f) or (f["type"] == "values" and any(u["v"] == a_value for u in f["updates"]))
    ]
    assert not leaked, leaked


def test_stream_of_b_never_carries_a_values_or_events(world: World) -> None:
    """Subscribed to all of B's namespace, B sees B's values and events only, while A is busy."""
    w = world
    a_value, b_value = _unique(), _unique()
    with w.b.admin.stream() as s:
        s.send({"type": "subscribe", "id": 1, "subtrees": [B_PATHS["folder"]]})
        assert s.next_of("subscribed")["subtrees"] == [node_id(B_PATHS["folder"])]
        _writes(w, a_value, b_value)
        frames = _collect_until(s, lambda f: f["type"] == "values" and any(u["v"] == b_value for u in f["updates"]))
    updates = [(u["n"], u["v"]) for f in frames if f["type"] == "values" for u in f["updates"]]
    assert (node_id(B_PATHS["tag"]), b_value) in updates
    assert all(n.startswith(node_id("BSite/")) for n, _ in updates), updates
    assert not [f for f in frames if "Plant1" in json.dumps(f)]


# ------------------------------------------------------------------------------------------------
def test_lists_show_b_nothing_of_a(fresh: World) -> None:
    w = fresh
    # Things only A has: a custom role, changed settings, audit entries, an API key, users.
    r = w.a.admin.post("/api/v1/roles", json={"name": "a-only-role", "permissions": ["history.read"]})
    assert r.status_code == 201, r.text
    assert w.a.admin.patch("/api/v1/settings", json={"unknown_tags": "reject"}).status_code == 200
    a_users = w.a.admin.get("/api/v1/users").json()
    a_audit = w.a.admin.get("/api/v1/audit").json()
    assert a_users and a_audit and w.a.admin.get("/api/v1/api-keys").json()

    def ok(r: httpx.Response) -> Any:
        assert r.status_code == 200, f"{r.request.url}: {r.status_code} {r.text}"
        return r.json()

    for caller in CALLERS:
        api = w.caller(caller)
        root = ok(api.get("/api/v1/nodes"))
        assert [n["node_id"] for n in root] == [node_id("BSite")], caller
        devices = ok(api.get("/api/v1/devices"))
        assert [d["path"] for d in devices] == [B_PATHS["device"]], caller
        users = ok(api.get("/api/v1/users"))
        assert {u["id"] for u in users}.isdisjoint({u["id"] for u in a_users}), caller
        assert len(users) == 5, caller
        roles = ok(api.get("/api/v1/roles"))
        assert "a-only-role" not in {r["name"] for r in roles}, caller
        audit = ok(api.get("/api/v1/audit", params={"limit": 10000}))
        assert audit, caller
        assert {e["id"] for e in audit}.isdisjoint({e["id"] for e in a_audit}), caller
        foreign = [e for e in audit if "Plant1" in json.dumps(e) or w.a.name in json.dumps(e) or "a-key" in e["actor"]]
        assert not foreign, (caller, foreign)
        keys = ok(api.get("/api/v1/api-keys"))
        assert [k["name"] for k in keys] == ["b-key"], caller
        values = ok(api.get("/api/v1/values"))
        assert [(v["path"], v["value"]) for v in values] == [(B_PATHS["tag"], 3.0)], caller
        status = ok(api.get("/api/v1/status"))
        assert status["tenant"] == w.b.name, caller
        assert (status["folders"], status["devices"], status["tags"]) == (2, 1, 1), (caller, status)
        assert status["devices_by_status"] == {"unknown": 1}, (caller, status)
        assert ok(api.get("/api/v1/settings"))["unknown_tags"] == "create", caller
        assert ok(api.get("/api/v1/auth/me"))["tenant"] == w.b.name, caller
        # B's tenant admin is no system administrator: the tenant list is closed to it.
        assert_problem(api.get("/api/v1/tenants"), 403, f"{caller}: tenants list")


def test_b_cannot_touch_a_users_roles_api_keys_or_tenant(fresh: World) -> None:
    w = fresh
    r = w.a.admin.post("/api/v1/roles", json={"name": "a-only-role", "permissions": ["history.read"]})
    assert r.status_code == 201, r.text
    a_users = sorted(w.a.admin.get("/api/v1/users").json(), key=lambda u: u["id"])
    a_roles = w.a.admin.get("/api/v1/roles").json()
    a_tenant_id = w.a.admin.get("/api/v1/auth/me").json()["tenant_id"]
    attempts: list[tuple[str, str, Any, int]] = []
    for u in a_users:
        uid = u["id"]
        attempts += [
            ("GET", f"/api/v1/users/{uid}", None, 404),
            ("PATCH", f"/api/v1/users/{uid}", {"is_active": False}, 404),
            ("PATCH", f"/api/v1/users/{uid}", {"password": "taken-over-1"}, 404),
            ("PATCH", f"/api/v1/users/{uid}", {"roles": ["viewer"]}, 404),
            ("PATCH", f"/api/v1/users/{uid}", {"display_name": "pwned", "email": "x@example.com"}, 404),
            ("DELETE", f"/api/v1/users/{uid}", None, 404),
        ]
    attempts += [
        ("DELETE", f"/api/v1/api-keys/{w.a_key_id}", None, 404),
        ("PATCH", "/api/v1/roles/a-only-role", {"permissions": ["namespace.read"]}, 404),
        ("DELETE", "/api/v1/roles/a-only-role", None, 404),
        # Tenants belong to the system administrator: B's admin may not disable or rename A.
        ("PATCH", f"/api/v1/tenants/{a_tenant_id}", {"display_name": "owned by B"}, 403),
        ("PATCH", f"/api/v1/tenants/{a_tenant_id}", {"is_active": False}, 403),
    ]
    failures = []
    for caller in CALLERS:
        api = w.caller(caller)
        for method, url, body, status in attempts:
            r = api.request(method, url, **({"json": body} if body is not None else {}))
            try:
                assert_problem(r, status, f"{caller}: {method} {url} {body}")
            except AssertionError as exc:
                failures.append(str(exc).splitlines()[0])
    assert not failures, "\n".join(failures)

    # A is unchanged: same users (active, same roles and names), the key still works, the role is intact.
    def strip(us: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in u.items() if k != "last_login_at"} for u in us]

    assert strip(sorted(w.a.admin.get("/api/v1/users").json(), key=lambda u: u["id"])) == strip(a_users)
    assert w.a.admin.get("/api/v1/roles").json() == a_roles
    for role in ("operator", "viewer"):
        w.live.login(w.a.name, role, role * 3)  # passwords unchanged, accounts active
    me = w.live.client(api_key=w.a_key).get("/api/v1/auth/me")
    assert me.status_code == 200 and me.json()["tenant"] == w.a.name
    assert [(k["name"], k["revoked"]) for k in w.a.admin.get("/api/v1/api-keys").json()] == [("a-key", False)]
    tenants = {t["id"]: t for t in w.live.system().get("/api/v1/tenants").json()}
    assert tenants[a_tenant_id]["is_active"] and tenants[a_tenant_id]["display_name"] != "owned by B"
    r = w.a.users["viewer"].get("/api/v1/history", params={"node": A_PATHS["tag"]})
    assert r.status_code == 200 and r.json()["value"] == [1.5, 2.5]
    r = w.a.users["viewer"].get("/api/v1/values", params={"under": A_PATHS["device"]})
    assert [v["value"] for v in r.json()] == [2.5, 7.25]


def test_a_path_that_exists_nowhere_and_another_tenants_path_are_indistinguishable(world: World) -> None:
    """The 404 tells B nothing about whether the node exists in some other tenant."""
    api = world.b.admin
    for form in FORMS:
        a_ref = refs(A_PATHS, form)["device"]
        ghost_path = f"Ghost{uuid.uuid4().hex[:6]}/X"
        ghost = node_id(ghost_path) if form == "node_id" else ghost_path
        ra = api.get("/api/v1/nodes/" + quote(a_ref, safe="/"))
        rg = api.get("/api/v1/nodes/" + quote(ghost, safe="/"))
        assert_problem(ra, 404, a_ref)
        assert_problem(rg, 404, ghost)
        ba, bg = ra.json(), rg.json()
        assert ba["detail"].replace(a_ref, "<ref>") == bg["detail"].replace(ghost, "<ref>")
        assert {k: v for k, v in ba.items() if k != "detail"} == {k: v for k, v in bg.items() if k != "detail"}
