"""Browse the plant tree lazily with live values, and a trend joining history and live values."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from pathlib import Path

from PySide6.QtCore import QMimeData, QPointF, Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from hmi.models.qt_namespace import MIME_NODES, NODE_ID_ROLE, NamespaceModel
from hmi.views.trend_view import TrendView
from tests.hmi.conftest import FLOW, PRESSURE, ConsoleHarness, Plant, until


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


def drop(view: TrendView, mime: QMimeData) -> tuple[bool, bool]:
    """A drag entering the chart and dropped on it, as Qt delivers them: (entered, dropped)."""
    centre = view.rect().center()
    enter = QDragEnterEvent(centre, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)  # fmt: skip
    QApplication.sendEvent(view, enter)
    if not enter.isAccepted():
        return False, False
    event = QDropEvent(QPointF(centre), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)  # fmt: skip
    QApplication.sendEvent(view, event)
    return True, event.isAccepted()


def test_dragging_tags_from_the_tree_onto_the_trend_adds_pens(console: ConsoleHarness, plant: Plant) -> None:
    trend, view, tree = console.console.trend, console.window.trend, console.window.tree

    async def scenario() -> None:
        pressure = await expand(console, PRESSURE)
        flow = plant.ids["Flow"]
        model = console.console.namespace
        rows = [tree.proxy.mapFromSource(model.index_of(n)) for n in (pressure, flow)]
        for index in rows:  # the operator selects both tags, then drags the selection
            tree.tree.selectionModel().select(index, tree.tree.selectionModel().SelectionFlag.Select)
        indexes = [i.siblingAtColumn(c) for i in rows for c in range(tree.proxy.columnCount())]
        mime = tree.proxy.mimeData(indexes)  # exactly what the tree view puts on the drag
        assert mime.hasFormat(MIME_NODES)
        assert drop(view, mime) == (True, True)
        await until(lambda: trend.pen(pressure) and trend.pen(flow), what="two pens")
        assert [(p.path, p.unit) for p in trend.pens] == [(PRESSURE, "bar"), (FLOW, "m3/h")]
        assert set(view.curves) == {pressure, flow} and view.axes.state()[1].unit == "m3/h"  # an axis per unit
        await until(lambda: all(len(p.history.t) for p in trend.pens), what="their history")
        assert drop(view, mime) == (True, True)  # dropped again: no second pen of a tag
        await asyncio.sleep(0.2)
        assert len(trend.pens) == 2

        device = tree.proxy.mapFromSource(model.index_of(plant.ids["Pump7"]))  # a device carries no tags
        assert drop(view, tree.proxy.mimeData([device])) == (True, True)
        other = QMimeData()
        other.setText(PRESSURE)
        assert drop(view, other) == (False, False)  # not ours: the chart refuses the drag
        await asyncio.sleep(0.2)
        assert len(trend.pens) == 2

    console.run(scenario())


def test_search_finds_an_unbrowsed_tag_shows_it_in_the_tree_and_trends_it(
    console: ConsoleHarness, plant: Plant
) -> None:
    view, model = console.window.tree, console.console.namespace
    search = view.search

    async def scenario() -> None:
        await until(lambda: model.rowCount(model.index(-1, -1)) == 1, what="the roots")
        assert not model.index_of(plant.ids["Pressure"]).isValid()  # never browsed
        search.box.setText("PRESS")  # typing: asked 300 ms after the last key
        await until(lambda: search.results.count() == 1, what="a result")
        [node] = search.nodes()
        assert (node.node_id, node.path, search.status.text()) == (plant.ids["Pressure"], PRESSURE, "1 found.")
        item = search.results.item(0)
        tree_mime = model.mimeData([model.index(0, 0)])  # a folder: no tags
        result_mime = search.results.mimeData([item])
        assert bytes(result_mime.data(MIME_NODES).data()) != bytes(tree_mime.data(MIME_NODES).data())
        search.results.setCurrentItem(item)
        search.results.itemActivated.emit(item)  # Enter or double-click: show it in the tree
        current = lambda: view.tree.currentIndex().data(NODE_ID_ROLE)  # noqa: E731
        await until(lambda: current() == plant.ids["Pressure"], what="the tag selected in the tree")
        for name in ("Plant1", "Area1", "Pump7"):  # its branches were loaded and opened on the way
            assert view.tree.isExpanded(view.proxy.mapFromSource(model.index_of(plant.ids[name]))), name
        assert bytes(result_mime.data(MIME_NODES).data()) == bytes(
            model.mimeData([model.index_of(plant.ids["Pressure"])]).data(MIME_NODES).data()
        )  # a result drags like the tree's row
        faceplate = console.window.faceplate
        assert faceplate.node is not None and faceplate.node.path == PRESSURE
        assert search.add_button.isEnabled()
        search.add_button.click()
        await until(lambda: console.console.trend.pen(plant.ids["Pressure"]), what="the pen")

        view.filter.setText("flow")  # a filter that would hide the next result is cleared on the way
        search.box.setText("pump7")
        search.search_now()  # Enter: at once
        await until(lambda: [n.path for n in search.nodes()][:1] == ["Plant1/Area1/Pump7"], what="the pump first")
        search.results.itemActivated.emit(search.results.item(0))
        await until(lambda: current() == plant.ids["Pump7"], what="the device selected")
        assert view.filter.text() == ""
        search.box.setText("no such thing")
        search.search_now()
        await until(lambda: search.status.text() == "Nothing found.", what="no match")
        search.box.clear()
        assert not search.results.isVisible() and not search.status.isVisible()

    console.run(scenario())


def test_search_results_are_limited_and_only_the_tenants(console: ConsoleHarness, plant: Plant) -> None:
    search = console.window.tree.search
    found = console.run(console.console.search_nodes("a", 2))
    assert len(found.nodes) == 2 and found.truncated
    search.show_results(found)
    assert search.status.text() == "The first 2 matches; type more to narrow."
    other = plant.live.new_tenant("hmi-other")
    r = other.engineer.post("/api/v1/nodes", json={"parent": None, "node_class": "folder", "browse_name": "Elsewhere"})
    assert r.status_code == 201, r.text
    assert console.run(console.console.search_nodes("elsewhere")).nodes == []
