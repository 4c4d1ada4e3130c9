"""The alarm journal: every transition in a time range, filtered, exportable to CSV."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QDateTime
from PySide6.QtWidgets import (
    QComboBox,
    QDateTimeEdit,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from hmi.client.errors import ApiError, ServerUnreachable
from hmi.models.alarms import PRIORITY_RANK
from hmi.qt_async import async_slot

FetchJournal = Callable[..., Awaitable[list[dict[str, Any]]]]
COLUMNS = ["time", "name", "source", "event", "from_state", "to_state", "priority", "value", "user", "comment"]
EVENTS = ["", "activated", "acknowledged", "cleared", "escalated", "level_changed", "latched", "condition_returned",
          "reset", "shelved", "unshelved", "suppressed", "unsuppressed", "out_of_service", "in_service", "commented",
          "disabled", "action"]  # fmt: skip
"""Every journal event of docs/alarms.md; `action` is the outcome of a condition's action (no state change)."""


class AlarmJournal(QWidget):
    def __init__(self, fetch: FetchJournal, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._fetch = fetch
        self.entries: list[dict[str, Any]] = []
        now = int(time.time())
        self.start, self.end = QDateTimeEdit(), QDateTimeEdit()
        for edit, t in ((self.start, now - 86400), (self.end, now + 3600)):
            edit.setCalendarPopup(True)
            edit.setDateTime(QDateTime.fromSecsSinceEpoch(t))
        self.priority = QComboBox()
        self.priority.addItems(["", *PRIORITY_RANK])
        self.event_kind = QComboBox()
        self.event_kind.addItems(EVENTS)
        self.area = QLineEdit()
        self.area.setPlaceholderText("Area")
        load, export = QPushButton("Load"), QPushButton("CSV…")
        load.clicked.connect(self.load)
        export.clicked.connect(self._ask_csv)
        self.status = QLabel("")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("journalTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        layout = QVBoxLayout(self)  # first, so widgets are parented as they are added
        layout.setContentsMargins(2, 2, 2, 2)
        bar = QHBoxLayout()
        layout.addLayout(bar)
        widgets: list[QWidget] = [QLabel("From"), self.start, QLabel("to"), self.end, self.priority, self.event_kind,
                                  self.area, load, export]  # fmt: skip
        for widget in widgets:
            bar.addWidget(widget)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)

    @async_slot()
    async def load(self) -> None:
        filters: dict[str, Any] = {}
        if self.priority.currentText():
            filters["priority"] = [self.priority.currentText()]
        if self.event_kind.currentText():
            filters["event"] = [self.event_kind.currentText()]
        if self.area.text().strip():
            filters["area"] = self.area.text().strip()
        try:
            self.entries = await self._fetch(self.start.dateTime().toSecsSinceEpoch(),
                                             self.end.dateTime().toSecsSinceEpoch(), **filters)  # fmt: skip
        except (ApiError, ServerUnreachable) as exc:
            self.status.setText(f"Journal not loaded: {exc}")
            return
        self.table.setRowCount(len(self.entries))
        for row, entry in enumerate(self.entries):
            for column, key in enumerate(COLUMNS):
                self.table.setItem(row, column, QTableWidgetItem(self._text(entry, key)))
        self.status.setText(f"{len(self.entries)} entries")

    @staticmethod
    def _text(entry: dict[str, Any], key: str) -> str:
        if key == "time":
            return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(entry["ts"])))
        value = entry.get(key)
        return "" if value is None else str(value)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for entry in self.entries:
            writer.writerow([self._text(entry, key) for key in COLUMNS])
        return out.getvalue()

    def _ask_csv(self) -> None:
        name, _ = QFileDialog.getSaveFileName(self, "Export journal", "alarm-journal.csv", "CSV (*.csv)")
        if name:
            Path(name).write_text(self.to_csv(), encoding="utf-8")
