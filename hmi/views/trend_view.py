"""A trend: several pens with their own axes, live tail joined to decimated history.

The chart redraws on a timer (not per sample) from the model's ring buffers; panning or
zooming pauses following the present and, after a short pause in the gesture, fetches the
visible range from the server's decimated history (one request per pen, awaited).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QDateTime, Qt, QTimer, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QPaintEvent
from PySide6.QtWidgets import (
    QDateTimeEdit,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from hmi.models.qt_namespace import MIME_NODES
from hmi.models.trend import PRESETS_S, TrendModel, TrendPen
from hmi.models.trend_sets import AxisSpec
from hmi.qt_async import async_slot
from hmi.views.trend_axes import TickGrid, UnitAxes

FetchHistory = Callable[[TrendPen, float, float, int], Awaitable[None]]


class _Curve(pg.PlotDataItem):  # type: ignore[misc]  # pyqtgraph ships no types
    """A pen's line. While the view moves the time window (`held`), it does not re-clip and
    re-downsample its old data: the redraw that moved the window gives it its new data next,
    so each frame clips every curve once, not twice."""

    held = False

    def viewRangeChanged(self, vb: object = None, ranges: object = None, changed: object = None) -> None:  # noqa: N802
        if not _Curve.held:
            super().viewRangeChanged(vb, ranges, changed)


class _PenCurves:
    """The line and (when decimated) the min/max envelope of one pen.

    The envelope is one vertical stroke per bucket (min to max) drawn with one `drawLines` call
    of 1-pixel segments (`segmentedLineMode="on"`): a filled polygon between two curves
    (FillBetweenItem) cost several times more to paint with 20 pens, and a path of line pairs is
    stroked element by element.
    """

    def __init__(self, pen: TrendPen, box: pg.ViewBox) -> None:
        colour = pg.mkColor(pen.colour)
        self.line = _Curve(pen=pg.mkPen(colour, width=1), name=pen.label)  # wide pens draw 10x slower
        self.line.setDownsampling(auto=True, method="peak")
        self.line.setClipToView(True)
        faint = pg.mkColor(pen.colour)
        faint.setAlpha(70)
        self.envelope = pg.PlotCurveItem(pen=pg.mkPen(faint, width=1), connect="pairs", segmentedLineMode="on",
                                         skipFiniteCheck=True)  # fmt: skip
        self._envelope_shown: tuple[object, int] | None = None  # (history, buckets) drawn; redrawn when it changes
        for item in (self.envelope, self.line):
            box.addItem(item)
        self.box = box

    def remove(self) -> None:
        for item in (self.envelope, self.line):
            self.box.removeItem(item)

    def draw(self, pen: TrendPen, bucket_s: float) -> None:
        t, y = pen.display(bucket_s)
        self.line.setData(t, y)
        env = pen.envelope()
        shown, key = self._envelope_shown, None if env is None else (pen.history, len(env[0]))
        if shown is key or (shown is not None and key is not None and shown[0] is key[0] and shown[1] == key[1]):
            return  # the envelope changes with a new history, or when live samples cover a bucket
        self._envelope_shown = key
        if env is None:
            self.envelope.setData([], [])
        else:
            t, lo, hi = env
            finite = np.isfinite(lo) & np.isfinite(hi)
            t, lo, hi = t[finite], lo[finite], hi[finite]
            self.envelope.setData(np.repeat(t, 2), np.column_stack((lo, hi)).ravel(), connect="pairs")


class _TrendPlot(pg.PlotWidget):  # type: ignore[misc]  # pyqtgraph ships no types
    """The chart; it times its own paints (what a frame costs on this screen)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.last_paint_ms = 0.0
        self.painted_at = 0.0  # time.time() at the end of the last paint

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        began = time.perf_counter()
        super().paintEvent(event)
        self.last_paint_ms = (time.perf_counter() - began) * 1000
        self.painted_at = time.time()


class TrendView(QWidget):
    """Presets, pause/resume, cursor readout, CSV/PNG export; tags arrive by drop or `pens_wanted`."""

    pens_wanted = Signal(list)  # list of {"node_id", "path", "unit"} dropped on the chart
    history_fetched = Signal(float, float)  # start, end: every pen's history of that range arrived

    def __init__(self, model: TrendModel, fetch: FetchHistory, redraw_ms: int = 200,
                 parent: QWidget | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.model, self._fetch = model, fetch
        self.setAcceptDrops(True)
        self.plot = _TrendPlot(axisItems={"bottom": pg.DateAxisItem(orientation="bottom")})
        self.plot.setObjectName("trendPlot")
        self.plot.setAcceptDrops(False)
        self.plot.viewport().setAcceptDrops(False)
        self.plot.setBackground("#e6e6e6")
        self.item: pg.PlotItem = self.plot.getPlotItem()
        self.grid = TickGrid(self.item)  # one opaque drawLines call, not pyqtgraph's per-axis translucent grid
        self.legend = self.item.addLegend(offset=(10, 10))
        self.axes = UnitAxes(self.item)
        self.curves: dict[str, _PenCurves] = {}
        self._units: list[str] = []
        self.time_cursor = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen("#333333", style=Qt.PenStyle.DashLine))
        self.time_cursor.sigPositionChanged.connect(self._update_readout)
        self._cursor_pinned = False  # until the user drags it, the cursor rides near the present
        self.time_cursor.sigDragged.connect(lambda *_: setattr(self, "_cursor_pinned", True))
        self.item.addItem(self.time_cursor, ignoreBounds=True)
        self.readout = QLabel("")
        self.readout.setObjectName("trendReadout")
        self.readout.setTextFormat(Qt.TextFormat.RichText)
        self.readout.setWordWrap(True)  # 20 pens must not widen the window
        self.readout.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.last_redraw_ms = 0.0
        self.fetches = 0
        self._setting_range = False
        self._build_toolbar()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(self.toolbar)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.readout)
        self.item.vb.sigRangeChangedManually.connect(self._user_moved)
        model.pens_changed.connect(self._pens_changed)
        self._history_timer = QTimer(self, singleShot=True, interval=300)
        self._history_timer.timeout.connect(self.refresh_history)
        self.redraw_ms = redraw_ms
        self._last_redraw = 0.0
        self._bucket_s = 0.0
        self._min_interval_s = redraw_ms / 1000
        self._readout_text = ""
        self._redraw_timer = QTimer(self, interval=redraw_ms)
        self._redraw_timer.timeout.connect(self._tick)
        self._redraw_timer.start()
        self._apply_range()

    def _build_toolbar(self) -> None:
        self.toolbar = QHBoxLayout()
        self.preset_buttons: dict[str, QPushButton] = {}
        for name, span in PRESETS_S.items():
            button = QPushButton(name)
            button.setCheckable(True)
            button.clicked.connect(lambda _=False, s=span: self.set_span(s))
            self.toolbar.addWidget(button)
            self.preset_buttons[name] = button
        custom = QPushButton("Custom…")
        custom.clicked.connect(self._custom_range)
        self.toolbar.addWidget(custom)
        self.toolbar.addStretch(1)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(self.set_paused)
        self.toolbar.addWidget(self.pause_button)
        csv_button, png_button = QPushButton("CSV…"), QPushButton("PNG…")
        csv_button.clicked.connect(self._ask_csv)
        png_button.clicked.connect(self._ask_png)
        self.toolbar.addWidget(csv_button)
        self.toolbar.addWidget(png_button)
        self._mark_preset()

    # -- range ----------------------------------------------------------------------------
    def set_span(self, span_s: float) -> None:
        """A preset: follow the present over this span; history for the new range is fetched."""
        self.model.set_span(span_s)
        self._pace_redraw()
        self.pause_button.setChecked(False)
        self._mark_preset()
        self._apply_range()
        self._history_timer.start(0)

    def set_range(self, start: float, end: float) -> None:
        """A fixed window (custom range): paused, history fetched."""
        self.pause_button.setChecked(True)
        self.model.set_range(start, end)
        self._apply_range()
        self._history_timer.start(0)

    def show_time(self, span_s: float, follow: bool, start: float | None, end: float | None) -> None:
        """A saved trend's time: following the present over `span_s`, or fixed (paused) from start to end."""
        if follow or start is None or end is None:
            self.set_span(span_s)
        else:
            self.model.span_s = span_s
            self._pace_redraw()
            self._mark_preset()
            self.set_range(start, end)

    def fetch_visible_soon(self) -> None:
        """Fetch the visible range's history for every pen on the next turn of the loop."""
        self._history_timer.start(0)

    def axes_state(self) -> list[AxisSpec]:
        return self.axes.state()

    def apply_axes(self, specs: list[AxisSpec]) -> None:
        self.axes.apply(specs)

    def set_paused(self, paused: bool) -> None:
        self.model.paused = paused
        self.pause_button.setText("Resume" if paused else "Pause")
        if not paused:
            self.model.follow(time.time())
            self._apply_range()
            self._history_timer.start()

    def _pace_redraw(self) -> None:
        """The shortest time between two redraws: about as long as the present takes to move by a
        pixel, at most 5 Hz (`redraw_ms`) and at least once a second while data arrive, so a new
        value reaches the chart's right edge within a second at any span."""
        per_pixel_ms = self.model.span_s * 1000 / max(1, self.plot.width())
        self._min_interval_s = max(self.redraw_ms, min(1000.0, per_pixel_ms)) / 1000

    def _tick(self) -> None:
        """The timer: redraw only when something changed (new samples, a new history, the present
        moved by a pixel) and the pace allows; an idle chart costs nothing."""
        if time.monotonic() - self._last_redraw < self._min_interval_s:
            return
        if any(pen.dirty for pen in self.model.pens):
            self.redraw()
        elif not self.model.paused:
            px_per_s = max(1, self.plot.width()) / max(1e-9, self.model.span_s)
            if (time.time() - self.model.view_end) * px_per_s >= 1:
                self.redraw()

    def _mark_preset(self) -> None:
        for name, button in self.preset_buttons.items():
            button.setChecked(PRESETS_S[name] == self.model.span_s)

    def _apply_range(self) -> None:
        self._setting_range = True
        self.item.setXRange(self.model.view_start, self.model.view_end, padding=0)
        self._setting_range = False
        if not self._cursor_pinned:
            self.time_cursor.setValue(self.model.view_end - (self.model.view_end - self.model.view_start) * 0.1)

    def _user_moved(self, *_: object) -> None:
        """Panning or zooming: stop following, fetch the new range once the gesture settles."""
        start, end = self.item.vb.viewRange()[0]
        if not self.pause_button.isChecked():
            self.pause_button.setChecked(True)
        self.model.view_start, self.model.view_end = start, end
        for pen in self.model.pens:
            pen.dirty = True  # the live tail is reduced per pixel: reduce it again at the new scale
        self._history_timer.start()

    def _custom_range(self) -> None:
        dialog = QDialog(self)
        dialog.setWindowTitle("Trend range")
        start, end = QDateTimeEdit(), QDateTimeEdit()
        for edit, t in ((start, self.model.view_start), (end, self.model.view_end)):
            edit.setCalendarPopup(True)
            edit.setDateTime(QDateTime.fromSecsSinceEpoch(int(t)))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(dialog.accept)
        buttons.rejected.connect(dialog.reject)
        form = QFormLayout(dialog)
        form.addRow("From", start)
        form.addRow("To", end)
        form.addRow(buttons)
        if dialog.exec() == QDialog.DialogCode.Accepted and end.dateTime() > start.dateTime():
            self.set_range(start.dateTime().toSecsSinceEpoch(), end.dateTime().toSecsSinceEpoch())

    # -- history --------------------------------------------------------------------------
    @async_slot()
    async def refresh_history(self) -> None:
        """Fetch the visible range for every pen, about one bucket per horizontal pixel."""
        start, end = self.model.view_start, self.model.view_end
        if not self.model.paused:
            end = time.time()
        points = self.history_points()
        for pen in list(self.model.pens):
            self.fetches += 1
            await self._fetch(pen, start, end, points)
        self.history_fetched.emit(start, end)

    def history_points(self) -> int:
        """About one bucket per horizontal pixel: more would not show, fewer would hide spikes."""
        return max(50, min(5000, int(self.plot.width())))

    # -- pens -----------------------------------------------------------------------------
    def _pens_changed(self, _: None) -> None:
        """Curves for new pens, none for removed ones; everything is rebuilt only when the units
        (and so the axes) change: restoring 20 pens one by one must not rebuild 20 × 20 curves."""
        units = self.model.units()
        if units != self._units:
            self._units = units
            for curves in self.curves.values():
                curves.remove()
            self.curves.clear()
            self.legend.clear()
            self.axes.rebuild(units)
        wanted = {pen.node_id for pen in self.model.pens}
        for node_id in [n for n in self.curves if n not in wanted]:
            curves = self.curves.pop(node_id)
            self.legend.removeItem(curves.line)
            curves.remove()
        for pen in self.model.pens:
            if pen.node_id not in self.curves:
                curves = _PenCurves(pen, self.axes.box(pen.unit))
                self.curves[pen.node_id] = curves
                self.legend.addItem(curves.line, pen.label)
                pen.dirty = True
        self.redraw()

    def redraw(self) -> None:
        """Slide the window if following, give changed pens their data, update the readout.

        Moving the window would make every curve re-clip its old data before it gets the new
        (twice the work per frame): the curves hold still while the window moves, then the changed
        pens get their data (clipped once, to the new window) and the others re-clip once."""
        began = time.perf_counter()
        self._last_redraw = time.monotonic()
        self._pace_redraw()
        moved = not self.model.paused
        if moved:
            self.model.follow(time.time())
            _Curve.held = True
            try:
                self._apply_range()
            finally:
                _Curve.held = False
        bucket_s = (self.model.view_end - self.model.view_start) / max(1, self.plot.width())  # about a pixel
        rescaled = not 0.9 < bucket_s / max(1e-9, self._bucket_s) < 1.1  # a new span or width: reduce again
        self._bucket_s = bucket_s
        for pen in self.model.pens:
            curves = self.curves.get(pen.node_id)
            if curves is None:
                continue
            if pen.dirty or rescaled:
                curves.draw(pen, bucket_s)
                pen.dirty = False
            elif moved:
                curves.line.viewRangeChanged()
        self._update_readout()
        self.last_redraw_ms = (time.perf_counter() - began) * 1000

    def _update_readout(self) -> None:
        t = float(self.time_cursor.value())
        parts = [time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))]
        for pen in self.model.pens:
            v = pen.value_at(t)
            text = "—" if v is None else f"{v:.4g}"
            parts.append(f'<span style="color:{pen.colour}">■</span> {pen.path}: <b>{text}</b> {pen.unit}')
        text = " &nbsp; ".join(parts)
        if text != self._readout_text:  # a rich-text label lays itself out again on every setText
            self._readout_text = text
            self.readout.setText(text)

    # -- drop and export ------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasFormat(MIME_NODES):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        raw = bytes(event.mimeData().data(MIME_NODES).data()).decode()
        self.pens_wanted.emit(json.loads(raw))
        event.acceptProposedAction()

    def export_csv(self, path: Path) -> None:
        start, end = self.item.vb.viewRange()[0]
        path.write_text(self.model.to_csv(start, end), encoding="utf-8")

    def export_png(self, path: Path) -> bool:
        return bool(self.plot.grab().save(str(path), "PNG"))

    def _ask_csv(self) -> None:
        name, _ = QFileDialog.getSaveFileName(self, "Export visible data", "trend.csv", "CSV (*.csv)")
        if name:
            self.export_csv(Path(name))

    def _ask_png(self) -> None:
        name, _ = QFileDialog.getSaveFileName(self, "Export chart", "trend.png", "PNG (*.png)")
        if name:
            self.export_png(Path(name))
