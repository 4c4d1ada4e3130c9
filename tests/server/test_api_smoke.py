from tests.support import LiveServer, TenantHandle


def test_login_build_ingest_read(live: LiveServer, tenant: TenantHandle) -> None:
    ids = tenant.build_plant()
    r = tenant.engineer.post("/api/v1/telemetry", json={"device": "Plant1/Area1/Pump7", "values": {"Flow": 1.5}})
    assert r.status_code == 201, r.text
    r = tenant.users["viewer"].get("/api/v1/history", params={"node": ids["Flow"]})
    assert r.status_code == 200 and r.json()["value"] == [1.5]
