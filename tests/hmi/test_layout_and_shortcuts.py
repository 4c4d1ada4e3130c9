"""The dock layout, window size and trend pens are saved per user and restored at the next login
(another user gets their own, or the default); the keyboard works: F9 / Shift+F9 acknowledge,
Ctrl+1 … Ctrl+6, Ctrl+F and Ctrl+Shift+F move between the views."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QWidget

from tests.hmi.conftest import FLOW, PRESSURE, ConsoleHarness, Plant, until

LEFT, RIGHT = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea


def test_layout_is_saved_per_user_and_restored(make_console: Callable[..., ConsoleHarness], plant: Plant) -> None:
    first = make_console(plant.live.base)
    first.login(plant.name, "operator", "operator" * 3)
    window = first.window
    assert window.docks["faceplate"].isVisible() and window.dockWidgetArea(window.docks["kpis"]) == RIGHT
    window.docks["faceplate"].toggleViewAction().trigger()  # closed from the View menu
    window.addDockWidget(LEFT, window.docks["kpis"])  # dragged to the left
    window.resize(1500, 700)
    pens = [{"node_id": plant.ids["Pressure"], "path": PRESSURE, "unit": "bar"},
            {"node_id": plant.ids["Flow"], "path": FLOW, "unit": "m3/h"}]  # fmt: skip
    first.run(first.console.add_to_trend(pens))
    assert not window.docks["faceplate"].isVisible()

    window.logout()  # saves the operator's layout; the next user is someone else
    first.run(until(lambda: first.console.me is None and not first.console.trend.pens, what="logged out"))
    assert first.console.trend.pens == []
    first.login(plant.name, "viewer", "viewer" * 3)
    first.run(until(lambda: window.who.text().startswith("viewer"), what="the viewer"))
    assert window.docks["faceplate"].isVisible(), "the viewer gets the default layout, not the operator's"
    assert window.dockWidgetArea(window.docks["kpis"]) == RIGHT and first.console.trend.pens == []
    window.logout()
    first.run(until(lambda: first.console.me is None and not first.console.trend.pens, what="logged out"))

    first.login(plant.name, "operator", "operator" * 3)  # the same workstation, the operator again
    first.run(until(lambda: len(first.console.trend.pens) == 2, what="the operator's pens"))
    assert not window.docks["faceplate"].isVisible() and window.dockWidgetArea(window.docks["kpis"]) == LEFT
    assert [p.path for p in first.console.trend.pens] == [PRESSURE, FLOW]
    assert not window.docks["config"].isVisible(), "a saved layout never reveals a dock the role may not use"
    window.close()  # closing saves too

    again = make_console(plant.live.base, first.config_dir)  # the console started again on this machine
    again.login(plant.name, "operator", "operator" * 3)
    again.run(until(lambda: len(again.console.trend.pens) == 2, what="pens after a restart"))
    win = again.window
    assert not win.docks["faceplate"].isVisible() and win.dockWidgetArea(win.docks["kpis"]) == LEFT
    assert win.height() == 700  # the saved geometry (the default is 860; the width is bound by the docks)


def focused_in(harness: ConsoleHarness, widget: QWidget) -> bool:
    focus = harness.window.focusWidget()
    return focus is not None and (focus is widget or widget.isAncestorOf(focus))


def test_keyboard_acknowledges_and_navigates(console: ConsoleHarness, plant: Plant) -> None:
    window, summary, store = console.window, console.window.alarm_summary, console.console.alarms
    window.activateWindow()
    QApplication.processEvents()
    for key, dock in enumerate(["tree", "faceplate", "alarms", "journal", "kpis"], start=1):
        QTest.keyClick(window, Qt.Key(Qt.Key.Key_0 + key), Qt.KeyboardModifier.ControlModifier)
        assert focused_in(console, window.docks[dock].widget()), f"Ctrl+{key} → {dock}"
        assert window.docks[dock].widget().isVisible(), dock
    QTest.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert window.focusWidget() is window.tree.filter
    QTest.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert window.focusWidget() is window.tree.search.box

    async def one_alarm(value: float, state: str) -> None:
        plant.send(Flow=value)
        await until(lambda: (a := store.alarms.get(plant.alarm_id)) is not None and a.state == state, what=state)
        await until(lambda: summary.model.rowCount() == 1, what="the row")

    console.run(one_alarm(95.0, "unack_active"))
    QTest.keyClick(window, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    summary.select_row(0)
    QTest.keyClick(window, Qt.Key.Key_F9)
    console.run(until(lambda: store.alarms[plant.alarm_id].state == "ack_active", what="F9 acknowledged"))

    plant.send(Flow=50.0)  # cleared (gone from the summary), then active again: unacknowledged
    console.run(until(lambda: plant.alarm_id not in store.alarms, what="cleared"))
    console.run(one_alarm(96.0, "unack_active"))
    summary.priority.setCurrentText("low")  # Shift+F9 at once: exactly what the filter shows, nothing
    QTest.keyClick(window, Qt.Key.Key_F9, Qt.KeyboardModifier.ShiftModifier)
    console.run(until(lambda: summary.status.text() == "Nothing to acknowledge.", what="nothing visible"))
    assert store.alarms[plant.alarm_id].state == "unack_active"
    summary.priority.setCurrentText("All priorities")
    summary.table.clearSelection()
    QTest.keyClick(window, Qt.Key.Key_F9, Qt.KeyboardModifier.ShiftModifier)
    console.run(until(lambda: store.alarms[plant.alarm_id].state == "ack_active", what="Shift+F9 acknowledged"))
    assert summary.status.text() == "Acknowledged 1 alarm."

    QTest.keyClick(window, Qt.Key.Key_M, Qt.KeyboardModifier.ControlModifier)
    assert window.silenced and window.silence_action.isChecked()
    QTest.keyClick(window, Qt.Key.Key_M, Qt.KeyboardModifier.ControlModifier)
    assert not window.silenced


def test_f9_does_nothing_for_a_viewer(make_console: Callable[..., ConsoleHarness], plant: Plant) -> None:
    viewer = make_console(plant.live.base)
    viewer.login(plant.name, "viewer", "viewer" * 3)
    window, store = viewer.window, viewer.console.alarms
    window.activateWindow()
    plant.send(Flow=95.0)
    viewer.run(until(lambda: window.alarm_summary.model.rowCount() == 1, what="the viewer's row"))
    window.alarm_summary.select_row(0)
    QTest.keyClick(window, Qt.Key.Key_F9)
    QTest.keyClick(window, Qt.Key.Key_F9, Qt.KeyboardModifier.ShiftModifier)
    QTest.keyClick(window, Qt.Key.Key_Shift)  # no shortcut took Shift+F9: Qt would think Shift is still held
    assert QApplication.keyboardModifiers() == Qt.KeyboardModifier.NoModifier
    viewer.run(until(lambda: True))
    assert store.alarms[plant.alarm_id].state == "unack_active" and window.alarm_summary.status.text() == ""
    state = plant.tenant.admin.get(f"/api/v1/alarms/{plant.alarm_id}").json()["state"]
    assert state == "unack_active"


def test_the_console_fits_a_1080p_screen_with_every_panel(
    make_console: Callable[..., ConsoleHarness], plant: Plant
) -> None:
    """An engineer sees every dock (analytics, configuration, models); the window still fits
    1920 × 1080 with a taskbar, and its minimum fits a 1366 × 768 laptop. The analytics panel,
    tabbed with the KPIs, once made it 1,197 px tall."""
    console = make_console(plant.live.base)
    console.login(plant.name, "engineer", "engineer" * 3)
    window = console.window
    for dock in window.docks.values():  # every panel opened from the View menu
        dock.show()
    QApplication.processEvents()
    assert window.height() <= 1000, window.size()
    hint = window.minimumSizeHint()
    assert hint.width() <= 1366 and hint.height() <= 700, hint
