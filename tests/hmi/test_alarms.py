"""Alarms through the console: the summary and banner follow the stream, an operator
acknowledges with a comment, a supervisor shelves with a reason, the journal shows both."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QDialogButtonBox

from hmi.models.qt_alarms import COLUMNS
from tests.hmi.conftest import FLOW, ConsoleHarness, Plant, until


def test_acknowledge_and_shelve_round_trips(
    console: ConsoleHarness, make_console: Callable[[str], ConsoleHarness], plant: Plant
) -> None:
    summary, banner = console.window.alarm_summary, console.window.banner
    store = console.console.alarms

    async def acknowledge() -> None:
        plant.send(Flow=95.0)
        alarm = await until(lambda: store.alarms.get(plant.alarm_id), what="the alarm on the summary")
        assert alarm.state == "unack_active" and alarm.priority == "high"
        await until(lambda: summary.model.rowCount() == 1, what="a row")
        await until(lambda: "1 unacknowledged" in banner.alarm.text(), what="the banner (at most every 50 ms)")
        assert "Flow high" in banner.alarm.text()
        assert summary.model.index(0, COLUMNS.index("Priority")).data() == "high"
        summary.select_row(0)
        summary.comment.setText("operator on the way")
        summary.ack_selected.click()
        await until(lambda: store.alarms[plant.alarm_id].state == "ack_active", what="acknowledged")
        await until(lambda: banner.alarm.text() == "No unacknowledged alarms", what="the banner cleared")
        assert store.alarms[plant.alarm_id].raw["acked_by"] == "operator"

    console.run(acknowledge())

    supervisor = make_console(plant.live.base)
    supervisor.login(plant.name, "supervisor", "supervisor" * 3)
    sup_summary = supervisor.window.alarm_summary

    async def shelve() -> None:
        await until(lambda: sup_summary.model.rowCount() == 1, what="the supervisor's summary")
        sup_summary.select_row(0)
        sup_summary.shelve_button.click()
        dialog = sup_summary.shelve_dialog
        assert dialog is not None
        dialog.duration.setCurrentText("1 h")
        dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
        assert dialog.isVisible()  # no reason, no shelve
        dialog.reason.setText("sensor being replaced")
        dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
        await until(lambda: sup_summary.model.rowCount() == 0, what="shelved off the summary")
        await until(lambda: plant.alarm_id not in store.alarms, what="the operator's summary follows the stream")
        entries = await supervisor.console.journal(0, 2e9)
        events = [(e["event"], e["user"], e["comment"]) for e in entries if e["condition"] == plant.alarm_id]
        assert ("acknowledged", "operator", "operator on the way") in events
        assert ("shelved", "supervisor", "sensor being replaced") in events

    supervisor.run(shelve())
    shelved = plant.tenant.admin.get(f"/api/v1/alarms/{plant.alarm_id}").json()
    assert shelved["state"] == "shelved" and 3500 < shelved["shelved_until"] - shelved["changed_at"] <= 3600


def test_double_click_opens_the_source_trend_and_journal_exports(console: ConsoleHarness, plant: Plant) -> None:
    summary = console.window.alarm_summary

    async def scenario() -> None:
        plant.send(Flow=97.0)
        await until(lambda: summary.model.rowCount() == 1, what="a row")
        summary.table.doubleClicked.emit(summary.model.index(0, 3))
        await until(lambda: console.console.trend.pen(plant.ids["Flow"]), what="the Flow pen")
        journal = console.window.journal
        journal.load()
        await until(lambda: journal.entries, what="journal entries")
        assert any(e["event"] == "activated" for e in journal.entries)
        assert journal.to_csv().splitlines()[0].startswith("time,name,source,event")
        assert FLOW in journal.to_csv()

    console.run(scenario())
