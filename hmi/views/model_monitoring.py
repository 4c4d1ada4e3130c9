"""How the selected anomaly model is doing on recent history: its anomaly rate per bucket
against the contamination it was trained for, how far the scores drifted from training (PSI and
KS, with the server's thresholds in words), whether the server recommends retraining and why,
and the live scorer's counters. One request (`GET /anomaly/models/{id}/monitoring`), which the
server scores in a worker thread; nothing here blocks the Qt thread."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from hmi.client.analytics import AnalyticsApi
from hmi.client.errors import ApiError, ServerUnreachable
from hmi.qt_async import async_slot
from server.api.schema import AnomalyModelOut, AnomalyMonitoringOut

ApiGetter = Callable[[], AnalyticsApi | None]
RANGES = {"Last 24 hours": (86_400.0, 3600.0), "Last 7 days": (7 * 86_400.0, 6 * 3600.0),
          "Last 30 days": (30 * 86_400.0, 86_400.0)}  # fmt: skip
"""Range → (span, bucket) in seconds: about 24–30 bars whatever the range."""
MIN_WINDOWS = 100


def psi_words(psi: float, windows: int) -> str:
    """The thresholds docs/anomaly.md gives for the population stability index; like the
    server's retraining reasons, nothing is judged on fewer than MIN_WINDOWS windows."""
    if windows < MIN_WINDOWS or psi != psi:
        return "too few windows to judge"
    return "stable" if psi < 0.1 else "moderate shift" if psi < 0.25 else "shifted"


def summary_text(m: AnomalyMonitoringOut) -> str:
    """The figures an engineer decides a retraining on, in a few lines."""
    lines = [
        f"{m.windows:,} windows, {m.anomalous:,} anomalous: rate {m.anomaly_rate:.2%} "
        f"(trained for {m.contamination:.2%})",
    ]
    psi, ks = float(m.drift.get("psi", float("nan"))), float(m.drift.get("ks", float("nan")))
    lines.append(f"Score drift: PSI {psi:.3f} ({psi_words(psi, m.windows)}), KS {ks:.3f}")
    if m.retrain.get("recommended"):
        reasons = "; ".join(str(r) for r in m.retrain.get("reasons", []))
        lines.append(f"Retraining recommended: {reasons}")
    else:
        lines.append("No retraining needed on this range.")
    if m.live:
        last = m.live.get("last_score")
        tail = f", last score {float(last):.2f}" if isinstance(last, int | float) else ""
        lines.append(f"Live scorer: {int(m.live.get('windows', 0)):,} windows, "
                     f"{int(m.live.get('anomalous', 0)):,} anomalous{tail}")  # fmt: skip
    return "\n".join(lines)


class ModelMonitoring(QWidget):
    """`show_model(model)` loads its monitoring over the chosen range; `None` clears it."""

    def __init__(self, api: ApiGetter, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._api = api
        self.model: AnomalyModelOut | None = None
        self.result: AnomalyMonitoringOut | None = None
        self._asked = 0  # a newer request wins: a slow answer for another model is dropped
        self.range = QComboBox()
        self.range.addItems(list(RANGES))
        self.range.currentIndexChanged.connect(lambda _: self.reload())
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.reload)
        self.title = QLabel("Monitoring: select a model")
        self.summary = QLabel("")
        self.summary.setObjectName("monitoringSummary")
        self.summary.setWordWrap(True)
        self.plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem()})
        self.plot.setMinimumHeight(60)
        self.plot.setBackground("#e6e6e6")  # as the trend: the console is light
        self.plot.setLabel("left", "anomalous %")
        for side in ("left", "bottom"):
            self.plot.getAxis(side).setTextPen("#333333")
            self.plot.getAxis(side).setPen("#666666")
        self.plot.setMouseEnabled(x=False, y=False)
        self.bars = pg.BarGraphItem(x=[], height=[], width=1.0, brush="#d9822b")
        self.plot.addItem(self.bars)
        self.expected = pg.InfiniteLine(angle=0, pen=pg.mkPen("#333333", style=Qt.PenStyle.DashLine))
        self.expected.setVisible(False)
        self.plot.addItem(self.expected)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.range)
        top.addWidget(self.refresh_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.summary)
        layout.addWidget(self.plot, 1)

    def show_model(self, model: AnomalyModelOut | None) -> None:
        same = model is not None and self.model is not None and (model.id, model.status) == (
            self.model.id, self.model.status)  # fmt: skip
        if same and self.result is not None:
            return  # the same model re-selected after a list refresh: keep what is shown
        self.model = model
        if model is None or model.status != "ready":  # nothing to ask the server
            self._asked += 1
            self._clear(self._idle_title())
            return
        self.reload()

    def _idle_title(self) -> str:
        m = self.model
        return "Monitoring: select a ready model" if m is None else f"Monitoring: {m.path} v{m.version} is {m.status}"

    @async_slot()
    async def reload(self) -> None:
        await self.load()

    async def load(self) -> None:
        """The monitoring of the current model over the chosen range (awaitable; `reload` is the slot)."""
        self._asked += 1
        self.result = None  # until this answer: what is drawn is the last range's
        asked, model, api = self._asked, self.model, self._api()
        if api is None:
            self._clear("Monitoring: not connected")
            return
        if model is None or model.status != "ready":
            self._clear(self._idle_title())
            return
        span, bucket = RANGES[self.range.currentText()]
        end = time.time()
        self.title.setText(f"Monitoring {model.path} v{model.version} …")
        try:
            result = await api.monitoring(model.id, end - span, end, bucket)
        except (ApiError, ServerUnreachable) as exc:
            if asked == self._asked:
                self._clear(f"Monitoring {model.path} v{model.version}")
                self.summary.setText(f"Not loaded: {exc.detail if isinstance(exc, ApiError) else exc}")
            return
        if asked != self._asked:
            return
        self.result = result
        self.title.setText(f"Monitoring {model.path} v{model.version}, {self.range.currentText().lower()}")
        self.summary.setText(summary_text(result))
        t = np.array([b.t for b in result.series], dtype=float)
        rate = np.array([100.0 * b.rate for b in result.series], dtype=float)
        self.bars.setOpts(x=t + result.bucket_s / 2, height=rate, width=result.bucket_s * 0.8)
        self.expected.setValue(100.0 * result.contamination)
        self.expected.setVisible(True)
        self.plot.setXRange(result.start, result.end, padding=0)
        self.plot.setYRange(0, max(float(rate.max(initial=0.0)), 100.0 * result.contamination) * 1.2 or 1.0)

    def _clear(self, title: str) -> None:
        self.result = None
        self.title.setText(title)
        self.summary.setText("")
        self.bars.setOpts(x=[], height=[])
        self.expected.setVisible(False)
