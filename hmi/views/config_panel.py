"""Configuration, for admins and engineers only: the alarm conditions as the server has them.
Editing stays in the REST API (and its /docs) for now.

A big plant has 10,000 conditions: the table is a model over the server's answer (cells are
formatted when painted), not 60,000 table items built at once on the GUI thread."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QAbstractItemView, QLabel, QPushButton, QTableView, QVBoxLayout, QWidget

from hmi.client.errors import ApiError, ServerUnreachable
from hmi.client.slices import Slicer
from hmi.models.qt_table import Index, RowTableModel
from hmi.qt_async import async_slot

COLUMNS = ["id", "name", "priority", "enabled", "version", "state", "problem"]
IN_CONFIG = frozenset({"priority", "enabled"})
"""Read from the condition's `config` (the rest is beside it in the server's answer)."""


def condition_row(condition: dict[str, Any]) -> tuple[str, ...]:
    """The cells of one condition: a tuple of strings, which the garbage collector stops tracking
    (10,000 nested condition documents kept whole were 60,000 objects every full collection walks)."""
    config = condition.get("config")
    config = config if isinstance(config, dict) else {}
    values = (config.get(k) if k in IN_CONFIG else condition.get(k) for k in COLUMNS)
    return tuple("" if v is None else str(v) for v in values)


class ConditionTableModel(RowTableModel):
    columns = COLUMNS

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.rows: list[tuple[str, ...]] = []

    def set_rows(self, rows: list[tuple[str, ...]]) -> None:
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role != Qt.ItemDataRole.DisplayRole or not index.isValid() or index.row() >= len(self.rows):
            return None
        return self.rows[index.row()][index.column()]


class ConfigPanel(QWidget):
    def __init__(self, fetch: Callable[[], Awaitable[list[dict[str, Any]]]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._fetch = fetch
        self.model = ConditionTableModel(self)
        self.table = QTableView()
        self.table.setObjectName("conditionsTable")
        self.table.setModel(self.model)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
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
            conditions = await self._fetch()
        except (ApiError, ServerUnreachable, ValueError) as exc:
            self.status.setText(f"Not loaded: {exc}")
            return
        slicer, rows = Slicer(), []
        for condition in conditions:
            rows.append(condition_row(condition))
            if len(rows) % 256 == 0:
                await slicer.tick()
        self.model.set_rows(rows)
