"""Browse the plant tree lazily with live values, and a trend joining history and live values."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from pathlib import Path

from hmi.models.qt_namespace import NODE_ID_ROLE, NamespaceModel
from tests.hmi.conftest import PRESSURE, ConsoleHarness, Plant, until


def child_named(model: NamespaceModel, parent_id: str | None, name: str) -> str | None:
    parent = model.index_of(parent_id) if parent_id else model.index(-1, -1)
    for row in range(model.rowCount(parent)):
        index = model.index(row, 0, parent)
        if index.data() == name:
            return str(index.data(NODE_ID_ROLE))
    return None


async def expand(harness: ConsoleHarness, path: str) -> str:
    """Expand the tree view down to `path`, as an operator clicking would; returns the node id."""
    model, view = harness.console.namespace, harness.window.tree
    node_id: str | None = None
    for name in path.split("/"):
        parent = node_id
        node_id = await until(lambda p=parent, n=name: child_named(model, p, n), what=f"{name} in the tree")
        source = model.index_of(node_id)
        view.tree.expand(view.proxy.mapFromSource(source))
    assert node_id is not None
    return node_id


def test_tree_browses_lazily_with_live_values_units_and_quality(console: ConsoleHarness, plant: Plant) -> None:
    model = console.console.namespace

    async def scenario() -> None:
        pressure = await expand(console, PRESSURE)
        assert pressure == plant.ids["Pressure"]
        row = model.index_of(pressure)
        assert row.siblingAtColumn(2).data() == "bar"
        await until(lambda: row.siblingAtColumn(1).data(), what="a live value in the tree")
        assert 3.0 < float(row.siblingAtColumn(1).data()) < 5.0
        assert row.siblingAtColumn(3).data() == "Good"
        device = model.node(plant.ids["Pump7"])
        assert device is not None and device.node_class == "device"
        console.window.tree.filter.setText("press")  # the filter keeps matches and their ancestors
        proxy = console.window.tree.proxy
        assert proxy.mapFromSource(row).isValid()
        assert not proxy.mapFromSource(model.index_of(plant.ids["Flow"])).isValid()
        console.window.tree.filter.clear()

    console.run(scenario())


def test_trend_joins_history_and_live_values_and_exports(console: ConsoleHarness, plant: Plant, tmp_path: Path) -> None:
    trend, view = console.console.trend, console.window.trend
    view.set_span(3600)
    started = time.time()

    async def scenario() -> None:
        node = await expand(console, PRESSURE)
        tag = console.console.namespace.node(node)
        assert tag is not None
        console.window.tree.add_to_trend.emit([tag])  # the context menu's action
        pen = await until(lambda: trend.pen(node), what="a pen")
        await until(lambda: len(pen.history.t) > 100, what="history")
        await until(lambda: len(pen.live) >= 3, what="live samples")
        await asyncio.sleep(0.1)
        view.redraw()  # the timer's tick (paced: every 2 s for an hour-wide chart)
        t, y = pen.joined()
        assert t[0] < started - 3000  # history from an hour ago ...
        assert t[-1] > started  # ... joined to what arrived live
        assert (t[1:] > t[:-1]).all()  # one curve, in time order, no overlap
        curve = view.curves[node].line  # drawn by the timer (a sample may have arrived since)
        assert curve.xData[0] == t[0] and len(t) - 10 <= len(curve.xData) <= len(t)
        assert "Pressure" in view.readout.text()
        assert pen.value_at(t[-1]) == y[-1]

    console.run(scenario())
    view.export_csv(tmp_path / "trend.csv")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "trend.csv").read_text())))
    assert rows and rows[0]["tag"] == PRESSURE and rows[0]["unit"] == "bar"
    assert view.export_png(tmp_path / "trend.png") and (tmp_path / "trend.png").stat().st_size > 1000


def test_zooming_out_fetches_decimated_history_with_an_envelope(console: ConsoleHarness, plant: Plant) -> None:
    trend, view = console.console.trend, console.window.trend

    async def scenario() -> None:
        await console.console.add_to_trend([{"node_id": plant.ids["Pressure"], "path": PRESSURE, "unit": "bar"}])
        pen = trend.pens[0]
        fetches = view.fetches
        view.history_points = lambda: 50  # type: ignore[method-assign]  # a narrow chart: decimated
        view.set_range(time.time() - 3600, time.time())
        await until(lambda: view.fetches > fetches and pen.history.decimated, what="a decimated fetch")
        assert pen.envelope() is not None and trend.paused

    console.run(scenario())
