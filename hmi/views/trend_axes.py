"""Several y axes on one pyqtgraph plot, one per unit, all sharing the time axis."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from hmi.models.trend_sets import AxisSpec


class UnitAxes:
    """The first unit uses the plot's own view box and left axis; every other unit gets a view
    box of its own, linked in x, with an axis on the right."""

    def __init__(self, item: pg.PlotItem) -> None:
        self.item = item
        self.boxes: dict[str, pg.ViewBox] = {}
        self._extra: list[tuple[pg.ViewBox, pg.AxisItem]] = []
        item.vb.sigResized.connect(self._sync)

    def rebuild(self, units: list[str]) -> None:
        for box, axis in self._extra:
            self.item.layout.removeItem(axis)
            axis.scene().removeItem(axis) if axis.scene() else None
            self.item.scene().removeItem(box)
        self._extra.clear()
        self.boxes = {}
        if not units:
            return
        self.boxes[units[0]] = self.item.vb
        self.item.setLabel("left", units[0] or "value")
        for column, unit in enumerate(units[1:], start=3):
            box = pg.ViewBox()
            axis = pg.AxisItem("right")
            axis.setLabel(unit or "value")
            self.item.layout.addItem(axis, 2, column)
            self.item.scene().addItem(box)
            axis.linkToView(box)
            box.setXLink(self.item.vb)
            box.enableAutoRange(axis=pg.ViewBox.YAxis)
            self.boxes[unit] = box
            self._extra.append((box, axis))
        self._sync()

    def box(self, unit: str) -> pg.ViewBox:
        return self.boxes.get(unit, self.item.vb)

    def state(self) -> list[AxisSpec]:
        """Each unit's y axis: automatic, or the range the operator zoomed or set it to."""
        specs = []
        for unit, box in self.boxes.items():
            low, high = box.viewRange()[1]
            auto = bool(box.autoRangeEnabled()[1])
            specs.append(AxisSpec(unit, auto, None if auto else float(low), None if auto else float(high)))
        return specs

    def apply(self, specs: list[AxisSpec]) -> None:
        """Fixed ranges where saved (units not on the chart are ignored), automatic elsewhere."""
        wanted = {s.unit: s for s in specs}
        for unit, box in self.boxes.items():
            spec = wanted.get(unit)
            if spec is None or spec.auto or spec.low is None or spec.high is None or not spec.low < spec.high:
                box.enableAutoRange(axis=pg.ViewBox.YAxis)
            else:
                box.setYRange(spec.low, spec.high, padding=0)  # switches the axis's auto range off

    def _sync(self) -> None:
        for box, _axis in self._extra:
            box.setGeometry(self.item.vb.sceneBoundingRect())
            box.linkedViewChanged(self.item.vb, box.XAxis)


class TickGrid:
    """The chart's grid: lines at the time axis's and the first unit axis's ticks (two levels) as
    one curve of line pairs with an opaque 1-pixel pen, painted with a single `drawLines` call,
    updated when the view moves. pyqtgraph's own grid draws every line semi-transparent as part
    of its axes, which cost 7–10 ms of a 20-pen frame here."""

    def __init__(self, item: pg.PlotItem, colour: str = "#d2d2d2") -> None:
        self.item = item
        self.curve = pg.PlotCurveItem(pen=pg.mkPen(colour, width=1), connect="pairs", segmentedLineMode="on",
                                      skipFiniteCheck=True)  # fmt: skip
        self.curve.setZValue(-1000)
        item.vb.addItem(self.curve, ignoreBounds=True)
        item.vb.sigRangeChanged.connect(self.update)
        item.vb.sigResized.connect(self.update)

    def update(self, *_: object) -> None:
        vb = self.item.vb
        (x0, x1), (y0, y1) = vb.viewRange()
        xs: list[float] = []
        ys: list[float] = []
        for name, lo, hi, size in (("bottom", x0, x1, vb.width()), ("left", y0, y1, vb.height())):
            axis = self.item.getAxis(name)
            if size <= 0 or not hi > lo or (isinstance(axis, pg.DateAxisItem) and not hasattr(axis, "fontMetrics")):
                continue  # the date axis knows its label density after its first paint
            for level, (_spacing, values) in enumerate(axis.tickValues(lo, hi, size)):
                if level > 1:
                    break
                for v in values:
                    if name == "bottom":
                        xs += (v, v)
                        ys += (y0, y1)
                    else:
                        xs += (x0, x1)
                        ys += (v, v)
        self.curve.setData(np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64), connect="pairs")
