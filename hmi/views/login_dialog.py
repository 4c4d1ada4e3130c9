"""Login: server URL, tenant, user, password, "remember me". The dialog awaits the login it is
given (under qasync), so the window stays responsive and shows the server's reason on failure."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from hmi.client.errors import ApiError, ServerUnreachable
from hmi.qt_async import async_slot


@dataclass
class LoginForm:
    server: str
    tenant: str
    username: str
    password: str = ""
    remember: bool = False


class LoginDialog(QDialog):
    """Accepted once `login(form)` returned; its exception text is shown otherwise."""

    def __init__(
        self, form: LoginForm, login: Callable[[LoginForm], Awaitable[None]], keyring_note: str,
        parent: QWidget | None = None,
    ) -> None:  # fmt: skip
        super().__init__(parent)
        self.setWindowTitle("iiot-hmi — log in")
        self.setObjectName("loginDialog")
        self._login = login
        self.server = QLineEdit(form.server)
        self.tenant = QLineEdit(form.tenant)
        self.username = QLineEdit(form.username)
        self.password = QLineEdit(form.password)
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.remember = QCheckBox("Remember me on this computer")
        self.remember.setChecked(form.remember)
        self.remember.setToolTip(f"Keeps a refresh token (never the password) in the {keyring_note}")
        self.keyring_note = QLabel(f"Remembered logins are kept in the {keyring_note}.")
        self.keyring_note.setWordWrap(True)
        self.keyring_note.setObjectName("hint")
        self.error = QLabel("")
        self.error.setObjectName("loginError")
        self.error.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Log in")
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        fields = QFormLayout()
        for label, widget in (("Server", self.server), ("Tenant", self.tenant), ("User", self.username),
                              ("Password", self.password)):  # fmt: skip
            fields.addRow(label, widget)
        layout = QVBoxLayout(self)
        layout.addLayout(fields)
        layout.addWidget(self.remember)
        layout.addWidget(self.keyring_note)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        (self.password if form.username else self.username).setFocus()
        self.setMinimumWidth(420)

    def form(self) -> LoginForm:
        return LoginForm(self.server.text().strip(), self.tenant.text().strip(), self.username.text().strip(),
                         self.password.text(), self.remember.isChecked())  # fmt: skip

    @async_slot()
    async def submit(self) -> None:
        """Try the login; on success close the dialog, otherwise say why and keep the fields."""
        form = self.form()
        if not (form.server and form.tenant and form.username and form.password):
            self.error.setText("Server, tenant, user and password are all needed.")
            return
        self.error.setText("Logging in…")
        self.buttons.setEnabled(False)
        try:
            await self._login(form)
        except ApiError as exc:
            self.error.setText(f"Login refused: {exc.detail}")
        except ServerUnreachable as exc:
            self.error.setText(str(exc))
        else:
            self.password.clear()
            self.error.setText("")
            self.accept()
        finally:
            self.buttons.setEnabled(True)
