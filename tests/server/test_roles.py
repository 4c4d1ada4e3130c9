"""Role matrix: every built-in role against every protected operation, expected outcomes derived
from server/domain/permissions.py (BUILTIN_ROLES); custom roles, unions of roles, no granting of
permissions one does not hold, the last user administrator, and unauthenticated requests."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from websockets.sync.client import connect

from server.domain.permissions import BUILTIN_ROLES, Permission
from tests.support import Api, LiveServer, Stream, TenantHandle

P = Permission
PROBLEM = "application/problem+json"
ROLES = ["admin", "engineer", "supervisor", "operator", "viewer"]
SYSTEM_ONLY = None
"""Marks an operation only a system administrator may perform (403 for every tenant role)."""

FLOW = "Plant1/Area1/Pump7/Flow"
PUMP = "Plant1/Area1/Pump7"


def ref(r: str) -> str:
    return quote(r, safe="/")


def assert_problem(r: httpx.Response, status: int, what: str = "") -> dict[str, Any]:
    assert r.status_code == status, f"{what}: expected {status}, got {r.status_code} {r.text[:300]}"
    ctype = r.headers.get("content-type", "")
    assert ctype.startswith(PROBLEM), f"{what}: content-type {ctype}"
    body: dict[str, Any] = r.json()
    assert body.get("status") == status, f"{what}: {body}"
    assert isinstance(body.get("title"), str) and body["title"], f"{what}: {body}"
    assert isinstance(body.get("detail"), str) and body["detail"], f"{what}: {body}"
    return body


def assert_forbidden(r: httpx.Response, missing: Permission | None, what: str = "") -> None:
    body = assert_problem(r, 403, what)
    if missing is None:
        assert "system administrator" in body["detail"], f"{what}: {body}"
    else:
        assert missing.value in body["detail"], f"{what}: 403 does not name {missing.value}: {body}"


def login_as(live: LiveServer, tenant: TenantHandle, roles: list[str], username: str | None = None) -> Api:
    name = username or f"u{uuid.uuid4().hex[:8]}"
    r = tenant.admin.post("/api/v1/users", json={"username": name, "password": "secret-pw-1", "roles": roles})
    assert r.status_code == 201, r.text
    return live.login(tenant.name, name, "secret-pw-1")


def create_role(tenant: TenantHandle, name: str, permissions: list[str]) -> None:
    r = tenant.admin.post("/api/v1/roles", json={"name": name, "permissions": permissions})
    assert r.status_code == 201, r.text


def user_id(tenant: TenantHandle, username: str) -> int:
    return next(int(u["id"]) for u in tenant.admin.get("/api/v1/users").json() if u["username"] == username)


# ------------------------------------------------------------------------------------------------
@dataclass
class Matrix:
    live: LiveServer
    tenant: TenantHandle
    tenant_id: int
    admin_id: int


@pytest.fixture(scope="module")
def matrix(live: LiveServer) -> Matrix:
    """One tenant for the whole matrix: each operation works on scratch objects of its own."""
    t = live.new_tenant("roles")
    t.build_plant()
    r = t.engineer.post("/api/v1/telemetry", json={"device": PUMP, "values": {"Flow": 1.5}})
    assert r.status_code == 201, r.text
    me = t.admin.get("/api/v1/auth/me").json()
    return Matrix(live, t, me["tenant_id"], me["user_id"])


Setup = Callable[[Matrix, str], Any]
Call = Callable[[Api, Any, str], httpx.Response]


def _scratch_node(m: Matrix, u: str) -> str:
    r = m.tenant.admin.post("/api/v1/nodes", json={"parent": "Plant1", "node_class": "folder", "browse_name": f"S{u}"})
    assert r.status_code == 201, r.text
    return str(r.json()["node_id"])


def _scratch_user(m: Matrix, u: str) -> int:
    r = m.tenant.admin.post("/api/v1/users", json={"username": f"s{u}", "password": "scratch-pw", "roles": ["viewer"]})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _scratch_role(m: Matrix, u: str) -> str:
    create_role(m.tenant, f"r{u}", ["namespace.read"])
    return f"r{u}"


def _scratch_key(m: Matrix, u: str) -> int:
    r = m.tenant.admin.post("/api/v1/api-keys", json={"name": f"k{u}", "roles": ["viewer"]})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _none(m: Matrix, u: str) -> Any:
    return m


# (operation, permission it needs per the code, setup with the tenant admin, the call by the role under test)
OPS: list[tuple[str, Permission | None, Setup, Call]] = [
    ("browse root", P.NAMESPACE_READ, _none, lambda a, x, u: a.get("/api/v1/nodes")),
    ("browse children", P.NAMESPACE_READ, _none, lambda a, x, u: a.get("/api/v1/nodes", params={"parent": "Plant1"})),
    ("read node", P.NAMESPACE_READ, _none, lambda a, x, u: a.get("/api/v1/nodes/" + ref(FLOW))),
    ("list devices", P.NAMESPACE_READ, _none, lambda a, x, u: a.get("/api/v1/devices")),
    ("status counts", P.NAMESPACE_READ, _none, lambda a, x, u: a.get("/api/v1/status")),
    ("read settings", P.NAMESPACE_READ, _none, lambda a, x, u: a.get("/api/v1/settings")),
    ("list roles", P.NAMESPACE_READ, _none, lambda a, x, u: a.get("/api/v1/roles")),
    ("values read", P.NAMESPACE_READ, _none, lambda a, x, u: a.get("/api/v1/values", params={"node": FLOW})),
    ("values under", P.NAMESPACE_READ, _none, lambda a, x, u: a.get("/api/v1/values", params={"under": "Plant1"})),
    ("history read", P.HISTORY_READ, _none, lambda a, x, u: a.get("/api/v1/history", params={"node": FLOW})),
    (
        "history csv",
        P.HISTORY_READ,
        _none,
        lambda a, x, u: a.get("/api/v1/history", params={"node": FLOW, "format": "csv"}),
    ),
    (
        "create node",
        P.NAMESPACE_WRITE,
        _none,
        lambda a, x, u: a.post(
            "/api/v1/nodes", json={"parent": "Plant1", "node_class": "folder", "browse_name": f"N{u}"}
        ),
    ),
    (
        "update node",
        P.NAMESPACE_WRITE,
        _scratch_node,
        lambda a, x, u: a.patch("/api/v1/nodes/" + ref(x), json={"display_name": "changed"}),
    ),
    (
        "rename node",
        P.NAMESPACE_WRITE,
        _scratch_node,
        lambda a, x, u: a.patch("/api/v1/nodes/" + ref(x), json={"browse_name": f"R{u}"}),
    ),
    (
        "move node",
        P.NAMESPACE_WRITE,
        _scratch_node,
        lambda a, x, u: a.post(f"/api/v1/nodes/{ref(x)}/move", json={"parent": "Plant1/Area1"}),
    ),
    ("delete node", P.NAMESPACE_WRITE, _scratch_node, lambda a, x, u: a.delete("/api/v1/nodes/" + ref(x))),
    (
        "telemetry write",
        P.TELEMETRY_WRITE,
        _none,
        lambda a, x, u: a.post("/api/v1/telemetry", json={"device": PUMP, "values": {"Flow": 2.0}}),
    ),
    (
        "device status",
        P.TELEMETRY_WRITE,
        _none,
        lambda a, x, u: a.put(f"/api/v1/devices/{PUMP}/status", json={"status": "online"}),
    ),
    (
        "create user",
        P.USERS_MANAGE,
        _none,
        lambda a, x, u: a.post(
            "/api/v1/users", json={"username": f"n{u}", "password": "new-pw-123", "roles": ["viewer"]}
        ),
    ),
    ("list users", P.USERS_MANAGE, _none, lambda a, x, u: a.get("/api/v1/users")),
    ("read another user", P.USERS_MANAGE, _scratch_user, lambda a, x, u: a.get(f"/api/v1/users/{x}")),
    (
        "update another user",
        P.USERS_MANAGE,
        _scratch_user,
        lambda a, x, u: a.patch(f"/api/v1/users/{x}", json={"display_name": "changed"}),
    ),
    (
        "disable another user",
        P.USERS_MANAGE,
        _scratch_user,
        lambda a, x, u: a.patch(f"/api/v1/users/{x}", json={"is_active": False}),
    ),
    ("delete user", P.USERS_MANAGE, _scratch_user, lambda a, x, u: a.delete(f"/api/v1/users/{x}")),
    (
        "create role",
        P.ROLES_MANAGE,
        _none,
        lambda a, x, u: a.post("/api/v1/roles", json={"name": f"c{u}", "permissions": ["namespace.read"]}),
    ),
    (
        "update role",
        P.ROLES_MANAGE,
        _scratch_role,
        lambda a, x, u: a.patch(f"/api/v1/roles/{x}", json={"description": "changed"}),
    ),
    ("delete role", P.ROLES_MANAGE, _scratch_role, lambda a, x, u: a.delete(f"/api/v1/roles/{x}")),
    (
        "create API key",
        P.APIKEYS_MANAGE,
        _none,
        lambda a, x, u: a.post("/api/v1/api-keys", json={"name": f"k{u}", "roles": ["viewer"]}),
    ),
    ("list API keys", P.APIKEYS_MANAGE, _none, lambda a, x, u: a.get("/api/v1/api-keys")),
    ("revoke API key", P.APIKEYS_MANAGE, _scratch_key, lambda a, x, u: a.delete(f"/api/v1/api-keys/{x}")),
    ("audit read", P.AUDIT_READ, _none, lambda a, x, u: a.get("/api/v1/audit")),
    (
        "change tenant settings",
        P.TENANT_SETTINGS,
        _none,
        lambda a, x, u: a.patch("/api/v1/settings", json={"unknown_tags": "reject"}),
    ),
    ("list tenants", SYSTEM_ONLY, _none, lambda a, x, u: a.get("/api/v1/tenants")),
    (
        "create tenant",
        SYSTEM_ONLY,
        _none,
        lambda a, x, u: a.post(
            "/api/v1/tenants", json={"name": f"x{u}", "admin_username": "a", "admin_password": "pw"}
        ),
    ),
    (
        "update own tenant",
        SYSTEM_ONLY,
        _none,
        lambda a, x, u: a.patch(f"/api/v1/tenants/{x.tenant_id}", json={"display_name": "mine now"}),
    ),
]
CASES = [(role, op) for role in ROLES for op in OPS]


@pytest.mark.parametrize(("role", "op"), CASES, ids=[f"{role}-{op[0]}" for role, op in CASES])
def test_role_matrix(matrix: Matrix, role: str, op: tuple[str, Permission | None, Setup, Call]) -> None:
    name, needs, setup, call = op
    allowed = needs is not SYSTEM_ONLY and needs in BUILTIN_ROLES[role]
    unique = f"{role}{uuid.uuid4().hex[:8]}"
    target = setup(matrix, unique)
    r = call(matrix.tenant.users[role], target, unique)
    if allowed:
        assert 200 <= r.status_code < 300, f"{role} may {name} ({needs}) but got {r.status_code}: {r.text[:300]}"
    else:
        assert_forbidden(r, needs, f"{role} must not {name}")


@pytest.mark.parametrize("role", ROLES)
def test_each_role_holds_exactly_its_documented_permissions(matrix: Matrix, role: str) -> None:
    me = matrix.tenant.users[role].get("/api/v1/auth/me").json()
    assert me["roles"] == [role]
    assert me["permissions"] == sorted(p.value for p in BUILTIN_ROLES[role])
    assert me["is_system_admin"] is False
    roles = {r["name"]: r for r in matrix.tenant.admin.get("/api/v1/roles").json()}
    assert roles[role]["builtin"] is True
    assert roles[role]["permissions"] == sorted(p.value for p in BUILTIN_ROLES[role])


def test_the_system_administrator_manages_tenants(live: LiveServer, matrix: Matrix) -> None:
    system = live.system()
    assert system.get("/api/v1/tenants").status_code == 200
    assert matrix.tenant.name in {t["name"] for t in system.get("/api/v1/tenants").json()}


@pytest.mark.parametrize("role", ROLES)
def test_every_user_may_edit_their_own_profile_but_not_their_own_roles(matrix: Matrix, role: str) -> None:
    """Self service (display name, password) needs no permission; roles and is_active need users.manage."""
    t = matrix.tenant
    api = login_as(matrix.live, t, [role])
    me = api.get("/api/v1/auth/me").json()
    assert api.get(f"/api/v1/users/{me['user_id']}").status_code == 200
    assert api.patch(f"/api/v1/users/{me['user_id']}", json={"display_name": "Me"}).status_code == 200
    for change in ({"roles": ["admin"]}, {"roles": ["viewer", role]}, {"is_active": False}):
        r = api.patch(f"/api/v1/users/{me['user_id']}", json=change)
        if P.USERS_MANAGE in BUILTIN_ROLES[role]:
            assert r.status_code in (200, 409), r.text  # an admin may (unless it is the last one)
        else:
            assert_forbidden(r, P.USERS_MANAGE, f"{role} changing own {change}")
    if P.USERS_MANAGE not in BUILTIN_ROLES[role]:
        assert api.get("/api/v1/auth/me").json()["roles"] == [role]


@pytest.mark.parametrize("role", ["viewer", "operator", "engineer"])
def test_api_keys_follow_the_same_matrix(matrix: Matrix, role: str) -> None:
    r = matrix.tenant.admin.post("/api/v1/api-keys", json={"name": f"m{uuid.uuid4().hex[:8]}", "roles": [role]})
    assert r.status_code == 201, r.text
    key = matrix.live.client(api_key=r.json()["key"])
    assert key.get("/api/v1/nodes").status_code == 200
    r = key.post("/api/v1/telemetry", json={"device": PUMP, "values": {"Flow": 3.0}})
    if P.TELEMETRY_WRITE in BUILTIN_ROLES[role]:
        assert r.status_code == 201, r.text
    else:
        assert_forbidden(r, P.TELEMETRY_WRITE, f"{role} key writing telemetry")
    assert_forbidden(key.get("/api/v1/users"), P.USERS_MANAGE, f"{role} key listing users")
    r = key.post("/api/v1/nodes", json={"parent": "Plant1", "node_class": "folder", "browse_name": f"K{role}"})
    if P.NAMESPACE_WRITE in BUILTIN_ROLES[role]:
        assert r.status_code == 201, r.text
    else:
        assert_forbidden(r, P.NAMESPACE_WRITE, f"{role} key creating a node")


# ------------------------------------------------------------------------------------------------
def test_custom_role_with_only_history_read(live: LiveServer, tenant: TenantHandle) -> None:
    """history.read alone reads a tag's history by reference, but browsing and live values need namespace.read."""
    tenant.build_plant()
    assert tenant.engineer.post("/api/v1/telemetry", json={"device": PUMP, "values": {"Flow": 1.5}}).status_code == 201
    create_role(tenant, "history-only", ["history.read"])
    api = login_as(live, tenant, ["history-only"])
    assert api.get("/api/v1/auth/me").json()["permissions"] == ["history.read"]
    for node in (FLOW, "ns=2;s=" + FLOW):
        r = api.get("/api/v1/history", params={"node": node})
        assert r.status_code == 200, r.text
        assert r.json()["value"] == [1.5]
    assert_forbidden(api.get("/api/v1/nodes"), P.NAMESPACE_READ, "browse")
    assert_forbidden(api.get("/api/v1/nodes/" + ref(FLOW)), P.NAMESPACE_READ, "read node")
    assert_forbidden(api.get("/api/v1/values", params={"node": FLOW}), P.NAMESPACE_READ, "values")
    assert_forbidden(api.get("/api/v1/devices"), P.NAMESPACE_READ, "devices")
    assert_forbidden(
        api.post("/api/v1/telemetry", json={"device": PUMP, "values": {"Flow": 9.0}}), P.TELEMETRY_WRITE, "telemetry"
    )
    # The live stream needs namespace.read too: refused when opened or when subscribing, never a value.
    with connect(live.ws_url, open_timeout=10) as ws:
        s = Stream(ws)
        s.send({"type": "auth", "token": api.token})
        frame = s.next()
        if frame["type"] == "hello":
            s.send({"type": "subscribe", "id": 1, "nodes": [FLOW]})
            frame = s.next_of("error")
        assert frame["type"] == "error", frame
        assert frame["status"] == 403 and "namespace.read" in frame["detail"], frame


def test_two_roles_give_the_union_of_their_permissions(live: LiveServer, tenant: TenantHandle) -> None:
    tenant.build_plant()
    create_role(tenant, "telemetry-only", ["telemetry.write"])
    expected = sorted(p.value for p in BUILTIN_ROLES["viewer"] | {P.TELEMETRY_WRITE})
    user = login_as(live, tenant, ["viewer", "telemetry-only"])
    r = tenant.admin.post("/api/v1/api-keys", json={"name": "union", "roles": ["viewer", "telemetry-only"]})
    assert r.status_code == 201, r.text
    key = live.client(api_key=r.json()["key"])
    for who, api in (("user", user), ("api key", key)):
        me = api.get("/api/v1/auth/me").json()
        assert sorted(me["roles"]) == ["telemetry-only", "viewer"], who
        assert me["permissions"] == expected, who
        assert api.get("/api/v1/nodes").status_code == 200, who  # from viewer
        r = api.post("/api/v1/telemetry", json={"device": PUMP, "values": {"Flow": 4.0}})  # from telemetry-only
        assert r.status_code == 201, (who, r.text)
        assert api.get("/api/v1/history", params={"node": FLOW}).status_code == 200, who
        r = api.post("/api/v1/nodes", json={"parent": "Plant1", "node_class": "folder", "browse_name": "X"})
        assert_forbidden(r, P.NAMESPACE_WRITE, f"{who} creating a node")
        assert_forbidden(api.get("/api/v1/audit"), P.AUDIT_READ, f"{who} reading audit")


def test_nobody_grants_permissions_they_do_not_hold(live: LiveServer, tenant: TenantHandle) -> None:
    """An engineer who was given users.manage (custom role) can hand out only what an engineer holds."""
    create_role(tenant, "user-admin", ["users.manage"])
    eng = login_as(live, tenant, ["engineer", "user-admin"], "eng-ua")
    for roles in (["admin"], ["supervisor"], ["viewer", "admin"]):
        r = eng.post("/api/v1/users", json={"username": "sneaky", "password": "sneaky-pw-1", "roles": roles})
        body = assert_problem(r, 403, f"engineer creating a user with {roles}")
        assert "alarms.shelve" in body["detail"] or "tenant.settings" in body["detail"], body
    assert "sneaky" not in {u["username"] for u in tenant.admin.get("/api/v1/users").json()}
    # What the engineer holds may be granted.
    for roles in (["viewer"], ["operator", "user-admin"], ["engineer"]):
        name = "ok-" + "-".join(roles)
        r = eng.post("/api/v1/users", json={"username": name, "password": "fine-pw-12", "roles": roles})
        assert r.status_code == 201, r.text
    viewer_id = user_id(tenant, "viewer")
    own_id = user_id(tenant, "eng-ua")
    for target in (own_id, viewer_id):
        assert_problem(eng.patch(f"/api/v1/users/{target}", json={"roles": ["admin"]}), 403, f"grant admin to {target}")
    assert eng.patch(f"/api/v1/users/{viewer_id}", json={"roles": ["engineer"]}).status_code == 200
    assert eng.get("/api/v1/auth/me").json()["permissions"] == sorted(
        p.value for p in BUILTIN_ROLES["engineer"] | {P.USERS_MANAGE}
    )
    # API keys: an operator with apikeys.manage cannot mint a key stronger than itself.
    create_role(tenant, "key-admin", ["apikeys.manage"])
    op = login_as(live, tenant, ["operator", "key-admin"])
    assert_problem(op.post("/api/v1/api-keys", json={"name": "strong", "roles": ["engineer"]}), 403, "key")
    assert op.post("/api/v1/api-keys", json={"name": "weak", "roles": ["operator"]}).status_code == 201


def test_a_role_manager_cannot_grant_itself_or_others_permissions_through_a_role(
    live: LiveServer, tenant: TenantHandle
) -> None:
    """roles.manage must not be a way around the rule: editing a role that users hold grants its permissions."""
    create_role(tenant, "role-admin", ["roles.manage", "namespace.read"])
    create_role(tenant, "ops", ["namespace.read"])
    mgr = login_as(live, tenant, ["role-admin"])
    holder = login_as(live, tenant, ["ops"])
    everything = sorted(p.value for p in Permission)
    failures = []
    for role, perms, what in (
        ("role-admin", everything, "adding every permission to its own role"),
        ("ops", ["namespace.read", "tenant.settings"], "adding tenant.settings to a role another user holds"),
    ):
        r = mgr.patch(f"/api/v1/roles/{role}", json={"permissions": perms})
        if r.status_code != 403 or not r.headers["content-type"].startswith(PROBLEM):
            failures.append(f"role manager {what}: expected 403, got {r.status_code} {r.text[:200]}")
    mgr_perms = mgr.get("/api/v1/auth/me").json()["permissions"]
    if mgr_perms != ["namespace.read", "roles.manage"]:
        r = mgr.post("/api/v1/users", json={"username": "mallory", "password": "mallory-pw", "roles": ["admin"]})
        failures.append(f"role manager now holds {mgr_perms}; creating an admin user answers {r.status_code}")
    holder_perms = holder.get("/api/v1/auth/me").json()["permissions"]
    if holder_perms != ["namespace.read"]:
        failures.append(f"holder of 'ops' now holds {holder_perms}")
    assert not failures, "\n".join(failures)
    # Within its own permissions it may edit roles.
    r = mgr.patch("/api/v1/roles/ops", json={"permissions": ["namespace.read"], "description": "fine"})
    assert r.status_code == 200, r.text


def test_the_last_user_administrator_cannot_be_disabled_demoted_or_deleted(
    live: LiveServer, tenant: TenantHandle
) -> None:
    admin = tenant.admin
    admin_id = user_id(tenant, "admin")
    attempts: list[tuple[Api, str, str, Any]] = [
        (admin, "PATCH", f"/api/v1/users/{admin_id}", {"is_active": False}),
        (admin, "PATCH", f"/api/v1/users/{admin_id}", {"roles": ["viewer"]}),
        (admin, "DELETE", f"/api/v1/users/{admin_id}", None),
    ]
    # An API key is nobody's account: it may hold users.manage, but it is no user administrator.
    r = admin.post("/api/v1/api-keys", json={"name": "root-key", "roles": ["admin"]})
    assert r.status_code == 201, r.text
    key = live.client(api_key=r.json()["key"])
    attempts += [
        (key, "PATCH", f"/api/v1/users/{admin_id}", {"is_active": False}),
        (key, "PATCH", f"/api/v1/users/{admin_id}", {"roles": ["engineer"]}),
        (key, "DELETE", f"/api/v1/users/{admin_id}", None),
    ]
    for api, method, url, body in attempts:
        r = api.request(method, url, **({"json": body} if body is not None else {}))
        assert_problem(r, 409, f"{method} {url} {body}")
    # A second administrator who is disabled does not count either.
    second = login_as(live, tenant, ["admin"], "admin2")
    second_id = user_id(tenant, "admin2")
    assert admin.patch(f"/api/v1/users/{second_id}", json={"is_active": False}).status_code == 200
    assert_problem(admin.patch(f"/api/v1/users/{admin_id}", json={"is_active": False}), 409, "with admin2 disabled")
    assert_problem(key.delete(f"/api/v1/users/{admin_id}"), 409, "key deleting admin with admin2 disabled")
    # Once there are two active ones, one may go; then the other is the last again.
    assert admin.patch(f"/api/v1/users/{second_id}", json={"is_active": True}).status_code == 200
    second = live.login(tenant.name, "admin2", "secret-pw-1")
    assert second.delete(f"/api/v1/users/{admin_id}").status_code == 204
    assert_problem(second.patch(f"/api/v1/users/{second_id}", json={"is_active": False}), 409, "admin2 now last")
    assert_problem(key.delete(f"/api/v1/users/{second_id}"), 409, "key deleting admin2, now last")
    me = second.get("/api/v1/auth/me").json()
    assert "users.manage" in me["permissions"]


def test_the_last_user_administrator_cannot_lose_users_manage_through_a_role_edit(
    live: LiveServer, tenant: TenantHandle
) -> None:
    """Same invariant when users.manage comes from a custom role: emptying that role is demoting its holder."""
    create_role(tenant, "user-admin", ["users.manage", "namespace.read"])
    r = tenant.admin.post("/api/v1/api-keys", json={"name": "roles-key", "roles": ["admin"]})
    assert r.status_code == 201, r.text
    key = live.client(api_key=r.json()["key"])
    ua = login_as(live, tenant, ["user-admin"], "ua")
    r = key.delete(f"/api/v1/users/{user_id(tenant, 'admin')}")
    assert r.status_code == 204, r.text  # two user administrators: one may go
    # "ua" is now the tenant's only user administrator, through the custom role.
    r = key.patch("/api/v1/roles/user-admin", json={"permissions": ["namespace.read"]})
    assert_problem(r, 409, "removing users.manage from the role of the last user administrator")
    assert "users.manage" in ua.get("/api/v1/auth/me").json()["permissions"]


UNAUTH_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/api/v1/nodes", None),
    ("GET", "/api/v1/nodes/Plant1", None),
    ("POST", "/api/v1/nodes", {"parent": None, "node_class": "folder", "browse_name": "X"}),
    ("POST", "/api/v1/telemetry", {"device": PUMP, "values": {"Flow": 1.0}}),
    ("GET", "/api/v1/history?node=" + FLOW, None),
    ("GET", "/api/v1/values", None),
    ("GET", "/api/v1/users", None),
    ("POST", "/api/v1/api-keys", {"name": "x", "roles": ["viewer"]}),
    ("PATCH", "/api/v1/settings", {"unknown_tags": "reject"}),
    ("GET", "/api/v1/tenants", None),
    ("GET", "/api/v1/audit", None),
    ("GET", "/api/v1/status", None),
    ("GET", "/api/v1/auth/me", None),
]
CREDENTIALS = {
    "none": {},
    "bad bearer": {"Authorization": "Bearer not-a-token"},
    "basic auth": {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="},
    "bad api key": {"X-API-Key": "iiot_0123456789ab_nonsense"},
}


@pytest.mark.parametrize("cred", list(CREDENTIALS))
@pytest.mark.parametrize(("method", "url", "body"), UNAUTH_ROUTES, ids=[f"{m} {u}" for m, u, _ in UNAUTH_ROUTES])
def test_unauthenticated_requests_are_401_with_www_authenticate(
    live: LiveServer, method: str, url: str, body: Any, cred: str
) -> None:
    r = httpx.request(
        method, live.base + url, headers=CREDENTIALS[cred], **({"json": body} if body is not None else {})
    )
    assert_problem(r, 401, f"{cred}: {method} {url}")
    assert r.headers.get("www-authenticate", "").lower().startswith("bearer"), r.headers
