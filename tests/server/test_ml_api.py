"""Anomaly detection through the API on a real server (SQLite and PostgreSQL): training as a
background job with progress, scoring, an anomaly alarm end to end, predictions, bands,
monitoring, RBAC and tenant isolation."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.ml_support import plant_run
from tests.support import Api, LiveServer, TenantHandle, wait_for

DEVICE = "Plant1/Area1/Pump1"
HISTORY_S = 4200


def _post_history(api: Api, start: float, seconds: int, *, spike_at: int | None = None, after: int = 0) -> None:
    """The simulator's Pump1, one reading a second from `start`, in requests of ~9,000 values;
    `after`: the plant's readings from that second of its run on (a continuation)."""
    run = plant_run(after + seconds, seed=11)
    items: list[dict[str, Any]] = []
    flow = run.names.index("Flow")
    for k in range(after, after + seconds):
        values = {n: float(v) for n, v in zip(run.names, run.values[k], strict=True)}
        if spike_at is not None and spike_at <= k < spike_at + 3:
            values["Flow"] = float(run.values[k, flow]) + 60.0
        items.append({"device": DEVICE, "ts": start + k - after, "values": values})
        if len(items) == 1500:
            r = api.post("/api/v1/telemetry", json=items)
            assert r.status_code == 201, r.text
            items = []
    if items:
        r = api.post("/api/v1/telemetry", json=items)
        assert r.status_code == 201, r.text


def _plant(tenant: TenantHandle) -> None:
    api = tenant.engineer
    for parent, cls, name in [(None, "folder", "Plant1"), ("Plant1", "folder", "Area1"),
                              ("Plant1/Area1", "device", "Pump1")]:  # fmt: skip
        r = api.post("/api/v1/nodes", json={"parent": parent, "node_class": cls, "browse_name": name})
        assert r.status_code == 201, r.text


def _train(tenant: TenantHandle, start: float, end: float, **params: Any) -> dict[str, Any]:
    body = {"device": DEVICE, "start": start, "end": end, "n_estimators": 40} | params
    r = tenant.engineer.post("/api/v1/anomaly/models", json=body)
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/api/v1/anomaly/models/{r.json()['id']}"
    out: dict[str, Any] = r.json()
    return out


def _ready(api: Api, model_id: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        m: dict[str, Any] = api.get(f"/api/v1/anomaly/models/{model_id}").json()
        assert m["status"] != "failed", m.get("error")
        return m if m["status"] == "ready" and m["active"] else None

    out: dict[str, Any] = wait_for(done, 60, "the model to be trained")
    return out


@pytest.fixture
def trained(live: LiveServer, tenant: TenantHandle) -> tuple[TenantHandle, dict[str, Any], float]:
    """A tenant with Pump1, 70 minutes of its history up to now, and a model of the first hour."""
    _plant(tenant)
    now = float(int(time.time()) // 10 * 10)
    _post_history(tenant.engineer, now - HISTORY_S, HISTORY_S)
    created = _train(tenant, now - HISTORY_S, now - 600)
    return tenant, _ready(tenant.engineer, created["id"]), now


def test_training_is_a_job_with_progress_on_the_stream(live: LiveServer, tenant: TenantHandle) -> None:
    _plant(tenant)
    now = time.time()
    _post_history(tenant.engineer, now - HISTORY_S, HISTORY_S)
    viewer = tenant.users["viewer"]
    with viewer.stream() as stream:
        created = _train(tenant, now - HISTORY_S, now - 60, n_estimators=100)
        assert created["status"] in ("queued", "training") and created["version"] == 1
        assert created["trained_by"] == "engineer" and created["path"] == DEVICE
        seen: list[dict[str, Any]] = []
        while not seen or seen[-1]["status"] not in ("ready", "failed"):
            event = stream.next_of("event", timeout=30)
            if event["kind"] == "anomaly_model" and event["id"] == created["id"]:
                seen.append(event)
    assert seen[-1]["status"] == "ready", seen[-1]
    progress = [e["progress"] for e in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert any(0 < p < 1 for p in progress)
    assert {"reading", "features", "training"} <= {e["phase"] for e in seen}
    model = _ready(viewer, created["id"])  # viewers read models
    assert model["features"]["columns"][0] == "value" and len(model["features"]["tags"]) == 6
    assert {t["name"] for t in model["features"]["tags"]} >= {"Flow", "Vibration", "BearingTemp"}
    assert model["metrics"]["train_windows"] > 300 and model["threshold"] == 1.0
    assert len(model["artifact_sha256"]) == 64 and model["params"]["contamination"] == 1e-4
    again = _train(tenant, now - HISTORY_S, now - 60, contamination=0.001)
    assert again["version"] == 2
    _ready(viewer, again["id"])
    listed = viewer.get("/api/v1/anomaly/models", params={"device": DEVICE}).json()
    assert [(m["version"], m["active"]) for m in listed] == [(2, True), (1, False)]


def test_training_refuses_what_cannot_work(live: LiveServer, tenant: TenantHandle) -> None:
    _plant(tenant)
    api = tenant.engineer
    now = time.time()
    r = api.post("/api/v1/anomaly/models", json={"device": DEVICE, "start": now - 600, "end": now})
    assert r.status_code == 422 and r.json()["field"] == "start"  # far too short for 200 windows
    r = api.post("/api/v1/anomaly/models", json={"device": "Plant1/Area1", "start": now - 9000, "end": now})
    assert r.status_code == 422 and r.json()["field"] == "device"
    r = api.post("/api/v1/anomaly/models", json={"device": DEVICE, "start": now - 9000, "end": now, "step_s": 15})
    assert r.status_code == 422 and r.json()["field"] == "step_s"
    r = api.post("/api/v1/anomaly/models", json={"device": DEVICE, "start": now - 9000, "end": now})
    assert r.status_code == 422 and "has no tags" in r.json()["detail"]
    # a valid range with no data: the job fails and says why
    r = api.post("/api/v1/nodes", json={"parent": DEVICE, "node_class": "tag", "browse_name": "Flow"})
    assert r.status_code == 201
    r = api.post("/api/v1/anomaly/models", json={"device": DEVICE, "start": now - 9000, "end": now, "tags": ["Nope"]})
    assert r.status_code == 422 and r.json()["field"] == "tags"
    created = _train(tenant, now - 9000, now)
    failed = wait_for(lambda: (m := api.get(f"/api/v1/anomaly/models/{created['id']}").json())["status"] == "failed"
                      and m, 60, "the job to fail")  # fmt: skip
    assert failed["error"] == "no samples in the training range for: Flow"


def test_score_on_demand_predictions_bands_and_monitoring(
    live: LiveServer, trained: tuple[TenantHandle, dict[str, Any], float]
) -> None:
    tenant, model, now = trained
    viewer = tenant.users["viewer"]
    run = plant_run(900, seed=12)
    samples = [{"ts": now + k, "values": dict(zip(run.names, map(float, run.values[k]), strict=True))}
               for k in range(900)]  # fmt: skip
    samples[600]["values"]["Flow"] += 60.0
    r = viewer.post(f"/api/v1/anomaly/models/{model['id']}/score", json={"samples": samples})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["count"] == 90 - 29 and out["threshold"] == 1.0  # the first 29 buckets fill the window
    hits = [t for t, a in zip(out["t"], out["anomalous"], strict=True) if a]
    assert now + 610 in hits and all(now + 600 <= t <= now + 620 for t in hits), hits
    assert out["tag"][out["t"].index(now + 610)] == "Flow"
    r = viewer.post(f"/api/v1/anomaly/models/{model['id']}/score", json={"samples": [{"ts": now, "values": {"X": 1}}]})
    assert r.status_code == 422 and r.json()["field"] == "samples[0].values.X"

    pred = viewer.get("/api/v1/anomaly/predictions",
                      params={"device": DEVICE, "start": now - 3000, "end": now - 600}).json()  # fmt: skip
    assert pred["model"] == model["id"] and pred["count"] == 240
    assert pred["t"][0] == now - 3000 + 10 and pred["t"][-1] == now - 600
    assert sum(pred["anomalous"]) <= 2  # the training range itself

    query = {"node": f"{DEVICE}/Flow", "start": now - 3600, "end": now, "max_points": 100}
    bands = viewer.get("/api/v1/anomaly/bands", params=query).json()
    assert bands["method"] == "expected" and bands["model"] == model["id"] and bands["count"] <= 100
    assert len(bands["t"]) == len(bands["lower"]) == len(bands["upper"]) == bands["count"]
    assert all(lo <= hi for lo, hi in zip(bands["lower"], bands["upper"], strict=True) if lo is not None)
    rolling = viewer.get("/api/v1/anomaly/bands", params={"node": f"{DEVICE}/Flow", "start": now - 3600,
                                                          "end": now, "method": "rolling", "k": 2}).json()  # fmt: skip
    assert rolling["method"] == "rolling" and rolling["resolution_s"] == 10 and rolling["count"] == 360

    mon = viewer.get(f"/api/v1/anomaly/models/{model['id']}/monitoring",
                     params={"start": now - 3600, "end": now, "bucket_s": 600}).json()  # fmt: skip
    assert mon["windows"] == 360 and sum(b["windows"] for b in mon["series"]) == 360
    assert all(b["t"] % 600 == 0 for b in mon["series"]) and len(mon["series"]) in (6, 7)
    assert set(mon["drift"]) == {"psi", "ks", "feature_shift"}
    assert mon["retrain"]["recommended"] is True  # trained on one hour: no daily cycle
    assert any("shorter than a day" in r for r in mon["retrain"]["reasons"])


def test_an_anomaly_raises_the_alarm_end_to_end(
    live: LiveServer, trained: tuple[TenantHandle, dict[str, Any], float]
) -> None:
    """Samples in -> the scorer's window score -> the engine's anomaly condition -> journal."""
    tenant, model, _ = trained
    api = tenant.engineer
    r = api.post("/api/v1/alarms/conditions", json={
        "name": "Pump1 anomaly", "priority": "high", "message": "{name}: score {value} (limit {limit})",
        "spec": {"kind": "anomaly", "device": DEVICE, "threshold": 1.0},
    })  # fmt: skip
    assert r.status_code == 201, r.text
    condition = r.json()["id"]
    live_start = float(int(time.time()) // 10 * 10 + 10)  # live data from the next bucket on
    _post_history(api, live_start, 240, spike_at=HISTORY_S + 150, after=HISTORY_S)  # the history goes on

    def raised() -> dict[str, Any] | None:
        alarms = api.get("/api/v1/alarms").json()
        return next((a for a in alarms if a["id"] == condition and a["activations"]), None)

    # The data comes faster than real time: the spike's two windows have passed by now, so the
    # alarm is active or already back to normal, unacknowledged either way.
    alarm = wait_for(raised, 20, "the anomaly alarm")
    assert alarm["state"] in ("unack_active", "unack_rtn") and alarm["activations"] == 1
    assert alarm["limit"] == 1.0 and alarm["kind"] == "anomaly" and alarm["active_since"] == live_start + 160
    journal = api.get("/api/v1/alarms/journal", params={"condition": condition, "start": live_start - 60,
                                                         "end": live_start + 600}).json()  # fmt: skip
    activated = [e for e in journal["entries"] if e["event"] == "activated"]
    assert len(activated) == 1 and activated[0]["ts"] == live_start + 160  # the spike's window
    assert activated[0]["value"] > 1.0 and activated[0]["user"] == "system"
    m = api.get(f"/api/v1/anomaly/models/{model['id']}").json()
    assert m["live"]["windows"] >= 20 and m["live"]["anomalous"] >= 1 and m["live"]["last_tag"] is not None


def test_rbac_viewers_read_engineers_train(
    live: LiveServer, trained: tuple[TenantHandle, dict[str, Any], float]
) -> None:
    tenant, model, now = trained
    body = {"device": DEVICE, "start": now - HISTORY_S, "end": now - 600}
    for role in ("viewer", "operator", "supervisor"):
        api = tenant.users[role]
        assert api.post("/api/v1/anomaly/models", json=body).status_code == 403
        assert api.delete(f"/api/v1/anomaly/models/{model['id']}").status_code == 403
        assert api.get(f"/api/v1/anomaly/models/{model['id']}").status_code == 200
    assert tenant.admin.post("/api/v1/anomaly/models", json=body).status_code == 202
    r = tenant.engineer.delete(f"/api/v1/anomaly/models/{model['id']}")
    assert r.status_code == 204
    assert tenant.engineer.get(f"/api/v1/anomaly/models/{model['id']}").status_code == 404
    audit = tenant.admin.get("/api/v1/audit", params={"action": "anomaly.model.delete"})
    assert audit.status_code == 200 and any(a["target"] == str(model["id"]) for a in audit.json())


def test_another_tenant_sees_nothing_of_mine(
    live: LiveServer, trained: tuple[TenantHandle, dict[str, Any], float], other_tenant: TenantHandle
) -> None:
    tenant, model, now = trained
    them = other_tenant.admin
    mid = model["id"]
    assert them.get("/api/v1/anomaly/models").json() == []
    assert them.get(f"/api/v1/anomaly/models/{mid}").status_code == 404
    assert them.delete(f"/api/v1/anomaly/models/{mid}").status_code == 404
    assert them.post(f"/api/v1/anomaly/models/{mid}/score", json={"start": now - 3600, "end": now}).status_code == 404
    assert them.get(f"/api/v1/anomaly/models/{mid}/monitoring").status_code == 404
    # my device by its node id or path: not found in their namespace
    assert them.post("/api/v1/anomaly/models", json={"device": model["device"], "start": now - HISTORY_S,
                                                     "end": now - 600}).status_code == 404  # fmt: skip
    assert them.get("/api/v1/anomaly/predictions", params={"device": model["device"]}).status_code == 404
    assert them.get("/api/v1/anomaly/bands", params={"node": f"{model['device']}/Flow"}).status_code == 404
    with them.stream() as stream:  # and my scorer's events never reach their stream
        _post_history(tenant.engineer, float(int(time.time()) // 10 * 10 + 10), 60, spike_at=20)
        stream.send({"type": "ping", "id": 1})
        while (msg := stream.next(timeout=5))["type"] != "pong":
            assert msg.get("kind") not in ("anomaly", "anomaly_model"), msg
    assert tenant.engineer.get(f"/api/v1/anomaly/models/{mid}").json()["status"] == "ready"
