"""The console shows each role only what it may do: viewers no acknowledge, operators no
shelve, configuration for admins and engineers only."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.hmi.conftest import ConsoleHarness, Plant

EXPECTED = {  # role: (acknowledge, shelve, configuration, device commands)
    "viewer": (False, False, False, False),
    "operator": (True, False, False, True),
    "supervisor": (True, True, False, True),
    "engineer": (True, False, True, True),
    "admin": (True, True, True, True),
}


@pytest.mark.parametrize("role", list(EXPECTED))
def test_widgets_follow_the_role(make_console: Callable[[str], ConsoleHarness], plant: Plant, role: str) -> None:
    harness = make_console(plant.live.base)
    password = "admin-password" if role == "admin" else role * 3
    harness.login(plant.name, role, password)
    window, summary = harness.window, harness.window.alarm_summary
    ack, shelve, configure, command = EXPECTED[role]
    assert summary.ack_selected.isVisible() is ack and summary.ack_visible.isVisible() is ack
    assert window.ack_action.isEnabled() is ack
    assert summary.shelve_button.isVisible() is shelve
    assert window.docks["config"].isVisible() is configure
    assert window.config_menu.menuAction().isVisible() is configure
    assert (window.faceplate._send is not None) is command  # noqa: SLF001 - the box's action
    assert window.who.text().startswith(f"{role} @ {plant.name}")
