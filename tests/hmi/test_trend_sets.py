"""Saved trend sets through the *Trend sets* menu: save under a name, open, overwrite (asked
first), rename, delete; pens, y axes and time range come back; the sets are the user's own on the
server, so they follow the user to another workstation and no other user sees them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from PySide6.QtWidgets import QDialogButtonBox, QMessageBox

from hmi.models.trend_sets import TrendSet
from hmi.views.trend_sets import TrendSetMenu
from tests.hmi.conftest import FLOW, PRESSURE, ConsoleHarness, Plant, run, until


def tags(plant: Plant) -> dict[str, dict[str, Any]]:
    return {
        "flow": {"node_id": plant.ids["Flow"], "path": FLOW, "unit": "m3/h"},
        "pressure": {"node_id": plant.ids["Pressure"], "path": PRESSURE, "unit": "bar"},
    }


async def answer(menu: TrendSetMenu, name: str, new_name: str | None = None) -> None:
    """Fill in the open dialog and press its OK button (Save / Rename / Delete)."""
    dialog = await until(lambda: menu.dialog if menu.dialog is not None and menu.dialog.isVisible() else None,
                         what="the dialog")  # fmt: skip
    dialog.name.setCurrentText(name)
    if new_name is not None:
        dialog.new_name.setText(new_name)
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()


async def confirm(menu: TrendSetMenu, yes: bool) -> None:
    box = await until(lambda: menu.confirm if menu.confirm is not None and menu.confirm.isVisible() else None,
                      what="the question")  # fmt: skip
    box.button(QMessageBox.StandardButton.Yes if yes else QMessageBox.StandardButton.No).click()


def open_from_menu(menu: TrendSetMenu, name: str) -> None:
    menu.open_menu.aboutToShow.emit()  # the submenu is filled as it opens
    action = next(a for a in menu.open_menu.actions() if a.text() == name)
    action.trigger()


def stored(plant: Plant, role: str, name: str) -> dict[str, Any]:
    r = plant.tenant.users[role].get("/api/v1/me/settings/" + quote(f"trendset/{name}", safe=""))
    assert r.status_code == 200, r.text
    value: dict[str, Any] = r.json()["value"]
    return value


def test_save_open_overwrite_rename_and_delete(console: ConsoleHarness, plant: Plant) -> None:
    window, trend, view = console.window, console.console.trend, console.window.trend
    menu = window.trend_sets
    tag = tags(plant)

    async def save_pump7() -> None:
        await until(lambda: menu.save_action.isEnabled(), what="the menu after login")
        view.set_span(3600)
        await console.console.add_to_trend([tag["flow"], tag["pressure"]])
        view.axes.box("bar").setYRange(0, 10, padding=0)  # the operator fixes the pressure axis
        menu.save_action.trigger()  # Ctrl+S with no set open: asks for a name
        await answer(menu, "Pump 7 start-up")
        await until(lambda: menu.current == "Pump 7 start-up", what="saved")

    console.run(save_pump7())
    assert window.trend_set_label.text() == "Trend set: Pump 7 start-up"
    doc = stored(plant, "operator", "Pump 7 start-up")
    assert [p["path"] for p in doc["pens"]] == [FLOW, PRESSURE] and doc["span_s"] == 3600 and doc["follow"]
    assert {a["unit"]: (a["auto"], a["min"], a["max"]) for a in doc["axes"]} == {
        "m3/h": (True, None, None), "bar": (False, 0, 10)}  # fmt: skip

    async def open_it() -> None:
        console.console.clear_trend()  # something else on the chart now
        view.set_span(600)
        await console.console.add_to_trend([tag["pressure"]])
        view.axes.box("bar").enableAutoRange()
        open_from_menu(menu, "Pump 7 start-up")
        await until(lambda: [p.path for p in trend.pens] == [FLOW, PRESSURE], what="the saved pens, in order")
        await until(lambda: all(len(p.history.t) for p in trend.pens), what="their history")

    console.run(open_it())
    assert trend.span_s == 3600 and not trend.paused
    bar = next(a for a in view.axes_state() if a.unit == "bar")
    assert not bar.auto and (bar.low, bar.high) == (0, 10)
    assert [p.colour for p in trend.pens] == ["#1f5f99", "#8a5a00"]  # the same colours as when saved

    async def more_sets() -> None:
        console.console.clear_trend()
        await console.console.add_to_trend([tag["flow"]])
        menu.save_as_action.trigger()
        await answer(menu, "Flow only")
        await until(lambda: menu.current == "Flow only", what="the second set")
        view.set_span(8 * 3600)
        menu.save_action.trigger()  # the open set: overwritten without asking
        await until(lambda: stored(plant, "operator", "Flow only")["span_s"] == 8 * 3600, what="overwritten")
        menu.save_as_action.trigger()  # another set's name: asked first
        await answer(menu, "Pump 7 start-up")
        await confirm(menu, yes=False)
        await until(lambda: menu.confirm is not None and not menu.confirm.isVisible(), what="declined")
        assert len(stored(plant, "operator", "Pump 7 start-up")["pens"]) == 2  # unchanged
        menu.save_as_action.trigger()
        await answer(menu, "Pump 7 start-up")
        await confirm(menu, yes=True)
        await until(lambda: len(stored(plant, "operator", "Pump 7 start-up")["pens"]) == 1, what="replaced")
        assert menu.current == "Pump 7 start-up"

        end = time.time() - 600  # a fixed window: paused, from … to
        view.set_range(end - 1800, end)
        menu.save_as_action.trigger()
        await answer(menu, "Last half hour")
        await until(lambda: "Last half hour" in menu.names, what="the fixed set")

    console.run(more_sets())
    fixed = stored(plant, "operator", "Last half hour")
    assert not fixed["follow"] and abs(fixed["range"][1] - fixed["range"][0] - 1800) < 1e-3

    async def reopen_fixed() -> None:
        view.set_span(600)
        open_from_menu(menu, "Last half hour")
        await until(lambda: trend.paused and abs(trend.view_end - fixed["range"][1]) < 1e-6, what="the window")

    console.run(reopen_fixed())
    assert view.pause_button.isChecked()

    async def rename_and_delete() -> None:
        menu.rename_action.trigger()
        await answer(menu, "Flow only", "Flow")
        await until(lambda: "Flow" in menu.names and "Flow only" not in menu.names, what="renamed")
        menu.rename_action.trigger()
        await answer(menu, "Flow", "Pump 7 start-up")  # taken
        await until(lambda: "exists already" in window.statusBar().currentMessage(), what="refused")
        menu.delete_action.trigger()
        await answer(menu, "Last half hour")
        await until(lambda: "Last half hour" not in menu.names, what="deleted")
        assert menu.current is None and window.trend_set_label.text() == ""  # it was the open one
        menu.save_as_action.trigger()  # a name the server would refuse never leaves the dialog
        await answer(menu, "a/b")
        dialog = menu.dialog
        assert dialog is not None and dialog.isVisible() and "'/'" in dialog.error.text()
        dialog.reject()

    console.run(rename_and_delete())
    keys = [k["key"] for k in plant.tenant.users["operator"].get("/api/v1/me/settings").json()]
    assert keys == ["trendset/Flow", "trendset/Pump 7 start-up"]


def test_sets_follow_the_user_to_another_workstation_and_no_one_else(
    console: ConsoleHarness, make_console: Callable[..., ConsoleHarness], plant: Plant
) -> None:
    tag = tags(plant)
    menu = console.window.trend_sets

    async def save() -> None:
        await until(lambda: menu.save_action.isEnabled(), what="the menu")
        await console.console.add_to_trend([tag["pressure"], tag["flow"]])
        menu.save_as_action.trigger()
        await answer(menu, "Shift A")
        await until(lambda: menu.current == "Shift A", what="saved")

    console.run(save())
    elsewhere = make_console(plant.live.base)  # another workstation: its own config directory
    elsewhere.login(plant.name, "operator", "operator" * 3)
    other_menu = elsewhere.window.trend_sets
    elsewhere.run(until(lambda: other_menu.names == ["Shift A"], what="the set on the other workstation"))

    async def open_there_and_save_another() -> None:
        open_from_menu(other_menu, "Shift A")
        await until(lambda: other_menu.current == "Shift A", what="opened")  # its history loaded too
        assert [p.path for p in elsewhere.console.trend.pens] == [PRESSURE, FLOW]
        other_menu.save_as_action.trigger()
        await answer(other_menu, "Shift B")
        await until(lambda: other_menu.current == "Shift B", what="saved there")

    elsewhere.run(open_there_and_save_another())

    async def collide() -> None:  # the first workstation does not know "Shift B" yet: the server says 409
        assert "Shift B" not in menu.names
        menu.save_as_action.trigger()
        await answer(menu, "Shift B")
        await confirm(menu, yes=True)
        await until(lambda: menu.current == "Shift B" and "Shift B" in menu.names, what="overwritten after asking")

    console.run(collide())

    viewer = make_console(plant.live.base)
    viewer.login(plant.name, "viewer", "viewer" * 3)
    viewer_menu = viewer.window.trend_sets
    viewer.run(until(lambda: viewer_menu.save_action.isEnabled(), what="the viewer's menu"))
    viewer.run(viewer_menu.load_names())
    assert viewer_menu.names == []  # the operator's sets are the operator's

    console.window.logout()
    console.run(until(lambda: console.console.me is None and not menu.save_action.isEnabled(), what="logged out"))
    assert menu.names == [] and menu.current is None and not menu.save_action.isEnabled()


class SlowStore:
    """The menu's store in memory, whose loads wait for `release` (history still loading)."""

    def __init__(self) -> None:
        self.sets: dict[str, TrendSet] = {"Shift A": TrendSet("Shift A")}
        self.release = asyncio.Event()

    async def trend_set_names(self) -> list[str]:
        return sorted(self.sets)

    async def load_trend_set(self, name: str) -> TrendSet:
        await self.release.wait()
        return self.sets[name]

    async def save_trend_set(self, trend_set: TrendSet, overwrite: bool) -> None:
        self.sets[trend_set.name] = trend_set

    async def rename_trend_set(self, name: str, new_name: str, overwrite: bool = False) -> None:
        self.sets[new_name] = self.sets.pop(name)

    async def delete_trend_set(self, name: str) -> None:
        del self.sets[name]


def test_an_open_that_finishes_after_a_save_as_leaves_the_saved_name(qloop: Any) -> None:
    """Opening a set loads its history; saved under another name meanwhile, the trend is that
    set now, and the late open must not label it with the name it was opened under."""
    store = SlowStore()
    applied: list[str] = []

    async def apply(trend_set: TrendSet) -> None:
        applied.append(trend_set.name)

    menu = TrendSetMenu(store, TrendSet, apply)

    async def scenario() -> None:
        await menu.load_names()
        menu.open_set("Shift A")  # a slot: runs as a task, now waiting for its load
        await asyncio.sleep(0.05)
        assert await menu._save("Shift B", overwrite=False)
        store.release.set()
        await until(lambda: applied == ["Shift A"], what="the open finished")
        await asyncio.sleep(0.05)

    run(qloop, scenario())
    assert menu.current == "Shift B" and menu.names == ["Shift A", "Shift B"]
