"""What the analytics add to a trend: anomaly bands (lower–upper from `GET /anomaly/bands`) and
anomaly markers (windows whose score crossed the model's threshold, from `GET /anomaly/predictions`)
for pens whose device has an active model, and a forecast with its prediction interval.

The overlays are static items: they are built when the trend's history arrives (`history_fetched`)
or a forecast is drawn, never per frame. A band is one filled path per pen (one fill per paint,
no per-frame data), markers one scatter item per pen; the trend's timed redraw does not touch them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPathItem, QPushButton

from hmi.client.analytics import AnalyticsApi
from hmi.client.errors import ApiError, ServerUnreachable
from hmi.models.trend import TrendPen
from hmi.qt_async import async_slot
from hmi.views.trend_view import TrendView
from server.api.schema import ForecastOut

log = logging.getLogger(__name__)
ApiGetter = Callable[[], AnalyticsApi | None]
MARKER_COLOUR = "#d62728"
FORECAST_COLOUR = "#6a3d9a"
FOLLOW_REFRESH_MS = 60_000
"""While the trend follows the present, bands and markers are fetched again this often."""


def device_of(path: str) -> str:
    """A tag's device is its parent in the namespace."""
    return path.rsplit("/", 1)[0]


def band_path(t: Sequence[float], lower: Sequence[float | None], upper: Sequence[float | None]) -> QPainterPath:
    """One closed polygon per run of points where both edges are known (gaps stay open)."""
    lo = np.array([math.nan if v is None else v for v in lower], dtype=np.float64)
    hi = np.array([math.nan if v is None else v for v in upper], dtype=np.float64)
    x = np.asarray(t, dtype=np.float64)
    ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(x)
    path = QPainterPath()
    edges = np.flatnonzero(np.diff(np.concatenate(([0], ok.astype(np.int8), [0]))))
    for begin, end in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
        if end - begin < 2:
            continue
        points = [QPointF(float(a), float(b)) for a, b in zip(x[begin:end], hi[begin:end], strict=True)]
        points += [QPointF(float(a), float(b)) for a, b in zip(x[begin:end][::-1], lo[begin:end][::-1], strict=True)]
        path.moveTo(points[0])
        for p in points[1:]:
            path.lineTo(p)
        path.closeSubpath()
    return path


def _filled(path: QPainterPath, colour: str, alpha: int) -> QGraphicsPathItem:
    item = QGraphicsPathItem(path)
    fill = QColor(colour)
    fill.setAlpha(alpha)
    item.setBrush(QBrush(fill))
    edge = QColor(colour)
    edge.setAlpha(min(255, alpha * 3))
    outline = QPen(edge, 0)  # cosmetic: one pixel whatever the zoom
    outline.setCosmetic(True)
    item.setPen(outline)
    return item


@dataclass
class _Placed:
    box: pg.ViewBox
    item: QGraphicsItem

    def remove(self) -> None:
        with contextlib.suppress(RuntimeError, ValueError):
            self.box.removeItem(self.item)


class TrendOverlays(QObject):
    """Owns the analytics items on one TrendView; `set_enabled` is the toolbar's toggle."""

    message = Signal(str)

    def __init__(self, view: TrendView, api: ApiGetter) -> None:
        super().__init__(view)
        self.view, self._api = view, api
        self.enabled = True
        self.bands: dict[str, _Placed] = {}  # by pen node id
        self.markers: dict[str, _Placed] = {}
        self.forecast_items: list[_Placed] = []
        self.forecast: ForecastOut | None = None
        self.model_devices: set[str] = set()  # device paths with an active model, as of the last refresh
        self.refreshes = 0
        self._busy, self._again = False, False
        self.toggle = QPushButton("Anomaly bands")
        self.toggle.setObjectName("anomalyBandsToggle")
        self.toggle.setCheckable(True)
        self.toggle.setChecked(True)
        self.toggle.setToolTip("Anomaly bands and markers for pens whose device has a trained model")
        self.toggle.toggled.connect(self.set_enabled)
        self.clear_button = QPushButton("Clear forecast")
        self.clear_button.setVisible(False)
        self.clear_button.clicked.connect(self.clear_forecast)
        at = view.toolbar.indexOf(view.pause_button)
        view.toolbar.insertWidget(at, self.clear_button)
        view.toolbar.insertWidget(at, self.toggle)
        self._soon = QTimer(self, singleShot=True, interval=300)
        self._soon.timeout.connect(self.refresh)
        self._follow = QTimer(self, interval=FOLLOW_REFRESH_MS)
        self._follow.timeout.connect(self._follow_tick)
        self._follow.start()
        view.history_fetched.connect(lambda *_: self._soon.start(0))
        view.model.pens_changed.connect(self._pens_changed)

    # -- toggles ----------------------------------------------------------------------------
    def set_enabled(self, on: bool) -> None:
        self.enabled = on
        for placed in [*self.bands.values(), *self.markers.values()]:
            placed.item.setVisible(on)
        if on:
            self._soon.start(0)

    def _follow_tick(self) -> None:
        if self.enabled and not self.view.model.paused and self.model_devices:
            self.refresh()

    def _pens_changed(self, _: object) -> None:
        """Axes may have been rebuilt: place everything again on the pens' current boxes."""
        self._clear(self.bands)
        self._clear(self.markers)
        if self.forecast is not None:
            self._draw_forecast(self.forecast)
        self._soon.start()

    @staticmethod
    def _clear(items: dict[str, _Placed]) -> None:
        for placed in items.values():
            placed.remove()
        items.clear()

    def _place(self, pen: TrendPen, item: QGraphicsItem, z: float) -> _Placed:
        box = self.view.axes.box(pen.unit)
        item.setZValue(z)
        box.addItem(item, ignoreBounds=True)
        return _Placed(box, item)

    # -- bands and markers --------------------------------------------------------------------
    @async_slot()
    async def refresh(self) -> None:
        """Bands and markers of the visible range, for pens whose device has an active model."""
        if self._busy:
            self._again = True
            return
        self._busy = True
        try:
            self._again = True
            while self._again:
                self._again = False
                await self._refresh_once()
        finally:
            self._busy = False

    async def _refresh_once(self) -> None:
        api = self._api()
        if api is None or not self.enabled:
            return
        model = self.view.model
        start, end = model.view_start, model.view_end if model.paused else time.time()
        try:
            models = await api.models()
        except (ApiError, ServerUnreachable) as exc:
            self.message.emit(f"Anomaly models not available: {exc}")
            return
        self.model_devices = {m.path for m in models if m.active and m.status == "ready"}
        pens = [p for p in model.pens if device_of(p.path) in self.model_devices]
        for node_id in [n for n in self.bands if n not in {p.node_id for p in pens}]:
            self.bands.pop(node_id).remove()
        for node_id in [n for n in self.markers if n not in {p.node_id for p in pens}]:
            self.markers.pop(node_id).remove()
        self.refreshes += 1
        for pen in pens:
            try:
                bands = await api.bands(pen.node_id, start, end, max_points=self.view.history_points())
            except (ApiError, ServerUnreachable) as exc:
                self.message.emit(f"No anomaly band for {pen.path}: {exc}")
                continue
            if pen not in self.view.model.pens or not self.enabled:
                return
            if pen.node_id in self.bands:
                self.bands.pop(pen.node_id).remove()
            item = _filled(band_path(bands.t, bands.lower, bands.upper), pen.colour, 45)
            item.setToolTip(f"{pen.path}: expected range ({bands.method}, ±{bands.k:g}σ)")
            self.bands[pen.node_id] = self._place(pen, item, -5)
        for device in sorted({device_of(p.path) for p in pens}):
            try:
                windows = await api.predictions(device, start, end)
            except (ApiError, ServerUnreachable) as exc:
                self.message.emit(f"No anomaly scores for {device}: {exc}")
                continue
            hits = [t for t, bad in zip(windows.t, windows.anomalous, strict=True) if bad]
            for pen in [p for p in pens if device_of(p.path) == device and p in self.view.model.pens]:
                self._draw_markers(pen, hits)

    def _draw_markers(self, pen: TrendPen, hits: list[float]) -> None:
        if pen.node_id in self.markers:
            self.markers.pop(pen.node_id).remove()
        xs, ys = [], []
        for t in hits:
            v = pen.value_at(t)
            if v is not None and math.isfinite(v):
                xs.append(t)
                ys.append(v)
        scatter = pg.ScatterPlotItem(x=xs, y=ys, symbol="t", size=11, pen=pg.mkPen("#7f0000", width=1),
                                     brush=pg.mkBrush(MARKER_COLOUR), name="anomaly")  # fmt: skip
        scatter.setToolTip(f"{pen.path}: {len(xs)} anomalous window(s) in view")
        self.markers[pen.node_id] = self._place(pen, scatter, 20)

    # -- forecast -------------------------------------------------------------------------------
    def show_forecast(self, forecast: ForecastOut) -> bool:
        """Draw the forecast on its pen (which must be on the trend) and show its whole horizon:
        the trend pauses over [start of the view, end of the forecast]."""
        pen = self.view.model.pen(forecast.node_id)
        if pen is None or not forecast.t:
            return False
        self.forecast = forecast
        self._draw_forecast(forecast)
        model = self.view.model
        span = max(model.view_end - model.view_start, 1.0)
        end = forecast.t[-1] + forecast.step_s
        self.view.set_range(min(model.view_start, end - span), end)
        self.clear_button.setVisible(True)
        return True

    def _draw_forecast(self, forecast: ForecastOut) -> None:
        for placed in self.forecast_items:
            placed.remove()
        self.forecast_items = []
        pen = self.view.model.pen(forecast.node_id)
        if pen is None:
            return
        t, y = list(forecast.t), list(forecast.value)
        lower: list[float | None] = list(forecast.lower)
        upper: list[float | None] = list(forecast.upper)
        last = pen.joined()
        if last[0].size:  # join the forecast to the last known point, so the line continues the pen
            t0, y0 = float(last[0][-1]), float(last[1][-1])
            if t0 < t[0] and math.isfinite(y0):
                t, y, lower, upper = [t0, *t], [y0, *y], [y0, *lower], [y0, *upper]
        interval = _filled(band_path(t, lower, upper), FORECAST_COLOUR, 60)
        interval.setToolTip(f"{forecast.confidence:g}% prediction interval ({forecast.method})")
        line = pg.PlotCurveItem(t, y, pen=pg.mkPen(FORECAST_COLOUR, width=2, style=Qt.PenStyle.DashLine))
        self.forecast_items = [self._place(pen, interval, -4), self._place(pen, line, 15)]

    def clear_forecast(self) -> None:
        for placed in self.forecast_items:
            placed.remove()
        self.forecast_items, self.forecast = [], None
        self.clear_button.setVisible(False)

    def forget(self) -> None:
        """Logged out: nothing of the last session stays on the chart."""
        self.clear_forecast()
        self._clear(self.bands)
        self._clear(self.markers)
        self.model_devices = set()
