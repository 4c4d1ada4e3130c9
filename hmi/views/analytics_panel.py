"""The analytics of the tag selected in the plant tree: statistics, trend (slope per hour, R²,
direction), correlation with a second tag, and a forecast that can be drawn on the trend.

Every figure comes from the server (`/api/v1/analytics/*`), fetched in async slots so the GUI never
waits. Figures the server estimated from rollups (`approximate`) are shown with "≈" and their
guaranteed bounds as a tooltip. Problems (too few points, a constant series...) are shown as text.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from hmi.client.analytics import AnalyticsApi
from hmi.client.errors import ApiError, ServerUnreachable
from hmi.qt_async import async_slot
from server.api.schema import AnalyticsBasis, ForecastOut, NodeOut

ApiGetter = Callable[[], AnalyticsApi | None]
RANGES_S = {"Last hour": 3600, "Last 8 hours": 8 * 3600, "Last 24 hours": 86_400, "Last 7 days": 7 * 86_400}
STATISTICS = [("count", "Count"), ("mean", "Mean"), ("median", "Median"), ("std", "Std deviation"),
              ("min", "Min"), ("max", "Max"), ("range", "Range"), ("p25", "P25"), ("p75", "P75"), ("p95", "P95"),
              ("iqr", "IQR"), ("cv", "CV")]  # fmt: skip


def figure(value: float | int | None, key: str, basis: AnalyticsBasis) -> tuple[str, str]:
    """The text of a figure and its tooltip: "≈" and the bounds when the server estimated it."""
    if value is None:
        return "–", ""
    text = str(value) if isinstance(value, int) else f"{value:.6g}"
    if key in basis.approximate:
        bounds = basis.bounds.get(key)
        where = f" (exact value within {bounds.low:.6g} … {bounds.high:.6g})" if bounds else ""
        return f"≈ {text}", f"estimated from {basis.resolution_s:g} s rollups{where}"
    return text, ""


def _problem(exc: Exception) -> str:
    return exc.detail if isinstance(exc, ApiError) else str(exc)


class AnalyticsPanel(QWidget):
    """`show_node` with a tag; `draw_forecast` asks the window to put a forecast on the trend."""

    draw_forecast = Signal(object)  # ForecastOut

    def __init__(self, api: ApiGetter, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._api = api
        self.node: NodeOut | None = None
        self.forecast: ForecastOut | None = None
        self.title = QLabel("Select a tag in the plant tree.")
        self.title.setWordWrap(True)
        self.range = QComboBox()
        self.range.addItems(list(RANGES_S))
        self.range.currentIndexChanged.connect(lambda _: self.refresh())
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        top = QHBoxLayout()
        top.addWidget(self.range, 1)
        top.addWidget(self.refresh_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addLayout(top)
        layout.addWidget(self._build_statistics())
        layout.addWidget(self._build_trend())
        layout.addWidget(self._build_correlation())
        layout.addWidget(self._build_forecast())
        layout.addStretch(1)
        self._enable(False)

    # -- building ---------------------------------------------------------------------------
    def _build_statistics(self) -> QGroupBox:
        box = QGroupBox("Statistics")
        form = QFormLayout(box)
        self.stats = {key: QLabel("–") for key, _ in STATISTICS}
        for key, text in STATISTICS:
            form.addRow(text, self.stats[key])
        self.stats_status = QLabel("")
        self.stats_status.setWordWrap(True)
        form.addRow(self.stats_status)
        return box

    def _build_trend(self) -> QGroupBox:
        box = QGroupBox("Trend")
        form = QFormLayout(box)
        self.slope, self.r2, self.direction = QLabel("–"), QLabel("–"), QLabel("–")
        form.addRow("Slope / h", self.slope)
        form.addRow("R²", self.r2)
        form.addRow("Direction", self.direction)
        self.trend_status = QLabel("")
        self.trend_status.setWordWrap(True)
        form.addRow(self.trend_status)
        return box

    def _build_correlation(self) -> QGroupBox:
        box = QGroupBox("Correlation")
        form = QFormLayout(box)
        self.other = QComboBox()
        self.other.setObjectName("correlationOther")
        self.find_text = QLineEdit()
        self.find_text.setPlaceholderText("find a tag anywhere…")
        self.find_text.returnPressed.connect(self.find_tags)
        self.correlate_button = QPushButton("Correlate")
        self.correlate_button.clicked.connect(self.correlate)
        form.addRow("With", self.other)
        form.addRow(self.find_text)
        form.addRow(self.correlate_button)
        self.correlation = QLabel("–")
        self.correlation.setWordWrap(True)
        form.addRow(self.correlation)
        return box

    def _build_forecast(self) -> QGroupBox:
        box = QGroupBox("Forecast")
        form = QFormLayout(box)
        self.horizon = QSpinBox(minimum=1, maximum=100, value=20)
        self.confidence = QDoubleSpinBox(minimum=50, maximum=99, value=95, decimals=0, suffix=" %")
        self.method = QComboBox()
        self.method.addItems(["auto", "linear", "holt_winters"])
        form.addRow("Horizon (steps)", self.horizon)
        form.addRow("Confidence", self.confidence)
        form.addRow("Method", self.method)
        buttons = QHBoxLayout()
        self.forecast_button = QPushButton("Forecast")
        self.forecast_button.clicked.connect(self.compute_forecast)
        self.draw_button = QPushButton("Draw on trend")
        self.draw_button.setObjectName("drawForecast")
        self.draw_button.setEnabled(False)
        self.draw_button.clicked.connect(self._draw)
        buttons.addWidget(self.forecast_button)
        buttons.addWidget(self.draw_button)
        form.addRow(buttons)
        self.forecast_text = QLabel("–")
        self.forecast_text.setWordWrap(True)
        form.addRow(self.forecast_text)
        return box

    def _enable(self, on: bool) -> None:
        for widget in (self.refresh_button, self.correlate_button, self.forecast_button, self.find_text):
            widget.setEnabled(on)

    def span(self) -> tuple[float, float]:
        end = time.time()
        return end - RANGES_S[self.range.currentText()], end

    # -- the selected tag -------------------------------------------------------------------
    def show_node(self, node: NodeOut) -> None:
        """A tag: its analytics are fetched; anything else is ignored (the panel keeps its tag)."""
        if node.node_class != "tag" or (self.node is not None and node.node_id == self.node.node_id):
            return
        self.node, self.forecast = node, None
        unit = f" [{node.unit}]" if node.unit else ""
        self.title.setText(f"<b>{node.path}</b>{unit}")
        self.draw_button.setEnabled(False)
        self.forecast_text.setText("–")
        self.correlation.setText("–")
        self._enable(True)
        self.refresh()
        self.load_siblings()

    def clear(self) -> None:
        self.node, self.forecast = None, None
        self.title.setText("Select a tag in the plant tree.")
        self.other.clear()
        for label in [*self.stats.values(), self.slope, self.r2, self.direction]:
            label.setText("–")
            label.setToolTip("")
        for label in (self.stats_status, self.trend_status, self.correlation, self.forecast_text):
            label.setText("")
        self.draw_button.setEnabled(False)
        self._enable(False)

    @async_slot()
    async def refresh(self) -> None:
        """Statistics and trend of the selected tag over the chosen range."""
        api, node = self._api(), self.node
        if api is None or node is None:
            return
        start, end = self.span()
        self.stats_status.setText("loading…")
        try:
            stats = await api.statistics(node.node_id, start, end)
        except (ApiError, ServerUnreachable) as exc:
            for label in self.stats.values():
                label.setText("–")
            self.stats_status.setText(f"Not available: {_problem(exc)}")
        else:
            if node is not self.node:
                return
            values: dict[str, float | int | None] = {
                "count": stats.count, "mean": stats.mean, "median": stats.median, "std": stats.std,
                "min": stats.min, "max": stats.max, "range": stats.range, "iqr": stats.iqr, "cv": stats.cv,
            }  # fmt: skip
            values |= {k: stats.percentiles.get(k) for k in ("p25", "p75", "p95")}
            for key, label in self.stats.items():
                text, tip = figure(values[key], key, stats)
                label.setText(text)
                label.setToolTip(tip)
            basis = "raw samples" if stats.source == "raw" else f"{stats.resolution_s:g} s rollups"
            self.stats_status.setText(f"{stats.samples} samples ({basis})")
        await self._refresh_trend(api, node, start, end)

    async def _refresh_trend(self, api: AnalyticsApi, node: NodeOut, start: float, end: float) -> None:
        try:
            trend = await api.trend(node.node_id, start, end)
        except (ApiError, ServerUnreachable) as exc:
            for label in (self.slope, self.r2, self.direction):
                label.setText("–")
            self.trend_status.setText(f"Not available: {_problem(exc)}")
            return
        if node is not self.node:
            return
        for label, key, value in ((self.slope, "slope_per_hour", trend.slope_per_hour), (self.r2, "r2", trend.r2)):
            text, tip = figure(value, key, trend)
            label.setText(text + (f" {node.unit}/h" if key == "slope_per_hour" and node.unit else ""))
            label.setToolTip(tip)
        self.direction.setText(trend.direction)
        self.trend_status.setText(f"stable within ±{trend.threshold_per_hour:.3g}/h ({trend.threshold_source})")

    # -- correlation --------------------------------------------------------------------------
    def _set_others(self, nodes: list[NodeOut]) -> None:
        current = self.other.currentData()
        self.other.clear()
        for n in nodes:
            if self.node is None or n.node_id != self.node.node_id:
                self.other.addItem(n.path, n.node_id)
        at = self.other.findData(current)
        if at >= 0:
            self.other.setCurrentIndex(at)

    @async_slot()
    async def load_siblings(self) -> None:
        """The other tags of the tag's device, the likeliest partners."""
        api, node = self._api(), self.node
        if api is None or node is None or node.parent_path is None:
            return
        try:
            siblings = await api.children(node.parent_path)
        except (ApiError, ServerUnreachable) as exc:
            self.correlation.setText(f"Tags not loaded: {_problem(exc)}")
            return
        if node is self.node:
            self._set_others([n for n in siblings if n.node_class == "tag"])

    @async_slot()
    async def find_tags(self) -> None:
        api, text = self._api(), self.find_text.text().strip()
        if api is None or not text:
            return
        try:
            found = await api.search_tags(text)
        except (ApiError, ServerUnreachable) as exc:
            self.correlation.setText(f"Search failed: {_problem(exc)}")
            return
        self._set_others(found.nodes)
        self.correlation.setText(f"{self.other.count()} tag(s) found" + (" (more exist)" if found.truncated else ""))

    @async_slot()
    async def correlate(self) -> None:
        api, node, other = self._api(), self.node, self.other.currentData()
        if api is None or node is None:
            return
        if not other:
            self.correlation.setText("Choose a second tag.")
            return
        start, end = self.span()
        self.correlation.setText("computing…")
        try:
            c = await api.correlation(node.node_id, str(other), start, end)
        except (ApiError, ServerUnreachable) as exc:
            self.correlation.setText(f"Not available: {_problem(exc)}")
            return
        if node is self.node:
            approx = "≈ " if c.source == "rollup" else ""
            self.correlation.setText(
                f"r = {approx}{c.r:.3f} ({c.strength}, {c.direction}), n = {c.n}, p = {c.p_value:.2g}"
                + (f"<br>on {c.resolution_s:g} s rollups" if c.source == "rollup" and c.resolution_s else "")
            )

    # -- forecast -----------------------------------------------------------------------------
    @async_slot()
    async def compute_forecast(self) -> None:
        api, node = self._api(), self.node
        if api is None or node is None:
            return
        start, end = self.span()
        self.forecast_text.setText("computing…")
        self.draw_button.setEnabled(False)
        method = self.method.currentText()
        try:
            f = await api.forecast(node.node_id, start, end, self.horizon.value(), self.confidence.value(),
                                   "linear" if method == "linear" else "holt_winters" if method == "holt_winters"
                                   else "auto")  # fmt: skip
        except (ApiError, ServerUnreachable) as exc:
            self.forecast = None
            self.forecast_text.setText(f"Not available: {_problem(exc)}")
            return
        if node is not self.node:
            return
        self.forecast = f
        rmse, _ = figure(f.rmse, "rmse", f)
        last = f"{f.value[-1]:.4g} [{f.lower[-1]:.4g} … {f.upper[-1]:.4g}]" if f.value else "–"
        self.forecast_text.setText(
            f"{f.method}, {f.horizon} × {f.step_s:g} s at {f.confidence:g}%: RMSE {rmse}, R² {f.r2:.3f}<br>"
            f"at the horizon: {last}"
        )
        self.draw_button.setEnabled(True)

    def _draw(self) -> None:
        if self.forecast is not None:
            self.draw_forecast.emit(self.forecast)
