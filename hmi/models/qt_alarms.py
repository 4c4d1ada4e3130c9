"""The alarm summary as a Qt table over AlarmStore: priority colours, blinking while unacknowledged.

Built for 10,000 rows under a stream of events: the events of a timer tick (100 ms) are applied
as row inserts, removals and `dataChanged` of single rows, each placed by bisection in the sorted
rows (no reset, no re-sort, the view keeps its selection and scroll position); only a reload, a
new filter or a burst touching a quarter of the rows resets the table. Blinking is one timer that
repaints the span of visible unacknowledged rows, priority columns only.
"""

from __future__ import annotations

import bisect
import time
import weakref
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QModelIndex, QObject, Qt, QTimer
from PySide6.QtGui import QColor, QFont

from hmi.models.alarms import Alarm, AlarmChange, AlarmStore
from hmi.models.qt_table import Index, RowTableModel
from hmi.style import PRIORITY_COLOURS, PRIORITY_TEXT

COLUMNS = ["", "Priority", "Time", "Alarm", "Message", "Source", "State"]
ALARM_ROLE = Qt.ItemDataRole.UserRole + 1


class AlarmTableModel(RowTableModel):
    """Rows follow `AlarmStore.visible()`; unacknowledged rows blink at 1 Hz."""

    columns = COLUMNS

    def __init__(self, store: AlarmStore, blink_ms: int = 500, apply_ms: int = 100,
                 parent: QObject | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.store = store
        self.rows: list[Alarm] = []
        self._keys: list[tuple[int, float, int]] = []  # row_key of each row, ascending
        self._key_of: dict[int, tuple[int, float, int]] = {}
        self._load()
        self.blink_on = True
        self._bold = QFont()
        self._bold.setBold(True)
        self._visible_rows: weakref.WeakMethod[Callable[[], tuple[int, int]]] | None = None
        self._blink = QTimer(self)
        self._blink.timeout.connect(self._toggle_blink)
        self._blink.start(blink_ms)
        self._ids: set[int] = set()
        self._reset = False
        self._pending = QTimer(self, singleShot=True, interval=apply_ms)
        self._pending.timeout.connect(self._apply)
        store.changed.connect(self._changed)

    def set_visible_rows(self, rows: Callable[[], tuple[int, int]]) -> None:
        """The view's first and last visible row (a bound method, held weakly): what blinking repaints."""
        self._visible_rows = weakref.WeakMethod(rows)

    def _changed(self, change: AlarmChange) -> None:
        """Collect the tick's changes; a burst of alarm events becomes one pass (never a frozen GUI)."""
        if change.reset:
            self._reset = True
        else:
            self._ids.update(change.ids)
        if not self._pending.isActive():
            self._pending.start()

    def flush(self) -> None:
        """Apply the changes collected for the next tick now (before acting on the rows shown)."""
        if self._pending.isActive():
            self._pending.stop()
            self._apply()

    def _load(self) -> None:
        self.rows = self.store.visible()
        self._keys = [a.row_key() for a in self.rows]
        self._key_of = {a.id: k for a, k in zip(self.rows, self._keys, strict=True)}

    def _apply(self) -> None:
        ids, self._ids = self._ids, set()
        if self._reset or len(ids) > max(256, len(self.rows) // 4):
            self._reset = False
            self.beginResetModel()
            self._load()
            self.endResetModel()
            return
        for alarm_id in ids:
            self._apply_one(alarm_id)

    def _apply_one(self, alarm_id: int) -> None:
        alarm = self.store.alarms.get(alarm_id)
        shown = alarm is not None and self.store.filter.accepts(alarm)
        new_key = alarm.row_key() if alarm is not None and shown else None
        old_key = self._key_of.get(alarm_id)
        root = QModelIndex()
        if old_key is not None:
            row = bisect.bisect_left(self._keys, old_key)
            if alarm is not None and new_key == old_key:  # same place: the row's cells change
                self.rows[row] = alarm
                self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))
                return
            self.beginRemoveRows(root, row, row)
            del self.rows[row], self._keys[row], self._key_of[alarm_id]
            self.endRemoveRows()
        if alarm is not None and new_key is not None:
            row = bisect.bisect_left(self._keys, new_key)
            self.beginInsertRows(root, row, row)
            self.rows.insert(row, alarm)
            self._keys.insert(row, new_key)
            self._key_of[alarm_id] = new_key
            self.endInsertRows()

    def row_of(self, alarm_id: int) -> int | None:
        key = self._key_of.get(alarm_id)
        return None if key is None else bisect.bisect_left(self._keys, key)

    def _toggle_blink(self) -> None:
        """Repaint the priority cells of the visible unacknowledged rows (one span), nothing else."""
        self.blink_on = not self.blink_on
        if not self.rows:
            return
        visible = self._visible_rows() if self._visible_rows is not None else None
        first, last = visible() if visible is not None else (0, len(self.rows) - 1)
        first, last = max(0, first), min(last, len(self.rows) - 1)
        unacked = [row for row in range(first, last + 1) if self.rows[row].unacked]
        if unacked:
            self.dataChanged.emit(self.index(unacked[0], 0), self.index(unacked[-1], 1),
                                  [Qt.ItemDataRole.BackgroundRole, Qt.ItemDataRole.ForegroundRole])  # fmt: skip

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
