"""The strip above every view: the link state (lost connection, stale values) and the newest
unacknowledged alarm with the count."""

from __future__ import annotations

import time

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QWidget

from hmi.models.alarms import AlarmChange, AlarmStore
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
        self._style = ""
        self._refreshed = 0.0
        self._later = QTimer(self, singleShot=True, interval=50)
        self._later.timeout.connect(self.refresh)
        store.changed.connect(self._alarms_changed)
        self.refresh()

    def show_link_problem(self, text: str | None) -> None:
        """None hides the strip: connected and current."""
        self.link.setVisible(text is not None)
        self.link.setText(text or "")

    def _alarms_changed(self, _: AlarmChange) -> None:
        """At once when the store knows the newest unacknowledged alarm and the banner was not
        just updated; during a burst (or when finding the newest means walking every alarm) at
        most every 50 ms."""
        if self._later.isActive():
            return
        if self.store.newest_known and time.monotonic() - self._refreshed >= 0.05:
            self.refresh()
        else:
            self._later.start()

    def refresh(self) -> None:
        self._refreshed = time.monotonic()
        newest = self.store.newest_unacked()
        count = self.store.unacked_count()
        if newest is None:
            self.alarm.setText("No unacknowledged alarms")
            self._set_style("")
            return
        self.alarm.setText(f"{count} unacknowledged · newest: [{newest.priority.upper()}] {newest.message}"
                           f"{'  (first out)' if newest.first_out else ''}")  # fmt: skip
        bg, fg = PRIORITY_COLOURS.get(newest.priority, "#999"), PRIORITY_TEXT.get(newest.priority, "#000")
        self._set_style(f"background:{bg}; color:{fg}; font-weight:bold; padding:4px;")

    def _set_style(self, style: str) -> None:
        if style != self._style:  # a style sheet change re-polishes the label: only when the priority changes
            self._style = style
            self.alarm.setStyleSheet(style)
