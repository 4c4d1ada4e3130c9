"""The analytics in the console against the real server: the panel shows the server's statistics
for a tag, a forecast is drawn on the trend with its interval, a model trained through the model
list reports progress until it is ready, its monitoring is shown to a viewer, bands and anomaly
markers are drawn on a trend, and only engineers and admins see Train."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from hmi.views.model_list import TrainRequest
from tests.hmi.conftest import FLOW, ConsoleHarness, Plant, until
from tests.support import wait_for

PUMP = "Plant1/Area1/Pump8"
HISTORY_S = 3000
TRAIN_S = 2300  # the first 2,300 s: at least 200 windows of 10 s plus the 30 s window
SPIKE_AT = 2700  # 30 s of a flow 60 m³/h too high, after the training range


def seed_pump(plant: Plant) -> float:
    """Pump8 (Flow, Pressure) with 3,000 s of one reading every 5 s up to now, a spike near the end;
    returns the start of its history (a multiple of 10 s)."""
    api = plant.tenant.engineer
    r = api.post("/api/v1/nodes", json={"parent": "Plant1/Area1", "node_class": "device", "browse_name": "Pump8"})
    assert r.status_code == 201, r.text
    start = float(int(time.time()) // 10 * 10 - HISTORY_S)
    items: list[dict[str, Any]] = []
    for k in range(0, HISTORY_S, 5):
        flow = 50.0 + 3.0 * math.sin(k / 97) + 0.4 * math.sin(k * 1.7)
        if SPIKE_AT <= k < SPIKE_AT + 30:
            flow += 60.0
        items.append({"device": PUMP, "ts": start + k, "values": {"Flow": flow, "Pressure": 2.0 + 0.04 * flow}})
    r = api.post("/api/v1/telemetry", json=items)
    assert r.status_code == 201, r.text
    return start


def train_over_http(plant: Plant, start: float) -> dict[str, Any]:
    api = plant.tenant.engineer
    body = {"device": PUMP, "start": start, "end": start + TRAIN_S, "window_s": 30, "n_estimators": 30}
    r = api.post("/api/v1/anomaly/models", json=body)
    assert r.status_code == 202, r.text

    def ready() -> dict[str, Any] | None:
        m: dict[str, Any] = api.get(f"/api/v1/anomaly/models/{r.json()['id']}").json()
        assert m["status"] != "failed", m
        return m if m["status"] == "ready" and m["active"] else None

    out: dict[str, Any] = wait_for(ready, 60, "the model to be trained")
    return out


def login(make_console: Callable[[str], ConsoleHarness], plant: Plant, role: str) -> ConsoleHarness:
    harness = make_console(plant.live.base)
    harness.login(plant.name, role, "admin-password" if role == "admin" else role * 3)
    return harness


def test_the_panel_shows_the_servers_statistics_and_trend(console: ConsoleHarness, plant: Plant) -> None:
    panel = console.window.analytics.panel
    end = time.time()
    span = (end - 3600, end)
    panel.span = lambda: span  # type: ignore[method-assign]  # one range for the panel and the reference
    expected = plant.tenant.engineer.get("/api/v1/analytics/statistics",
                                         params={"node": FLOW, "start": span[0], "end": span[1]}).json()  # fmt: skip
    trend = plant.tenant.engineer.get("/api/v1/analytics/trend",
                                      params={"node": FLOW, "start": span[0], "end": span[1]}).json()  # fmt: skip

    async def scenario() -> None:
        assert console.console.api is not None
        panel.show_node(await console.console.api.node(FLOW))
        await until(lambda: panel.stats["count"].text() == str(expected["count"]), what="the count")
        await until(lambda: panel.direction.text() == trend["direction"], what="the trend's direction")

    console.run(scenario())
    assert panel.stats["mean"].text() == f"{expected['mean']:.6g}"
    assert panel.stats["p95"].text() == f"{expected['percentiles']['p95']:.6g}"
    assert panel.r2.text() == f"{trend['r2']:.6g}"
    assert "samples" in panel.stats_status.text()


def test_too_few_points_is_text_not_a_dialog(console: ConsoleHarness) -> None:
    panel = console.window.analytics.panel
    panel.span = lambda: (time.time() - 7 * 86_400, time.time() - 6 * 86_400)  # type: ignore[method-assign]

    async def scenario() -> None:
        assert console.console.api is not None
        panel.show_node(await console.console.api.node(FLOW))
        await until(lambda: panel.stats_status.text().startswith("Not available"), what="the problem as text")

    console.run(scenario())


def test_a_forecast_is_drawn_on_the_trend_with_its_interval(console: ConsoleHarness) -> None:
    window = console.window
    panel, overlays = window.analytics.panel, window.analytics.overlays

    async def scenario() -> None:
        assert console.console.api is not None
        panel.show_node(await console.console.api.node(FLOW))
        panel.horizon.setValue(15)
        panel.compute_forecast()
        await until(lambda: panel.draw_button.isEnabled(), what="the forecast")
        panel.draw_button.click()
        await until(lambda: len(overlays.forecast_items) == 2, what="the forecast on the trend")

    console.run(scenario())
    forecast = panel.forecast
    assert forecast is not None and len(forecast.t) == 15
    assert console.console.trend.pen(forecast.node_id) is not None  # the tag was put on the trend
    interval, line = (p.item for p in overlays.forecast_items)
    area = interval.path().boundingRect()  # type: ignore[attr-defined]
    assert area.right() == pytest.approx(forecast.t[-1])
    assert area.top() <= min(forecast.lower) and area.bottom() >= max(forecast.upper)
    assert list(line.getData()[0][-15:]) == pytest.approx(forecast.t)  # type: ignore[attr-defined]
    model = console.console.trend
    assert model.paused and model.view_end >= forecast.t[-1]  # the whole horizon is in view
    overlays.clear_forecast()
    assert overlays.forecast_items == [] and not overlays.clear_button.isVisibleTo(window)


def test_a_model_trained_through_the_list_reports_progress_until_ready(
    make_console: Callable[[str], ConsoleHarness], plant: Plant
) -> None:
    start = seed_pump(plant)
    harness = login(make_console, plant, "engineer")
    models = harness.window.analytics.models
    seen: list[int] = []
    models.progress.valueChanged.connect(seen.append)

    async def scenario() -> None:
        models.train(TrainRequest(PUMP, start, start + TRAIN_S, contamination=0.001, window_s=30, step_s=10))
        await until(lambda: any(w in models.status.text() for w in ("is ready", "failed", "Not trained", "stopped")),
                    timeout=60,
                    what="the training job")  # fmt: skip
        await until(lambda: models.table.rowCount() == 1, what="the list")

    harness.run(scenario(), timeout=90)
    assert "is ready" in models.status.text(), models.status.text()
    assert models.progress.value() == 100 and seen and seen[-1] == 100
    assert models.table.item(0, 0).text() == PUMP
    assert models.table.item(0, 2).text() == "ready" and models.table.item(0, 3).text() == "yes"
    assert models.table.item(0, 6).text() == "engineer"


def test_a_viewer_sees_the_selected_models_monitoring(
    make_console: Callable[[str], ConsoleHarness], plant: Plant
) -> None:
    start = seed_pump(plant)
    model = train_over_http(plant, start)
    harness = login(make_console, plant, "viewer")
    models = harness.window.analytics.models
    monitoring = models.monitoring

    async def scenario() -> None:
        await models.reload()
        models.table.selectRow(0)
        await until(lambda: monitoring.result is not None, timeout=30, what="the monitoring")

    harness.run(scenario(), timeout=60)
    result = monitoring.result
    assert result is not None and result.model == model["id"] and result.windows > 0
    assert monitoring.title.text() == f"Monitoring {PUMP} v1, last 24 hours"
    text = monitoring.summary.text()
    assert f"{result.windows:,} windows" in text and "PSI" in text and "KS" in text
    assert "Retraining recommended" in text and "shorter than a day" in text  # trained on 38 minutes
    heights = monitoring.bars.opts["height"]
    assert len(heights) == len(result.series) and max(heights) > 0  # the spike's windows, after training
    assert monitoring.expected.isVisible() and monitoring.expected.value() == 100 * result.contamination

    async def other_range() -> None:
        monitoring.range.setCurrentText("Last 7 days")
        await until(lambda: "last 7 days" in monitoring.title.text(), timeout=30, what="the 7-day monitoring")

    harness.run(other_range(), timeout=60)
    assert monitoring.result is not None and monitoring.result.bucket_s == 6 * 3600


def test_bands_and_anomaly_markers_on_the_trend(console: ConsoleHarness, plant: Plant) -> None:
    start = seed_pump(plant)
    train_over_http(plant, start)
    overlays = console.window.analytics.overlays
    flow = f"{PUMP}/Flow"

    async def scenario() -> None:
        assert console.console.api is not None
        node = await console.console.api.node(flow)
        console.window.trend.set_span(3600)
        await console.console.add_to_trend([node])
        console.window.trend.fetch_visible_soon()
        await until(lambda: node.node_id in overlays.bands and node.node_id in overlays.markers, timeout=30,
                    what="bands and markers")  # fmt: skip

    console.run(scenario(), timeout=60)
    pen = console.console.trend.pens[0]
    band = overlays.bands[pen.node_id].item.path().boundingRect()  # type: ignore[attr-defined]
    assert band.width() > 0 and band.height() > 0
    xs, ys = overlays.markers[pen.node_id].item.getData()  # type: ignore[attr-defined]
    assert len(xs) > 0
    assert all(start + SPIKE_AT <= x <= start + SPIKE_AT + 30 + 60 for x in xs)  # at the spike, nowhere else
    assert max(ys) > 100  # drawn on the pen: the spike, and the windows that still hold it
    console.window.trend.pause_button.setChecked(False)
    overlays.toggle.setChecked(False)
    assert not overlays.bands[pen.node_id].item.isVisible()


@pytest.mark.parametrize(("role", "can_train"), [("viewer", False), ("operator", False), ("engineer", True),
                                                 ("admin", True)])  # fmt: skip
def test_only_engineers_and_admins_may_train(
    make_console: Callable[[str], ConsoleHarness], plant: Plant, role: str, can_train: bool
) -> None:
    harness = login(make_console, plant, role)
    models = harness.window.analytics.models
    for button in (models.train_button, models.retrain_button, models.delete_button):
        assert button.isHidden() is not can_train
    assert harness.window.docks["models"].toggleViewAction().isVisible()  # every role may read the list
