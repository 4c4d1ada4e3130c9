"""Configuration, for admins and engineers only: the alarm conditions as the server has them.
Editing stays in the REST API (and its /docs) for now."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from PySide6.QtWidgets import QLabel, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from hmi.client.errors import ApiError, ServerUnreachable
from hmi.qt_async import async_slot

COLUMNS = ["id", "name", "priority", "enabled", "version", "problem"]


class ConfigPanel(QWidget):
    def __init__(self, fetch: Callable[[], Awaitable[list[dict[str, Any]]]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._fetch = fetch
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        refresh = QPushButton("Reload alarm conditions")
        refresh.clicked.connect(self.refresh)
        self.status = QLabel("Conditions are edited through the REST API (see /docs on the server).")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(refresh)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)

    @async_slot()
    async def refresh(self) -> None:
        try:
            rows = await self._fetch()
        except (ApiError, ServerUnreachable) as exc:
            self.status.setText(f"Not loaded: {exc}")
            return
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, key in enumerate(COLUMNS):
                value = row.get(key)
                self.table.setItem(r, c, QTableWidgetItem("" if value is None else str(value)))
