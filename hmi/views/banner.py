"""The strip above every view: the link state (lost connection, stale values) and the newest
unacknowledged alarm with the count."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QWidget

from hmi.models.alarms import AlarmStore
from hmi.style import PRIORITY_COLOURS, PRIORITY_TEXT


class Banner(QWidget):
    def __init__(self, store: AlarmStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.link = QLabel("")
        self.link.setObjectName("linkBanner")
        self.link.setVisible(False)
        self.alarm = QLabel("No unacknowledged alarms")
        self.alarm.setObjectName("alarmBanner")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.link)
        layout.addWidget(self.alarm, 1)
        store.changed.connect(self._alarms_changed)

    def show_link_problem(self, text: str | None) -> None:
        """None hides the strip: connected and current."""
        self.link.setVisible(text is not None)
        self.link.setText(text or "")

    def _alarms_changed(self, _: None) -> None:
        newest = self.store.newest_unacked()
        count = len(self.store.unacked())
        if newest is None:
            self.alarm.setText("No unacknowledged alarms")
            self.alarm.setStyleSheet("")
            return
        self.alarm.setText(f"{count} unacknowledged · newest: [{newest.priority.upper()}] {newest.message}"
                           f"{'  (first out)' if newest.first_out else ''}")  # fmt: skip
        bg, fg = PRIORITY_COLOURS.get(newest.priority, "#999"), PRIORITY_TEXT.get(newest.priority, "#000")
        self.alarm.setStyleSheet(f"background:{bg}; color:{fg}; font-weight:bold; padding:4px;")
