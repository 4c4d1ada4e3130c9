"""Telemetry ingest: every kind of bad input is a clear 4xx that stores nothing, and what is
accepted is stored exactly once (count in = count stored)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.support import LiveServer, TenantHandle

DEVICE = "Plant1/Area1/Pump7"


def stored(live: LiveServer, tenant: TenantHandle) -> int:
    """Samples in the historian for the tenant's tags, counted in the database itself."""
    srv = live.server
    assert srv is not None

    async def count() -> int:
        tags = await srv.nodes.find(
            (await srv.admin.tenants.by_name(tenant.name)).id,  # type: ignore[union-attr]
            node_class=__import__("server.domain.namespace", fromlist=["NodeClass"]).NodeClass.TAG,
        )
        await asyncio_sleep_until_flushed(srv)
        return await srv.store.count([t.id for t in tags]) if tags else 0

    return int(live.call(count()))


async def asyncio_sleep_until_flushed(srv: object) -> None:
    import asyncio

    writer = srv.writer  # type: ignore[attr-defined]
    while writer.queued:
        await asyncio.sleep(0.01)


BAD = [
    ("malformed JSON", b'{"device": "x", "values": {', 400, "body"),
    ("not an object", b"42", 422, "body"),
    ("empty list", b"[]", 422, "body"),
    ("value is a string", b'{"device": "Plant1/Area1/Pump7", "values": {"Flow": "1.5"}}', 422, "values.Flow"),
    ("value is null", b'{"device": "Plant1/Area1/Pump7", "values": {"Flow": null}}', 422, "values.Flow"),
    ("NaN", b'{"device": "Plant1/Area1/Pump7", "values": {"Flow": NaN}}', 422, "values.Flow"),
    ("Infinity", b'{"device": "Plant1/Area1/Pump7", "values": {"Flow": Infinity}}', 422, "values.Flow"),
    ("-Infinity", b'{"device": "Plant1/Area1/Pump7", "values": {"Flow": -Infinity}}', 422, "values.Flow"),
    ("huge number", b'{"device": "Plant1/Area1/Pump7", "values": {"Flow": 1e999}}', 422, "values.Flow"),
    ("no values", b'{"device": "Plant1/Area1/Pump7", "values": {}}', 422, "values"),
    ("missing device", b'{"values": {"Flow": 1}}', 422, "device"),
    ("unknown field", b'{"device": "Plant1/Area1/Pump7", "values": {"Flow": 1}, "extra": 1}', 422, "extra"),
    ("bad timestamp", b'{"device": "Plant1/Area1/Pump7", "ts": "yesterday", "values": {"Flow": 1}}', 422, "ts"),
    ("bad quality", b'{"device": "Plant1/Area1/Pump7", "quality": "Great", "values": {"Flow": 1}}', 422, "quality"),
    ("unknown device", b'{"device": "Plant1/Area1/Nope", "values": {"Flow": 1}}', 404, "device"),
    ("unknown device id", b'{"device": "ns=2;s=Nope", "values": {"Flow": 1}}', 404, "device"),
    ("a folder, not a device", b'{"device": "Plant1/Area1", "values": {"Flow": 1}}', 422, "device"),
    ("bad tag name", b'{"device": "Plant1/Area1/Pump7", "values": {"a/b": 1}}', 422, "values.a/b"),
]


@pytest.mark.parametrize(("case", "body", "status", "field"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_clear_4xx_and_stores_nothing(
    live: LiveServer, tenant: TenantHandle, case: str, body: bytes, status: int, field: str
) -> None:
    tenant.build_plant()
    r = tenant.engineer.post("/api/v1/telemetry", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    problem = r.json()
    assert r.headers["content-type"] == "application/problem+json"
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert problem["field"] == field
    assert stored(live, tenant) == 0


def test_far_future_and_pre_1970_timestamps_are_refused(live: LiveServer, tenant: TenantHandle) -> None:
    tenant.build_plant()
    future = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    for ts in (future, "1969-12-31T23:59:59Z"):
        r = tenant.engineer.post("/api/v1/telemetry", json={"device": DEVICE, "ts": ts, "values": {"Flow": 1}})
        assert r.status_code == 422 and r.json()["field"] == "ts"
    near = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()  # clocks drift: within the skew is fine
    assert (
        tenant.engineer.post(
            "/api/v1/telemetry", json={"device": DEVICE, "ts": near, "values": {"Flow": 1}}
        ).status_code
        == 201
    )


def test_a_batch_is_all_or_nothing(live: LiveServer, tenant: TenantHandle) -> None:
    tenant.build_plant()
    batch = [
        {"device": DEVICE, "values": {"Flow": 1.0}},
        {"device": DEVICE, "values": {"Flow": 2.0}},
        {"device": "Plant1/Area1/Nope", "values": {"Flow": 3.0}},
    ]
    r = tenant.engineer.post("/api/v1/telemetry", json=batch)
    assert r.status_code == 404 and r.json()["field"] == "[2].device"
    assert stored(live, tenant) == 0


def test_oversized_batches_and_bodies_are_413(live: LiveServer, tenant: TenantHandle) -> None:
    tenant.build_plant()
    limit = live.settings.max_telemetry_items
    many = [{"device": DEVICE, "values": {"Flow": float(i)}} for i in range(limit + 1)]
    r = tenant.engineer.post("/api/v1/telemetry", json=many)
    assert r.status_code == 413 and r.json()["status"] == 413
    huge = b'{"device": "' + b"x" * (live.settings.max_body_bytes + 10) + b'", "values": {"Flow": 1}}'
    r = tenant.engineer.post("/api/v1/telemetry", content=huge, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["field"] == "body"

    def chunks():  # no Content-Length: the limit must hold while the body streams in
        yield b'{"device": "'
        for _ in range(live.settings.max_body_bytes // 65536 + 2):
            yield b"x" * 65536

    r = tenant.engineer.post("/api/v1/telemetry", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert stored(live, tenant) == 0


def test_count_in_equals_count_stored(live: LiveServer, tenant: TenantHandle) -> None:
    tenant.build_plant()
    sent = 0
    t0 = time.time() - 3600
    for i in range(20):
        batch = [
            {"device": DEVICE, "ts": t0 + i * 10 + k, "values": {"Flow": float(k), "Pressure": float(-k)}}
            for k in range(10)
        ]
        r = tenant.engineer.post("/api/v1/telemetry", json=batch)
        assert r.status_code == 201 and r.json()["accepted"] == 20
        sent += 20
    # A rejected request in between adds nothing.
    assert (
        tenant.engineer.post("/api/v1/telemetry", json={"device": DEVICE, "values": {"Flow": "x"}}).status_code == 422
    )
    assert stored(live, tenant) == sent
    r = tenant.users["viewer"].get(
        "/api/v1/history", params={"node": f"{DEVICE}/Flow", "start": t0 - 1, "max_points": 10_000}
    )
    assert r.json()["count"] == sent // 2


def test_unknown_tags_are_created_or_refused_by_tenant_policy(live: LiveServer, tenant: TenantHandle) -> None:
    tenant.build_plant()
    r = tenant.engineer.post("/api/v1/telemetry", json={"device": DEVICE, "values": {"Speed": 1450}})
    assert r.status_code == 201 and r.json()["created_tags"] == [f"{DEVICE}/Speed"]
    assert tenant.engineer.get(f"/api/v1/nodes/{DEVICE}/Speed").json()["node_class"] == "tag"
    assert tenant.admin.patch("/api/v1/settings", json={"unknown_tags": "reject"}).json()["unknown_tags"] == "reject"
    r = tenant.engineer.post("/api/v1/telemetry", json={"device": DEVICE, "values": {"Flow": 1, "Torque": 5}})
    assert r.status_code == 404 and r.json()["field"] == "values.Torque"
    assert stored(live, tenant) == 1  # the Speed sample only; the refused request stored nothing
    assert tenant.admin.patch("/api/v1/settings", json={"unknown_tags": "sometimes"}).status_code == 422


def test_values_history_and_csv(live: LiveServer, tenant: TenantHandle) -> None:
    ids = tenant.build_plant()
    t0 = time.time() - 600
    batch = [{"device": DEVICE, "ts": t0 + k, "values": {"Flow": k * 0.5}} for k in range(100)]
    batch.append({"device": DEVICE, "ts": t0 + 100, "quality": "Bad", "values": {"Flow": -1}})
    assert tenant.engineer.post("/api/v1/telemetry", json=batch).status_code == 201
    viewer = tenant.users["viewer"]
    latest = viewer.get("/api/v1/values", params={"node": ids["Flow"]}).json()
    assert latest[0]["value"] == -1 and latest[0]["quality"] == "Bad"
    raw = viewer.get("/api/v1/history", params={"node": ids["Flow"], "start": t0 - 1}).json()
    assert raw["mode"] == "raw" and raw["count"] == 101 and raw["quality"][-1] == 2
    dec = viewer.get("/api/v1/history", params={"node": ids["Flow"], "start": t0 - 1, "max_points": 10}).json()
    assert dec["mode"] == "decimated" and dec["count"] <= 10
    assert min(dec["min"]) == 0 and max(dec["max"]) == 49.5  # the Bad sample is not in the envelope
    csv = viewer.get("/api/v1/history", params={"node": ids["Flow"], "start": t0 - 1, "format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0] == "time,value,quality" and len(lines) == 102 and lines[-1].endswith(",Bad")
    for params, field in [
        ({"node": ids["Flow"], "start": t0, "end": t0 - 5}, "end"),
        ({"node": ids["Flow"], "max_points": 0}, "max_points"),
        ({"node": ids["Pump7"]}, "node"),
        ({"node": ids["Flow"], "start": "not-a-time"}, "start"),
    ]:
        r = viewer.get("/api/v1/history", params=params)
        assert r.status_code == 422 and r.json()["field"] == field, (params, r.text)
    assert viewer.get("/api/v1/history", params={"node": "Plant1/Nope"}).status_code == 404


def test_ingest_stats_count_accepted_and_rejected_per_tenant(
    live: LiveServer, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    tenant.build_plant()
    eng = tenant.engineer
    assert (
        eng.post("/api/v1/telemetry", json={"device": DEVICE, "values": {"Flow": 1, "Pressure": 2}}).status_code == 201
    )
    assert eng.post("/api/v1/telemetry", json={"device": "Plant1/Nope", "values": {"Flow": 1}}).status_code == 404
    stats = tenant.users["viewer"].get("/api/v1/ingest/stats").json()
    assert stats["http"]["received"] == 3 and stats["http"]["accepted"] == 2
    assert stats["http"]["rejected"] == {"unknown_device": 1}
    assert other_tenant.users["viewer"].get("/api/v1/ingest/stats").json() == {}
