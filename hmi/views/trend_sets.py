"""The *Trend sets* menu: save the current trend under a name, open, overwrite, rename and delete
saved sets. They are the user's own settings on the server, so they follow the user to any
workstation. Dialogs are opened with `open()` (never a nested event loop); every request is awaited."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractButton,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QWidget,
)

from hmi.client.errors import ApiError, ServerUnreachable
from hmi.models.trend_sets import BadTrendSet, TrendSet, check_name
from hmi.qt_async import async_slot


class TrendSetStore(Protocol):
    """The console's requests for saved trend sets."""

    async def trend_set_names(self) -> list[str]: ...
    async def load_trend_set(self, name: str) -> TrendSet: ...
    async def save_trend_set(self, trend_set: TrendSet, overwrite: bool) -> None: ...
    async def rename_trend_set(self, name: str, new_name: str, overwrite: bool = False) -> None: ...
    async def delete_trend_set(self, name: str) -> None: ...


Capture = Callable[[str], TrendSet]
Apply = Callable[[TrendSet], Awaitable[None]]
FAILURES = (ApiError, ServerUnreachable, BadTrendSet)


class TrendSetDialog(QDialog):
    """A name to save under (editable, the saved ones offered), or a saved set to rename (with its
    new name) or delete."""

    def __init__(self, mode: str, names: list[str], current: str | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mode = mode
        self.setWindowTitle({"save": "Save trend set as", "rename": "Rename trend set",
                             "delete": "Delete trend set"}[mode])  # fmt: skip
        self.name = QComboBox()
        self.name.addItems(names)
        self.name.setEditable(mode == "save")
        if current is not None and (mode == "save" or current in names):
            self.name.setCurrentText(current)
        self.new_name = QLineEdit()
        self.new_name.setText(self.name.currentText())
        self.name.currentTextChanged.connect(lambda text: self.new_name.setText(text) if mode == "rename" else None)
        self.error = QLabel("")
        self.error.setObjectName("dialogError")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setText({"save": "Save", "rename": "Rename", "delete": "Delete"}[mode])
        self.buttons.accepted.connect(self._accept_if_valid)
        self.buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Trend set" if mode != "save" else "Name", self.name)
        if mode == "rename":
            form.addRow("New name", self.new_name)
        if mode == "delete":
            form.addRow(QLabel("It is deleted for you on every workstation."))
        form.addRow(self.error)
        form.addRow(self.buttons)

    def chosen(self) -> str:
        return self.name.currentText().strip()

    def _accept_if_valid(self) -> None:
        try:
            check_name(self.chosen())
            if self.mode == "rename":
                check_name(self.new_name.text())
        except BadTrendSet as exc:
            self.error.setText(str(exc))
            return
        self.accept()


class TrendSetMenu(QMenu):
    """Keeps the names of the user's saved sets (loaded at login and after each change here) and
    the one open now; `message` carries what happened, for the status bar."""

    message = Signal(str)
    current_changed = Signal(object)  # str | None

    def __init__(self, store: TrendSetStore, capture: Capture, apply: Apply, parent: QWidget | None = None) -> None:
        super().__init__("Trend &sets", parent)
        self.store, self._capture, self._apply = store, capture, apply
        self.names: list[str] = []
        self.current: str | None = None
        self._changes = 0
        self.dialog: TrendSetDialog | None = None
        self.confirm: QMessageBox | None = None
        self.save_action = QAction("Save", self, shortcut=QKeySequence("Ctrl+S"))
        self.save_action.triggered.connect(self.save)
        self.save_as_action = QAction("Save as…", self, shortcut=QKeySequence("Ctrl+Shift+S"))
        self.save_as_action.triggered.connect(self.ask_save_as)
        self.open_menu = QMenu("Open", self)
        self.open_menu.aboutToShow.connect(self._fill_open_menu)
        self.rename_action = QAction("Rename…", self)
        self.rename_action.triggered.connect(lambda: self._ask("rename"))
        self.delete_action = QAction("Delete…", self)
        self.delete_action.triggered.connect(lambda: self._ask("delete"))
        self.refresh_action = QAction("Reload the list", self)
        self.refresh_action.triggered.connect(self.refresh)
        self.addActions([self.save_action, self.save_as_action])
        self.addMenu(self.open_menu)
        self.addActions([self.rename_action, self.delete_action])
        self.addSeparator()
        self.addAction(self.refresh_action)
        self.set_enabled(False)

    def set_enabled(self, enabled: bool) -> None:
        """Only while logged in."""
        for action in (self.save_action, self.save_as_action, self.rename_action, self.delete_action,
                       self.refresh_action, self.open_menu.menuAction()):  # fmt: skip
            action.setEnabled(enabled)

    def forget(self) -> None:
        """Logged out: another user's sets are not this one's."""
        self.names = []
        self._set_current(None)
        self.set_enabled(False)

    def _set_current(self, name: str | None) -> None:
        self.current = name
        self._changes += 1
        self.current_changed.emit(name)

    def _fill_open_menu(self) -> None:
        self.open_menu.clear()
        for name in self.names:
            action = self.open_menu.addAction(name)
            action.triggered.connect(lambda _=False, n=name: self.open_set(n))
        if not self.names:
            self.open_menu.addAction("(no saved trend sets)").setEnabled(False)

    # -- requests ---------------------------------------------------------------------------
    @async_slot()
    async def refresh(self) -> None:
        await self.load_names()

    async def load_names(self) -> None:
        try:
            self.names = await self.store.trend_set_names()
        except FAILURES as exc:
            self.message.emit(f"Trend sets not loaded: {exc}")
            return
        if self.current is not None and self.current not in self.names:
            self._set_current(None)  # deleted elsewhere

    @async_slot(str)
    async def open_set(self, name: str) -> None:
        changes = self._changes
        try:
            trend_set = await self.store.load_trend_set(name)
            await self._apply(trend_set)
        except FAILURES as exc:
            self.message.emit(f"Trend set {name!r} not opened: {exc}")
            return
        if self._changes != changes:  # saved as another name (or deleted) while history loaded
            return
        self._set_current(name)
        self.message.emit(f"Opened trend set {name!r} ({len(trend_set.pens)} pens).")

    @async_slot()
    async def save(self) -> None:
        """Overwrite the set open now; without one, ask for a name."""
        if self.current is None:
            self.ask_save_as()
            return
        await self._save(self.current, overwrite=True)

    async def _save(self, name: str, overwrite: bool) -> bool:
        try:
            trend_set = self._capture(name)
            await self.store.save_trend_set(trend_set, overwrite)
        except ApiError as exc:
            if exc.status == 409 and not overwrite:  # saved meanwhile, e.g. on another workstation
                self._ask_overwrite(name)
                return False
            self.message.emit(f"Trend set {name!r} not saved: {exc}")
            return False
        except (ServerUnreachable, BadTrendSet) as exc:
            self.message.emit(f"Trend set {name!r} not saved: {exc}")
            return False
        if name not in self.names:
            self.names = sorted([*self.names, name])
        self._set_current(name)
        self.message.emit(f"Saved trend set {name!r} ({len(trend_set.pens)} pens).")
        return True

    def ask_save_as(self) -> None:
        self._ask("save")

    def _ask(self, mode: str) -> None:
        if mode != "save" and not self.names:
            self.message.emit("No saved trend sets.")
            return
        self.dialog = TrendSetDialog(mode, self.names, self.current, self.parentWidget())
        self.dialog.accepted.connect(lambda dialog=self.dialog: self._dialog_accepted(dialog))
        self.dialog.open()

    @async_slot(object)
    async def _dialog_accepted(self, dialog: TrendSetDialog) -> None:
        name = check_name(dialog.chosen())
        if dialog.mode == "save":
            if name in self.names and name != self.current:
                self._ask_overwrite(name)
            else:
                await self._save(name, overwrite=name == self.current)
        elif dialog.mode == "rename":
            await self._rename(name, check_name(dialog.new_name.text()))
        else:
            await self._delete(name)

    def _ask_overwrite(self, name: str) -> None:
        self.confirm = QMessageBox(QMessageBox.Icon.Question, "Overwrite trend set",
                                   f"A trend set {name!r} exists. Replace it with the current trend?",
                                   QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                   self.parentWidget())  # fmt: skip
        self.confirm.buttonClicked.connect(lambda button, box=self.confirm: self._confirmed(box, button, name))
        self.confirm.open()

    def _confirmed(self, box: QMessageBox, button: QAbstractButton, name: str) -> None:
        if box.standardButton(button) == QMessageBox.StandardButton.Yes:
            self._overwrite(name)

    @async_slot(str)
    async def _overwrite(self, name: str) -> None:
        await self._save(name, overwrite=True)

    async def _rename(self, name: str, new_name: str) -> None:
        if new_name == name:
            return
        try:
            await self.store.rename_trend_set(name, new_name, False)
        except FAILURES as exc:
            taken = isinstance(exc, ApiError) and exc.status == 409
            self.message.emit(f"A trend set {new_name!r} exists already." if taken else f"Not renamed: {exc}")
            return
        self.names = sorted([n for n in self.names if n != name] + [new_name])
        if self.current == name:
            self._set_current(new_name)
        self.message.emit(f"Renamed trend set {name!r} to {new_name!r}.")

    async def _delete(self, name: str) -> None:
        try:
            await self.store.delete_trend_set(name)
        except FAILURES as exc:
            if not (isinstance(exc, ApiError) and exc.status == 404):  # gone already is what was wanted
                self.message.emit(f"Trend set {name!r} not deleted: {exc}")
                return
        self.names = [n for n in self.names if n != name]
        if self.current == name:
            self._set_current(None)
        self.message.emit(f"Deleted trend set {name!r}.")
