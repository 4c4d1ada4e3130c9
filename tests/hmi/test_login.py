"""Login through the dialog (right password, wrong password, wrong tenant) and the remembered
login in the keyring fallback file (0600)."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Callable

from PySide6.QtWidgets import QDialog, QDialogButtonBox

from hmi.client import LinkState
from hmi.views.login_dialog import LoginDialog, LoginForm
from tests.hmi.conftest import ConsoleHarness, Plant, until


def dialog_for(harness: ConsoleHarness, tenant: str, user: str, password: str, remember: bool = False) -> LoginDialog:
    form = LoginForm(harness.server, tenant, user, "", remember)
    dialog = LoginDialog(form, harness.console.login, harness.console.credentials.description, harness.window)
    dialog.password.setText(password)
    dialog.open()
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    return dialog


def test_login_right_password_opens_the_session(make_console: Callable[[str], ConsoleHarness], plant: Plant) -> None:
    harness = make_console(plant.live.base)
    dialog = dialog_for(harness, plant.name, "operator", "operator" * 3)
    harness.run(until(lambda: dialog.result() == QDialog.DialogCode.Accepted, what="dialog accepted"))
    assert harness.console.me is not None and harness.console.me.roles == ["operator"]
    assert harness.window.who.text() == f"operator @ {plant.name} · operator"
    assert plant.name in harness.window.windowTitle()


def test_wrong_password_and_wrong_tenant_are_refused(
    make_console: Callable[[str], ConsoleHarness], plant: Plant
) -> None:
    harness = make_console(plant.live.base)
    for tenant, password in ((plant.name, "wrong-password"), ("no-such-tenant", "operator" * 3)):
        dialog = dialog_for(harness, tenant, "operator", password)
        harness.run(until(lambda d=dialog: "refused" in d.error.text(), what="error shown"))
        assert "invalid tenant, username or password" in dialog.error.text()
        assert dialog.isVisible() and harness.console.me is None
        dialog.reject()


def test_unreachable_server_is_said_plainly(make_console: Callable[[str], ConsoleHarness]) -> None:
    harness = make_console("http://127.0.0.1:9")
    dialog = dialog_for(harness, "t", "u", "p")
    harness.run(until(lambda: "cannot reach" in dialog.error.text(), what="unreachable shown"))


def test_remember_me_keeps_a_refresh_token_in_a_0600_file(
    make_console: Callable[[str], ConsoleHarness], plant: Plant
) -> None:
    harness = make_console(plant.live.base)
    assert "0600" in harness.console.credentials.description  # no OS keyring on this box: said so
    harness.login(plant.name, "supervisor", "supervisor" * 3, remember=True)
    path = harness.console.credentials.file
    assert path is not None and path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = harness.console.credentials.load(plant.live.base, plant.name, "supervisor")
    assert token and "supervisor" * 3 not in path.read_text()  # the refresh token, never the password

    harness.run(harness.console.close())  # a new console on the same config dir logs in without a password
    again = make_console(plant.live.base)
    again.console.credentials = harness.console.credentials
    assert again.run(again.console.resume(plant.live.base, plant.name, "supervisor"))
    assert again.console.me is not None and again.console.me.username == "supervisor"
    rotated = again.console.credentials.load(plant.live.base, plant.name, "supervisor")
    assert rotated and rotated != token  # each refresh rotates the token; the stored one follows

    again.run(again.console.logout())  # logging out forgets it
    assert again.console.credentials.load(plant.live.base, plant.name, "supervisor") is None


def test_token_refresh_keeps_the_stream_and_never_races(console: ConsoleHarness, plant: Plant) -> None:
    """Two refreshes at once must not both use the refresh token: the server would take that
    for theft and end the session. The open stream gets the new access token in-band."""
    session = console.console.session
    assert session is not None

    async def scenario() -> None:
        await console.console.add_to_trend([{"node_id": plant.ids["Pressure"], "path": "p", "unit": "bar"}])
        pen = console.console.trend.pens[0]
        seen, first = session.generation, session.tokens.refresh_token if session.tokens else ""
        await asyncio.gather(session.refresh(seen=seen), session.refresh(seen=seen), session.refresh(seen=seen))
        assert session.generation == seen + 1 and session.tokens is not None
        assert session.tokens.refresh_token != first
        assert (await session.request("GET", "/api/v1/auth/me")).status_code == 200  # the session lives
        before = pen.live.last_time() or 0.0
        await until(lambda: (pen.live.last_time() or 0.0) > before, what="values after the refresh")
        assert console.console.link_state is LinkState.CONNECTED

    console.run(scenario())
