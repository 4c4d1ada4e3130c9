"""The alarm summary as a Qt table over AlarmStore: priority colours, blinking while unacknowledged."""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt, QTimer
from PySide6.QtGui import QColor, QFont

from hmi.models.alarms import Alarm, AlarmStore
from hmi.style import PRIORITY_COLOURS, PRIORITY_TEXT

COLUMNS = ["", "Priority", "Time", "Alarm", "Message", "Source", "State"]
ALARM_ROLE = Qt.ItemDataRole.UserRole + 1
Index = QModelIndex | QPersistentModelIndex


class AlarmTableModel(QAbstractTableModel):
    """Rows follow `AlarmStore.visible()`; unacknowledged rows blink at 1 Hz."""

    def __init__(self, store: AlarmStore, blink_ms: int = 500, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.rows: list[Alarm] = store.visible()
        self.blink_on = True
        self._bold = QFont()
        self._bold.setBold(True)
        self._blink = QTimer(self)
        self._blink.timeout.connect(self._toggle_blink)
        self._blink.start(blink_ms)
        self._pending = QTimer(self, singleShot=True, interval=100)
        self._pending.timeout.connect(self._reload)
        store.changed.connect(self._changed)

    def _changed(self, _: None = None) -> None:
        """A burst of alarm events becomes one reload (a flood must not freeze the GUI thread)."""
        if not self._pending.isActive():
            self._pending.start()

    def _reload(self) -> None:
        self.beginResetModel()
        self.rows = self.store.visible()
        self.endResetModel()

    def _toggle_blink(self) -> None:
        self.blink_on = not self.blink_on
        for row, alarm in enumerate(self.rows):
            if alarm.unacked:
                self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008, N802
        return len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self.rows):
            return None
        alarm = self.rows[index.row()]
        if role == ALARM_ROLE:
            return alarm
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(alarm, index.column())
        if role == Qt.ItemDataRole.ToolTipRole and index.column() == 0 and alarm.first_out:
            return "first out: the first alarm of its group"
        lit = not alarm.unacked or self.blink_on
        if role == Qt.ItemDataRole.BackgroundRole and index.column() <= 1 and lit:
            return QColor(PRIORITY_COLOURS.get(alarm.priority, "#999999"))
        if role == Qt.ItemDataRole.ForegroundRole and index.column() <= 1 and lit:
            return QColor(PRIORITY_TEXT.get(alarm.priority, "#000000"))
        if role == Qt.ItemDataRole.FontRole and alarm.unacked:
            return self._bold
        return None

    @staticmethod
    def _display(alarm: Alarm, column: int) -> str:
        if column == 0:
            return "1st" if alarm.first_out else ""
        if column == 1:
            return alarm.priority
        if column == 2:
            return time.strftime("%H:%M:%S", time.localtime(alarm.active_since or alarm.changed_at))
        if column == 3:
            return alarm.name
        if column == 4:
            return alarm.message
        if column == 5:
            return alarm.path or ""
        return alarm.state.replace("_", " ")
