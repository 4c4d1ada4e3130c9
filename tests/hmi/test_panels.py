"""The faceplate, journal and KPI panels against a server that carries commands over the real
Mosquitto: a device command sent from the faceplate reaches the device (only for users who may
send commands), the journal's event filter finds the `action` entries of a condition's actions,
and the KPI panel shows the figures the server computes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hmi.client.errors import ApiError
from hmi.views.config_panel import COLUMNS
from tests.hmi.conftest import DEVICE, FLOW, ConsoleHarness, Plant, seed_plant, until
from tests.hmi.test_tree_and_trend import expand
from tests.server.test_alarm_actions import Device
from tests.server.test_ingest_mqtt import MQTT_URL, broker, start_mqtt_server
from tests.support import LiveServer, database_url, forget_session


@pytest.fixture(scope="module")
def mqtt_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A console test server with an MQTT adapter, so commands have a way to devices."""
    broker()
    tmp = tmp_path_factory.mktemp("hmi-mqtt")
    with database_url("sqlite", tmp) as url:
        live = start_mqtt_server(tmp, url, mqtt_sparkplug=False)
        try:
            yield live
        finally:
            live.stop()
            forget_session(MQTT_URL, live.settings.mqtt_client_id)


@pytest.fixture
def mqtt_plant(mqtt_live: LiveServer) -> Plant:
    return seed_plant(mqtt_live)


def login(make_console: Callable[[str], ConsoleHarness], plant: Plant, role: str) -> ConsoleHarness:
    harness = make_console(plant.live.base)
    harness.login(plant.name, role, "admin-password" if role == "admin" else role * 3)
    return harness


def select_device(harness: ConsoleHarness) -> None:
    """Click the pump in the tree, as an operator would: the faceplate follows the selection."""

    async def scenario() -> None:
        node_id = await expand(harness, DEVICE)
        view = harness.window.tree
        view.tree.setCurrentIndex(view.proxy.mapFromSource(harness.console.namespace.index_of(node_id)))
        await until(lambda: harness.window.faceplate.node is not None, what="the faceplate")

    harness.run(scenario())


def test_a_command_from_the_faceplate_reaches_the_device(
    make_console: Callable[[str], ConsoleHarness], mqtt_plant: Plant
) -> None:
    operator = login(make_console, mqtt_plant, "operator")
    select_device(operator)
    faceplate = operator.window.faceplate
    assert faceplate.node is not None and faceplate.node.path == DEVICE
    assert faceplate.commands.isVisible()
    device = Device(f"{mqtt_plant.name}/devices/{DEVICE}/commands")
    try:
        faceplate.command.setText("start")
        faceplate.args.setText('{"speed": 1450}')
        faceplate.send_button.click()
        operator.run(until(lambda: faceplate.result.text(), what="the faceplate's answer"))
        assert faceplate.result.text() == "accepted for delivery"
        received = device.next()
        assert (received["command"], received["args"], received["user"]) == ("start", {"speed": 1450}, "operator")
        assert received["node_id"] == mqtt_plant.ids["Pump7"]

        faceplate.result.clear()  # arguments that are not a JSON object never leave the console
        faceplate.args.setText("[1, 2]")
        faceplate.send_button.click()
        operator.run(until(lambda: faceplate.result.text(), what="the refusal"))
        assert faceplate.result.text().startswith("not sent: arguments must be a JSON object")
        time.sleep(0.3)
        assert device.commands.empty()
    finally:
        device.close()
    audit = mqtt_plant.tenant.admin.get("/api/v1/audit", params={"action": "device.command"}).json()
    assert [(e["actor"], e["detail"]["command"]) for e in audit] == [("operator", "start")]


def test_a_viewer_gets_no_command_box_and_the_server_agrees(
    make_console: Callable[[str], ConsoleHarness], mqtt_plant: Plant
) -> None:
    viewer = login(make_console, mqtt_plant, "viewer")
    select_device(viewer)
    faceplate = viewer.window.faceplate
    assert faceplate.node is not None and faceplate.node.path == DEVICE
    assert not faceplate.commands.isVisible()
    faceplate.command.setText("start")
    faceplate.send_command()  # the slot itself sends nothing without the permission
    viewer.run(until(lambda: True))
    assert faceplate.result.text() == ""
    with pytest.raises(ApiError) as refused:  # and the server would refuse it anyway
        viewer.run(viewer.console.send_command(DEVICE, "start", {}))
    assert refused.value.status == 403
    assert mqtt_plant.tenant.admin.get("/api/v1/audit", params={"action": "device.command"}).json() == []


def test_the_journal_filter_finds_condition_actions(
    make_console: Callable[[str], ConsoleHarness], mqtt_plant: Plant
) -> None:
    engineer = mqtt_plant.tenant.engineer
    body = {"name": "Flow high", "priority": "high", "spec": {"kind": "limit", "tag": FLOW, "hi": 90},
            "actions": [{"on": "activated", "kind": "command", "device": DEVICE, "command": "stop"}]}  # fmt: skip
    r = engineer.put(f"/api/v1/alarms/conditions/{mqtt_plant.alarm_id}", json=body)
    assert r.status_code == 200, r.text
    operator = login(make_console, mqtt_plant, "operator")
    journal = operator.window.journal
    assert "action" in [journal.event_kind.itemText(i) for i in range(journal.event_kind.count())]
    mqtt_plant.send(Flow=96.0)

    async def scenario() -> list[dict[str, Any]]:
        journal.event_kind.setCurrentText("action")

        async def actions() -> list[dict[str, Any]]:
            journal.load()
            await until(lambda: journal.status.text().endswith("entries"), what="the journal loaded")
            return journal.entries

        entries: list[dict[str, Any]] = []
        deadline = time.monotonic() + 15
        while not entries and time.monotonic() < deadline:
            journal.status.clear()
            entries = await actions()
        return entries

    entries = operator.run(scenario())
    assert entries and {e["event"] for e in entries} == {"action"}
    assert entries[0]["user"] == "system" and entries[0]["condition"] == mqtt_plant.alarm_id
    assert entries[0]["comment"].startswith(f"command 'stop' to {DEVICE}: issued")
    column = [journal.table.item(row, 3).text() for row in range(journal.table.rowCount())]
    assert column == ["action"] * len(entries)
    journal.event_kind.setCurrentText("activated")  # the other events are still a filter away
    journal.status.clear()
    journal.load()
    operator.run(until(lambda: journal.status.text().endswith("entries"), what="activations"))
    assert {e["event"] for e in journal.entries} == {"activated"}


def test_the_kpi_panel_shows_the_servers_figures(
    make_console: Callable[[str], ConsoleHarness], mqtt_plant: Plant
) -> None:
    for value in (95.0, 50.0, 96.0, 50.0, 97.0):  # three activations within a minute: chattering
        mqtt_plant.send(Flow=value)
        time.sleep(0.05)
    api = mqtt_plant.tenant.users["operator"]

    def server_kpis() -> dict[str, Any]:
        kpis: dict[str, Any] = api.get("/api/v1/alarms/kpis").json()
        return kpis if kpis["alarms"] == 3 and kpis["chattering"] else {}

    deadline = time.monotonic() + 15
    while not server_kpis() and time.monotonic() < deadline:
        time.sleep(0.1)
    operator = login(make_console, mqtt_plant, "operator")
    panel = operator.window.kpis
    operator.run(until(lambda: panel.status.text().startswith("as of"), what="the KPIs at login"))
    expected = server_kpis()
    assert expected, "the server never counted the three activations"
    shown = {key: label.text() for key, label in panel.labels.items()}
    assert shown == {
        "alarms_per_operator_per_10min": f"{expected['alarms_per_operator_per_10min']:.2f}",
        "flood_percent": f"{expected['flood_percent']:.2f}",
        "standing": str(len(expected["standing"])),
        "chattering": str(len(expected["chattering"])),
        "shelved": str(len(expected["shelved"])),
    }
    assert shown["chattering"] == "1" and shown["alarms_per_operator_per_10min"] == f"{3 / 144:.2f}"

    supervisor = mqtt_plant.tenant.users["supervisor"]  # a shelve: the panel's Refresh shows it
    r = supervisor.post(f"/api/v1/alarms/{mqtt_plant.alarm_id}/shelve", json={"reason": "kpi test", "duration_s": 60})
    assert r.status_code == 200, r.text
    panel.status.clear()
    panel.refresh()
    operator.run(until(lambda: panel.status.text().startswith("as of"), what="refreshed KPIs"))
    assert panel.labels["shelved"].text() == "1"
    assert FLOW in api.get(f"/api/v1/alarms/{mqtt_plant.alarm_id}").json()["path"]


def test_the_configuration_dock_lists_the_conditions(
    make_console: Callable[[str], ConsoleHarness], mqtt_plant: Plant
) -> None:
    engineer = login(make_console, mqtt_plant, "engineer")
    table = engineer.window.config.model
    engineer.run(until(lambda: table.rowCount() == 1, what="the condition"))
    row = {column: table.index(0, c).data() for c, column in enumerate(COLUMNS)}
    assert row["id"] == str(mqtt_plant.alarm_id) and row["name"] == "Flow high"
    assert (row["priority"], row["enabled"], row["state"]) == ("high", "True", "normal")
