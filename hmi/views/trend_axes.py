"""Several y axes on one pyqtgraph plot, one per unit, all sharing the time axis."""

from __future__ import annotations

import pyqtgraph as pg


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

    def _sync(self) -> None:
        for box, _axis in self._extra:
            box.setGeometry(self.item.vb.sceneBoundingRect())
            box.linkedViewChanged(self.item.vb, box.XAxis)
