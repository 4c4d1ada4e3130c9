"""Builds the console (settings, credentials, controller, window, style) and runs a session:
remembered login or the login dialog, then the main window until it closes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from hmi.client.backoff import Backoff
from hmi.client.credentials import CredentialStore
from hmi.console import Console
from hmi.gc_guard import GuiThreadCollector
from hmi.style import assets_dir
from hmi.views.login_dialog import LoginDialog, LoginForm
from hmi.views.main_window import MainWindow


def apply_style(app: QApplication) -> None:
    """The ISA-101 style sheet and the application icon from assets/."""
    sheet = assets_dir() / "hmi.qss"
    if sheet.is_file():
        app.setStyleSheet(sheet.read_text(encoding="utf-8"))
    icon = assets_dir() / "icons" / "app.svg"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))


class Shell:
    """Everything one console process owns; no globals."""

    def __init__(self, app: QApplication, config_dir: Path, server: str, tenant: str = "", username: str = "",
                 backoff: Backoff | None = None, use_os_keyring: bool = True) -> None:  # fmt: skip
        self.app, self.config_dir = app, config_dir
        config_dir.mkdir(parents=True, exist_ok=True)
        self.settings = QSettings(str(config_dir / "console.ini"), QSettings.Format.IniFormat)
        self.credentials = CredentialStore(config_dir, use_os_keyring=use_os_keyring)
        self.console = Console(config_dir, self.credentials, backoff)
        self.window = MainWindow(self.console, self.settings)
        last = self.settings.value("last_login", {})
        last = last if isinstance(last, dict) else {}
        self.form = LoginForm(
            server=server or str(last.get("server", "")),
            tenant=tenant or str(last.get("tenant", "")),
            username=username or str(last.get("username", "")),
            remember=bool(last.get("remember", False)),
        )
        apply_style(app)
        self.collector = GuiThreadCollector(parent=self.console)
        self.collector.freeze()  # start-up's objects live as long as the process
        self.console.logged_out.connect(self._ask_login)

    def login_dialog(self) -> LoginDialog:
        return LoginDialog(self.form, self._login, self.credentials.description, self.window)

    async def _login(self, form: LoginForm) -> None:
        await self.console.login(form)
        self.form = LoginForm(form.server, form.tenant, form.username, "", form.remember)
        self.settings.setValue("last_login", {"server": form.server, "tenant": form.tenant,
                                              "username": form.username, "remember": form.remember})  # fmt: skip

    def _ask_login(self) -> None:
        dialog = self.login_dialog()
        dialog.rejected.connect(self.window.close)
        dialog.open()

    async def self_test(self) -> tuple[bool, str]:
        """Open the window without a server, let it lay out and paint, grab it."""
        self.window.show()
        await asyncio.sleep(0.3)
        image = self.window.grab()
        await self.console.close()
        self.window.close()
        return (not image.isNull() and image.width() > 0), f"{image.width()}x{image.height()}"

    async def run(self) -> int:
        """Remembered login first; otherwise the dialog. Returns when the main window closes."""
        self.window.show()
        closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def window_closed() -> None:
            if not closed.done():
                closed.set_result(None)

        self.app.lastWindowClosed.connect(window_closed)
        resumed = False
        if self.form.remember and self.form.tenant and self.form.username:
            resumed = await self.console.resume(self.form.server, self.form.tenant, self.form.username)
        if not resumed:
            dialog = self.login_dialog()
            dialog.rejected.connect(self.window.close)
            dialog.open()
        await closed
        await self.console.close()
        return 0
