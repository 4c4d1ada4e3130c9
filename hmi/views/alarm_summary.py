"""The alarm summary: filters, acknowledge (selected / all visible, with a comment), shelve
(supervisors), first-out mark, double-click for the source tag's trend."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from PySide6.QtCore import QItemSelectionModel, QModelIndex, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from hmi.client.errors import ApiError, ServerUnreachable
from hmi.models.alarms import PRIORITY_RANK, UNACKED, Alarm, AlarmFilter, AlarmStore
from hmi.models.qt_alarms import ALARM_ROLE, AlarmTableModel
from hmi.qt_async import async_slot

Acknowledge = Callable[[list[int], str | None], Awaitable[int]]
Shelve = Callable[[int, str, float | None], Awaitable[None]]
SHELVE_DURATIONS: dict[str, float | None] = {"15 min": 900, "1 h": 3600, "4 h": 14400, "8 h": 28800,
                                             "until it clears (one-shot)": None}  # fmt: skip
STATE_FILTERS = {"All states": frozenset(), "Unacknowledged": UNACKED, "Acknowledged": frozenset({"ack_active"})}


class ShelveDialog(QDialog):
    """Duration and a reason (the server requires one, and the journal keeps it)."""

    def __init__(self, alarm: Alarm, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Shelve {alarm.name}")
        self.duration = QComboBox()
        self.duration.addItems(list(SHELVE_DURATIONS))
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("why (required)")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self._accept_if_reason)
        self.buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Alarm", QLabel(alarm.message))
        form.addRow("Duration", self.duration)
        form.addRow("Reason", self.reason)
        form.addRow(self.buttons)

    def _accept_if_reason(self) -> None:
        if self.reason.text().strip():
            self.accept()

    def duration_s(self) -> float | None:
        return SHELVE_DURATIONS[self.duration.currentText()]


class AlarmSummary(QWidget):
    """Buttons follow the permissions: no acknowledge for viewers, no shelve below supervisor."""

    open_trend = Signal(object)  # Alarm

    def __init__(self, store: AlarmStore, acknowledge: Acknowledge, shelve: Shelve, *, can_ack: bool,
                 can_shelve: bool, parent: QWidget | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.store, self._ack, self._shelve = store, acknowledge, shelve
        self.model = AlarmTableModel(store, parent=self)
        self.table = QTableView()
        self.table.setObjectName("alarmTable")
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        for column, width in ((0, 36), (1, 70), (2, 80), (3, 200), (5, 260), (6, 110)):
            self.table.setColumnWidth(column, width)
        self.table.doubleClicked.connect(self._double_clicked)
        self.model.set_visible_rows(self.visible_rows)
        self._kept: set[int] = set()
        self.model.modelAboutToBeReset.connect(self._keep_selection)
        self.model.modelReset.connect(self._restore_selection)
        self.area = QLineEdit()
        self.area.setPlaceholderText("Area (path prefix)")
        self.priority = QComboBox()
        self.priority.addItems(["All priorities", *PRIORITY_RANK])
        self.state = QComboBox()
        self.state.addItems(list(STATE_FILTERS))
        for signal in (self.area.textChanged, self.priority.currentIndexChanged, self.state.currentIndexChanged):
            signal.connect(self._filter_changed)
        self.comment = QLineEdit()
        self.comment.setPlaceholderText("Comment (optional)")
        self.ack_selected = QPushButton("Acknowledge selected")
        self.ack_selected.setObjectName("ackSelected")
        self.ack_selected.clicked.connect(self.acknowledge_selected)
        self.ack_visible = QPushButton("Acknowledge all visible")
        self.ack_visible.setObjectName("ackVisible")
        self.ack_visible.clicked.connect(self.acknowledge_visible)
        self.shelve_button = QPushButton("Shelve…")
        self.shelve_button.setObjectName("shelve")
        self.shelve_button.clicked.connect(self.ask_shelve)
        self.status = QLabel("")
        self.shelve_dialog: ShelveDialog | None = None
        for widget in (self.ack_selected, self.ack_visible, self.comment):
            widget.setVisible(can_ack)
        self.shelve_button.setVisible(can_shelve)
        filters = QHBoxLayout()
        for filter_widget in (self.area, self.priority, self.state):
            filters.addWidget(filter_widget)
        actions = QHBoxLayout()
        for widget in (self.comment, self.ack_selected, self.ack_visible, self.shelve_button):
            actions.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(filters)
        layout.addWidget(self.table, 1)
        layout.addLayout(actions)
        layout.addWidget(self.status)

    def _filter_changed(self, *_: object) -> None:
        priority = self.priority.currentText()
        self.store.set_filter(AlarmFilter(
            area=self.area.text().strip(),
            priorities=frozenset({priority}) if priority in PRIORITY_RANK else frozenset(),
            states=STATE_FILTERS[self.state.currentText()],
        ))  # fmt: skip

    def selected(self) -> list[Alarm]:
        return [i.data(ALARM_ROLE) for i in self.table.selectionModel().selectedRows(0)]

    def _keep_selection(self) -> None:
        self._kept = {a.id for a in self.selected()}

    def _restore_selection(self) -> None:
        """A reload must not take the operator's selection away (row inserts and removals keep it
        by themselves); looked up per kept alarm, not by walking 10,000 rows."""
        selection = self.table.selectionModel()
        for alarm_id in self._kept:
            row = self.model.row_of(alarm_id)
            if row is not None:
                selection.select(self.model.index(row, 0), QItemSelectionModel.SelectionFlag.Select
                                 | QItemSelectionModel.SelectionFlag.Rows)  # fmt: skip

    def visible_rows(self) -> tuple[int, int]:
        """First and last row on screen; (0, -1) when none is (a hidden or tabbed-away dock)."""
        if not self.table.isVisible() or not self.model.rows:
            return 0, -1
        top = self.table.rowAt(0)
        if top < 0:
            return 0, -1
        bottom = self.table.rowAt(self.table.viewport().height() - 1)
        return top, bottom if bottom >= 0 else len(self.model.rows) - 1

    def select_row(self, row: int) -> None:
        self.table.selectRow(row)

    @async_slot()
    async def acknowledge_selected(self) -> None:
        await self._acknowledge([a.id for a in self.selected() if a.unacked])

    @async_slot()
    async def acknowledge_visible(self) -> None:
        """Exactly what the operator sees (the console's filters), not a server-side guess; a filter
        changed a moment ago counts even if the table's next tick has not shown it yet."""
        self.model.flush()
        await self._acknowledge([a.id for a in self.model.rows if a.unacked])

    async def _acknowledge(self, ids: list[int]) -> None:
        if not ids:
            self.status.setText("Nothing to acknowledge.")
            return
        try:
            count = await self._ack(ids, self.comment.text().strip() or None)
        except (ApiError, ServerUnreachable) as exc:
            self.status.setText(f"Not acknowledged: {exc}")
            return
        self.comment.clear()
        self.status.setText(f"Acknowledged {count} alarm{'s' if count != 1 else ''}.")

    def ask_shelve(self) -> None:
        """Opens the shelve dialog for the first selected alarm (not modal: the loop keeps running)."""
        selected = self.selected()
        if not selected:
            self.status.setText("Select an alarm to shelve.")
            return
        self.shelve_dialog = ShelveDialog(selected[0], self)
        self.shelve_dialog.accepted.connect(lambda alarm=selected[0]: self._shelve_accepted(alarm))
        self.shelve_dialog.open()

    @async_slot(object)
    async def _shelve_accepted(self, alarm: Alarm) -> None:
        dialog = self.shelve_dialog
        if dialog is None:
            return
        try:
            await self._shelve(alarm.id, dialog.reason.text().strip(), dialog.duration_s())
        except (ApiError, ServerUnreachable) as exc:
            self.status.setText(f"Not shelved: {exc}")
            return
        self.status.setText(f"Shelved {alarm.name}.")

    def _double_clicked(self, index: QModelIndex) -> None:
        alarm = index.data(ALARM_ROLE)
        if isinstance(alarm, Alarm):
            self.open_trend.emit(alarm)
