"""ISA-18.2 figures of the last 24 h from GET /alarms/kpis, refreshed on demand."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from PySide6.QtWidgets import QFormLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from hmi.client.errors import ApiError, ServerUnreachable
from hmi.qt_async import async_slot

FetchKpis = Callable[[float, float], Awaitable[dict[str, Any]]]
FIGURES = {
    "alarms_per_operator_per_10min": "Alarms / operator / 10 min (target ≤ 1–2)",
    "flood_percent": "Time in flood, % (target < 1)",
    "standing": "Standing alarms (> 24 h)",
    "chattering": "Chattering conditions",
    "shelved": "Shelves in the period",
}


class KpiPanel(QWidget):
    def __init__(self, fetch: FetchKpis, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._fetch = fetch
        self.labels = {key: QLabel("–") for key in FIGURES}
        form = QFormLayout()
        for key, text in FIGURES.items():
            form.addRow(text, self.labels[key])
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        self.status = QLabel("")
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(refresh)
        layout.addWidget(self.status)
        layout.addStretch(1)

    @async_slot()
    async def refresh(self) -> None:
        now = time.time()
        try:
            kpis = await self._fetch(now - 86400, now)
        except (ApiError, ServerUnreachable) as exc:
            self.status.setText(f"KPIs not available: {exc}")
            return
        for key, label in self.labels.items():
            value = kpis.get(key)
            if isinstance(value, list):
                value = len(value)
            elif isinstance(value, float):
                value = f"{value:.2f}"
            label.setText("–" if value is None else str(value))
        self.status.setText(time.strftime("as of %H:%M:%S"))
