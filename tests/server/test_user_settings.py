"""A user's own settings (`/me/settings`, the console's saved trend sets) on both backends:
round trip, rename, size limit and key checks, and isolation — another user of the same tenant,
a user of another tenant (same username) and an API key can neither read nor change them."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from server.services.user_settings import MAX_VALUE_BYTES
from tests.support import Api, LiveServer, TenantHandle

TREND_SET = {
    "version": 1,
    "pens": [{"node_id": "ns=2;s=Plant1/Area1/Pump7/Flow", "path": "Plant1/Area1/Pump7/Flow", "unit": "m3/h"}],
    "span_s": 3600,
    "follow": True,
    "axes": [{"unit": "m3/h", "auto": False, "min": 0, "max": 120}],
}


def url(key: str) -> str:
    return "/api/v1/me/settings/" + quote(key, safe="")


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, f"expected {status}, got {r.status_code} {r.text[:300]}"
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    return body


def keys(api: Api, prefix: str = "") -> list[str]:
    r = api.get("/api/v1/me/settings", params={"prefix": prefix})
    assert r.status_code == 200, r.text
    return [k["key"] for k in r.json()]


def test_round_trip_overwrite_rename_delete(live: LiveServer, tenant: TenantHandle) -> None:
    me = tenant.users["operator"]
    key = "trendset/Pump 7 – start-up #1"  # spaces, non-ASCII, '#': all encoded in the URL
    r = me.put(url(key), json={"value": TREND_SET})
    assert r.status_code == 200, r.text
    assert r.json()["key"] == key and r.json()["value"] == TREND_SET
    got = me.get(url(key)).json()
    assert got["value"] == TREND_SET and got["updated_at"] > 0
    me.put(url("trendset/Flow only"), json={"value": {"version": 1, "pens": []}})
    me.put(url("layout/main"), json={"value": [1, 2, 3]})
    assert keys(me, "trendset/") == ["trendset/Flow only", key]
    assert set(keys(me)) == {"trendset/Flow only", key, "layout/main"}
    assert keys(me, "trendset_") == [] and keys(me, "trendset%") == []  # LIKE wildcards are literal

    changed = {**TREND_SET, "span_s": 600}
    assert me.put(url(key), json={"value": changed}).json()["value"] == changed  # overwrite
    assert problem(me.put(url(key), params={"overwrite": "false"}, json={"value": {}}), 409)["field"] == "key"
    assert me.get(url(key)).json()["value"] == changed

    renamed = me.post(url(key) + "/rename", json={"to": "trendset/Pump 7"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["key"] == "trendset/Pump 7" and renamed.json()["value"] == changed
    problem(me.get(url(key)), 404)
    assert problem(me.post(url("trendset/Pump 7") + "/rename", json={"to": "trendset/Flow only"}), 409)["field"] == "to"
    replaced = me.post(url("trendset/Pump 7") + "/rename", json={"to": "trendset/Flow only", "overwrite": True})
    assert replaced.status_code == 200 and replaced.json()["value"] == changed
    assert keys(me, "trendset/") == ["trendset/Flow only"]
    problem(me.post(url("trendset/nope") + "/rename", json={"to": "trendset/x"}), 404)

    assert me.delete(url("trendset/Flow only")).status_code == 204
    problem(me.get(url("trendset/Flow only")), 404)
    problem(me.delete(url("trendset/Flow only")), 404)
    assert keys(me, "trendset/") == []


def test_size_limit_and_key_checks(live: LiveServer, tenant: TenantHandle) -> None:
    me = tenant.users["viewer"]  # any user keeps settings, whatever the role
    at_limit = "x" * (MAX_VALUE_BYTES - 2)  # a JSON string: two quotes
    assert me.put(url("big/ok"), json={"value": at_limit}).status_code == 200
    over = problem(me.put(url("big/over"), json={"value": at_limit + "x"}), 413)
    assert over["field"] == "value" and str(MAX_VALUE_BYTES) in over["detail"]
    problem(me.get(url("big/over")), 404)
    problem(me.put(url("big/ok"), json={"value": {"a": "é" * MAX_VALUE_BYTES}}), 413)  # bytes, not characters
    problem(me.put(url("k"), json={"value": 1, "extra": 2}), 422)  # the body is {"value": ...} only
    problem(me.put(url("k"), json={}), 422)
    for bad in [" lead", "trail ", "a//b", "a/", "../x", "a/./b", "tab\there", "x" * 201]:
        assert problem(me.put(url(bad), json={"value": 1}), 422)["field"] == "key", bad
    assert problem(me.post(url("big/ok") + "/rename", json={"to": "a//b"}), 422)["field"] == "to"
    problem(me.get("/api/v1/me/settings", params={"prefix": "p" * 201}), 422)


def test_only_ever_your_own(live: LiveServer, tenant: TenantHandle, other_tenant: TenantHandle) -> None:
    owner = tenant.users["operator"]
    key = "trendset/Mine"
    assert owner.put(url(key), json={"value": TREND_SET}).status_code == 200
    strangers = {
        "same tenant, other user": tenant.users["viewer"],
        "same tenant, admin": tenant.admin,
        "other tenant, same username": other_tenant.users["operator"],
        "other tenant, admin": other_tenant.admin,
    }
    for who, api in strangers.items():
        assert keys(api) == [], who
        problem(api.get(url(key)), 404)
        problem(api.delete(url(key)), 404)
        problem(api.post(url(key) + "/rename", json={"to": "trendset/Stolen"}), 404)
        # the same key written by someone else is their own document; the owner's stays as it was
        assert api.put(url(key), json={"value": {"who": who}}).json()["value"] == {"who": who}
        assert api.get(url(key)).json()["value"] == {"who": who}
        assert api.delete(url(key)).status_code == 204
    assert owner.get(url(key)).json()["value"] == TREND_SET
    assert keys(owner) == [key]

    created = tenant.admin.post("/api/v1/api-keys", json={"name": "hmi-gw", "roles": ["admin"]})
    assert created.status_code == 201, created.text
    machine = live.client(api_key=created.json()["key"])
    problem(machine.get("/api/v1/me/settings"), 403)
    problem(machine.get(url(key)), 403)
    problem(machine.put(url(key), json={"value": 1}), 403)
    problem(live.client().get(url(key)), 401)
    assert owner.get(url(key)).json()["value"] == TREND_SET
